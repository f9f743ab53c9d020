"""Read a task's raw rows from a local file (JSONL, JSON, CSV, TSV, CoNLL, plain text, parquet), a local
dataset folder (written by `datasets`' save_to_disk, or data files per split) or a hub dataset; one split, or
the dataset's own splits by role (`load_split_tables`).

Every problem with the data raises `DataFileError` (a `ValueError`) whose message names the task, the
file, the line (or row) and the fields that were found, so a user can open the file at the right place.
Nothing is dropped silently: a row is either read, or the load fails, or the caller skips it on purpose
and counts it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetlab.evaluation.entities import is_valid_tag

# File suffix -> format; anything else that is not an existing file is taken for a hub dataset name.
SUFFIX_FORMATS = {
    ".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".txt": "text",
    ".conll": "conll", ".iob": "conll", ".bio": "conll", ".parquet": "parquet",
}
FORMATS = ("jsonl", "json", "csv", "tsv", "conll", "text", "parquet", "hub")


class DataFileError(ValueError):
    """A task's data cannot be used; the message says where and why."""

    def __str__(self) -> str:  # KeyError (a base of MissingFieldError) would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataFileNotFound(DataFileError, FileNotFoundError):
    """The file does not exist, or the hub dataset is not available (offline)."""


class MissingFieldError(DataFileError, KeyError):
    """A row lacks a field the task needs (a KeyError too, as the old loader raised)."""


@dataclass(frozen=True)
class Row:
    """One raw record and where it came from: 'line 7' in a text file, 'row 3' of a hub dataset."""

    where: str
    fields: dict[str, Any]


@dataclass
class Table:
    """The rows of one source, plus class names the source declares (a hub dataset's ClassLabel features)."""

    task: str
    path: str
    rows: list[Row]
    class_names: dict[str, list[str]] = field(default_factory=dict)

    def error(self, row: Row | None, problem: str, cls: type[DataFileError] = DataFileError) -> DataFileError:
        """An error naming the task, the file, the row's place and its fields."""
        where = f": {row.where}" if row is not None else ""
        found = f"; available fields: {sorted(row.fields)}" if row is not None else ""
        return cls(f"task {self.task!r}: {self.path}{where}: {problem}{found}")


def _fail(task: str, path: Any, where: str, problem: str) -> DataFileError:
    return DataFileError(f"task {task!r}: {path}: {where}: {problem}")


def read_utf8(path: Path, task: str) -> str:
    """The file's text; non-UTF-8 bytes fail with the line and byte offset of the first bad byte."""
    data = path.read_bytes()
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = bom + err.start
        line = data.count(b"\n", 0, offset) + 1
        raise _fail(task, path, f"line {line}",
                    f"byte {data[offset]:#04x} at byte offset {offset} is not valid UTF-8; "
                    "save the file as UTF-8") from None
    if not text.strip():
        raise _fail(task, path, "line 1", "the file is empty")
    return text


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, line) pairs; only '\\n' ends a line (JSON strings may hold U+2028)."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line.rstrip("\r")


def read_jsonl(path: Path, task: str) -> list[Row]:
    rows = []
    for number, line in _lines(read_utf8(path, task)):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise _fail(task, path, f"line {number}",
                        f"not valid JSON ({err.msg} at column {err.colno}): {line[:80]!r}") from None
        if not isinstance(value, dict):
            raise _fail(task, path, f"line {number}", f"expected a JSON object, found {type(value).__name__}")
        rows.append(Row(f"line {number}", value))
    return rows


def read_json(path: Path, task: str) -> list[Row]:
    """A JSON array of objects, or JSON lines under a .json name."""
    text = read_utf8(path, task)
    if not text.lstrip().startswith("["):
        return read_jsonl(path, task)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(task, path, f"line {err.lineno}", f"not valid JSON ({err.msg} at column {err.colno})") from None
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(task, path, f"item {i}", f"expected a JSON object, found {type(item).__name__}")
        rows.append(Row(f"item {i}", item))
    return rows


