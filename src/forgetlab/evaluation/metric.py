"""The `Metric` contract: one call returns several named values, one of which is the headline score.

Every metric compares generated text with references. References may be one string per example or a
list of strings per example (several acceptable answers, e.g. summaries by different annotators); each
metric says how it combines them (usually the best reference per example).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

References = Sequence[str] | Sequence[Sequence[str]]
# One dict per example: its own values (the headline among them) and whatever else the aggregate is
# computed from (entity counts, labels), so the aggregate can be recomputed from the rows alone.
ExampleRows = list[dict[str, Any]]


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
    """A named metric: `fn(predictions, references) -> {value name: value}`; `headline` names the score.

    `examples` and `reduce` (the built-ins have both, and `fn` is their composition) give the per-example
    rows the aggregate is computed from: a run keeps them in its predictions files without scoring twice."""

    name: str
    headline: str
    fn: Callable[[list[str], References], dict[str, float]]
    libraries: tuple[str, ...] = ("forgetlab",)
    examples: Callable[[list[str], References], ExampleRows] | None = None
    reduce: Callable[[ExampleRows], dict[str, float]] | None = None

    def compute(self, predictions: list[str], references: References) -> dict[str, float]:
        values = self.fn(list(predictions), references)
        if isinstance(values, (int, float)):
            values = {self.headline: values}
        if self.headline not in values:
            raise ValueError(
                f"metric {self.name!r} returned {sorted(values)} but its headline is {self.headline!r}"
            )
        return {k: float(v) for k, v in values.items()}

    def compute_examples(self, predictions: list[str], references: References) -> tuple[dict[str, float], ExampleRows]:
        """(the values `compute` gives, one row per example). A metric without `examples` is computed once on
        the whole set and once per example alone: for a custom corpus-level metric the row is then that
        example's own value, not its share of the aggregate."""
        if self.examples is None or self.reduce is None:
            values = self.compute(predictions, references)
            return values, [self.compute([p], [r]) for p, r in zip(predictions, references)]
        rows = self.examples(list(predictions), references)
        values = {k: float(v) for k, v in self.reduce(rows).items()}
        if self.headline not in values:
            raise ValueError(f"metric {self.name!r} returned {sorted(values)} but its headline is {self.headline!r}")
        return values, rows

    def __call__(self, predictions: list[str], references: References) -> float:
        """The headline value alone: what the old `get_metric(name)(preds, refs)` callers expect."""
        return self.compute(predictions, references)[self.headline]

    def versions(self) -> dict[str, str]:
        return library_versions(self.libraries)

    def describe(self) -> dict:
        """What a run records about how its scores were computed (for metrics.json)."""
        return {"name": self.name, "headline": self.headline, "libraries": self.versions()}


def mean_rows(rows: ExampleRows) -> dict[str, float]:
    """Each value's mean over the examples (0 for none): the aggregate of a per-example metric."""
    if not rows:
        return {}
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def example_metric(name: str, headline: str, examples: Callable[[list[str], References], ExampleRows],
                   reduce: Callable[[ExampleRows], dict[str, float]] = mean_rows,
                   libraries: tuple[str, ...] = ("forgetlab",)) -> Metric:
    """A `Metric` whose aggregate is `reduce` of its per-example rows, by construction."""

    def fn(predictions: list[str], references: References) -> dict[str, float]:
        values = reduce(examples(predictions, references))
        return values or {headline: 0.0}

    return Metric(name, headline, fn, libraries, examples, reduce)
