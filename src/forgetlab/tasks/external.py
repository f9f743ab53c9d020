"""A user's own task: a local JSONL/CSV file or a hub dataset, mapped to prompt/completion by templates."""

from __future__ import annotations

import random
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from forgetlab.tasks.task import SPLITS, InstructionTask

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv"}


def _load_raw(source: str, split: str | None) -> Dataset | DatasetDict:
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in LOCAL_FORMATS:
        if not path.exists():
            raise FileNotFoundError(f"dataset file {str(path)!r} does not exist (tasks.custom.*.source)")
        return load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split=split or "train")
    try:
        return load_dataset(source, split=split) if split else load_dataset(source)
    except Exception as err:  # datasets raises many types for "not found" / offline
        raise FileNotFoundError(
            f"could not load dataset {source!r}: not a .jsonl/.csv file and not a hub dataset available "
            f"offline. Original error: {type(err).__name__}: {err}"
        ) from err


def build_external_task(
    name: str,
    source: str,
    prompt_template: str,
    completion_template: str,
    sizes: dict[str, int],
    seed: int,
    metric: str = "exact_match",
    split: str | None = None,
    key_field: str | None = None,
    extra_templates: list[str] | None = None,
) -> InstructionTask:
    """Turn rows of any dataset into a task.

    Templates use `{field}` names of the rows, e.g. prompt_template="sentiment: {sentence}",
    completion_template="{label}". Rows are grouped by `key_field` (default: the rendered first template)
    and the groups are split, so no input crosses train/validation/test.
    """
    raw = _load_raw(source, split)
    if isinstance(raw, DatasetDict):
        raw = raw[next(iter(raw))]
    templates = [prompt_template, *(extra_templates or [])]
    fields = set(raw.column_names)
    for t in [*templates, completion_template]:
        try:
            t.format(**{f: "" for f in fields})
        except KeyError as err:
            raise KeyError(
                f"task {name!r}: template {t!r} uses field {err} not in the dataset; "
                f"available fields: {sorted(fields)}"
            ) from None
    rng = random.Random(f"forgetlab/{name}/{seed}")
    by_key: dict[str, list[dict]] = {}
    for row in raw:
        key = str(row[key_field]) if key_field else prompt_template.format(**row)
        by_key.setdefault(key, []).append(row)
    keys = sorted(by_key)
    rng.shuffle(keys)
    need = sum(sizes[s] for s in SPLITS)
    if len(keys) < need:
        # Small user files: keep the requested proportions instead of failing.
        scale = len(keys) / need
        counts = [max(1, int(sizes[s] * scale)) for s in SPLITS]
        counts[0] = len(keys) - sum(counts[1:])
    else:
        counts = [sizes[s] for s in SPLITS]
    splits, start = {}, 0
    for split_name, count in zip(SPLITS, counts):
        rows = []
        for key in keys[start : start + count]:
            for row in by_key[key]:
                t = rng.randrange(len(templates))
                rows.append({
                    "task": name,
                    "prompt": templates[t].format(**row),
                    "completion": completion_template.format(**row),
                    "key": key,
                    "template": t,
                })
        splits[split_name] = Dataset.from_list(rows)
        start += count
    longest = max(len(c) for s in splits.values() for c in s["completion"])
    return InstructionTask(name=name, metric=metric, splits=splits, max_answer_chars=longest + 4,
                           description=f"from {source}", templates=templates)
