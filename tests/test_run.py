"""A tiny experiment end to end: metrics.json is complete and consistent; the base stage is cached,
shared and trained once under concurrency; failures are recorded, not lost."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgetlab.cli import run_and_record
from forgetlab.training.callbacks import PeriodicEvaluation
from tests.conftest import TINY, compose_config

REQUIRED = [
    "status", "before", "after", "forgetting", "loss_increase", "mean_forgetting", "mean_loss_increase",
    "target_gain", "trainable_params", "total_params", "trainable_fraction", "tokens_seen", "timing", "history",
]


def test_metrics_json_is_complete_and_forgetting_is_before_minus_after(tiny_run):
    run_dir, _ = tiny_run
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["status"] == "completed"
    for key in REQUIRED:
        assert key in on_disk, key
    target = on_disk["target"]
    assert set(on_disk["before"]) == {"copy", "uppercase", "sentiment", target}
    for task, value in on_disk["forgetting"].items():
        assert value == pytest.approx(on_disk["before"][task]["score"] - on_disk["after"][task]["score"])
        assert on_disk["loss_increase"][task] == pytest.approx(
            on_disk["after"][task]["loss"] - on_disk["before"][task]["loss"])
    assert target not in on_disk["forgetting"]
    assert on_disk["mean_forgetting"] == pytest.approx(sum(on_disk["forgetting"].values()) / 3)
    assert on_disk["target_gain"] == pytest.approx(on_disk["after"][target]["score"] - on_disk["before"][target]["score"])
    assert on_disk["trainable_params"] == on_disk["total_params"] > 900_000
    assert on_disk["tokens_seen"] > 20 * 16 * 5  # 20 steps of 16 examples, several tokens each
    assert on_disk["timing"]["tokens_per_s"] > 0
    assert on_disk["mixture"]["sampled"] == {target: 1.0}
    steps = [h["step"] for h in on_disk["history"]]
    assert steps == [0, 10, 20]
    # per-token losses are real model outputs: positive and finite
    assert all(0 < s["loss"] < 20 for s in on_disk["before"].values())
    assert (run_dir / "logs" / "metrics.csv").exists()


def test_base_stage_is_cached_and_reused(tiny_run, tmp_path, cache_dir):
    _, first = tiny_run
    from forgetlab.run import run_experiment

    again = run_experiment(compose_config(TINY + ["seed=1"], tmp_path, cache_dir))
    assert again["base"]["cached"] is True
    assert again["base"]["key"] == first["base"]["key"]
    assert again["before"] == first["before"], "same base weights give the same starting scores"


QUICK = [*TINY, "strategy.optim.steps=2", "eval.every_n_steps=0"]


def test_a_finished_cache_entry_is_read_without_the_lock(tiny_run, tmp_path, cache_dir, monkeypatch):
    """A read-only shared cache that holds the base works: loading takes no lock (which needs writing)."""
    from forgetlab.run import run_experiment
    from forgetlab.training import base_stage

    def no_lock(*args, **kwargs):
        raise PermissionError("read-only cache: no lock file can be made")

    monkeypatch.setattr(base_stage, "FileLock", no_lock)
    metrics = run_experiment(compose_config(QUICK, tmp_path, cache_dir))
    assert metrics["base"]["cached"] is True


def test_a_damaged_cache_entry_is_set_aside_and_trained_again(tiny_run, tmp_path, cache_dir):
    import shutil

    from forgetlab.run import run_experiment

    _, first = tiny_run
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    entry = cache / "base" / Path(first["base"]["path"]).name
    weights = entry / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + bytes(64))  # same size, other bytes
    metrics = run_experiment(compose_config(QUICK, tmp_path / "run", cache))
    assert metrics["base"]["cached"] is False
    assert metrics["base"]["weights_sha256"] == first["base"]["weights_sha256"], "retrained to the same weights"
    assert list((cache / "base").glob(f"{entry.name}.damaged-*"))


def test_an_unwritable_cache_without_the_base_is_reported_with_its_setting(tmp_path, monkeypatch):
    from forgetlab.config import ConfigError
    from forgetlab.run import run_experiment
    from forgetlab.training import base_stage

    monkeypatch.setattr(base_stage.os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"paths.cache_dir=.*not writable"):
        run_experiment(compose_config(QUICK, tmp_path / "run", tmp_path / "cache"))


def _train_base_in_process(cache: str, out: str, queue) -> None:
    from forgetlab.run import run_experiment

    cfg = compose_config(TINY + ["base.steps=5", "strategy.optim.steps=2", "eval.every_n_steps=0"], out, cache)
    queue.put(run_experiment(cfg)["base"])


def test_two_jobs_starting_at_once_train_the_base_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_base_in_process, args=(str(tmp_path / "cache"), str(tmp_path / f"r{i}"), queue))
             for i in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(r["cached"] for r in results) == [False, True]
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    assert len(list((tmp_path / "cache" / "base").glob("tiny_t5-*/base.json"))) == 1


def test_nan_loss_fails_clearly_and_is_recorded(tmp_path, cache_dir):
    cfg = compose_config(TINY + ["strategy.optim.lr=1e30", "eval.every_n_steps=0"], tmp_path, cache_dir)
    with pytest.raises(FloatingPointError, match="training loss is (nan|inf)"):
        run_and_record(cfg)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and "FloatingPointError" in record["error"]


def test_cli_runs_and_writes_into_hydra_run_dir(tmp_path, cache_dir):
    env = {**os.environ, "FORGETLAB_OUTPUTS": str(tmp_path)}
    run_dir = tmp_path / "cli_run"
    proc = subprocess.run(
        [sys.executable, "-m", "forgetlab.cli", *TINY, "strategy.optim.steps=5", "eval.every_n_steps=0",
         f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 5
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert "strategy.optim.steps=5" in (run_dir / ".hydra" / "overrides.yaml").read_text()


class KilledAtStep15(PeriodicEvaluation):
    """Periodic evaluation that 'kills' the run at step 15 (chosen by config, like any callback)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.global_step == 15:
            raise RuntimeError("killed")


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, cache_dir):
    killer = "callbacks.periodic_evaluation._target_=tests.test_run.KilledAtStep15"
    cfg = compose_config([*TINY, killer], tmp_path, cache_dir)  # 20 steps, checkpoint and evaluation every 10
    with pytest.raises(RuntimeError, match="killed"):
        run_and_record(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()

    metrics = run_and_record(compose_config(TINY, tmp_path, cache_dir))
    assert metrics["status"] == "completed" and metrics["steps"] == 20
    # steps 0 and 10 come from the checkpoint's callback state: the rerun started at step 10
    assert [h["step"] for h in metrics["history"]] == [0, 10, 20]


def test_a_run_killed_after_its_last_checkpoint_keeps_every_count_on_relaunch(tiny_run, tmp_path, cache_dir):
    """Killed after its last evaluation and checkpoint (step 20), the relaunch trains and evaluates nothing:
    what the killed process recorded (the validation truncation counts among it) comes from the checkpoint."""
    ref_dir, ref = tiny_run
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes((ref_dir / "checkpoints" / "last.ckpt").read_bytes())
    metrics = run_and_record(compose_config([*TINY, "trainer.log_every_n_steps=1"], tmp_path, cache_dir))
    assert metrics["steps"] == 20 and metrics["history"] == ref["history"]
    assert set(ref["truncated"]["tasks"]["reverse"]) == {"train", "validation", "test"}
    assert metrics["truncated"] == ref["truncated"]
    assert metrics["tokens_seen"] == ref["tokens_seen"]
