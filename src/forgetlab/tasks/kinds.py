"""Task kinds for real data formats: each turns a `Table` of raw rows into `Example`s with its own
FLAN-style prompt wordings and metric. Fields are read by canonical names (`dialogue`, `summary`,
`tokens`, `tags`, `sentence`, `label`, `text`) that a task's `fields:` mapping points at the source's own
column names. Rows with an empty needed field fail, or with `skip_empty: true` are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from forgetlab.evaluation.entities import CONLL_TYPES, format_entities, is_valid_tag, tags_to_entities
from forgetlab.tasks.assemble import Example
from forgetlab.tasks.loaders import DataFileError, Row, Table, empty_fields, require, template_fields

KINDS = ("instruction", "summarization", "ner", "classification", "text", "alpaca", "chat")  # alpaca, chat: formats.py

SUMMARIZATION_TEMPLATES = (
    "Summarize this dialogue:\n{dialogue}",
    "{dialogue}\n\nBriefly summarize that dialogue.",
    "Here is a dialogue:\n{dialogue}\n\nWrite a short summary!",
)
NER_TEMPLATES = (
    "List the people, places, organisations and other names in: {sentence}",
    "{sentence}\n\nWhich people, locations, organisations and other named entities does this sentence mention?",
    "Find the named entities (person, location, organisation, miscellaneous) in this sentence: {sentence}",
)
CLASSIFICATION_TEMPLATES = (
    "{sentence}\nWhich label fits this sentence? Options: {options}",
    "Classify the sentence: {sentence}\nChoose one of: {options}",
    "{sentence}\n\nIs this sentence {options_or}?",
)
DEFAULT_TEMPLATES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "summarization": SUMMARIZATION_TEMPLATES, "ner": NER_TEMPLATES,
    "classification": CLASSIFICATION_TEMPLATES, "text": ("",),
})
TEMPLATE_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "summarization": ("dialogue",), "ner": ("sentence",), "classification": ("sentence", "options", "options_or"),
    "text": (),
})
# Keys of a custom task (forgetlab.config.schema.CustomTaskConfig) that only some kinds read; every other key
# applies to all kinds. Checked before anything loads (forgetlab.config.checks), so a key a kind would ignore
# is refused, naming the kind.
KIND_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "instruction": frozenset({"prompt_template", "completion_template", "extra_templates", "key_field", "text_unit",
                              "metric"}),
    "summarization": frozenset({"templates", "fields", "metric"}),
    "ner": frozenset({"templates", "fields", "metric", "tag_names", "entity_types", "tag_column"}),
    "classification": frozenset({"templates", "fields", "metric", "label_names"}),
    "text": frozenset({"fields", "text_unit"}),
    "alpaca": frozenset({"fields", "metric"}),
    "chat": frozenset({"fields", "metric", "train_on"}),
})
# Keys every instruction task needs (the other kinds have default wordings and fields).
REQUIRED_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "instruction": ("prompt_template", "completion_template"),
})
DEFAULT_METRICS: Mapping[str, str] = MappingProxyType({
    "instruction": "exact_match", "summarization": "rouge", "ner": "entity_f1",
    "classification": "macro_f1", "text": "perplexity",
    # free-text answers: ROUGE credits partial overlap, where exact match is ~0 for long answers and hides
    # gradual forgetting (ROUGE-L is what SuperNI and TRACE report for such tasks)
    "alpaca": "rouge", "chat": "rouge",
})


@dataclass
class Prepared:
    examples: list[Example]
    skipped: int = 0
    options: list[str] = field(default_factory=list)  # classification: the answer options its prompts show


def _keep(table: Table, row: Row, names: Sequence[str], skip_empty: bool) -> bool:
    """False for a row to skip; raises for an empty field unless skipping is allowed."""
    empty = empty_fields(row, names)
    if empty and not skip_empty:
        raise table.error(row, f"empty field {empty[0]!r} (set `skip_empty: true` to skip such rows)")
    return not empty


def _col(fields: Mapping[str, Any] | None, name: str) -> Any:
    return (fields or {}).get(name, name)


def instruction_examples(
    table: Table, templates: Sequence[str], completion_template: str, key_field: str | None, skip_empty: bool
) -> Prepared:
    """Rows rendered by the user's own templates (the original custom task)."""
    uses = [(f, f"template {t!r}") for t in [*templates, completion_template] for f in template_fields(t)]
    if key_field:
        uses.append((key_field, "key_field"))
    needed = list(dict.fromkeys(f for f, _ in uses))
    out = Prepared([])
    for row in table.rows:
        for name, purpose in uses:
            require(table, row, [name], purpose)
        if not _keep(table, row, needed, skip_empty):
            out.skipped += 1
            continue
        try:
            key = str(row.fields[key_field]) if key_field else templates[0].format(**row.fields)
            completion = completion_template.format(**row.fields)
        except (ValueError, IndexError, AttributeError, TypeError) as err:
            raise table.error(row, f"cannot render a template: {type(err).__name__}: {err}") from None
        out.examples.append(Example(key, dict(row.fields), completion))
    return out


