"""Which examples each stage of a continual sequence trains on, so strategies carry across stages: the
stage's own tasks, plus what the data strategy keeps of everything learned before (`earlier`: tasks.base
as stage 0 when `sequence.include_base`, then every earlier stage's tasks).

- single: the stage's tasks alone (examples-proportional among them);
- multitask: the stage's tasks mixed with all earlier tasks (or `strategy.data.tasks`), so the mixture
  grows with the stages (FLAN rates, `strategy.data.mixing`);
- replay, `sequence.replay=proportional`: `replay_fraction` of the examples from the earlier tasks at
  examples-proportional rates, drawn from their whole training splits;
- replay, `sequence.replay=reservoir`: `replay_fraction` drawn from a memory of `sequence.memory_size`
  examples kept by reservoir sampling (Vitter's algorithm R) over every example of an earlier task
  trained on, so each stage is kept in proportion to how much of it was seen.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset, concatenate_datasets

from forgetlab.config.schema import DataConfig, DataKind, ReplayMemory, SequenceConfig
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.mixing import draw_rows, mixture_rates, sample_mixture, train_sizes

COLUMNS = ["task", "prompt", "completion"]  # what training reads; the memory keeps only these
MEMORY = "<replay memory>"  # the reservoir's share in a stage's rates


def earlier_tasks(sequence: SequenceConfig, suite: TaskSuite, stages: list[list[str]], t: int) -> list[str]:
    """Tasks learned before stage `t` (1-based), first-learned order, without stage t's own tasks."""
    before = [*(suite.base if sequence.include_base else []), *(n for s in stages[: t - 1] for n in s)]
    return [n for n in dict.fromkeys(before) if n not in stages[t - 1]]


def stage_rates(data: DataConfig, sequence: SequenceConfig, suite: TaskSuite, stage: list[str],
                earlier: list[str]) -> dict[str, float]:
    """Probability that a training example of this stage comes from each task; with reservoir replay the
    memory's share is under the key `MEMORY` (its tasks are known only once it is drawn from)."""
    own = mixture_rates(train_sizes(suite, stage))
    if data.kind == DataKind.single or not earlier:
        return own
    if data.kind == DataKind.multitask:
        names = list(dict.fromkeys([*stage, *(data.tasks or earlier)]))
        return mixture_rates(train_sizes(suite, names), data.mixing, data.cap, data.temperature)
    f = data.replay_fraction
    rates = {n: (1.0 - f) * r for n, r in own.items()}
    if sequence.replay == ReplayMemory.reservoir:
        return {**rates, MEMORY: f}
    return {**rates, **{n: f * r for n, r in mixture_rates(train_sizes(suite, earlier)).items()}}


def stage_training_data(rates: dict[str, float], suite: TaskSuite, memory: ReplayBuffer | None,
                        num_examples: int, seed: int) -> Dataset:
    """`num_examples` rows at `rates`, shuffled; the MEMORY share comes from `memory`'s rows."""
    if MEMORY not in rates:
        return sample_mixture(suite.tasks, rates, num_examples, seed)
    share = rates[MEMORY]
    own_rates = {n: r / (1.0 - share) for n, r in rates.items() if n != MEMORY}
    own = sample_mixture(suite.tasks, own_rates, round((1.0 - share) * num_examples), seed)
    parts = [own.select_columns(COLUMNS)]
    n_memory = round(share * num_examples)
    if memory is not None and len(memory) and n_memory:
        parts.append(draw_rows(memory.dataset(), n_memory, np.random.default_rng(seed + 1)))
    return concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()


class ReplayBuffer:
    """A fixed-size memory filled by reservoir sampling: after `seen` examples have been offered, each of
    them is in the memory with the same probability min(1, size / seen)."""

    def __init__(self, size: int, rows: list[dict] | None = None, seen: int = 0) -> None:
        self.size, self.rows, self.seen = size, list(rows or []), seen

    def __len__(self) -> int:
        return len(self.rows)

    def offer(self, data: Dataset, seed: int) -> None:
        """Algorithm R over `data`'s rows in order."""
        rng = np.random.default_rng(seed)
        for row in data.select_columns(COLUMNS):
            if len(self.rows) < self.size:
                self.rows.append(dict(row))
            else:
                j = int(rng.integers(0, self.seen + 1))
                if j < self.size:
                    self.rows[j] = dict(row)
            self.seen += 1

    def dataset(self) -> Dataset:
        return Dataset.from_list(self.rows)

    def composition(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["task"]] = counts.get(row["task"], 0) + 1
        return dict(sorted(counts.items()))

    def state(self) -> dict:
        return {"size": self.size, "seen": self.seen, "rows": self.rows}

    @classmethod
    def from_state(cls, state: dict) -> ReplayBuffer:
        return cls(int(state["size"]), state["rows"], int(state["seen"]))


def base_memory(size: int, suite: TaskSuite, seed: int) -> ReplayBuffer:
    """The memory before stage 1 when tasks.base is stage 0: the base tasks' training splits offered to the
    reservoir in a seeded order, as if the memory had watched the base stage's data."""
    memory = ReplayBuffer(size)
    if suite.base:
        data = concatenate_datasets([suite.tasks[n].splits["train"].select_columns(COLUMNS) for n in suite.base])
        memory.offer(data.shuffle(seed=seed), seed)
    return memory
