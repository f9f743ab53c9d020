"""Task metrics on generated text. Scores are in [0, 100].

`resolve_metric(spec)` turns what a task config names into a `Metric`: a short registry name
("exact_match", "accuracy", "char_f1", "rouge", "entity_f1", "macro_f1"), a `{name:, headline:}` mapping to
pick another headline, or a user's own metric by dotted path (`"my_pkg.metrics.bleu"` or
`{_target_: my_pkg.metrics.Bleu, headline: bleu, ...kwargs}`). `get_metric(name)` stays the old
`fn(predictions, references) -> float` entry point.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from forgetlab.evaluation.classification import macro_f1_examples, macro_f1_reduce
from forgetlab.evaluation.entities import entity_f1_examples, entity_f1_reduce
from forgetlab.evaluation.metric import (
    ExampleRows,
    Metric,
    References,
    as_reference_lists,
    example_metric,
    mean_rows,
)
from forgetlab.evaluation.plugins import load_custom_metric
from forgetlab.evaluation.rouge import rouge_examples


def _norm(text: str) -> str:
    return " ".join(text.strip().split())


def _char_f1_one(p: str, r: str) -> float:
    common = sum((Counter(p) & Counter(r)).values())
    if common:
        prec, rec = common / len(p), common / len(r)
        return 2 * prec * rec / (prec + rec)
    return 1.0 if not p and not r else 0.0


def _example_rows(one: Callable[[str, str], float], name: str) -> Callable[[list[str], References], ExampleRows]:
    """Per example: {name: the best reference's value x100}."""

    def rows(predictions: list[str], references: References) -> ExampleRows:
        refs = as_reference_lists(references, len(predictions))
        return [{name: 100.0 * max(one(p, r) for r in options)} for p, options in zip(predictions, refs)]

    return rows


def _per_example(one: Callable[[str, str], float], name: str) -> Callable[[list[str], References], float]:
    """Mean over examples of the best reference's value, x100 (0 for no example)."""
    rows = _example_rows(one, name)
    return lambda predictions, references: mean_rows(rows(predictions, references)).get(name, 0.0)


def _exact(p: str, r: str) -> float:
    return float(_norm(p) == _norm(r))


def _same_label(p: str, r: str) -> float:
    return float(_norm(p).lower() == _norm(r).lower())


def exact_match(predictions: list[str], references: References) -> float:
    """Percent of predictions equal to a reference after trimming whitespace (case-sensitive)."""
    return _per_example(_exact, "exact_match")(predictions, references)


def accuracy(predictions: list[str], references: References) -> float:
    """Percent of predicted labels equal to the reference label, ignoring case and surrounding space."""
    return _per_example(_same_label, "accuracy")(predictions, references)


def char_f1(predictions: list[str], references: References) -> float:
    """Mean bag-of-characters F1: partial credit for long free-form answers."""
    return _per_example(_char_f1_one, "char_f1")(predictions, references)


# name -> factory; a fresh Metric per call, nothing here is mutated. Each aggregate is computed from its
# per-example rows (what a run's predictions files keep).
BUILTIN_METRICS: Mapping[str, Callable[[], Metric]] = MappingProxyType({
    "exact_match": lambda: example_metric("exact_match", "exact_match", _example_rows(_exact, "exact_match")),
    "accuracy": lambda: example_metric("accuracy", "accuracy", _example_rows(_same_label, "accuracy")),
    "char_f1": lambda: example_metric("char_f1", "char_f1", _example_rows(_char_f1_one, "char_f1")),
    "rouge": lambda: example_metric("rouge", "rougeLsum", rouge_examples, libraries=("rouge-score",)),
    "entity_f1": lambda: example_metric("entity_f1", "f1", entity_f1_examples, entity_f1_reduce),
    "macro_f1": lambda: example_metric("macro_f1", "macro_f1", macro_f1_examples, macro_f1_reduce),
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
        return dataclasses.replace(base, headline=headline)
    return load_custom_metric(spec)


def get_metric(name: Any) -> Metric:
    """Callable as `fn(predictions, references) -> headline float`, like before; `.compute` gives all values."""
    return resolve_metric(name)


def metric_versions(spec: Any) -> dict[str, str]:
    """Versions of the libraries that compute a metric, e.g. {"rouge-score": "0.1.2"}."""
    return resolve_metric(spec).versions()
