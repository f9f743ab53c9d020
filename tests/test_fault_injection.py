"""benchmarks/fault_injection.py compares each faulty job's metrics.json with the clean sweep's as
forgetlab-reproduce does: cache provenance and timing are no difference, and a real one is named by key.
(The benchmark itself is minutes of sweeps; only its comparison is tested here.)"""

from __future__ import annotations

import copy
import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METRICS = ROOT / "tests" / "fixtures" / "report" / "runs" / "2024-01-01_00-00-00_replay-reverse-s0" / "metrics.json"


@pytest.fixture(scope="module")
def metrics_difference():
    return runpy.run_path(str(ROOT / "benchmarks" / "fault_injection.py"))["metrics_difference"]


@pytest.fixture
def clean() -> dict:
    metrics = json.loads(METRICS.read_text())
    metrics["before_cached"] = False
    metrics["truncated"] = {"max_length": 512, "tasks": {"reverse": {"test": 0, "train": 0, "validation": 0}}}
    return metrics


def test_a_relaunch_that_read_the_killed_attempts_caches_is_no_difference(metrics_difference, clean):
    faulty = copy.deepcopy(clean)
    faulty["before_cached"] = True          # the killed attempt had scored (and cached) the base
    faulty["base"]["cached"] = False        # ... or trained the base this attempt found
    faulty["base"]["path"] = "/elsewhere/cache/base/tiny_t5-fixture"
    faulty["timing"] = {"train_wall_time_s": 99.0, "tokens_per_s": 1.0, "finished_at": "2025-01-01T00:00:00"}
    assert metrics_difference(clean, faulty) is None


def test_a_real_difference_is_named_by_its_keys(metrics_difference, clean):
    faulty = copy.deepcopy(clean)
    faulty["before_cached"] = True
    del faulty["truncated"]["tasks"]["reverse"]["validation"]
    faulty["after"]["reverse"]["score"] += 0.5
    assert metrics_difference(clean, faulty) == \
        "metrics differ: after.reverse.score, truncated.tasks.reverse.validation"


def test_many_differences_are_counted_past_the_first_few(metrics_difference, clean):
    faulty = copy.deepcopy(clean)
    changed = ["seed", "mean_forgetting", "target_gain", "trainable_params", "total_params", "tokens_seen", "steps"]
    for key in changed:
        faulty[key] += 1
    assert metrics_difference(clean, faulty) == \
        "metrics differ: seed, mean_forgetting, target_gain, trainable_params, total_params (+2 more)"
