"""Task metrics on generated text, each returning a score in [0, 100]."""

from __future__ import annotations

from collections.abc import Callable


def _norm(text: str) -> str:
    return " ".join(text.strip().split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Percent of predictions equal to the reference after trimming whitespace (case-sensitive)."""
    hits = sum(_norm(p) == _norm(r) for p, r in zip(predictions, references, strict=True))
    return 100.0 * hits / max(len(references), 1)


def accuracy(predictions: list[str], references: list[str]) -> float:
    """Percent of predicted labels equal to the reference label, ignoring case and surrounding space."""
    hits = sum(_norm(p).lower() == _norm(r).lower() for p, r in zip(predictions, references, strict=True))
    return 100.0 * hits / max(len(references), 1)


def char_f1(predictions: list[str], references: list[str]) -> float:
    """Mean bag-of-characters F1: partial credit for long free-form answers."""
    from collections import Counter

    total = 0.0
    for p, r in zip(predictions, references, strict=True):
        common = sum((Counter(p) & Counter(r)).values())
        if common:
            prec, rec = common / len(p), common / len(r)
            total += 2 * prec * rec / (prec + rec)
        elif not p and not r:
            total += 1.0
    return 100.0 * total / max(len(references), 1)


METRICS: dict[str, Callable[[list[str], list[str]], float]] = {
    "exact_match": exact_match,
    "accuracy": accuracy,
    "char_f1": char_f1,
}


def get_metric(name: str) -> Callable[[list[str], list[str]], float]:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; allowed: {sorted(METRICS)}")
    return METRICS[name]
