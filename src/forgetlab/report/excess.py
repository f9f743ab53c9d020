"""Excess forgetting at matched gain, the studies' one comparison between methods: a point's mean forgetting
minus what a reference method (full fine-tuning) forgets at the same target gain, read off the reference's
learning-forgetting curve (its points joined in order of gain by straight lines; None outside the gains the
reference reached, since extrapolating a curve of a few points says nothing)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable


def reference_curve(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The reference's (gain, forgetting) points, e.g. its group means per learning rate, in ascending gain."""
    return sorted(points)


def forgetting_at_gain(curve: list[tuple[float, float]], gain: float) -> float | None:
    """The reference's forgetting at `gain` on its piecewise-linear curve; None outside its range."""
    for (g0, f0), (g1, f1) in itertools.pairwise(curve):
        if g0 <= gain <= g1:
            return f0 if g1 == g0 else f0 + (f1 - f0) * (gain - g0) / (g1 - g0)
    if len(curve) == 1 and curve[0][0] == gain:
        return curve[0][1]
    return None


def excess_forgetting(curve: list[tuple[float, float]], gain: float, forgetting: float) -> float | None:
    """`forgetting` minus the reference's at `gain` (negative: forgets less than the reference at that gain)."""
    ref = forgetting_at_gain(curve, gain)
    return None if ref is None else forgetting - ref
