"""Sweeps on existing engines, for real: hydra-submitit-launcher with submitit's local executor (three jobs,
one preempted through submitit's own signal and requeued, a relaunch that skips the completed jobs), and
an Optuna study in the storage the sweeper config names, shared by two concurrent workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgetlab.run_dirs import job_dirs, run_state
from tests.conftest import compose_config

SRC = str(Path(__file__).parents[1] / "src")
JOB = ["experiment=tiny", "threads=1", "base.steps=5", "strategy.optim.steps=16", "checkpoint_every_n_steps=4",
       "eval.every_n_steps=0", "eval.test_max_examples=8", "diagnostics.spectral=false"]


def _env(tmp: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "FORGETLAB_OUTPUTS": str(tmp / "out"),
            "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}


def _holder(path: Path) -> int | None:
    """The process that has `path` open (Hydra's job log stays open while the job runs), Linux /proc."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the job's process through /proc")
def test_submitit_local_sweep_requeues_a_preempted_job_and_a_relaunch_skips_completed(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "forgetlab.cli", "-m", *JOB, "seed=0,1,2", "hydra/launcher=submitit_local",
           "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}"]
    launch = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Preempt the first job that has a checkpoint, with the signal submitit handles (USR2: checkpoint the
    # callable, requeue); the local executor starts it again and the job resumes from its last.ckpt.
    deadline, preempted = time.time() + 240, None
    while preempted is None and time.time() < deadline and launch.poll() is None:
        for ckpt in sweep.glob("*/checkpoints/last.ckpt"):
            pid = _holder(ckpt.parents[1] / "cli.log")
            if pid is not None and run_state(ckpt.parents[1]).status == "missing":
                os.kill(pid, signal.SIGUSR2)
                preempted = ckpt.parents[1]
                break
        time.sleep(0.1)
    out, _ = launch.communicate(timeout=300)
    assert preempted is not None, out[-3000:]
    assert launch.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "Requeued job" in logs
    jobs = job_dirs(sweep)
    assert len(jobs) == 3 and all(run_state(j).completed for j in jobs)
    resumed = json.loads((preempted / "metrics.json").read_text())
    assert resumed["steps"] == 16
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["counts"] == {"completed": 3}

    written = {j: (j / "metrics.json").stat().st_mtime_ns for j in jobs}
    again = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr + "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
            ).count("already completed") >= 3
    assert {j: (j / "metrics.json").stat().st_mtime_ns for j in jobs} == written


WORKER = """
import sys, optuna
from forgetlab.utils.optuna_storage import prepare_storage
storage, study_name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
storage = prepare_storage(storage, sys.argv[4])  # what the Optuna sweeper does when a search starts
study = optuna.create_study(storage=storage, study_name=study_name, directions=["maximize", "minimize"],
                            load_if_exists=True)
study.optimize(lambda t: (t.suggest_float("lr", 1e-5, 3e-3, log=True), t.number % 7), n_trials=n)
"""


def test_two_optuna_workers_share_the_configured_study(tmp_path):
    import optuna

    from forgetlab.utils.optuna_storage import prepare_storage

    cfg = compose_config(["hparams_search=forgetting_pareto", f"paths.root={tmp_path}"], return_hydra_config=True)
    storage, study_name = str(cfg.hydra.sweeper.storage), str(cfg.hydra.sweeper.study_name)
    assert storage.endswith("optuna.journal") and str(tmp_path) in storage  # a journal file by default
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, storage, study_name, "8", str(cfg.hydra.sweep.dir)],
                                env=_env(tmp_path),
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err[-2000:]
    trials = optuna.load_study(study_name=study_name, storage=prepare_storage(storage, tmp_path)).trials
    assert sorted(t.number for t in trials) == list(range(16))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
