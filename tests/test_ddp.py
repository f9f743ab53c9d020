"""Multi-process training (Lightning DDP on CPU, gloo) is the same experiment as one process.

A 2-process run of the CLI, from a cold base-stage cache, must train the base once (one device, before
the launch), write one metrics.json from rank 0 (the other rank writes only its log), count tokens over
both processes, record the global batch, and end with the scores and losses of a 1-process run with the
same global batch. Tolerance: per-token losses within a relative 1e-5 (float sums taken in another
order); scores, token counts and steps exactly equal (measured: identical to the printed digits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from forgetlab.config import ConfigError
from forgetlab.training.distributed import check_trainer, per_device_batch_size
from forgetlab.training.sampler import ResumableBatchSampler
from tests.conftest import compose_config

LOSS_REL = 1e-5
RUN = ["experiment=tiny", "threads=1", "base.steps=5", "strategy.optim.steps=6", "strategy.optim.batch_size=8",
       "eval.every_n_steps=3", "eval.test_max_examples=16", "diagnostics.spectral=false"]


def test_ranks_split_every_global_batch_exactly():
    one = list(ResumableBatchSampler(40, 8, seed=3))
    ranks = [list(ResumableBatchSampler(40, 8, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(batch) for batch in one]
    assert all(len(b) == 4 for r in ranks for b in r)


def test_multi_process_setups_that_would_be_wrong_fail_early():
    with pytest.raises(ConfigError, match="must divide evenly"):
        per_device_batch_size(15, 2)
    with pytest.raises(ConfigError, match="ddp_spawn|spawn"):
        check_trainer(L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False), multirun=False)
    with pytest.raises(ConfigError, match="under -m"):
        check_trainer(L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False), multirun=True)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for task in a:
        assert a[task]["score"] == b[task]["score"], task
        assert a[task]["loss"] == pytest.approx(b[task]["loss"], rel=LOSS_REL), task


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    from forgetlab.run import run_experiment

    cache, ddp_dir = tmp_path / "cache", tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "forgetlab.cli", *RUN, "trainer.strategy=ddp", "trainer.devices=2",
         f"paths.cache_dir={cache}", f"hydra.run.dir={ddp_dir}"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.rglob("metrics.json")) == [ddp_dir / "metrics.json"]
    assert list(tmp_path.rglob("run_record.json")) == [ddp_dir / "run_record.json"]
    assert (ddp_dir / "train_ddp_process_1.log").exists()  # rank 1 ran, and wrote only its log
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    assert ddp["batch"] == {"global": 8, "per_process": 4, "processes": 2, "accumulate_grad_batches": 1}
    assert ddp["base"]["cached"] is False and len(list((cache / "base").glob("*/base.json"))) == 1

    one = run_experiment(compose_config(RUN, tmp_path / "one", cache))  # same global batch, one process
    assert one["base"]["cached"] is True and one["base"]["key"] == ddp["base"]["key"]
    assert one["batch"]["processes"] == 1
    assert (ddp["steps"], ddp["tokens_seen"]) == (one["steps"], one["tokens_seen"]) == (6, one["tokens_seen"])
    _close(ddp["before"], one["before"])
    _close(ddp["after"], one["after"])
    assert [h["step"] for h in ddp["history"]] == [h["step"] for h in one["history"]] == [0, 3, 6]
    for a, b in zip(ddp["history"], one["history"]):
        _close(a["scores"], b["scores"])
