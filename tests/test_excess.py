"""Excess forgetting at matched gain (forgetlab.report.excess), the studies' comparison with full fine-tuning:
read off the reference's piecewise-linear curve, None outside the gains it reached."""

from __future__ import annotations

import pytest

from forgetlab.report.excess import excess_forgetting, forgetting_at_gain, reference_curve

CURVE = reference_curve([(53.2, 48.7), (0.0, 0.0), (29.3, 34.0), (79.3, 90.9)])


def test_the_curve_is_ordered_by_gain_and_read_linearly_between_its_points():
    assert [g for g, _ in CURVE] == [0.0, 29.3, 53.2, 79.3]
    assert forgetting_at_gain(CURVE, 29.3) == pytest.approx(34.0)
    assert forgetting_at_gain(CURVE, 41.25) == pytest.approx((34.0 + 48.7) / 2)
    assert forgetting_at_gain(CURVE, 0.0) == 0.0


def test_points_outside_the_reference_range_are_not_placed():
    assert forgetting_at_gain(CURVE, 80.0) is None
    assert forgetting_at_gain(CURVE, -1.0) is None
    assert excess_forgetting(CURVE, 85.0, 10.0) is None
    assert forgetting_at_gain([(50.0, 40.0)], 50.0) == 40.0  # a single point places only itself
    assert forgetting_at_gain([(50.0, 40.0)], 51.0) is None


def test_excess_is_negative_below_the_curve():
    assert excess_forgetting(CURVE, 53.2, 11.4) == pytest.approx(11.4 - 48.7)
    assert excess_forgetting(CURVE, 29.3, 40.0) == pytest.approx(6.0)


def test_several_reference_points_at_one_gain_take_the_lowest_forgetting():
    """A saturated reference (every lr reaches 100) is read at its best trade: the lowest lr's forgetting."""
    curve = reference_curve([(0.0, 0.0), (100.0, 15.7), (100.0, 33.1)])
    assert forgetting_at_gain(curve, 100.0) == pytest.approx(15.7)
