"""forgetlab's Optuna sweeper (hydra_plugins.forgetlab_optuna_sweeper) on a fake task function, in process:
two objectives, failed trials told FAIL while the search goes on, a relaunch that runs only the missing
trials, the journal storage by default, a sqlite URL, an interrupted trial run again, journal locks that do
not work refused, and the search space syntax. The real `forgetlab -m hparams_search=...` runs are in
tests/test_sweeps.py."""

from __future__ import annotations

import errno
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra.test_utils.test_utils import SweepTaskFunction
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from forgetlab.config.checks import ConfigError
from forgetlab.utils.optuna_storage import prepare_storage

SEARCH = """
defaults:
  - override hydra/sweeper: forgetlab_optuna
  - _self_
x: 0.0
n: 1
k: a
hydra:
  job:
    chdir: false
  sweeper:
    direction: [maximize, minimize]
    n_trials: 5
    sampler:
      n_startup_trials: 2
    params:
      x: interval(0, 1)
      n: int(interval(1, 4))
      k: a,b
"""
SPACE = {"x": FloatDistribution(0, 1), "n": IntDistribution(1, 4), "k": CategoricalDistribution(["a", "b"])}


class FakeTask:
    """The task function: returns [x, (x - 0.5)^2 + n] (`single`: the second alone); the calls numbered in
    `fail` raise, those in `nan` return NaN. Records the config of every call."""

    def __init__(self, fail=(), nan=(), single=False):
        self.fail, self.nan, self.single, self.seen = set(fail), set(nan), single, []

    def __call__(self, cfg):
        self.seen.append({"x": cfg.x, "n": cfg.n, "k": cfg.k})
        if len(self.seen) in self.fail:
            raise RuntimeError(f"call {len(self.seen)} breaks")
        if len(self.seen) in self.nan:
            return [math.nan, 1.0]
        values = [cfg.x, (cfg.x - 0.5) ** 2 + cfg.n]
        return values[1] if self.single else values


def search(tmp_path: Path, task, overrides: list[str], sweep: str = "sweep") -> Path:
    """Run a multirun of the fake app in this process; the sweep folder."""
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "search.yaml").write_text(SEARCH)
    run = SweepTaskFunction()
    run.calling_file, run.calling_module = str(tmp_path / "search_app.py"), None
    run.task_function, run.config_path, run.config_name = task, "conf", "search"
    run.overrides, run.temp_dir = list(overrides), str(tmp_path / sweep)
    run.__enter__()  # runs the sweep (its __exit__ would delete the sweep folder the tests read)
    return tmp_path / sweep


def load(sweep: Path, name: str = "sweep"):
    return optuna.load_study(study_name=name, storage=prepare_storage(str(sweep / "optuna.journal"), sweep))


def test_two_objectives_failed_trials_and_the_pareto_front(tmp_path):
    task = FakeTask(fail={2}, nan={3})
    sweep = search(tmp_path, task, ["hydra.sweeper.n_trials=4"])
    study = load(sweep)  # the default storage: a journal file in the sweep folder
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL,
                                               TrialState.COMPLETE]  # the search went on
    for trial, seen in zip(study.trials, task.seen, strict=True):  # each job got its trial's parameters
        assert seen == trial.params
        assert isinstance(seen["n"], int) and 1 <= seen["n"] <= 4 and seen["k"] in ("a", "b")
        assert 0 <= seen["x"] <= 1
        if trial.state == TrialState.COMPLETE:
            assert trial.values == pytest.approx([seen["x"], (seen["x"] - 0.5) ** 2 + seen["n"]])
    results = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert results["trials"] == {"complete": 2, "fail": 2}
    assert [s["number"] for s in results["solutions"]] == [t.number for t in study.best_trials]
    assert {s["number"] for s in results["solutions"]} <= {0, 3}


def test_relaunch_runs_only_the_missing_trials_and_a_seed_repeats_one_launch(tmp_path):
    seeded = ["hydra.sweeper.sampler.seed=7", "hydra.sweeper.n_trials=2"]
    first, twin = FakeTask(), FakeTask()
    sweep = search(tmp_path, first, seeded, "a")
    search(tmp_path, twin, seeded, "b")
    assert first.seen == twin.seen  # a fixed seed: the same points in a fresh study
    again = FakeTask()
    search(tmp_path, again, ["hydra.sweeper.sampler.seed=7", "hydra.sweeper.n_trials=3"], "a")
    assert len(again.seen) == 1 and again.seen[0] not in first.seen  # a new point: the seed is offset
    assert [t.number for t in load(sweep, "a").trials] == [0, 1, 2]
    done = FakeTask()
    search(tmp_path, done, ["hydra.sweeper.n_trials=3"], "a")
    assert done.seen == [] and len(load(sweep, "a").trials) == 3  # nothing left to run


