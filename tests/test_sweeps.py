"""Sweeps through the real CLI (Hydra multirun in a subprocess): one run dir and one offline W&B run per
job, a failing job recorded while the others finish and the exit status non-zero, a relaunch that skips
completed jobs, a 3-trial Optuna search that leaves its Pareto front, and a SLURM launcher config that
composes. Everything tiny: a 5-step base stage shared by the module, 3 fine-tuning steps per job.
forgetlab's Optuna sweeper itself (failed trials, resume, storages, locks, search space) is tested on a fake
task function in tests/test_optuna_sweeper.py."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

SMALL = ["experiment=tiny", "base.steps=5", "strategy.optim.steps=3", "eval.every_n_steps=0",
         "eval.test_max_examples=8", "checkpoint_every_n_steps=100"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("sweeps_env")
    wandb_dirs = {k: str(tmp / k.lower()) for k in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
                                                    "WANDB_DATA_DIR")}
    env = {**os.environ, **wandb_dirs, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "FORGETLAB_OUTPUTS": str(tmp / "outputs"), "HF_HUB_OFFLINE": "1"}
    env.pop("WANDB_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweeps_cache")


def forgetlab(args: list[str], env: dict, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forgetlab.cli", *args, f"paths.cache_dir={cache}"],
                          check=False, capture_output=True, text=True, env=env, timeout=900)


def wandb_records(path: Path):
    """The records of an offline `.wandb` file (leveldb-log framing of protobuf `Record`s)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, buf = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        buf += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def offline_run(run_dir: Path) -> dict:
    """group, job_type, name, config and summary of the one offline W&B run in `run_dir`."""
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    out: dict = {"summary": {}, "config": {}, "exit": None}
    for rec in wandb_records(files[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(group=rec.run.run_group, job_type=rec.run.job_type, name=rec.run.display_name,
                       id=rec.run.run_id)
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json) for i in rec.summary.update if i.key})
            for i in rec.summary.update:
                if not i.key and i.nested_key:
                    out["summary"][i.nested_key[0]] = True
        elif kind == "exit":
            out["exit"] = rec.exit.exit_code
    return out


def job_dir(sweep: Path, overrides: list[str]) -> Path:
    return sweep / ",".join(sorted(overrides))  # hydra.job.override_dirname


