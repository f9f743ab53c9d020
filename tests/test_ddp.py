"""Multi-process training (Lightning DDP on CPU, gloo) is the same experiment as one process.

A 2-process run of the CLI, from a cold base-stage cache, must train the base once (one device, before
the launch), write one metrics.json from rank 0 (the other rank writes only its log), count tokens over
both processes, record the global batch, and end with the metrics.json of a 1-process run with the same
global batch: every value equal, floats that depend on the trained weights (losses, weight movement)
within a relative 1e-5 (DDP sums gradients in another order), scores, predictions, token counts and steps
exactly. Both processes score (before, periodic, after, the budget-selected step, the post-hoc repair),
each its share of the batches: `timing.scored_examples_per_process` has a non-zero count per process, and
the predictions files are those of one process.
"""

from __future__ import annotations

import json
import math
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
       "eval.every_n_steps=3", "eval.test_max_examples=16", "diagnostics.spectral=false",
       "select.max_forgetting=100", "diagnostics.repair_lambdas=[1.0]"]
# differ by design between 1 and N processes: wall times, the batch's per-process share and padding (each
# process pads its share to its own longest example), whether the base came from the cache (the 2-process
# run trained it), and the run folder
PER_RUN_KEYS = {"timing", "batch", "pad_fraction", "base", "before_cached", "predictions"}


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


def _same(a, b, where: str = "") -> None:
    """Equal, floats within LOSS_REL (the trained weights differ in the last bits between 1 and N processes)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and not (math.isnan(a) and math.isnan(b)):
        assert a == pytest.approx(b, rel=LOSS_REL, abs=1e-9), where
    else:
        assert a == b, where


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
        capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.rglob("metrics.json")) == [ddp_dir / "metrics.json"]
    assert list(tmp_path.rglob("run_record.json")) == [ddp_dir / "run_record.json"]
    assert (ddp_dir / "train_ddp_process_1.log").exists()  # rank 1 ran, and wrote only its log
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    assert {k: ddp["batch"][k] for k in ("global", "per_process", "processes", "accumulate_grad_batches")} == {
        "global": 8, "per_process": 4, "processes": 2, "accumulate_grad_batches": 1}
    assert ddp["base"]["cached"] is False and len(list((cache / "base").glob("*/base.json"))) == 1

    # one process, same global batch; its own score cache, so it scores "before" itself
    one_cfg = compose_config([*RUN, f"paths.data_cache_dir={tmp_path / 'one_data'}"], tmp_path / "one", cache)
    one = run_experiment(one_cfg)
    assert one["base"]["cached"] is True and one["base"]["key"] == ddp["base"]["key"]
    assert ddp["before_cached"] is False and one["before_cached"] is False
    assert one["batch"]["processes"] == 1
    assert (ddp["steps"], ddp["tokens_seen"]) == (one["steps"], one["tokens_seen"]) == (6, one["tokens_seen"])
    _close(ddp["before"], one["before"])
    _close(ddp["after"], one["after"])
    assert [h["step"] for h in ddp["history"]] == [h["step"] for h in one["history"]] == [0, 3, 6]
    for a, b in zip(ddp["history"], one["history"]):
        _close(a["scores"], b["scores"])
    assert ddp["selected"] is not None
    _close(ddp["selected"]["test"], one["selected"]["test"])
    _same({k: v for k, v in ddp.items() if k not in PER_RUN_KEYS}, {k: v for k, v in one.items() if k not in PER_RUN_KEYS})
    assert ddp["predictions"]["kept"] == one["predictions"]["kept"]

    # both processes scored, and rank 0 computed every metric from the gathered examples
    shares = ddp["timing"]["scored_examples_per_process"]
    assert len(shares) == 2 and min(shares) > 0, shares
    assert one["timing"]["scored_examples_per_process"] == [sum(shares)]
    # starting the other process is its own phase, not part of the data preparation
    assert ddp["timing"]["process_start_s"] > 0 and "process_start_s" not in one["timing"]
    # the predictions files (before, after, selected, repair) hold the rows one process writes
    steps = sorted(p.relative_to(ddp_dir / "predictions") for p in (ddp_dir / "predictions").rglob("*.jsonl"))
    assert steps == sorted(p.relative_to(tmp_path / "one" / "predictions")
                           for p in (tmp_path / "one" / "predictions").rglob("*.jsonl"))
    assert {s.parts[0] for s in steps} == {"before", "after", "selected", "repair"}
    for rel in steps:
        rows = [json.loads(line) for line in (ddp_dir / "predictions" / rel).read_text().splitlines()]
        one_rows = [json.loads(line) for line in (tmp_path / "one" / "predictions" / rel).read_text().splitlines()]
        _same(rows, one_rows, str(rel))
    repair = json.loads((ddp_dir / "repair.json").read_text())
    _same(repair["results"], json.loads((tmp_path / "one" / "repair.json").read_text())["results"])