def read_delimited(path: Path, task: str, delimiter: str) -> list[Row]:
    """CSV/TSV with a header line; a row with more or fewer values than the header fails."""
    reader = csv.reader(io.StringIO(read_utf8(path, task), newline=""), delimiter=delimiter)
    header = next(reader)
    if not any(h.strip() for h in header):
        raise _fail(task, path, "line 1", "the header line is empty")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise _fail(task, path, "line 1", f"duplicate column names {duplicates} in header {header}")
    rows, start = [], reader.line_num + 1
    for values in reader:
        if values:  # csv yields [] for a blank line
            if len(values) != len(header):
                raise _fail(task, path, f"line {start}",
                            f"{len(values)} values but the header has {len(header)} columns {header}")
            rows.append(Row(f"line {start}", dict(zip(header, values))))
        start = reader.line_num + 1
    return rows


def read_conll(path: Path, task: str, tag_column: int = -1) -> list[Row]:
    """Sentences of `token ... tag` lines (tab or space separated), a blank line between sentences;
    `-DOCSTART-` lines are skipped. Each row holds `tokens` and `tags`; its place is its first line."""
    rows: list[Row] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0

    def close() -> None:
        if tokens:
            rows.append(Row(f"line {first}", {"tokens": list(tokens), "tags": list(tags)}))
            tokens.clear()
            tags.clear()

    for number, line in _lines(read_utf8(path, task)):
        if not line.strip():
            close()
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        cols = [c.strip() for c in cols]
        if cols[0] == "-DOCSTART-":
            close()
            continue
        if len(cols) < 2:
            raise _fail(task, path, f"line {number}", f"expected 'token<TAB>tag', found {line!r}")
        if not -len(cols) <= tag_column < len(cols) or tag_column in (0, -len(cols)):
            raise _fail(task, path, f"line {number}", f"tag_column={tag_column}, but the line has {len(cols)} "
                        f"columns (0 is the token): {line!r}")
        tag = cols[tag_column]
        if not is_valid_tag(tag):
            raise _fail(task, path, f"line {number}", f"tag {tag!r} is not 'O' or B-/I-/E-/S-<type>")
        if not tokens:
            first = number
        tokens.append(cols[0])
        tags.append(tag)
    close()
    return rows


def read_text(path: Path, task: str, unit: str = "paragraph") -> list[Row]:
    """One `text` row per paragraph (blank-line separated) or per non-empty line."""
    if unit not in ("paragraph", "line"):
        raise ValueError(f"task {task!r}: text_unit must be 'paragraph' or 'line', got {unit!r}")
    rows, buffer, first = [], [], 0
    for number, line in _lines(read_utf8(path, task)):
        if unit == "line":
            if line.strip():
                rows.append(Row(f"line {number}", {"text": line.strip()}))
        elif line.strip():
            first = first or number
            buffer.append(line.strip())
        elif buffer:
            rows.append(Row(f"line {first}", {"text": "\n".join(buffer)}))
            buffer, first = [], 0
    if buffer:
        rows.append(Row(f"line {first}", {"text": "\n".join(buffer)}))
    return rows


def _class_names(features: Any) -> dict[str, list[str]]:
    """Names of ClassLabel columns and of lists of ClassLabel (NER tags) in a hub dataset."""
    out = {}
    for name, feat in (features or {}).items():
        inner = getattr(feat, "feature", feat)
        names = getattr(feat, "names", None) or getattr(inner, "names", None)
        if names:
            out[name] = list(names)
    return out


def read_parquet(path: Path, task: str) -> Table:
    """A parquet file through `datasets`, so the features it stores (ClassLabel names) come with it."""
    from datasets import load_dataset

    try:
        data = load_dataset("parquet", data_files=str(path), split="train")
    except Exception as err:  # pyarrow and datasets raise many types for a damaged file
        raise _fail(task, path, "row 0", f"cannot read as parquet: {type(err).__name__}: {err}") from err
    return _dataset_table(task, str(path), data)


def is_split_file(value: str) -> bool:
    """A `splits` value naming a file (`data/train.jsonl`: a '/' or a data file suffix) rather than a split of
    the source (`train`)."""
    return "/" in value or "\\" in value or Path(value).suffix.lower() in SUFFIX_FORMATS


