"""The `Metric` contract: one call returns several named values, one of which is the headline score.

Every metric compares generated text with references. References may be one string per example or a
list of strings per example (several acceptable answers, e.g. summaries by different annotators); each
metric says how it combines them (usually the best reference per example).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

References = Sequence[str] | Sequence[Sequence[str]]


@runtime_checkable
class MetricLike(Protocol):
    """What a custom metric class must offer to be plugged in by `_target_`."""

    headline: str

    def compute(self, predictions: list[str], references: References) -> dict[str, float]: ...


def as_reference_lists(references: References, n: int) -> list[list[str]]:
    """One list of reference strings per example; a plain string becomes a one-element list."""
    refs = [[r] if isinstance(r, str) else [str(x) for x in r] for r in references]
    if len(refs) != n:
        raise ValueError(f"metric got {n} predictions but {len(refs)} references")
    for i, r in enumerate(refs):
        if not r:
            raise ValueError(f"metric: example {i} has no reference")
    return refs


def library_versions(distributions: Sequence[str]) -> dict[str, str]:
    """Installed version of each distribution, so a result says which code computed it."""
    out = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass(frozen=True)
class Metric:
    """A named metric: `fn(predictions, references) -> {value name: value}`; `headline` names the score."""

    name: str
    headline: str
    fn: Callable[[list[str], References], dict[str, float]]
    libraries: tuple[str, ...] = ("forgetlab",)

    def compute(self, predictions: list[str], references: References) -> dict[str, float]:
        values = self.fn(list(predictions), references)
        if isinstance(values, (int, float)):
            values = {self.headline: values}
        if self.headline not in values:
            raise ValueError(
                f"metric {self.name!r} returned {sorted(values)} but its headline is {self.headline!r}"
            )
        return {k: float(v) for k, v in values.items()}

    def __call__(self, predictions: list[str], references: References) -> float:
        """The headline value alone: what the old `get_metric(name)(preds, refs)` callers expect."""
        return self.compute(predictions, references)[self.headline]

    def versions(self) -> dict[str, str]:
        return library_versions(self.libraries)

    def describe(self) -> dict:
        """What a run records about how its scores were computed (for metrics.json)."""
        return {"name": self.name, "headline": self.headline, "libraries": self.versions()}