def test_fixed_override_wins_over_the_search_space_and_sqlite_urls_work(tmp_path):
    """A value given on the command line is fixed for every trial; an RDB URL (sqlite here, under
    SQLAlchemy 2) stores the study; one direction reports the best trial."""
    task = FakeTask(single=True)
    db = tmp_path / "db" / "study.db"
    search(tmp_path, task, [f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.direction=minimize",
                            "hydra.sweeper.study_name=one", "hydra.sweeper.n_trials=2", "n=2"])
    assert [s["n"] for s in task.seen] == [2, 2]
    study = optuna.load_study(study_name="one", storage=f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert set(study.trials[0].params) == {"x", "k"}
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_value == pytest.approx(study.best_value)
    assert results.best_number == study.best_trial.number
    assert not (tmp_path / "sweep" / "optuna.journal").exists()


def test_a_trial_left_running_by_a_dead_sweeper_runs_again_with_its_parameters(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    study = optuna.create_study(study_name="sweep", directions=["maximize", "minimize"],
                                storage=prepare_storage(str(sweep / "optuna.journal"), sweep))
    orphan = study.ask(SPACE)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan.set_user_attr("forgetlab_worker", f"{socket.gethostname()}:{gone.pid}")
    task = FakeTask()
    search(tmp_path, task, ["hydra.sweeper.n_trials=2"])
    trials = load(sweep).trials
    assert task.seen[0] == orphan.params and len(task.seen) == 2  # the orphan's retry, then one new trial
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == orphan.params


APP = """
import hydra, time

@hydra.main(version_base="1.3", config_path="conf", config_name="search")
def main(cfg):
    time.sleep(0.2)  # let the other worker ask meanwhile
    return [cfg.x, (cfg.x - 0.5) ** 2 + cfg.n]

main()
"""


def test_two_sweeper_processes_share_one_journal_study(tmp_path):
    """Two workers run the same command at once: one study, trial numbers handed out once, and n_trials
    counts both workers' trials (a worker that asks while the other does may add one more)."""
    search(tmp_path, FakeTask(), ["hydra.sweeper.n_trials=1"])  # writes conf/; the study has trial 0
    (tmp_path / "search_app.py").write_text(APP)
    cmd = [sys.executable, str(tmp_path / "search_app.py"), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweeper.n_trials=7", "hydra.job.chdir=false"]
    workers = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    trials = load(tmp_path / "sweep").trials
    assert [t.number for t in trials] == list(range(len(trials))) and 7 <= len(trials) <= 8
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers_seen = {t.user_attrs["forgetlab_worker"] for t in trials[1:]}
    assert len(workers_seen) == 2, logs  # both took part


def _symlink_refused(src, dst, *args, **kwargs):
    raise OSError(errno.EPERM, "Operation not permitted", dst)


def _symlink_ignored(src, dst, *args, **kwargs):
    return None  # a file system that acknowledges the link and keeps nothing


@pytest.mark.parametrize(("fake", "reason"), [(_symlink_refused, "cannot lock the Optuna journal"),
                                              (_symlink_ignored, "vanished right after it was created")])
def test_a_journal_whose_lock_fails_is_refused_with_the_reason(tmp_path, monkeypatch, fake, reason):
    monkeypatch.setattr(os, "symlink", fake)
    with pytest.raises(ConfigError, match=reason) as err:
        prepare_storage(str(tmp_path / "optuna.journal"), tmp_path)
    assert "hydra.sweeper.journal_lock=open" in str(err.value) and "sqlite:///" in str(err.value)
    task = FakeTask()
    with pytest.raises(ConfigError, match=reason):
        search(tmp_path, task, [])
    assert task.seen == []  # refused before any trial
    assert not list(tmp_path.glob("*.lock")) and not list((tmp_path / "sweep").glob("*.lock"))
    # the other lock (O_EXCL) does not need symlinks
    search(tmp_path, task, ["hydra.sweeper.journal_lock=open", "hydra.sweeper.n_trials=1"], "open_lock")
    assert len(task.seen) == 1


def test_a_lock_that_does_not_exclude_a_second_worker_is_refused(tmp_path, monkeypatch):
    from forgetlab.utils import optuna_storage

    monkeypatch.setattr(optuna_storage, "_second_lock_attempt", lambda path, kind: None)
    with pytest.raises(ConfigError, match="succeeded while the first was held"):
        prepare_storage(str(tmp_path / "optuna.journal"), tmp_path, "open")


def test_search_space_syntax():
    from hydra_plugins.forgetlab_optuna_sweeper._search_space import parse_search_space

    space, fixed = parse_search_space([
        "a=interval(0.1, 0.5)", "b=int(interval(2, 9))", "c=tag(log, interval(1e-5, 3e-3))",
        "d=choice(100, 200)",
        "e=x,y", "f=range(1,7,2)", "g=3", "experiment=tiny", "~h", "b=4"])
    assert space == {"a": FloatDistribution(0.1, 0.5), "c": FloatDistribution(1e-5, 3e-3, log=True),
                     "d": CategoricalDistribution([100, 200]), "e": CategoricalDistribution(["x", "y"]),
                     "f": IntDistribution(1, 5, step=2)}
    assert fixed == {"g": "g=3", "experiment": "experiment=tiny", "~h": "~h", "b": "b=4"}  # b=4 fixes b
    with pytest.raises(ConfigError, match=r"search space c=tag\(log, interval\(0, 1\)\): `low > 0`"):
        parse_search_space(["c=tag(log, interval(0, 1))"])  # log scale from 0


def test_bad_sweeper_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match="hydra.sweeper.direction"):
        search(tmp_path, FakeTask(), ["hydra.sweeper.direction=[up,minimize]"])
    with pytest.raises(ConfigError, match=r"sweeper.sampler \(_target_=optuna.samplers.NSGAIISampler\)"):
        search(tmp_path, FakeTask(), ["hydra.sweeper.sampler._target_=optuna.samplers.NSGAIISampler"])
