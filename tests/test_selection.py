"""Checkpoint selection under a forgetting budget, on a hand-made history."""

from __future__ import annotations

import pytest

from forgetlab.evaluation.selection import best_under_budgets, select_under_budget, trajectory


def entry(step: int, t: float, o1: float, o2: float) -> dict:
    return {"step": step, "scores": {"t": {"score": t, "loss": 1.0}, "o1": {"score": o1, "loss": 1.0},
                                     "o2": {"score": o2, "loss": 1.0}}}


# Mean forgetting of o1, o2 against step 0: 0, 1, 3, 5, 20. Steps 20 and 30 tie on the target (60).
HISTORY = [
    entry(0, 10, 80, 60),
    entry(10, 40, 79, 59),
    entry(20, 60, 76, 58),
    entry(30, 60, 74, 56),
    entry(40, 75, 60, 40),
]


def test_trajectory_defaults_old_tasks_to_every_other_task():
    points = trajectory(HISTORY, "t")
    assert [p["step"] for p in points] == [0, 10, 20, 30, 40]
    assert [p["target_score"] for p in points] == [10, 40, 60, 60, 75]
    assert [p["mean_forgetting"] for p in points] == pytest.approx([0, 1, 3, 5, 20])


def test_trajectory_with_explicit_old_tasks_and_several_targets():
    assert [p["mean_forgetting"] for p in trajectory(HISTORY, "t", ["o1"])] == pytest.approx([0, 1, 4, 6, 20])
    points = trajectory(HISTORY, ["t", "o2"])   # o1 is then the only old task
    assert points[1]["target_score"] == pytest.approx((40 + 59) / 2)
    assert points[1]["mean_forgetting"] == pytest.approx(1.0)


def test_select_under_budget_picks_best_target_within_budget():
    chosen = select_under_budget(HISTORY, "t", 2)
    assert chosen["step"] == 10 and chosen["target_score"] == 40 and chosen["mean_forgetting"] == 1
    assert chosen["scores"] == {"t": 40.0, "o1": 79.0, "o2": 59.0}
    assert chosen["forgetting"] == {"o1": 1.0, "o2": 1.0}
    assert chosen["old_tasks"] == ["o1", "o2"] and chosen["targets"] == ["t"] and chosen["budget"] == 2.0
    assert select_under_budget(HISTORY, "t", 3)["step"] == 20   # forgetting exactly on the budget counts
    assert select_under_budget(HISTORY, "t", 100)["step"] == 40


def test_ties_go_to_the_earliest_step():
    # Steps 20 (forgetting 3) and 30 (forgetting 5) both reach 60 under a budget of 5.
    assert select_under_budget(HISTORY, "t", 5)["step"] == 20
    shuffled = [HISTORY[0], *reversed(HISTORY[1:])]   # earliest by step, not by position in the list
    assert select_under_budget(shuffled, "t", 5)["step"] == 20


def test_budget_zero_keeps_the_start_and_negative_budget_finds_nothing():
    assert select_under_budget(HISTORY, "t", 0)["step"] == 0
    assert select_under_budget(HISTORY, "t", -1) is None


def test_old_tasks_change_the_choice():
    assert select_under_budget(HISTORY, "t", 3)["step"] == 20
    assert select_under_budget(HISTORY, "t", 3, old_tasks=["o1"])["step"] == 10   # o1 alone lost 4 by step 20


def test_best_under_budgets_keys_and_values():
    result = best_under_budgets(HISTORY, "t")
    assert list(result) == ["1", "2", "5", "10"]
    assert {k: v["step"] for k, v in result.items()} == {"1": 10, "2": 10, "5": 20, "10": 20}
    assert list(best_under_budgets(HISTORY, "t", budgets=(2.5, -1))) == ["2.5", "-1"]
    assert best_under_budgets(HISTORY, "t", budgets=(-1,))["-1"] is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="empty history"):
        trajectory([], "t")
    with pytest.raises(ValueError, match="no old tasks"):
        trajectory([{"step": 0, "scores": {"t": {"score": 1.0}}}], "t")
    with pytest.raises(ValueError, match="both target and old"):
        trajectory(HISTORY, "t", ["t", "o1"])
    broken = HISTORY[:2] + [{"step": 20, "scores": {"t": {"score": 50.0}, "o1": {"score": 70.0}}}]
    with pytest.raises(ValueError, match="step 20 has no score for task 'o2'"):
        trajectory(broken, "t")
    with pytest.raises(ValueError, match="finite"):
        select_under_budget(HISTORY, "t", float("nan"))
