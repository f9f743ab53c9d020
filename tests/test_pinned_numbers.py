"""Pinned numbers of the tiny end-to-end run (as torchtune's recipe tests do): a change that moves results,
on purpose or not, shows here. Runs are deterministic on CPU (fixed seeds and thread count), so the
tolerance only absorbs float noise across machines of this kind.

Update only for a change meant to move results, and say so in the README. Produced by:
    forgetlab experiment=tiny trainer.log_every_n_steps=1
"""

from __future__ import annotations

import csv

import pytest

REL = 1e-4  # relative tolerance on losses
FIRST_STEP_LOSS = 3.917778968811035
BEFORE_LOSS = {"copy": 3.972787685495205, "uppercase": 4.439335459286404, "sentiment": 1.7835091484917536,
               "reverse": 3.9888043628313152}
AFTER_LOSS = {"copy": 3.767377903852513, "uppercase": 4.505130413881282, "sentiment": 2.0162234836154513,
              "reverse": 3.7866316390911323}
MEAN_LOSS_INCREASE = 0.031033169358628026
TOKENS_SEEN = 8874


def test_first_training_step_loss_is_pinned(tiny_run):
    run_dir, _ = tiny_run
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        first = next(r for r in csv.DictReader(f) if r.get("train/loss"))
    assert int(first["step"]) == 0
    assert float(first["train/loss"]) == pytest.approx(FIRST_STEP_LOSS, rel=REL)


def test_final_metrics_are_pinned(tiny_run):
    _, metrics = tiny_run
    assert {t: v["loss"] for t, v in metrics["before"].items()} == pytest.approx(BEFORE_LOSS, rel=REL)
    assert {t: v["loss"] for t, v in metrics["after"].items()} == pytest.approx(AFTER_LOSS, rel=REL)
    assert metrics["mean_loss_increase"] == pytest.approx(MEAN_LOSS_INCREASE, rel=1e-3)
    # 20 steps on a 3-task base stage of 30 steps: too short to move exact match, which stays at 0
    assert metrics["target_gain"] == 0.0 and metrics["mean_forgetting"] == 0.0
    assert metrics["tokens_seen"] == TOKENS_SEEN
