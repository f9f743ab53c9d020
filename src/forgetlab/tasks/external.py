"""A user's own task from a local file (JSONL/JSON/CSV/TSV/CoNLL/plain text) or a hub dataset.

`kind` says what the rows are:
  instruction     any rows, rendered by `prompt_template`/`completion_template` (+ `extra_templates`)
  summarization   `dialogue` -> `summary` (one column, several columns, or a list column: all references)
  ner             CoNLL `tokens`/`tags` -> "person: Anna; location: Paris" answers, metric entity_f1
  classification  `sentence` -> `label`, renamed by `label_names`, metric macro_f1 (+ accuracy)
  text            held-out text, no prompt and no generation, scored by per-token loss
`fields` maps the kind's canonical names to the source's columns; `templates` replaces the kind's three
default wordings. Problems with the data raise `forgetlab.tasks.loaders.DataFileError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forgetlab.tasks import kinds
from forgetlab.tasks.assemble import assemble_task
from forgetlab.tasks.loaders import load_table, template_fields
from forgetlab.tasks.task import InstructionTask


def build_external_task(
    name: str,
    source: str,
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
) -> InstructionTask:
    """Turn rows of any dataset into a task whose splits share no input.

    For `kind="instruction"`, templates use `{field}` names of the rows, e.g.
    prompt_template="sentiment: {sentence}", completion_template="{label}"; rows are grouped by `key_field`
    (default: the rendered first template). Other kinds group by their input text. When the data has
    fewer distinct inputs than `sizes` asks, the build fails unless `shrink` is set.
    """
    if kind not in kinds.KINDS:
        raise ValueError(f"task {name!r}: unknown kind {kind!r}; allowed: {list(kinds.KINDS)}")
    table = load_table(source, name, format=format, split=split, config_name=config_name,
                       text_unit=text_unit, tag_column=tag_column,
                       plain_format="conll" if kind == "ner" else "text")
    if kind == "instruction":
        if not prompt_template or completion_template is None:
            raise ValueError(f"task {name!r}: kind 'instruction' needs prompt_template and completion_template")
        chosen = [prompt_template, *(extra_templates or [])]
        prepared = kinds.instruction_examples(table, chosen, completion_template, key_field, skip_empty)
    else:
        chosen = list(templates or kinds.DEFAULT_TEMPLATES[kind])
        _check_templates(name, kind, chosen)
        if kind == "summarization":
            prepared = kinds.summarization_examples(table, fields, skip_empty)
        elif kind == "ner":
            prepared = kinds.ner_examples(table, fields, tag_names, entity_types, skip_empty)
        elif kind == "classification":
            prepared = kinds.classification_examples(table, fields, label_names, skip_empty)
        else:
            chosen = [""]
            prepared = kinds.text_examples(table, fields, skip_empty)
    if not prepared.examples:
        raise table.error(None, f"no usable rows: all {len(table.rows)} were skipped as empty")
    return assemble_task(
        name, prepared.examples, chosen, sizes, seed, table.path,
        metric=metric if metric is not None else kinds.DEFAULT_METRICS[kind],
        kind=kind,
        shrink=shrink, skipped_rows=prepared.skipped, description=f"{kind} task from {table.path}",
    )


def _check_templates(name: str, kind: str, templates: Sequence[str]) -> None:
    allowed = kinds.TEMPLATE_FIELDS.get(kind, ())
    for t in templates:
        unknown = [f for f in template_fields(t) if f not in allowed]
        if unknown:
            raise ValueError(f"task {name!r}: template {t!r} uses {unknown}; a {kind} template may use {list(allowed)}")
