"""Which examples a run trains on: the target alone, a FLAN-style multi-task mixture, or the target with a
replayed fraction of the earlier tasks (`strategy.data`). The one home of mixture rates.

The mixture is materialised as one shuffled `datasets.Dataset` with a `task` column, so the mix that
was actually sampled can be counted and logged exactly.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datasets import Dataset, concatenate_datasets

from forgetlab.config import ConfigError
from forgetlab.config.schema import DataConfig, DataKind, MixingMode
from forgetlab.tasks.suite import TaskSuite
from forgetlab.tasks.task import InstructionTask
from forgetlab.utils.columns import column


def mixture_rates(
    sizes: dict[str, int],
    mode: MixingMode | str = MixingMode.proportional,
    cap: int | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """FLAN mixing rates: examples-proportional with an optional per-task cap, uniform, or temperature."""
    mode = MixingMode(mode)
    capped = {t: float(min(n, cap) if cap else n) for t, n in sizes.items()}
    if mode == MixingMode.uniform:
        raw = {t: 1.0 for t in sizes}
    elif mode == MixingMode.proportional:
        raw = capped
    else:
        raw = {t: v ** (1.0 / temperature) for t, v in capped.items()}
    total = sum(raw.values())
    return {t: v / total for t, v in raw.items()}


def train_sizes(suite: TaskSuite, names: list[str]) -> dict[str, int]:
    return {n: len(suite.tasks[n].splits["train"]) for n in names}


def old_task_rates(suite: TaskSuite, needed_by: str) -> dict[str, float]:
    """The earlier tasks (tasks.base without the target) at examples-proportional rates: what replay mixes
    in and what EWC estimates its Fisher on. `needed_by` names the setting that needs them."""
    old = [t for t in suite.base if t != suite.target]
    if not old:
        raise ConfigError(f"{needed_by} draws on earlier tasks: tasks.base must name at least one task besides "
                          f"the target {suite.target!r}")
    return mixture_rates(train_sizes(suite, old))


def training_rates(data: DataConfig, suite: TaskSuite) -> dict[str, float]:
    """The probability that a training example comes from each task."""
    target = suite.target
    if data.kind == DataKind.single:
        return {target: 1.0}
    if data.kind == DataKind.multitask:
        names = list(dict.fromkeys([target, *(data.tasks or suite.base)]))
        unknown = [n for n in names if n not in suite.tasks]
        if unknown:
            raise ConfigError(f"strategy.data.tasks: {unknown} not built; allowed values: {sorted(suite.tasks)}")
        return mixture_rates(train_sizes(suite, names), data.mixing, data.cap, data.temperature)
    # replay: the target keeps (1 - f); the earlier tasks share f in proportion to their size
    old = old_task_rates(suite, "strategy.data.kind=replay")
    return {target: 1.0 - data.replay_fraction, **{n: data.replay_fraction * r for n, r in old.items()}}


def sample_mixture(
    tasks: dict[str, InstructionTask],
    rates: dict[str, float],
    num_examples: int,
    seed: int,
    split: str = "train",
) -> Dataset:
    """Draw `num_examples` rows: task i gets round(rate_i * n) rows, sampled with replacement if needed."""
    rng = np.random.default_rng(seed)
    names = sorted(rates)
    counts = {t: round(rates[t] * num_examples) for t in names}
    parts = [draw_rows(tasks[t].splits[split], counts[t], rng) for t in names if counts[t] > 0]
    if not parts:
        raise ConfigError(f"no training examples drawn ({num_examples} requested at rates {rates}); raise "
                          "strategy.optim.steps or strategy.optim.batch_size")
    mixed = concatenate_datasets(parts)
    return mixed.shuffle(seed=seed).flatten_indices()


def draw_rows(data: Dataset, n: int, rng: np.random.Generator) -> Dataset:
    """`n` rows of `data` in a random order: whole permutations first, so every row is used before any repeats."""
    reps, rest = divmod(n, len(data))
    idx = np.concatenate([rng.permutation(len(data)) for _ in range(reps)] + [rng.permutation(len(data))[:rest]])
    return data.select(idx.tolist())


def build_training_data(data: DataConfig, suite: TaskSuite, num_examples: int, seed: int) -> tuple[Dataset, dict]:
    rates = training_rates(data, suite)
    return sample_mixture(suite.tasks, rates, num_examples, seed), rates


def composition(data: Dataset) -> dict[str, float]:
    """Fraction of rows per task: what the run really trained on."""
    counts = Counter(column(data, "task"))
    return {t: counts[t] / len(data) for t in sorted(counts)}
