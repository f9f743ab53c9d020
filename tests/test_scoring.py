"""Scoring with several metrics per task, and held-out text scored by loss alone (never generated)."""

from __future__ import annotations

import json
import math

import pytest

from forgetlab.evaluation.scoring import describe_metrics, score_task
from forgetlab.models.tiny import build_tiny_t5
from forgetlab.tasks.external import build_external_task

SIZES = {"train": 2, "validation": 1, "test": 3}


@pytest.fixture(scope="module")
def lm():
    return build_tiny_t5(d_model=32, d_ff=64, num_heads=2, d_kv=16, num_layers=1, num_decoder_layers=1)


def _task(tmp_path, kind, rows, **spec):
    path = tmp_path / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build_external_task(name=kind, source=str(path), sizes=SIZES, seed=0, kind=kind, **spec)


def test_text_task_is_scored_by_loss_without_generating(tmp_path, lm, monkeypatch):
    task = _task(tmp_path, "text", [{"text": f"some held out text {i}"} for i in range(6)])
    monkeypatch.setattr(lm, "generate", lambda *a, **k: pytest.fail("a text task must not generate"))
    result = score_task(lm, task)
    assert result["n"] == 3 and result["headline"] == "inverse_perplexity" and result["loss"] > 0
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["score"] == pytest.approx(100 / result["perplexity"])


def test_every_metric_value_is_recorded_and_score_is_the_headline(tmp_path, lm):
    rows = [{"dialogue": f"a: hi {i}", "summary": [f"hello {i}.", f"greeting {i}."]} for i in range(6)]
    task = _task(tmp_path, "summarization", rows)
    result = score_task(lm, task, batch_size=2)
    assert set(result["metrics"]) == {"rouge1", "rouge2", "rougeLsum"}
    assert result["headline"] == "rougeLsum" and result["score"] == result["metrics"]["rougeLsum"]
    info = describe_metrics({"summarization": task})["summarization"]
    assert info["name"] == "rouge" and "rouge-score" in info["libraries"] and info["skipped_rows"] == 0