def summarization_examples(table: Table, fields: Mapping[str, Any] | None, skip_empty: bool) -> Prepared:
    """`dialogue` -> summaries; `summary` may name one column, a list of columns, or a column of lists:
    every summary is a reference, the first one is the training target. Rows that repeat a dialogue (one
    row per annotator) become one example holding all their summaries. Of a list of columns a row needs
    one at least (DialogSum's own files: `summary` in train, `summary1..3` in test; see
    `check_summary_columns` for a listed column no row has)."""
    source, summary = _col(fields, "dialogue"), _col(fields, "summary")
    listed = [summary] if isinstance(summary, str) else list(summary)
    out = Prepared([])
    by_text: dict[str, list[str]] = {}
    for row in table.rows:
        summary_cols = [c for c in listed if c in row.fields] or listed
        require(table, row, [source, *summary_cols], "fields.summary" if len(listed) > 1 else "")
        refs: list[Any] = []
        for col in summary_cols:
            value = row.fields[col]
            refs += list(value) if isinstance(value, (list, tuple)) else [value]
        empty = [source] if _is_blank(row.fields[source]) else [c for c in summary_cols if _blank_refs(row, c)]
        if empty:
            if not skip_empty:
                raise table.error(row, f"empty field {empty[0]!r} (set `skip_empty: true` to skip such rows)")
            out.skipped += 1
            continue
        text = str(row.fields[source]).strip()
        by_text.setdefault(text, []).extend(str(r).strip() for r in refs)
    out.examples = [Example(t, {"dialogue": t}, refs[0], list(dict.fromkeys(refs))) for t, refs in by_text.items()]
    return out


def check_summary_columns(tables: Sequence[Table], fields: Mapping[str, Any] | None) -> None:
    """Each of several listed summary columns must occur in some row of the task's tables (a misspelt one
    would otherwise just never be read)."""
    summary = _col(fields, "summary")
    if isinstance(summary, str):
        return
    for col in summary:
        if not any(col in row.fields for t in tables for row in t.rows):
            found = sorted({f for t in tables for f in t.rows[0].fields})
            raise DataFileError(f"task {tables[0].task!r}: fields.summary lists {col!r}, a column no row of "
                                f"{', '.join(t.path for t in tables)} has; columns found: {found}")


def _is_blank(value: Any) -> bool:
    return value is None or not str(value).strip()


def _blank_refs(row: Row, col: str) -> bool:
    value = row.fields[col]
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return not values or any(_is_blank(v) for v in values)


