"""A user's own task from a local file (JSONL/JSON/CSV/TSV/CoNLL/plain text) or a hub dataset.

`kind` says what the rows are:
  instruction     any rows, rendered by `prompt_template`/`completion_template` (+ `extra_templates`)
  summarization   `dialogue` -> `summary` (one column, several columns, or a list column: all references)
  ner             CoNLL `tokens`/`tags` -> "person: Anna; location: Paris" answers, metric entity_f1
  classification  `sentence` -> `label`, renamed by `label_names`, metric macro_f1 (+ accuracy)
  text            held-out text, no prompt and no generation, scored by per-token loss
  alpaca, chat    standard instruction rows ({instruction, input, output}; {messages}), forgetlab.tasks.formats
`fields` maps the kind's canonical names to the source's columns; `templates` replaces the kind's three
default wordings. One source is carved into train/validation/test; `splits` takes the dataset's own splits
instead ({train: train, test: test}, or a file per role). Problems with the data raise
`forgetlab.tasks.loaders.DataFileError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forgetlab.tasks import formats, kinds
from forgetlab.tasks.assemble import assemble_split_task, assemble_task
from forgetlab.tasks.loaders import Table, load_split_tables, load_table, template_fields
from forgetlab.tasks.task import SPLITS, InstructionTask


def build_external_task(
    name: str,
    source: str | None,
    sizes: dict[str, int],
    seed: int,
    prompt_template: str | None = None,
    completion_template: str | None = None,
    metric: Any = None,
    split: str | None = None,
    key_field: str | None = None,
    extra_templates: list[str] | None = None,
    kind: str = "instruction",
    format: str | None = None,
    config_name: str | None = None,
    fields: Mapping[str, Any] | None = None,
    templates: Sequence[str] | None = None,
    label_names: Mapping[Any, str] | Sequence[str] | None = None,
    tag_names: Sequence[str] | None = None,
    entity_types: Mapping[str, str] | None = None,
    text_unit: str = "paragraph",
    tag_column: int = -1,
    shrink: bool = False,
    skip_empty: bool = False,
    splits: Mapping[str, str] | None = None,
    train_on: str = "last",
) -> InstructionTask:
    """Turn rows of any dataset into a task whose splits share no input (carved out of one source), or
    keep the dataset's own `splits` ({role: split name or file}; overlapping inputs are counted).

    For `kind="instruction"`, templates use `{field}` names of the rows, e.g.
    prompt_template="sentiment: {sentence}", completion_template="{label}"; rows are grouped by `key_field`
    (default: the rendered first template). Other kinds group by their input text. When the data has
    fewer distinct inputs than `sizes` asks, carving fails unless `shrink` is set.
    """
    if kind not in kinds.KINDS:
        raise ValueError(f"task {name!r}: unknown kind {kind!r}; allowed: {list(kinds.KINDS)}")
    if kind == "instruction" and (not prompt_template or completion_template is None):
        raise ValueError(f"task {name!r}: kind 'instruction' needs prompt_template and completion_template")
    metric = metric if metric is not None else kinds.DEFAULT_METRICS[kind]
    plain = "conll" if kind == "ner" else "text"

    def prepare(table: Table, options: list[str] | None = None) -> tuple[list[str], kinds.Prepared]:
        if kind == "instruction":
            chosen = [prompt_template, *(extra_templates or [])]
            return chosen, kinds.instruction_examples(table, chosen, completion_template, key_field, skip_empty)
        if kind in ("alpaca", "chat"):
            examples, skipped = (formats.alpaca_examples(table, fields, skip_empty) if kind == "alpaca"
                                 else formats.chat_examples(table, fields, train_on, skip_empty))
            return [formats.RENDERED], kinds.Prepared(examples, skipped)
        chosen = list(templates or kinds.DEFAULT_TEMPLATES[kind])
        _check_templates(name, kind, chosen)
        if kind == "summarization":
            return chosen, kinds.summarization_examples(table, fields, skip_empty)
        if kind == "ner":
            return chosen, kinds.ner_examples(table, fields, tag_names, entity_types, skip_empty)
        if kind == "classification":
            return chosen, kinds.classification_examples(table, fields, label_names, skip_empty, options)
        return [""], kinds.text_examples(table, fields, skip_empty)

    if not splits:
        if not source:
            raise ValueError(f"task {name!r}: needs `source` (a file, a dataset folder or a hub name) or `splits`")
        table = load_table(source, name, format=format, split=split, config_name=config_name,
                           text_unit=text_unit, tag_column=tag_column, plain_format=plain)
        chosen, prepared = prepare(table)
        _check_rows([table], {"": prepared}, kind, fields)
        task = assemble_task(name, prepared.examples, chosen, sizes, seed, table.path, metric=metric, kind=kind,
                             shrink=shrink, skipped_rows=prepared.skipped,
                             description=f"{kind} task from {table.path}")
        task.origin = f"{table.path}: {table.rows[0].where}"
        return task
    unknown = [r for r in splits if r not in SPLITS]
    if unknown:
        raise ValueError(f"task {name!r}: unknown split role(s) {unknown} in splits; allowed roles: {list(SPLITS)}")
    if split:
        raise ValueError(f"task {name!r}: set `split` (one split, carved) or `splits` (the dataset's own), not both")
    tables = load_split_tables(source, name, dict(splits), format=format, config_name=config_name,
                               text_unit=text_unit, tag_column=tag_column, plain_format=plain)
    prepared_by_role = {role: prepare(t) for role, t in tables.items()}
    if kind == "classification":  # labels as written: every split's prompts offer the same options
        union = sorted({o for _, p in prepared_by_role.values() for o in p.options})
        if len({tuple(p.options) for _, p in prepared_by_role.values()}) > 1:
            prepared_by_role = {role: prepare(t, union) for role, t in tables.items()}
    _check_rows(list(tables.values()), {role: p for role, (_, p) in prepared_by_role.items()}, kind, fields)
    chosen = next(iter(prepared_by_role.values()))[0]
    first = next(iter(tables.values()))
    task = assemble_split_task(
        name, {role: p.examples for role, (_, p) in prepared_by_role.items()}, chosen, sizes, seed,
        {role: t.path for role, t in tables.items()}, metric=metric, kind=kind,
        skipped_rows=sum(p.skipped for _, p in prepared_by_role.values()),
        description=f"{kind} task from {', '.join(f'{r}: {t.path}' for r, t in tables.items())}",
    )
    task.origin = f"{first.path}: {first.rows[0].where}"
    return task


def _check_rows(tables: list[Table], prepared: dict[str, kinds.Prepared], kind: str, fields: Any) -> None:
    for table, done in zip(tables, prepared.values()):
        if not done.examples:
            raise table.error(None, f"no usable rows: all {len(table.rows)} were skipped as empty")
    if kind == "summarization":
        kinds.check_summary_columns(tables, fields)


def _check_templates(name: str, kind: str, templates: Sequence[str]) -> None:
    allowed = kinds.TEMPLATE_FIELDS.get(kind, ())
    for t in templates:
        unknown = [f for f in template_fields(t) if f not in allowed]
        if unknown:
            raise ValueError(f"task {name!r}: template {t!r} uses {unknown}; a {kind} template may use {list(allowed)}")
