"""Which examples a run trains on: one task, or a mixture of tasks drawn at fixed rates.

The mixture is materialised as one shuffled `datasets.Dataset` with a `task` column, so the mix that
was actually sampled can be counted and logged exactly.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datasets import Dataset, concatenate_datasets

from forgetlab.tasks.task import InstructionTask


def mixture_rates(
    sizes: dict[str, int],
    mode: str = "proportional",
    cap: int | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """FLAN mixing rates: examples-proportional with an optional per-task cap, uniform, or temperature."""
    if mode == "uniform":
        raw = {t: 1.0 for t in sizes}
    elif mode == "proportional":
        raw = {t: float(min(n, cap) if cap else n) for t, n in sizes.items()}
    elif mode == "temperature":
        base = {t: float(min(n, cap) if cap else n) for t, n in sizes.items()}
        raw = {t: v ** (1.0 / temperature) for t, v in base.items()}
    else:
        raise ValueError(f"mixing mode {mode!r} unknown; allowed values: ['proportional', 'temperature', 'uniform']")
    total = sum(raw.values())
    return {t: v / total for t, v in raw.items()}


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
    parts = []
    for t in names:
        data = tasks[t].splits[split]
        n = counts[t]
        if n == 0:
            continue
        reps, rest = divmod(n, len(data))
        idx = np.concatenate([rng.permutation(len(data)) for _ in range(reps)] + [rng.permutation(len(data))[:rest]])
        parts.append(data.select(idx.tolist()))
    mixed = concatenate_datasets(parts)
    return mixed.shuffle(seed=seed).flatten_indices()


def composition(data: Dataset) -> dict[str, float]:
    """Fraction of rows per task: what the run really trained on."""
    counts = Counter(data["task"])
    return {t: counts[t] / len(data) for t in sorted(counts)}
