"""Task metrics on generated text. Scores are in [0, 100].

`resolve_metric(spec)` turns what a task config names into a `Metric`: a short registry name
("exact_match", "accuracy", "char_f1", "rouge", "entity_f1", "macro_f1"), a `{name:, headline:}` mapping to
pick another headline, or a user's own metric by dotted path (`"my_pkg.metrics.bleu"` or
`{_target_: my_pkg.metrics.Bleu, headline: bleu, ...kwargs}`). `get_metric(name)` stays the old
`fn(predictions, references) -> float` entry point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from forgetlab.evaluation.classification import macro_f1
from forgetlab.evaluation.entities import entity_f1
from forgetlab.evaluation.metric import Metric, References, as_reference_lists
from forgetlab.evaluation.plugins import load_custom_metric
from forgetlab.evaluation.rouge import rouge


def _norm(text: str) -> str:
    return " ".join(text.strip().split())


def _char_f1_one(p: str, r: str) -> float:
    common = sum((Counter(p) & Counter(r)).values())
    if common:
        prec, rec = common / len(p), common / len(r)
        return 2 * prec * rec / (prec + rec)
    return 1.0 if not p and not r else 0.0


def _per_example(one: Callable[[str, str], float]) -> Callable[[list[str], References], float]:
    """Mean over examples of the best reference's value, x100."""

    def score(predictions: list[str], references: References) -> float:
        refs = as_reference_lists(references, len(predictions))
        total = sum(max(one(p, r) for r in options) for p, options in zip(predictions, refs))
        return 100.0 * total / max(len(refs), 1)

    return score


def exact_match(predictions: list[str], references: References) -> float:
    """Percent of predictions equal to a reference after trimming whitespace (case-sensitive)."""
    return _per_example(lambda p, r: float(_norm(p) == _norm(r)))(predictions, references)


def accuracy(predictions: list[str], references: References) -> float:
    """Percent of predicted labels equal to the reference label, ignoring case and surrounding space."""
    return _per_example(lambda p, r: float(_norm(p).lower() == _norm(r).lower()))(predictions, references)


def char_f1(predictions: list[str], references: References) -> float:
    """Mean bag-of-characters F1: partial credit for long free-form answers."""
    return _per_example(_char_f1_one)(predictions, references)


# name -> factory; a fresh Metric per call, nothing here is mutated.
BUILTIN_METRICS: Mapping[str, Callable[[], Metric]] = MappingProxyType({
    "exact_match": lambda: Metric("exact_match", "exact_match", exact_match),
    "accuracy": lambda: Metric("accuracy", "accuracy", accuracy),
    "char_f1": lambda: Metric("char_f1", "char_f1", char_f1),
    "rouge": lambda: Metric("rouge", "rougeLsum", rouge, ("rouge-score",)),
    "entity_f1": lambda: Metric("entity_f1", "f1", entity_f1),
    "macro_f1": lambda: Metric("macro_f1", "macro_f1", macro_f1),
})


def resolve_metric(spec: Any) -> Metric:
    """A `Metric` from a registry name, a dotted path, a `{name|_target_: ..., headline: ...}` mapping, or
    an object already built (a `Metric`, anything with `compute` and `headline`, or a plain function)."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        if spec in BUILTIN_METRICS:
            return BUILTIN_METRICS[spec]()
        if "." in spec:
            return load_custom_metric(spec)
        raise ValueError(
            f"unknown metric {spec!r}; allowed: {sorted(BUILTIN_METRICS)} or a dotted path to your own"
        )
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "_target_" in options:
            return load_custom_metric(options.pop("_target_"), **options)
        if "name" not in options:
            raise ValueError(f"metric spec {spec!r} needs 'name' (a registry name) or '_target_' (a dotted path)")
        base = resolve_metric(options.pop("name"))
        headline = options.pop("headline", base.headline)
        if options:
            raise ValueError(f"metric spec {spec!r}: unknown keys {sorted(options)}; allowed: name, headline")
        return Metric(base.name, headline, base.fn, base.libraries)
    return load_custom_metric(spec)


def get_metric(name: Any) -> Metric:
    """Callable as `fn(predictions, references) -> headline float`, like before; `.compute` gives all values."""
    return resolve_metric(name)


def metric_versions(spec: Any) -> dict[str, str]:
    """Versions of the libraries that compute a metric, e.g. {"rouge-score": "0.1.2"}."""
    return resolve_metric(spec).versions()