def ner_examples(
    table: Table,
    fields: Mapping[str, Any] | None,
    tag_names: Sequence[str] | None,
    entity_types: Mapping[str, str] | None,
    skip_empty: bool,
) -> Prepared:
    """Tagged sentences -> "person: Anna; location: Paris" answers (CoNLL chunking, exact spans)."""
    tokens_col, tags_col = _col(fields, "tokens"), _col(fields, "tags")
    names = list(tag_names) if tag_names else table.class_names.get(tags_col)
    types = dict(entity_types) if entity_types else dict(CONLL_TYPES)
    out = Prepared([])
    for row in table.rows:
        require(table, row, [tokens_col, tags_col])
        if not _keep(table, row, [tokens_col, tags_col], skip_empty):
            out.skipped += 1
            continue
        tokens, tags = row.fields[tokens_col], row.fields[tags_col]
        if not isinstance(tokens, (list, tuple)) or not isinstance(tags, (list, tuple)):
            raise table.error(row, f"fields {tokens_col!r} and {tags_col!r} must be lists")
        if len(tokens) != len(tags):
            raise table.error(row, f"{len(tokens)} tokens but {len(tags)} tags")
        tags = [_tag_name(table, row, t, names) for t in tags]
        tokens = [str(t) for t in tokens]
        sentence = " ".join(tokens)
        answer = format_entities(tags_to_entities(tokens, tags, types), tuple(types.values()))
        out.examples.append(Example(sentence, {"sentence": sentence}, answer))
    return out


def _tag_name(table: Table, row: Row, tag: Any, names: Sequence[str] | None) -> str:
    if isinstance(tag, int) and not isinstance(tag, bool):
        if not names:
            raise table.error(row, f"tags are numbers ({tag}) but no `tag_names` are given")
        if not 0 <= tag < len(names):
            raise table.error(row, f"tag {tag} outside tag_names {list(names)}")
        tag = names[tag]
    if not is_valid_tag(str(tag)):
        raise table.error(row, f"tag {tag!r} is not 'O' or B-/I-/E-/S-<type>")
    return str(tag)


def classification_examples(
    table: Table,
    fields: Mapping[str, Any] | None,
    label_names: Mapping[Any, str] | Sequence[str] | None,
    skip_empty: bool,
    options: Sequence[str] | None = None,
) -> Prepared:
    """`sentence` -> label name; `label_names` maps stored labels to words ({0: negative, 1: positive});
    without it a hub ClassLabel's names are used, else the labels as written. The answer options shown in
    prompts are the label names, or `options` (the labels of every split of a task), else this table's."""
    sentence_col, label_col = _col(fields, "sentence"), _col(fields, "label")
    if label_names is None and label_col in table.class_names:
        label_names = table.class_names[label_col]
    if isinstance(label_names, Mapping):
        mapping = {str(k): str(v) for k, v in label_names.items()}
    elif label_names is not None:
        mapping = {str(i): str(v) for i, v in enumerate(label_names)}
    else:
        mapping = None
    kept: list[tuple[str, str]] = []
    out = Prepared([])
    for row in table.rows:
        require(table, row, [sentence_col, label_col])
        if not _keep(table, row, [sentence_col, label_col], skip_empty):
            out.skipped += 1
            continue
        raw = str(row.fields[label_col]).strip()
        if mapping is not None and raw not in mapping:
            hidden = " (a split whose labels are hidden, as GLUE test sets mark them with -1: use another " \
                     "split as test, e.g. splits: {train: train, test: validation})" if raw == "-1" else ""
            raise table.error(row, f"label {raw!r} is not in label_names {sorted(mapping)}{hidden}")
        kept.append((str(row.fields[sentence_col]).strip(), mapping[raw] if mapping is not None else raw))
    if mapping is not None:
        out.options = list(dict.fromkeys(mapping.values()))
    else:
        out.options = list(options) if options is not None else sorted({lab for _, lab in kept})
    extra = {"options": ", ".join(out.options), "options_or": " or ".join(out.options)}
    out.examples = [Example(s, {"sentence": s, **extra}, label) for s, label in kept]
    return out


def text_examples(table: Table, fields: Mapping[str, Any] | None, skip_empty: bool) -> Prepared:
    """Held-out text: prompt "" and completion = the text; scored by per-token loss only."""
    col = _col(fields, "text")
    out = Prepared([])
    for row in table.rows:
        require(table, row, [col])
        if not _keep(table, row, [col], skip_empty):
            out.skipped += 1
            continue
        text = str(row.fields[col]).strip()
        out.examples.append(Example(text, {}, text))
    return out