def test_multirun_one_failing_job_then_relaunch_skips_completed(env, module_cache):
    sweep = Path(env["FORGETLAB_OUTPUTS"]) / "sweeps" / "s2x2"
    args = ["-m", *SMALL, "logger=wandb", "strategy=full,replay", "seed=0,1", "sweep_name=s2x2"]
    jobs = {(s, seed): job_dir(sweep, [*SMALL, "logger=wandb", f"strategy={s}", f"seed={seed}"])
            for s in ("full", "replay") for seed in (0, 1)}
    # one job cannot write its checkpoints (a file stands where its checkpoints/ folder goes) and fails;
    # the other three must finish
    broken = jobs[("replay", 1)]
    broken.mkdir(parents=True)
    (broken / "checkpoints").write_bytes(b"in the way")

    proc = forgetlab(args, env, module_cache)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(p.name for p in jobs.values())
    status = {key: json.loads((d / "metrics.json").read_text())["status"] for key, d in jobs.items()}
    assert status == {("full", 0): "completed", ("full", 1): "completed", ("replay", 0): "completed",
                      ("replay", 1): "failed"}, log[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["counts"] == {"completed": 3, "failed": 1}
    assert summary["failed_this_launch"] == [broken.name]
    assert (sweep / "pareto_front.json").exists()

    # one separate offline W&B run per job, grouped by sweep, typed by strategy, config and summary set
    runs = {key: offline_run(d) for key, d in jobs.items()}
    assert len({r["id"] for r in runs.values()}) == 4
    for (strategy, seed), run in runs.items():
        assert run["group"] == "s2x2" and run["job_type"] == strategy
        assert run["name"] == jobs[(strategy, seed)].name
        assert run["config"]["seed"] == seed and run["config"]["strategy"]["name"] == strategy
        assert run["config"]["paths"]["output_dir"] == str(jobs[(strategy, seed)])
    for key in [("full", 0), ("full", 1), ("replay", 0)]:
        metrics = json.loads((jobs[key] / "metrics.json").read_text())
        summ = runs[key]["summary"]
        assert summ["status"] == "completed" and runs[key]["exit"] == 0
        assert summ["mean_forgetting"] == pytest.approx(metrics["mean_forgetting"])
        assert summ["target_gain"] == pytest.approx(metrics["target_gain"])
        assert summ["before/copy/score"] == pytest.approx(metrics["before"]["copy"]["score"])
        assert summ.get("results/tasks")  # the per-task before/after table
    assert runs[("replay", 1)]["summary"]["status"] == "failed" and runs[("replay", 1)]["exit"] == 1

    # relaunch after the fault is gone: the completed jobs are skipped, the failed one reruns
    (broken / "checkpoints").unlink()
    mtimes = {key: (d / "metrics.json").stat().st_mtime_ns for key, d in jobs.items()}
    proc = forgetlab(args, env, module_cache)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("skipping") == 3, log[-3000:]
    for key, d in jobs.items():
        unchanged = (d / "metrics.json").stat().st_mtime_ns == mtimes[key]
        assert unchanged == (key != ("replay", 1)), key
    assert json.loads((broken / "metrics.json").read_text())["status"] == "completed"
    assert json.loads((sweep / "sweep_summary.json").read_text())["counts"] == {"completed": 4}


def journal_study(sweep: Path, name: str):
    import optuna

    from forgetlab.utils.optuna_storage import prepare_storage

    return optuna.load_study(study_name=name, storage=prepare_storage(str(sweep / "optuna.journal"), sweep))


def test_optuna_search_writes_its_pareto_front_and_continues_on_relaunch(env, module_cache):
    sweep = Path(env["FORGETLAB_OUTPUTS"]) / "sweeps" / "forgetting_pareto_full"
    proc = forgetlab(["-m", "hparams_search=forgetting_pareto", *SMALL, "hydra.sweeper.n_trials=3"],
                     env, module_cache)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    trials = [d for d in sweep.iterdir() if (d / "metrics.json").exists()]
    assert len(trials) == 3 and all("strategy.optim.lr=" in d.name for d in trials)
    front = json.loads((sweep / "pareto_front.json").read_text())
    assert [o["direction"] for o in front["objectives"]] == ["maximize", "minimize"]
    assert front["n_completed"] == 3 and 1 <= len(front["front"]) <= 3
    assert front["optuna"]["solutions"]  # the sweeper's own optimization_results.yaml, carried over
    study = journal_study(sweep, "forgetting_pareto_full")  # the default storage: a journal in the sweep dir
    assert len(study.trials) == 3
    solutions = front["optuna"]["solutions"]
    assert sorted(t.number for t in study.best_trials) == sorted(s["number"] for s in solutions)
    # each trial ran the job its parameters name, and the job's metrics are the values told to Optuna
    for trial in study.trials:
        run = next(d for d in trials if all(f"{k}={v}" in d.name.split(",") for k, v in trial.params.items()))
        metrics = json.loads((run / "metrics.json").read_text())
        assert trial.values == pytest.approx([metrics["target_gain"], metrics["mean_forgetting"]])
    # relaunching with a larger n_trials continues the stored study: only the missing trial runs
    proc = forgetlab(["-m", "hparams_search=forgetting_pareto", *SMALL, "hydra.sweeper.n_trials=4"],
                     env, module_cache)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert len(journal_study(sweep, "forgetting_pareto_full").trials) == 4
    assert json.loads((sweep / "pareto_front.json").read_text())["n_completed"] == 4


def test_slurm_launcher_config_composes():
    with initialize_config_module(config_module="forgetlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=slurm_example", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert launcher.timeout_min > 0 and launcher.array_parallelism > 0
    assert cfg.trainer.accelerator == "gpu" and cfg.hydra.sweeper.params.strategy.startswith("full")
    assert cfg.hydra.sweep.dir.endswith("sweeps/compare_strategies")


def test_pareto_front_keeps_only_non_dominated_points():
    from forgetlab.pareto import pareto_front

    pts = [{"values": {"g": g, "f": f}} for g, f in [(1.0, 0.5), (0.5, 0.1), (0.4, 0.2), (1.0, 0.6)]]
    front = pareto_front(pts, ["g", "f"], ["maximize", "minimize"])
    assert [(p["values"]["g"], p["values"]["f"]) for p in front] == [(1.0, 0.5), (0.5, 0.1)]


def test_wandb_failures_never_stop_a_run(monkeypatch, tmp_path):
    """W&B that cannot start: no W&B logger, a warning; W&B that cannot log the results: a warning."""
    import wandb

    from forgetlab.utils.loggers import build_loggers
    from forgetlab.utils.wandb_run import WandbSession
    from tests.conftest import TINY, compose_config

    cfg = compose_config([*TINY, "logger=wandb"], tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")

    def broken_init(**kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.warns(UserWarning, match="W&B failed to start"):
        session = WandbSession(cfg).__enter__()
    assert session.run is None and session.failed
    assert [type(lg).__name__ for lg in build_loggers(cfg.logger, session)] == ["ResumableCSVLogger"]

    class BrokenRun:
        class summary:
            @staticmethod
            def update(_):
                raise OSError("disk full")

    session.run = BrokenRun()
    with pytest.warns(UserWarning, match="could not log the results"):
        assert session.log_results({"status": "completed", "mean_forgetting": 0.1}) is False
    monkeypatch.setattr(wandb, "finish", lambda **kw: (_ for _ in ()).throw(RuntimeError("gone")))
    session.__exit__(None, None, None)  # never raises
    assert session.run is None


def test_optuna_search_goes_on_past_failed_trials(env, module_cache):
    """Every trial fails (a model that cannot be built): each is told FAIL, the search runs all its trials,
    the launch exits 1."""
    import optuna

    sweep = Path(env["FORGETLAB_OUTPUTS"]) / "sweeps" / "optuna_failing"
    proc = forgetlab(["-m", "hparams_search=forgetting_pareto", *SMALL, "hydra.sweeper.n_trials=3",
                      "sweep_name=optuna_failing", "model.build.dropout_rate=2.0"], env, module_cache)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    states = [t.state for t in journal_study(sweep, "optuna_failing").trials]
    assert states == [optuna.trial.TrialState.FAIL] * 3
    assert log.count("told FAIL, the search goes on") == 3, log[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["counts"] == {"failed": 3} and len(summary["failed_this_launch"]) == 3


def test_relaunch_reruns_jobs_whose_metrics_are_truncated_or_incomplete(env, module_cache):
    sweep = Path(env["FORGETLAB_OUTPUTS"]) / "sweeps" / "redo"
    args = ["-m", *SMALL, "seed=0,1,2", "sweep_name=redo"]
    proc = forgetlab(args, env, module_cache)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = {seed: job_dir(sweep, [*SMALL, f"seed={seed}"]) for seed in (0, 1, 2)}
    text = (jobs[0] / "metrics.json").read_text()
    (jobs[0] / "metrics.json").write_text(text[: len(text) // 2])  # truncated
    partial = json.loads((jobs[1] / "metrics.json").read_text())
    del partial["mean_forgetting"]  # says completed, lacks a required key
    (jobs[1] / "metrics.json").write_text(json.dumps(partial))

    proc = forgetlab(args, env, module_cache)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("skipping") == 1 and "rerunning" in log and "corrupted metrics.json" in log
    assert "missing mean_forgetting" in log, log[-3000:]
    for d in jobs.values():
        assert json.loads((d / "metrics.json").read_text())["status"] == "completed"


def test_closing_without_wandb_never_imports_it(monkeypatch, tmp_path):
    """A run that never used W&B ends without importing it (~1.7 s): no W&B run can be open then."""
    from forgetlab.utils.wandb_run import WandbSession
    from tests.conftest import TINY, compose_config

    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    with WandbSession(compose_config(TINY, tmp_path)) as session:
        assert session.run is None
    assert "wandb" not in sys.modules
