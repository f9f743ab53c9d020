"""An instruction task: prompt/completion `datasets.Dataset` splits plus the metric that scores it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from forgetlab.tasks.families import FAMILIES, TaskFamily
from forgetlab.utils.columns import column, content_hash
from forgetlab.utils.dataset_cache import cached_dataset
from forgetlab.utils.io import file_hash

SPLITS = ("train", "validation", "test")


@dataclass
class InstructionTask:
    """Splits share no input; every row has `task`, `prompt`, `completion` and `key` (the raw input).

    `metric` is anything `forgetlab.evaluation.metrics.resolve_metric` accepts (usually a registry name).
    Rows may also hold `references` (list[str]) when an example has several acceptable answers.
    `kind` says how the task was built ("instruction", "summarization", "ner", "classification": generate,
    then score with `metric`) or "text" (held-out text: prompt "", completion = the text; never
    generated, scored by its per-token loss only). `skipped_rows` counts input rows
    the loader left out on purpose (e.g. empty references with `skip_empty: true`); `overlap` counts inputs
    of validation/test that train holds too (reported, never dropped).
    """

    name: str
    metric: Any
    splits: dict[str, Dataset]
    max_answer_chars: int = 32
    description: str = ""
    templates: list[str] = field(default_factory=list)
    kind: str = "instruction"
    skipped_rows: int = 0
    # where each split came from ("train" / "carved out of train" / "generated"), and how many distinct
    # validation and test inputs also occur in the train split (a dataset's own splits may share some)
    split_origins: dict[str, str] = field(default_factory=lambda: {s: "generated" for s in SPLITS})
    overlap: dict[str, int] = field(default_factory=lambda: {"validation": 0, "test": 0})
    origin: str = ""  # where its first row comes from ("data.jsonl: line 1"), for errors only a model reveals
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def fingerprint(self, split: str) -> str:
        """A content hash of one split, recorded so a rerun can tell whether its data changed."""
        if split not in self._fingerprints:  # splits are never changed after building: hash each once
            self._fingerprints[split] = content_hash(self.splits[split], ["prompt", "completion"])
        return self._fingerprints[split]


def _draw_unique(family: TaskFamily, rng: random.Random, n: int) -> list:
    """Draw `n` instances with distinct keys; fail clearly when the family has fewer distinct inputs."""
    seen: dict[str, tuple] = {}
    attempts = 0
    while len(seen) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(
                f"task {family.name!r} cannot produce {n} distinct inputs (got {len(seen)}); "
                "lower tasks.sizes.train/validation/test"
            )
        key, fields, answer = family.sample(rng)
        seen.setdefault(key, (key, fields, answer))
    return list(seen.values())


# The generators' code is part of a cached task's key: editing a family or the sampling below rebuilds it.
GENERATOR_CODE = file_hash(Path(__file__)) + file_hash(Path(__file__).with_name("families.py"))


def _generate_splits(family: TaskFamily, templates: list[str], sizes: dict[str, int], seed: int) -> DatasetDict:
    rng = random.Random(f"forgetlab/{family.name}/{seed}")
    instances = _draw_unique(family, rng, sum(sizes[s] for s in SPLITS))
    splits, start = {}, 0
    for split in SPLITS:
        rows = []
        for key, fields, answer in instances[start : start + sizes[split]]:
            template = rng.randrange(len(templates))
            rows.append(
                {
                    "task": family.name,
                    "prompt": templates[template].format(**fields),
                    "completion": answer,
                    "key": key,
                    "template": template,
                }
            )
        splits[split] = Dataset.from_list(rows)
        start += sizes[split]
    return DatasetDict(splits)


def build_builtin_task(
    name: str,
    sizes: dict[str, int],
    seed: int,
    templates: list[str] | None = None,
    cache_dir: str | Path | None = None,
) -> InstructionTask:
    """Generate a built-in task deterministically from `seed`: same seed, same rows, in the same order.
    With `cache_dir`, the generated splits are kept there and loaded by later runs."""
    family = FAMILIES[name]
    templates = list(templates or family.templates)
    sizes = {s: int(sizes[s]) for s in SPLITS}
    key = {"task": name, "sizes": sizes, "seed": seed, "templates": templates, "code": GENERATOR_CODE}
    splits = dict(cached_dataset(cache_dir, "tasks", key, lambda: _generate_splits(family, templates, sizes, seed)))
    longest = max(len(r) for s in splits.values() for r in column(s, "completion"))
    return InstructionTask(
        name=name,
        metric=family.metric,
        splits=splits,
        max_answer_chars=longest + 4,
        description=family.description,
        templates=templates,
    )
