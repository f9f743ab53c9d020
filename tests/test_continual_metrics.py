"""Continual metrics against matrices computed by hand: a 3-stage sequence with an eval-only task and
negative BWT, one stage, a two-task stage, a loss matrix, and a task trained twice."""

from __future__ import annotations

import json
import math

import pytest

from forgetlab.evaluation.continual import (
    backward_transfer,
    continual_summary,
    final_average_all,
    final_average_trained,
    forgetting_avalanche,
    forgetting_chaudhry,
    forward_transfer,
    forward_transfer_per_task,
    intransigence,
    learned_at,
    row_labels,
    score_after_learning,
    score_matrix,
    validate_matrix,
)

# a, b, c trained one per stage; x only evaluated. a rises after stage 2, so Chaudhry (best past score) and
# Avalanche (score right after learning) disagree on it.
TASKS = ["a", "b", "c", "x"]
STAGES = [["a"], ["b"], ["c"]]
R = [
    [10, 20, 30, 50],   # start
    [80, 25, 35, 48],   # after a
    [85, 90, 40, 46],   # after b
    [50, 70, 85, 40],   # after c
]


def test_three_stages_by_hand():
    assert final_average_trained(R, TASKS, STAGES) == pytest.approx((50 + 70 + 85) / 3)
    assert final_average_all(R, TASKS, STAGES) == pytest.approx((50 + 70 + 85 + 40) / 4)
    # BWT = ((50 - 80) + (70 - 90)) / 2: negative, the sequence forgot.
    assert backward_transfer(R, TASKS, STAGES) == pytest.approx(-25.0)
    assert forgetting_chaudhry(R, TASKS, STAGES) == pytest.approx({"a": 85 - 50, "b": 90 - 70})
    assert forgetting_avalanche(R, TASKS, STAGES) == pytest.approx({"a": 80 - 50, "b": 90 - 70})
    # FWT: stage 2 -> b: 25 - 20; stage 3 -> c: 40 - 30.
    assert forward_transfer_per_task(R, TASKS, STAGES) == pytest.approx({"b": 5.0, "c": 10.0})
    assert forward_transfer(R, TASKS, STAGES) == pytest.approx(7.5)
    assert score_after_learning(R, TASKS, STAGES) == {"a": 80.0, "b": 90.0, "c": 85.0}


def test_eval_only_task_keeps_its_column_but_enters_no_stage_metric():
    s = continual_summary(R, TASKS, STAGES)
    assert s["trained_tasks"] == ["a", "b", "c"]
    assert s["eval_only_tasks"] == ["x"]
    assert [row[3] for row in s["matrix"]] == [50.0, 48.0, 46.0, 40.0]
    for key in ("forgetting_chaudhry_per_task", "forgetting_avalanche_per_task", "forward_transfer_per_task",
                "score_after_learning"):
        assert "x" not in s[key]


def test_summary_is_json_ready_and_complete():
    s = continual_summary(R, TASKS, STAGES, single_task_scores={"a": 90, "b": 85, "c": 85, "x": 99})
    assert json.loads(json.dumps(s)) == s
    assert s["row_labels"] == ["start", "a", "b", "c"]
    assert s["stages"] == STAGES and s["tasks"] == TASKS and s["learned_at"] == {"a": 1, "b": 2, "c": 3}
    assert s["backward_transfer"] == pytest.approx(-25.0)
    assert s["forgetting_chaudhry"] == pytest.approx(27.5)
    assert s["forgetting_avalanche"] == pytest.approx(25.0)
    assert s["forward_transfer"] == pytest.approx(7.5)
    # Intransigence = single-task reference - score right after learning: 10, -5, 0 (x has no stage).
    assert s["intransigence_per_task"] == pytest.approx({"a": 10.0, "b": -5.0, "c": 0.0})
    assert s["intransigence"] == pytest.approx(5 / 3)
    assert s["higher_is_better"] is True


def test_intransigence_none_without_references():
    assert intransigence(R, TASKS, STAGES, None) is None
    s = continual_summary(R, TASKS, STAGES)
    assert s["intransigence"] is None and s["intransigence_per_task"] is None


def test_one_stage_has_no_bwt_fwt_or_forgetting():
    tasks, stages, r = ["a", "b"], [["a"]], [[10, 60], [90, 40]]
    s = continual_summary(r, tasks, stages)
    assert s["backward_transfer"] is None and s["forward_transfer"] is None
    assert s["forgetting_chaudhry"] is None and s["forgetting_chaudhry_per_task"] == {}
    assert s["forgetting_avalanche"] is None and s["forgetting_avalanche_per_task"] == {}
    assert s["forward_transfer_per_task"] == {}
    assert s["final_average_trained"] == 90.0 and s["final_average_all"] == 65.0
    assert s["row_labels"] == ["start", "a"]