def _dataset_folder(path: Path, task: str, config_name: str | None) -> Path:
    """The folder holding the data: `path`, or its `config_name` subfolder (a hub repo's layout,
    wikitext/wikitext-2-raw-v1/train-*.parquet)."""
    if not config_name or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return path
    sub = path / config_name
    if not sub.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataFileNotFound(f"task {task!r}: {path}: config_name {config_name!r} names no subfolder of the "
                               f"dataset folder; its subfolders: {found}")
    return sub


def folder_splits(path: Path, task: str, config_name: str | None = None) -> list[str] | None:
    """The split names of a local dataset folder, read without loading it: a saved DatasetDict's
    dataset_dict.json, else the split names `datasets` infers from the file names (train*, valid*/dev*,
    test*); None for a folder holding one saved Dataset (it has no splits)."""
    folder = _dataset_folder(path, task, config_name)
    if (folder / "dataset_dict.json").is_file():
        return list(json.loads((folder / "dataset_dict.json").read_text())["splits"])
    if (folder / "state.json").is_file():
        return None
    from datasets.data_files import EmptyDatasetError, get_data_patterns

    try:
        return [str(name) for name in get_data_patterns(str(folder))]
    except EmptyDatasetError as err:
        raise DataFileNotFound(f"task {task!r}: {folder}: no data files found in the dataset folder ({err})") from None


def open_dataset(source: str, task: str, config_name: str | None, split: str | None = None) -> Any:
    """A hub dataset or a local dataset folder through `datasets` (a DatasetDict, or a Dataset when `split`
    is given to a hub load or the folder holds one saved Dataset)."""
    from datasets import load_dataset, load_from_disk

    path = Path(source).expanduser()
    try:
        if path.is_dir():
            folder = _dataset_folder(path, task, config_name)
            if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
                return load_from_disk(str(folder))
            return load_dataset(str(folder))
        return load_dataset(source, config_name, split=split) if split else load_dataset(source, config_name)
    except DataFileError:
        raise
    except Exception as err:  # datasets raises many types for "not found" / "offline"
        if path.is_dir():
            raise DataFileError(f"task {task!r}: {path}: cannot load the dataset folder: {type(err).__name__}: "
                                f"{err}") from err
        raise DataFileNotFound(
            f"task {task!r}: could not load hub dataset {source!r} (config {config_name!r}, split {split!r}): "
            "it is not a local file (known suffixes: "
            f"{sorted(SUFFIX_FORMATS)}), not a local dataset folder, and not available offline "
            f"(HF_HUB_OFFLINE=1 needs it in the local cache). Original error: {type(err).__name__}: {err}"
        ) from err


def _pick_split(data: Any, source: str, task: str, split: str, key: str) -> Any:
    from datasets import DatasetDict

    if not isinstance(data, DatasetDict):
        if key.endswith(".split") and split == "train":
            return data  # one saved Dataset: the whole of it
        raise DataFileError(f"task {task!r}: {source}: holds one dataset without splits, so {key}={split!r} "
                            "cannot be chosen; leave it out (the data is carved into train/validation/test)")
    if split not in data:
        raise DataFileError(f"task {task!r}: {source} has no split {split!r} ({key}); its splits: {sorted(data)}")
    return data[split]


def _dataset_table(task: str, where: str, data: Any) -> Table:
    rows = [Row(f"row {i}", dict(r)) for i, r in enumerate(data)]
    if not rows:
        raise DataFileError(f"task {task!r}: {where}: row 0: the split is empty")
    return Table(task, where, rows, _class_names(data.features))


def _shown(source: str) -> str:
    return source if Path(source).expanduser().is_dir() else f"hub:{source}"


def read_hub(source: str, task: str, split: str | None, config_name: str | None) -> Table:
    """One split (default train) of a hub dataset or a local dataset folder."""
    from datasets import DatasetDict

    split = split or "train"
    if Path(source).expanduser().is_dir():
        data = _pick_split(open_dataset(source, task, config_name), source, task, split, f"tasks.custom.{task}.split")
    else:
        data = open_dataset(source, task, config_name, split)
        if isinstance(data, DatasetDict):
            data = _pick_split(data, source, task, split, f"tasks.custom.{task}.split")
    return _dataset_table(task, f"{_shown(source)}[{split}]", data)


