"""Read a task's raw rows from a local file (JSONL, JSON, CSV, TSV, CoNLL, plain text) or a hub dataset.

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
    ".conll": "conll", ".iob": "conll", ".bio": "conll",
}
FORMATS = ("jsonl", "json", "csv", "tsv", "conll", "text", "hub")


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


def read_hub(source: str, task: str, split: str | None, config_name: str | None) -> Table:
    from datasets import DatasetDict, load_dataset

    split = split or "train"
    try:
        data = load_dataset(source, config_name, split=split)
    except Exception as err:  # datasets raises many types for "not found" / "offline"
        raise DataFileNotFound(
            f"task {task!r}: could not load hub dataset {source!r} (config {config_name!r}, split {split!r}): "
            "it is not a local file (known suffixes: "
            f"{sorted(SUFFIX_FORMATS)}) and not available offline (HF_HUB_OFFLINE=1 needs it in the local "
            f"cache). Original error: {type(err).__name__}: {err}"
        ) from err
    if isinstance(data, DatasetDict):
        data = data[split]
    rows = [Row(f"row {i}", dict(r)) for i, r in enumerate(data)]
    if not rows:
        raise DataFileError(f"task {task!r}: hub dataset {source!r} split {split!r}: row 0: the split is empty")
    return Table(task, f"hub:{source}[{split}]", rows, _class_names(data.features))


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
    if fmt == "hub":
        return read_hub(source, task, split, config_name)
    if not path.is_file():
        raise DataFileNotFound(f"task {task!r}: dataset file {str(path)!r} does not exist (tasks.custom.*.source)")
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
