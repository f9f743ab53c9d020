"""Turn prepared examples into an `InstructionTask`: group by input, split train/validation/test so no input
crosses splits, render a template per row. Too little data fails loudly unless the task allows shrinking.

A dataset's own splits (`assemble_split_task`) are used as they are: a seeded subset where `sizes` asks for
fewer inputs, all of them where it asks for more; a role it lacks is carved out of its train split; test
inputs that train holds too are counted, never dropped."""

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


def _group(examples: list[Example]) -> dict[str, list[Example]]:
    by_key: dict[str, list[Example]] = {}
    for ex in examples:
        by_key.setdefault(ex.key, []).append(ex)
    return by_key


def _render(name: str, keys: list[str], by_key: dict[str, list[Example]], templates: list[str],
            rng: random.Random, with_refs: bool) -> Dataset:
    """The rows of one split: each example under a template drawn by `rng`."""
    rows = []
    for key in keys:
        for ex in by_key[key]:
            t = rng.randrange(len(templates))
            row = {"task": name, "prompt": templates[t].format(**ex.fields),
                   "completion": ex.completion, "key": key, "template": t}
            if with_refs:
                row["references"] = list(ex.references or [ex.completion])
            rows.append(row)
    return _dataset(rows, with_refs)


def _longest_answer(examples: list[Example]) -> int:
    return max(len(r) for ex in examples for r in (ex.references or [ex.completion]))


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
    by_key = _group(examples)
    keys = sorted(by_key)
    rng.shuffle(keys)
    counts = split_counts(len(keys), sizes, shrink, name, path)
    with_refs = any(ex.references is not None for ex in examples)
    splits, start = {}, 0
    for split_name, count in zip(SPLITS, counts):
        splits[split_name] = _render(name, keys[start : start + count], by_key, templates, rng, with_refs)
        start += count
    return InstructionTask(name=name, metric=metric, splits=splits, max_answer_chars=_longest_answer(examples) + 4,
                           description=description or f"from {path}", templates=list(templates), kind=kind,
                           skipped_rows=skipped_rows, split_origins={s: f"carved out of {path}" for s in SPLITS})


def assemble_split_task(
    name: str,
    by_role: dict[str, list[Example]],
    templates: list[str],
    sizes: dict[str, int],
    seed: int,
    where: dict[str, str],
    metric: Any,
    kind: str = "instruction",
    skipped_rows: int = 0,
    description: str = "",
) -> InstructionTask:
    """A task from a dataset's own splits (`by_role`: role -> examples, `where`: role -> the split's place).

    Each role keeps its own inputs: all of them, or a subset of `sizes[role]` drawn with the seed. Roles not
    given are carved out of train (else out of the first role given), with a warning: those inputs leave
    the split they came from, so no carved input is trained on. Deterministic in `seed`.
    """
    unknown = [r for r in by_role if r not in SPLITS]
    if unknown:
        raise ValueError(f"task {name!r}: unknown split role(s) {unknown} in splits; allowed roles: {list(SPLITS)}")
    rng = random.Random(f"forgetlab/{name}/{seed}")
    grouped = {role: _group(exs) for role, exs in by_role.items()}
    keys = {role: list(g) for role, g in grouped.items()}  # source order, one entry per distinct input
    origins = {role: where[role] for role in keys}
    missing = [r for r in SPLITS if r not in keys and int(sizes[r]) > 0]
    if missing:
        donor = "train" if "train" in keys else next(r for r in SPLITS if r in keys)
        pool = sorted(keys[donor])
        rng.shuffle(pool)
        need = sum(int(sizes[r]) for r in missing)
        if need >= len(pool):
            raise DataFileError(f"task {name!r}: {where[donor]}: has {len(pool)} distinct inputs, too few to carve "
                                f"{', '.join(f'{r}={sizes[r]}' for r in missing)} out of it and keep some for "
                                f"{donor}; lower the sizes or name a split for {missing} in `splits`")
        start = 0
        for role in missing:
            keys[role], start = pool[start : start + int(sizes[role])], start + int(sizes[role])
            grouped[role] = grouped[donor]
            origins[role] = f"carved out of {where[donor]}"
        taken = set(pool[:start])
        keys[donor] = [k for k in keys[donor] if k not in taken]
        log.warning("task %r: no %s split named; carved %s out of %s (those inputs are not used as %s)", name,
                    " or ".join(missing), ", ".join(f"{r}={sizes[r]}" for r in missing), where[donor], donor)
    for role in SPLITS:
        wanted = int(sizes[role])
        if role in keys and role in by_role:
            if len(keys[role]) > wanted:  # a fixed, seeded subset of the dataset's own split
                subset = sorted(keys[role])
                random.Random(f"forgetlab/{name}/{seed}/{role}").shuffle(subset)
                keys[role] = subset[:wanted]
            elif len(keys[role]) < wanted:
                log.warning("task %r: %s has %d distinct inputs, fewer than sizes.%s=%d; using all of them",
                            name, where[role], len(keys[role]), role, wanted)
    keys.update({r: [] for r in SPLITS if r not in keys})  # a role of size 0 that no split gives
    with_refs = any(ex.references is not None for exs in by_role.values() for ex in exs)
    splits = {role: _render(name, keys[role], grouped.get(role, {}), templates, rng, with_refs) for role in SPLITS}
    trained = set(keys["train"])
    overlap = {role: sum(k in trained for k in keys[role]) for role in ("validation", "test")}
    for role, count in overlap.items():
        if count:
            log.warning("task %r: %d of the %d %s inputs also occur in train (kept; metrics.json overlap)",
                        name, count, len(keys[role]), role)
    used = [ex for role in SPLITS for key in keys[role] for ex in grouped.get(role, {})[key]]
    return InstructionTask(name=name, metric=metric, splits=splits,
                           max_answer_chars=_longest_answer(used or [ex for exs in by_role.values() for ex in exs]) + 4,
                           description=description, templates=list(templates), kind=kind,
                           skipped_rows=skipped_rows, split_origins={r: origins.get(r, "none") for r in SPLITS},
                           overlap=overlap)


def _dataset(rows: list[dict], with_refs: bool) -> Dataset:
    """A split keeps its columns even when empty (a zero-size split is asked for, e.g. test=0)."""
    if rows:
        return Dataset.from_list(rows)
    columns = ["task", "prompt", "completion", "key", "template"] + (["references"] if with_refs else [])
    return Dataset.from_dict({c: [] for c in columns})
