"""Turn prepared examples into an `InstructionTask`: group by input, split train/validation/test so no input
crosses splits, render a template per row. Too little data fails loudly unless the task allows shrinking."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from forgetlab.tasks.loaders import DataFileError
from forgetlab.tasks.task import SPLITS, InstructionTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One usable input: template `fields`, the answer to train on, and all acceptable answers."""

    key: str
    fields: dict[str, Any]
    completion: str
    references: list[str] | None = None


def split_counts(n: int, sizes: dict[str, int], shrink: bool, task: str, path: str) -> list[int]:
    """How many distinct inputs go to train/validation/test.

    With fewer than requested: fail, naming the sizes and the rows available, or with `shrink` scale every
    split down by the same factor (at least one input each) and log the result.
    """
    asked = [int(sizes[s]) for s in SPLITS]
    need = sum(asked)
    if n >= need:
        return asked
    wanted = ", ".join(f"{s}={k}" for s, k in zip(SPLITS, asked))
    if not shrink:
        raise DataFileError(
            f"task {task!r}: {path}: too small: asked for {wanted} ({need} distinct inputs) but only {n} are "
            "available; lower tasks.sizes or set `shrink: true` on the task to scale the splits down"
        )
    scale = n / need
    rest = [max(1, int(k * scale)) if k > 0 else 0 for k in asked[1:]]
    counts = [n - sum(rest), *rest]
    if asked[0] > 0 and counts[0] < 1:
        raise DataFileError(
            f"task {task!r}: {path}: too small even to shrink: asked for {wanted} but only {n} distinct "
            f"inputs are available; every non-empty split needs at least one"
        )
    log.warning("task %r: %s has %d distinct inputs, fewer than the %d asked (%s); shrunk to %s",
                task, path, n, need, wanted, ", ".join(f"{s}={k}" for s, k in zip(SPLITS, counts)))
    return counts


def assemble_task(
    name: str,
    examples: list[Example],
    templates: list[str],
    sizes: dict[str, int],
    seed: int,
    path: str,
    metric: Any,
    kind: str = "instruction",
    shrink: bool = False,
    skipped_rows: int = 0,
    description: str = "",
) -> InstructionTask:
    """Deterministic in `seed`: same data and seed, same rows in the same order."""
    rng = random.Random(f"forgetlab/{name}/{seed}")
    by_key: dict[str, list[Example]] = {}
    for ex in examples:
        by_key.setdefault(ex.key, []).append(ex)
    keys = sorted(by_key)
    rng.shuffle(keys)
    counts = split_counts(len(keys), sizes, shrink, name, path)
    with_refs = any(ex.references is not None for ex in examples)
    splits, start = {}, 0
    for split_name, count in zip(SPLITS, counts):
        rows = []
        for key in keys[start : start + count]:
            for ex in by_key[key]:
                t = rng.randrange(len(templates))
                row = {"task": name, "prompt": templates[t].format(**ex.fields),
                       "completion": ex.completion, "key": key, "template": t}
                if with_refs:
                    row["references"] = list(ex.references or [ex.completion])
                rows.append(row)
        splits[split_name] = _dataset(rows, with_refs)
        start += count
    longest = max(len(ex.completion) for ex in examples)
    return InstructionTask(name=name, metric=metric, splits=splits, max_answer_chars=longest + 4,
                           description=description or f"from {path}", templates=list(templates), kind=kind,
                           skipped_rows=skipped_rows)


def _dataset(rows: list[dict], with_refs: bool) -> Dataset:
    """A split keeps its columns even when empty (a zero-size split is asked for, e.g. test=0)."""
    if rows:
        return Dataset.from_list(rows)
    columns = ["task", "prompt", "completion", "key", "template"] + (["references"] if with_refs else [])
    return Dataset.from_dict({c: [] for c in columns})
