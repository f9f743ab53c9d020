"""The Pareto front of runs over several objectives (learn the target, forget little): the runs that no
other run beats on every objective at once. Used by the sweep summary and the report's scatter plot."""

from __future__ import annotations

from collections.abc import Sequence

MAXIMIZE, MINIMIZE = "maximize", "minimize"


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True if `a` is at least as good as `b` on every objective and strictly better on one."""
    better = [(x >= y) if d == MAXIMIZE else (x <= y) for x, y, d in zip(a, b, directions, strict=True)]
    strictly = [(x > y) if d == MAXIMIZE else (x < y) for x, y, d in zip(a, b, directions, strict=True)]
    return all(better) and any(strictly)


def front_indices(vectors: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the vectors no other vector dominates, in input order."""
    return [i for i, v in enumerate(vectors)
            if not any(dominates(w, v, directions) for j, w in enumerate(vectors) if j != i)]


def pareto_front(points: list[dict], keys: list[str], directions: list[str]) -> list[dict]:
    """The points (each with 'values': {key: float}) that no other point dominates."""
    vectors = [[p["values"][k] for k in keys] for p in points]
    return [points[i] for i in front_indices(vectors, directions)]