def test_multi_task_stage_enters_bwt_and_fwt_as_its_mean():
    tasks, stages = ["a", "b", "c", "d"], [["a", "b"], ["c", "d"]]
    r = [[0, 0, 0, 0], [80, 60, 10, 20], [40, 50, 90, 70]]
    s = continual_summary(r, tasks, stages)
    assert s["row_labels"] == ["start", "a+b", "c+d"]
    assert s["backward_transfer"] == pytest.approx((40 + 50) / 2 - (80 + 60) / 2)   # -25
    assert s["forward_transfer"] == pytest.approx((10 + 20) / 2)
    assert s["forward_transfer_per_task"] == pytest.approx({"c": 10.0, "d": 20.0})
    assert s["forgetting_chaudhry_per_task"] == pytest.approx({"a": 40.0, "b": 10.0})
    assert s["final_average_trained"] == pytest.approx(62.5)


def test_multi_task_bwt_weighs_stages_not_tasks():
    # Stage 1 has three tasks, stage 2 one: GEM averages per stage, so stage 2's -40 counts as much as stage 1.
    tasks, stages = ["a", "b", "c", "d", "e"], [["a", "b", "c"], ["d"], ["e"]]
    r = [[0] * 5, [50, 50, 50, 0, 0], [50, 50, 50, 90, 0], [50, 50, 50, 50, 70]]
    assert backward_transfer(r, tasks, stages) == pytest.approx((0 + -40) / 2)


LOSS = [
    [3.0, 3.0, 3.0],   # start
    [0.5, 2.5, 2.8],   # after a
    [0.4, 0.2, 2.6],   # after b (a's loss keeps falling)
    [1.5, 0.7, 0.1],   # after c
]


def test_loss_matrix_forgetting_is_the_rise():
    tasks, stages = ["a", "b", "c"], [["a"], ["b"], ["c"]]
    s = continual_summary(LOSS, tasks, stages, single_task_scores={"a": 0.3}, higher_is_better=False)
    assert s["higher_is_better"] is False
    # BWT on -R: ((0.5 - 1.5) + (0.2 - 0.7)) / 2, negative because losses rose.
    assert s["backward_transfer"] == pytest.approx(-0.75)
    # Chaudhry: rise over the lowest past loss (a: 1.5 - 0.4); Avalanche: over the loss right after learning.
    assert s["forgetting_chaudhry_per_task"] == pytest.approx({"a": 1.1, "b": 0.5})
    assert s["forgetting_avalanche_per_task"] == pytest.approx({"a": 1.0, "b": 0.5})
    # FWT: loss fall before training (b: 3.0 - 2.5, c: 3.0 - 2.6).
    assert s["forward_transfer_per_task"] == pytest.approx({"b": 0.5, "c": 0.4})
    assert s["forward_transfer"] == pytest.approx(0.45)
    # Averages stay in loss units, not negated.
    assert s["final_average_trained"] == pytest.approx((1.5 + 0.7 + 0.1) / 3)
    assert s["intransigence_per_task"] == pytest.approx({"a": 0.5 - 0.3})


def test_score_matrix_from_forgetlab_evaluations():
    evals = [{"a": {"score": 10.0, "loss": 3.0}, "b": {"score": 20.0, "loss": 2.0}},
             {"a": {"score": 90.0, "loss": 0.5}, "b": {"score": 5.0, "loss": 2.9}}]
    assert score_matrix(evals, ["b", "a"]) == [[20.0, 10.0], [5.0, 90.0]]
    assert score_matrix(evals, ["a", "b"], key="loss") == [[3.0, 2.0], [0.5, 2.9]]


def test_task_trained_twice_counts_as_learned_first():
    tasks, stages = ["a", "b"], [["a"], ["b"], ["a"]]
    r = [[0, 0], [80, 0], [30, 90], [95, 60]]
    assert learned_at(stages) == {"a": 1, "b": 2}
    assert row_labels(stages) == ["start", "a", "b", "a"]
    # a: first learned at 1, best before the last stage 80, final 95 -> -15 (retraining recovered it).
    assert forgetting_chaudhry(r, tasks, stages) == pytest.approx({"a": -15.0, "b": 30.0})
    # BWT per stage i < 3: (95 - 80) + (60 - 90), / 2.
    assert backward_transfer(r, tasks, stages) == pytest.approx(-7.5)


@pytest.mark.parametrize("matrix,tasks,stages,message", [
    ([[1, 2], [3, 4]], ["a", "b"], [], "at least one stage"),
    ([[1, 2]], ["a", "b"], [["a"]], "expected 2"),
    ([[1, 2], [3]], ["a", "b"], [["a"]], "row 1 has 1 values"),
    ([[1, 2], [3, 4]], ["a", "b"], [["z"]], "no column"),
    ([[1, 2], [3, 4]], ["a", "b"], ["a"], "non-empty list"),
    ([[1, 2], [3, 4]], ["a", "a"], [["a"]], "repeat"),
    ([[1, 2], [3, math.nan]], ["a", "b"], [["a"]], "non-finite"),
])
def test_invalid_input_is_refused(matrix, tasks, stages, message):
    with pytest.raises(ValueError, match=message):
        validate_matrix(matrix, tasks, stages)
