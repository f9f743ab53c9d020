"""The `timing` section of metrics.json splits a run's wall time into phases that add up to it."""

from __future__ import annotations

import time

from forgetlab.utils.timing import PhaseTimer, process_age_s

PHASES = ("data", "base_stage", "scoring_before", "training", "periodic_evaluation", "scoring_after", "diagnostics", "saving")


def test_phases_are_back_to_back_and_split_off_moves_time_from_the_running_phase():
    timer = PhaseTimer()
    timer.enter("a")
    time.sleep(0.05)
    timer.enter("b")
    time.sleep(0.1)
    timer.split_off("c", "b", 0.04)  # measured inside b, while b still runs
    time.sleep(0.02)
    timer.enter(None)
    s = timer.seconds
    assert abs(s["a"] - 0.05) < 0.02 and abs(s["c"] - 0.04) < 1e-9 and abs(s["b"] - 0.08) < 0.02
    assert timer.summary()["wall_time_s"] == round(sum(s.values()), 3)


def test_process_age_is_the_time_since_the_interpreter_started():
    age = process_age_s()
    assert age is None or 0 < age < 24 * 3600


def test_run_timing_covers_the_whole_run(tiny_run_timed):
    """Every phase is present and the parts sum to the run's own wall time (measured outside) within 5%."""
    _, metrics, outside = tiny_run_timed
    timing = metrics["timing"]
    assert all(f"{p}_s" in timing and timing[f"{p}_s"] >= 0 for p in PHASES)
    assert timing["periodic_evaluation_s"] > 0  # experiment=tiny evaluates every 10 steps
    assert abs(timing["wall_time_s"] - outside) <= 0.05 * outside
