"""What a fine-tuning run trains on, from `strategy.data`: the target alone, a FLAN-style multi-task
mixture, or the target with a replayed fraction of the base tasks' training data."""

from __future__ import annotations

from datasets import Dataset

from forgetlab.config import DataConfig, DataKind
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.mixing import mixture_rates, sample_mixture


def training_rates(data: DataConfig, suite: TaskSuite) -> dict[str, float]:
    """The probability that a training example comes from each task."""
    target = suite.target
    if data.kind == DataKind.single:
        return {target: 1.0}
    if data.kind == DataKind.multitask:
        names = list(dict.fromkeys([target, *(data.tasks or suite.base)]))
        unknown = [n for n in names if n not in suite.tasks]
        if unknown:
            raise ValueError(f"strategy.data.tasks: {unknown} not built; allowed values: {sorted(suite.tasks)}")
        sizes = {n: len(suite.tasks[n].splits["train"]) for n in names}
        return mixture_rates(sizes, data.mixing.value, data.cap, data.temperature)
    # replay: the target keeps (1 - f); the base tasks share f in proportion to their size
    old = [t for t in suite.base if t != target]
    if not old:
        raise ValueError("strategy.data.kind=replay needs tasks.base to name at least one task besides the target")
    sizes = {n: len(suite.tasks[n].splits["train"]) for n in old}
    rates = {n: data.replay_fraction * r for n, r in mixture_rates(sizes, "proportional").items()}
    return {target: 1.0 - data.replay_fraction, **rates}


def build_training_data(data: DataConfig, suite: TaskSuite, num_examples: int, seed: int) -> tuple[Dataset, dict]:
    rates = training_rates(data, suite)
    return sample_mixture(suite.tasks, rates, num_examples, seed), rates
