"""Interruptions change nothing: a run killed (SIGKILL) or preempted (SIGTERM) mid-training and relaunched
ends with the uninterrupted run's metrics.json (timing aside) and a training log that keeps every row;
corrupt or incomplete progress files are redone, never trusted."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgetlab.reproduce.compare import compare_metrics
from tests.conftest import TINY

LONGER = [*TINY, "strategy.optim.steps=40", "checkpoint_every_n_steps=5", "eval.every_n_steps=10"]


def launch(run_dir: Path, cache: Path, extra: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen(
        [sys.executable, "-m", "forgetlab.cli", *LONGER, *extra, f"paths.cache_dir={cache}",
         f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def differences(metrics: dict, ref: dict) -> list:
    """What differs between two metrics.json beyond what forgetlab-reproduce ignores: wall-clock timing and
    cache provenance (whether the base stage or the before-scores came from a cache: the killed attempt may
    have cached them for its relaunch)."""
    return compare_metrics(ref, metrics)[0]


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: (float(r["step"]), sorted(r)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    code, out = finish(launch(run_dir, cache_dir))
    assert code == 0, out[-3000:]
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def kill_mid_training(run_dir: Path, cache: Path, sig: int) -> tuple[int, str]:
    """Start the run, wait until it has a checkpoint, then send `sig` at a random moment of training."""
    proc = launch(run_dir, cache)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(random.Random(sig).uniform(0.0, 0.6))
    proc.send_signal(sig)
    return finish(proc)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_relaunched_ends_exactly_as_the_uninterrupted_run(sig, reference, tmp_path, cache_dir):
    ref_dir, ref = reference
    run_dir = tmp_path / "run"
    code, out = kill_mid_training(run_dir, cache_dir, sig)
    assert code != 0, "an interrupted run must not exit 0"
    if sig == signal.SIGTERM:
        assert code == 143, out[-2000:]
        record = json.loads((run_dir / "metrics.json").read_text())
        assert record["status"] == "interrupted", record
    if (run_dir / "metrics.json").exists():
        assert json.loads((run_dir / "metrics.json").read_text())["status"] != "completed"

    code, out = finish(launch(run_dir, cache_dir))
    assert code == 0, out[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not differences(metrics, ref)
    rows, expected = log_rows(run_dir), log_rows(ref_dir)
    # every row once, none lost: a row Lightning had not yet handed to the loggers when the kill came (it
    # does so after the step's checkpoint) comes back from the checkpoint (tests/test_training_logs.py)
    assert rows == expected


def test_truncated_checkpoint_is_set_aside_and_the_run_restarts_cleanly(reference, tmp_path, cache_dir):
    _, ref = reference
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 truncated zip")
    code, out = finish(launch(run_dir, cache_dir))
    assert code == 0, out[-3000:]
    assert "corrupt" in out.lower() and "last.ckpt" in out
    assert list((run_dir / "checkpoints").glob("last.ckpt.corrupt-*"))
    assert not differences(json.loads((run_dir / "metrics.json").read_text()), ref)
