"""The Optuna side of the sweeper: directions, sampler, the study's trial budget, interrupted trials, the
values a job returned, and the results file (optimization_results.yaml, read by forgetlab's sweep summary)."""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from forgetlab.config.checks import ConfigError

log = logging.getLogger(__name__)

WORKER_ATTR = "forgetlab_worker"  # host:pid of the sweeper process that asked the trial
RETRY_ATTR = "retry_of"  # on a trial re-enqueued for an interrupted one: that trial's number
DIRECTIONS = ("minimize", "maximize")
# A trial in one of these states uses one of the study's n_trials (WAITING ones are asked first).
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def directions(direction: Any) -> list[str]:
    """`hydra.sweeper.direction` (one, or one per objective) as Optuna's direction names."""
    items = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
    names = [str(getattr(d, "name", d)).lower() for d in items]
    if not names or any(n not in DIRECTIONS for n in names):
        shown = OmegaConf.to_container(direction) if isinstance(direction, ListConfig) else direction
        raise ConfigError(f"hydra.sweeper.direction={shown}: "
                          f"expected {' or '.join(DIRECTIONS)}, or a list of them (one per objective)")
    return names


def make_sampler(cfg: DictConfig | dict, already: int) -> optuna.samplers.BaseSampler:
    """The sampler `hydra.sweeper.sampler` names by `_target_`. A fixed seed is offset by the number of
    trials the study already has: one launch is repeatable, and a relaunch does not propose the same
    points."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg)
    seed = cfg.get("seed")
    if seed is not None and already:
        cfg.seed = int(seed) + already
        log.info("sampler seed %d + %d trials already in the study = %d", seed, already, cfg.seed)
    target = cfg.get("_target_")
    try:
        sampler = instantiate(cfg)
    except Exception as err:
        raise ConfigError(f"hydra.sweeper.sampler (_target_={target}): could not build it: {err}. Choose one "
                          "with hydra/sweeper/sampler=tpe|nsgaii|gp|random, or give a _target_ and its "
                          "arguments") from err
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ConfigError(f"hydra.sweeper.sampler._target_={target}: not an Optuna sampler")
    return sampler


def shown_storage(storage: str | None) -> str:
    """The storage for logs and results, without a URL's password."""
    return "in memory" if not storage else re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(storage))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_here(worker: Any) -> bool:
    """True if `worker` (host:pid) ran on this host and its process is gone; other hosts: unknown, False."""
    host, _, pid = str(worker).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


def retry_interrupted(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a sweeper of this host that has died (killed, preempted): each is marked FAIL
    and enqueued again with the same parameters, so its job reruns in the same folder (and resumes from its
    checkpoint). Returns their numbers."""
    interrupted = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if _dead_here(t.user_attrs.get(WORKER_ATTR, ""))]
    for trial in interrupted:
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
        log.warning("trial %d was left running by %s, which is gone: enqueued again", trial.number,
                    trial.user_attrs[WORKER_ATTR])
    return [t.number for t in interrupted]


def n_counted(trials: Sequence[FrozenTrial]) -> int:
    """Trials that use the study's budget: finished or running, less the interrupted ones enqueued again."""
    retried = {t.user_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.user_attrs}
    return sum(t.state in COUNTED and t.number not in retried for t in trials)


def job_values(ret: JobReturn, n_objectives: int) -> tuple[list[float] | None, str]:
    """(the objective values a job returned, '') or (None, why the trial failed)."""
    if ret.status != JobStatus.COMPLETED:
        err = ret._return_value  # the job's exception; .return_value would raise it
        return None, f"{type(err).__name__}: {err}"
    value = ret.return_value
    if isinstance(value, (list, tuple, ListConfig)):
        raw = list(value)
    else:
        raw = [value]
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        return None, f"returned {value!r}, not {n_objectives} number(s)"
    if len(values) != n_objectives:
        return None, f"returned {len(values)} value(s) for {n_objectives} direction(s): {values}"
    if not all(math.isfinite(v) for v in values):
        return None, f"returned non-finite values {values}"
    return values, ""


def results(study: optuna.Study, storage: str | None) -> dict:
    """What optimization_results.yaml holds: the best trial, or the Pareto solutions of several objectives
    (the keys hydra-optuna-sweeper wrote, plus each trial's number and the study's counts)."""
    out: dict[str, Any] = {"name": "optuna", "study_name": study.study_name,
                           "storage": shown_storage(storage),
                           "trials": {s.name.lower(): n for s in TrialState
                                      if (n := len(study.get_trials(deepcopy=False, states=(s,))))}}
    if len(study.directions) > 1:
        out["solutions"] = [{"number": t.number, "params": t.params, "values": t.values}
                            for t in study.best_trials]
        log.info("Pareto solutions: %d", len(out["solutions"]))
        for sol in out["solutions"]:
            log.info("    trial %d values %s params %s", sol["number"], sol["values"], sol["params"])
        return out
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        out.update(best_params=None, best_value=None)
        return out
    out.update(best_params=best.params, best_value=best.value, best_number=best.number)
    log.info("best trial %d: value %s params %s", best.number, best.value, best.params)
    return out


def save_results(path: Path, content: dict) -> None:
    OmegaConf.save(OmegaConf.create(content), path)
