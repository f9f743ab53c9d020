"""A continual sequence over several processes (Lightning DDP on CPU, gloo) is the same sequence as one
process: one metrics.json and one stages/ folder from rank 0, every row of the score and loss matrices equal
to the 1-process run with the same global batch (scores exactly, losses within a relative 1e-5: DDP sums
gradients in another order), EWC's Fisher carried alike, and the stage predictions those of one process.
Engines that cannot run a sequence are refused before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgetlab.config import ConfigError
from forgetlab.continual_run import run_continual
from tests.conftest import compose_config

SEQ = ["experiment=tiny", "sequence=tiny", "threads=1", "base.steps=5", "strategy=ewc", "strategy.optim.steps=6",
       "strategy.optim.batch_size=8", "strategy.penalty.fisher_examples=8", "eval.every_n_steps=3",
       "eval.test_max_examples=8", "diagnostics.spectral=false"]
LOSS_REL = 1e-5


def test_an_engine_that_cannot_run_a_sequence_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    import forgetlab.continual_run as continual

    monkeypatch.setattr(continual, "prepare_base", lambda *a, **k: pytest.fail("the base stage was reached"))
    cfg = compose_config([*SEQ, "trainer=fsdp", "trainer.accelerator=cpu", "trainer.precision=32-true"], tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"continual sequence.*allowed: trainer.strategy=ddp"):
        run_continual(cfg)


def _matrix_close(a: dict, b: dict, where: str) -> None:
    assert a["tasks"] == b["tasks"], where
    for row_a, row_b in zip(a["matrix"], b["matrix"], strict=True):
        assert row_a == pytest.approx(row_b, rel=LOSS_REL, abs=1e-9), where


@pytest.mark.slow
def test_two_process_sequence_matches_one_process(tmp_path):
    cache, ddp_dir = tmp_path / "cache", tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "forgetlab.cli", *SEQ, "trainer.strategy=ddp", "trainer.devices=2",
         f"paths.cache_dir={cache}", f"hydra.run.dir={ddp_dir}"],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.rglob("metrics.json")) == [ddp_dir / "metrics.json"]
    assert (ddp_dir / "train_ddp_process_1.log").exists()  # rank 1 ran, and wrote only its log
    ddp = json.loads((ddp_dir / "metrics.json").read_text())

    one = run_continual(compose_config([*SEQ, f"paths.data_cache_dir={tmp_path / 'one_data'}"], tmp_path / "one",
                                       cache))
    assert one["base"]["key"] == ddp["base"]["key"]
    assert [s["tasks"] for s in ddp["stages"]] == [s["tasks"] for s in one["stages"]] == [
        ["reverse"], ["length", "last_letter"], ["count_vowels"]]
    _matrix_close(ddp["continual_loss"], one["continual_loss"], "loss matrix")
    assert ddp["continual"]["tasks"] == one["continual"]["tasks"]
    assert ddp["continual"]["matrix"] == one["continual"]["matrix"]  # scores exactly
    assert ddp["continual"]["backward_transfer"] == one["continual"]["backward_transfer"]
    assert (ddp["steps"], ddp["tokens_seen"]) == (one["steps"], one["tokens_seen"]) == (18, one["tokens_seen"])
    assert [s["penalty"] for s in ddp["stages"]] == ["EWC", "EWC", "EWC"]
    # the stage files are rank 0's, once; the Fisher each rank carried is the one process's
    for t in (1, 2, 3):
        assert (ddp_dir / "stages" / f"{t:02d}" / "fisher.pt").is_file()
    preds = sorted(p.relative_to(ddp_dir / "predictions") for p in (ddp_dir / "predictions").rglob("*.jsonl"))
    assert preds == sorted(p.relative_to(tmp_path / "one" / "predictions")
                           for p in (tmp_path / "one" / "predictions").rglob("*.jsonl"))
    for rel in preds:
        rows = [json.loads(line)["prediction"] for line in (ddp_dir / "predictions" / rel).read_text().splitlines()]
        one_rows = [json.loads(line)["prediction"]
                    for line in (tmp_path / "one" / "predictions" / rel).read_text().splitlines()]
        assert rows == one_rows, rel
