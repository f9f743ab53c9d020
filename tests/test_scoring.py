"""Scoring with several metrics per task, and held-out text scored by loss alone (never generated)."""

from __future__ import annotations

import json
import math

import pytest

from forgetlab.evaluation.scoring import describe_metrics, length_batches, score_task
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


def test_one_encoder_pass_per_scored_batch_gives_the_two_pass_results():
    """Scoring a seq2seq batch runs the encoder once, for the loss and for generation alike, and gives the
    predictions and losses of a separate generate() + teacher-forced loss; batches go by length and the
    predictions come back in the split's order."""
    import torch

    from forgetlab.tasks.task import build_builtin_task

    lm = build_tiny_t5(d_model=32, d_ff=64, num_heads=2, d_kv=16, num_layers=1, num_decoder_layers=1)
    tok = lm.tokenizer  # untrained, it would write only eos or padding: make it write text
    lm.model.generation_config.suppress_tokens = [tok.eos_token_id, tok.pad_token_id, *tok.all_special_ids]

    task = build_builtin_task("reverse", {"train": 1, "validation": 1, "test": 24}, seed=0)
    calls = []
    hook = lm.model.get_encoder().register_forward_hook(lambda *a: calls.append(1))
    try:
        result = score_task(lm, task, "test", batch_size=8)
    finally:
        hook.remove()
    assert len(calls) == 3  # 24 examples / 8 per batch

    data = task.splits["test"]
    max_new = len(lm.tokenizer(" " * task.max_answer_chars, add_special_tokens=False)["input_ids"]) + 1
    preds = lm.generate(list(data["prompt"]), max_new_tokens=max_new)
    feats = [lm.encode(p, c) for p, c in zip(data["prompt"], data["completion"])]
    with torch.no_grad():
        nll, ntok = lm.token_losses(lm.collate(feats))
    one_pass, nll1, _ = lm.score_batch(feats, list(data["prompt"]), max_new)
    assert one_pass == preds and len(set(preds)) > 1  # an untrained model still writes varied text
    assert torch.allclose(nll1, nll, rtol=1e-5)
    from forgetlab.evaluation.metrics import resolve_metric

    assert result["score"] == pytest.approx(resolve_metric(task.metric)(preds, list(data["completion"])))
    assert result["loss"] == pytest.approx(float(nll.sum() / ntok.sum()), rel=1e-5)


def test_length_batches_stay_within_the_token_budget():
    lengths = [5, 100, 10, 40, 60, 10, 300]
    batches = length_batches(lengths, batch_size=3, max_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every example once
    assert all(len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 120) for b in batches)
    assert batches == [[0, 2, 5], [3, 4], [1], [6]]  # ascending; 300 > budget is scored on its own
    assert length_batches(lengths, batch_size=4, max_tokens=None) == [[0, 2, 5, 3], [4, 1, 6]]


def test_token_budget_changes_batches_not_results(tmp_path, lm):
    """Long inputs scored a few at a time give the predictions and loss of one big batch."""
    rows = [{"dialogue": "a: " + "word " * (3 + 7 * i), "summary": f"short {i}."} for i in range(6)]
    task = _task(tmp_path, "summarization", rows)  # 3 test examples of different lengths
    calls = []
    hook = lm.model.get_encoder().register_forward_hook(lambda *a: calls.append(1))
    try:
        small = score_task(lm, task, batch_size=256, max_batch_tokens=60)
        budget_calls, calls[:] = len(calls), []
        big = score_task(lm, task, batch_size=256, max_batch_tokens=None)
    finally:
        hook.remove()
    assert budget_calls > len(calls) == 1
    assert small["metrics"] == big["metrics"] and small["loss"] == pytest.approx(big["loss"], rel=1e-5)
