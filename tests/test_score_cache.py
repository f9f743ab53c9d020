"""Scores of the starting model are cached by what they depend on, so a sweep scores its base once."""

from __future__ import annotations

from forgetlab.evaluation.score_cache import cached_scores, scoring_key
from forgetlab.tasks.suite import build_suite

from .conftest import TINY, compose_config

SETTINGS = {"batch_size": 256, "max_examples": None, "threads": 2}


def _tasks(seed: int = 7):
    suite = build_suite("reverse", ["copy"], {"train": 4, "validation": 2, "test": 6}, seed)
    return suite.eval_tasks()


def test_scores_are_computed_once_per_key(tmp_path):
    calls = []

    rows = {"copy": [{"index": 0, "prediction": "ab", "score": 100.0}]}

    def compute():
        calls.append(1)
        return {"copy": {"score": 12.5}}, rows

    key = scoring_key("abc", _tasks(), "test", SETTINGS)
    assert cached_scores(tmp_path, key, compute) == ({"copy": {"score": 12.5}}, rows, False)
    assert cached_scores(tmp_path, key, compute) == ({"copy": {"score": 12.5}}, rows, True)
    assert cached_scores(None, key, compute)[2] is False and cached_scores(tmp_path, None, compute)[2] is False
    assert len(calls) == 3


def test_a_cached_entry_without_predictions_is_computed_again(tmp_path):
    """Entries written before predictions were kept hold scores only: every job must still get its rows."""
    import json

    from forgetlab.utils.io import stable_hash

    key = scoring_key("abc", _tasks(), "test", SETTINGS)
    path = tmp_path / "scores" / f"{stable_hash(key)}.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"key": key, "scores": {"copy": {"score": 1.0}}}))
    rows = {"copy": [{"index": 0}]}
    assert cached_scores(tmp_path, key, lambda: ({"copy": {"score": 2.0}}, rows)) == (
        {"copy": {"score": 2.0}}, rows, False)
    assert cached_scores(tmp_path, key, lambda: ({}, {}))[1:] == (rows, True)


def test_the_key_changes_with_weights_data_and_settings():
    key = scoring_key("abc", _tasks(), "test", SETTINGS)
    assert key == scoring_key("abc", _tasks(), "test", dict(SETTINGS))
    assert key != scoring_key("abd", _tasks(), "test", SETTINGS)
    assert key != scoring_key("abc", _tasks(seed=8), "test", SETTINGS)
    assert key != scoring_key("abc", _tasks(), "validation", SETTINGS)
    assert key != scoring_key("abc", _tasks(), "test", {**SETTINGS, "batch_size": 8})


def test_a_second_job_on_the_same_base_reuses_its_before_scores(tiny_run, tmp_path, cache_dir):
    from forgetlab.run import run_experiment

    _, first = tiny_run
    second = run_experiment(compose_config([*TINY, "seed=1"], tmp_path / "run", cache_dir))
    assert second["before_cached"] is True and second["before"] == first["before"]
    # the cache holds the rows too: this job writes the same before-predictions as the one that scored
    for task in first["before"]:
        name = f"{task}.jsonl"
        assert (tmp_path / "run" / "predictions" / "before" / name).read_bytes() == (
            tiny_run[0] / "predictions" / "before" / name).read_bytes()