def load_split_tables(
    source: str | None,
    task: str,
    splits: dict[str, str],
    format: str | None = None,
    config_name: str | None = None,
    text_unit: str = "paragraph",
    tag_column: int = -1,
    plain_format: str = "text",
) -> dict[str, Table]:
    """The table of each role in `splits` ({train: train, test: test}, or {train: data/train.jsonl}): a split
    of `source` (a hub dataset or a local dataset folder, loaded once) or a file of its own."""
    named = {role: v for role, v in splits.items() if not is_split_file(str(v))}
    tables: dict[str, Table] = {}
    if named:
        if not source:
            raise ValueError(f"task {task!r}: splits {named} name splits of a dataset, but `source` is not set")
        data = open_dataset(source, task, config_name)
        for role, name in named.items():
            picked = _pick_split(data, source, task, str(name), f"tasks.custom.{task}.splits.{role}")
            tables[role] = _dataset_table(task, f"{_shown(source)}[{name}]", picked)
    for role, value in splits.items():
        if role not in named:
            tables[role] = load_table(str(value), task, format=format, config_name=config_name,
                                      text_unit=text_unit, tag_column=tag_column, plain_format=plain_format)
    return tables


def load_table(
    source: str,
    task: str,
    format: str | None = None,
    split: str | None = None,
    config_name: str | None = None,
    text_unit: str = "paragraph",
    tag_column: int = -1,
    plain_format: str = "text",
) -> Table:
    """All rows of `source`; the format comes from `format` or the file suffix (else: a hub dataset).
    A `.txt` or suffix-less file is read as `plain_format` (CoNLL files are often named `train.txt`)."""
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if format:
        fmt = format
    elif suffix == ".txt" or (suffix not in SUFFIX_FORMATS and path.is_file()):
        fmt = plain_format
    else:
        fmt = SUFFIX_FORMATS.get(suffix, "hub")
    if fmt not in FORMATS:
        raise ValueError(f"task {task!r}: unknown format {fmt!r}; allowed: {list(FORMATS)}")
    if fmt == "hub" or path.is_dir():
        return read_hub(source, task, split, config_name)
    if not path.is_file():
        raise DataFileNotFound(f"task {task!r}: dataset file {str(path)!r} does not exist (tasks.custom.*.source)")
    if fmt == "parquet":
        return read_parquet(path, task)
    readers = {
        "jsonl": lambda: read_jsonl(path, task),
        "json": lambda: read_json(path, task),
        "csv": lambda: read_delimited(path, task, ","),
        "tsv": lambda: read_delimited(path, task, "\t"),
        "conll": lambda: read_conll(path, task, tag_column),
        "text": lambda: read_text(path, task, text_unit),
    }
    rows = readers[fmt]()
    if not rows:
        raise _fail(task, path, "line 1", f"no data rows found (read as {fmt})")
    return Table(task, str(path), rows)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple)) and not value
    )


def require(table: Table, row: Row, names: Sequence[str], purpose: str = "") -> None:
    """Fail unless `row` has every field in `names` (an empty value is checked separately)."""
    for name in names:
        if name not in row.fields:
            used = f" (used by {purpose})" if purpose else ""
            raise table.error(row, f"missing field {name!r}{used}", MissingFieldError)


def empty_fields(row: Row, names: Sequence[str]) -> list[str]:
    return [n for n in names if is_empty(row.fields.get(n))]


def template_fields(template: str) -> list[str]:
    """Field names a str.format template uses ('{a.b}' and '{a[0]}' need field 'a')."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            names.append(re.split(r"[.\[]", name, maxsplit=1)[0])
        elif name == "":
            raise ValueError(f"template {template!r} has a positional '{{}}'; name the field, e.g. '{{text}}'")
    return list(dict.fromkeys(names))
