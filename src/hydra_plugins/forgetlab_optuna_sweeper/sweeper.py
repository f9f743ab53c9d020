"""forgetlab's Optuna sweeper: an ask/tell loop that launches each batch of trials through Hydra's
launcher (basic, joblib, submitit) and tells Optuna what every job returned.

- The study lives in `storage` (default: a JournalStorage file in the sweep folder) under `study_name`
  (default: the sweep folder's name); a relaunch of the same command loads it and runs only what is left of
  `n_trials`, which counts the whole study's trials (every launch, every worker).
- A job that raised, or returned other than one finite number per direction, is told as FAIL; the search
  goes on (up to `max_failure_rate`).
- A trial left running by a sweeper of this host that died is failed and enqueued again (same parameters,
  same job folder).
- At the end: `optimization_results.yaml` in the sweep folder (forgetlab's summary carries it into
  pareto_front.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


class ForgetlabOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: Any, study_name: str | None, storage: str | None,
                 journal_lock: str, n_trials: int, n_jobs: int, max_failure_rate: float,
                 params: DictConfig | None) -> None:
        self.sampler_config = sampler
        self.direction = direction
        self.study_name = study_name
        self.storage = None if storage in (None, "") else str(storage)
        self.journal_lock = journal_lock
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.max_failure_rate = float(max_failure_rate)
        self.params = params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None
        from forgetlab.config.checks import ConfigError

        if self.n_trials < 1 or self.n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: both must be >= 1")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: expected 0 to 1")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> list:
        import optuna
        from optuna.trial import TrialState

        from forgetlab.config.checks import ConfigError
        from forgetlab.utils.optuna_storage import prepare_storage

        from . import _study
        from ._search_space import as_override_value, parse_search_space

        assert self.config is not None and self.launcher is not None
        directions = _study.directions(self.direction)
        lines = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        distributions, fixed = parse_search_space(lines)
        if not distributions:
            raise ConfigError("hydra.sweeper.params: no search space (e.g. strategy.optim.lr: "
                              "tag(log, interval(1e-5, 3e-3))); nothing for Optuna to choose")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = (None if self.storage is None
                   else prepare_storage(self.storage, sweep_dir, self.journal_lock))
        study = optuna.create_study(study_name=self.study_name or sweep_dir.name, storage=storage,
                                    directions=directions, load_if_exists=True)
        stored = [d.name.lower() for d in study.directions]
        if stored != directions:
            raise ConfigError(f"hydra.sweeper.direction={directions}: study {study.study_name!r} in "
                              f"{_study.shown_storage(self.storage)} was created with {stored}; use another "
                              "study_name (or sweep_name) for other objectives")
        study.sampler = _study.make_sampler(self.sampler_config, len(study.trials))
        log.info("Optuna %s study %r in %s: %s, sampler %s, %d trials already, n_trials %d",
                 optuna.__version__, study.study_name, _study.shown_storage(self.storage), directions,
                 type(study.sampler).__name__, len(study.trials), self.n_trials)

        worker, returns, told, failed = _study.worker_id(), [], 0, 0
        while True:
            _study.retry_interrupted(study)
            left = self.n_trials - _study.n_counted(study.get_trials(deepcopy=False))
            if left <= 0:
                break
            trials, batch = [], []
            for _ in range(min(self.n_jobs, left)):
                trial = study.ask(fixed_distributions=distributions)
                overrides = [*fixed.values(),
                             *(f"{k}={as_override_value(trial.params[k])}" for k in distributions)]
                trial.set_user_attr(_study.WORKER_ATTR, worker)
                trial.set_user_attr("overrides", overrides)
                trials.append(trial)
                batch.append(overrides)
            try:
                self.validate_batch_is_legal(batch)
            except Exception:
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL)
                raise
            # job numbers follow the trial numbers (exact with one worker and n_jobs=1), across relaunches too
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            returns.append(results)
            for trial, ret in zip(trials, results):
                values, why = _study.job_values(ret, len(directions))
                told += 1
                if values is None:
                    failed += 1
                    study.tell(trial, state=TrialState.FAIL)
                    log.warning("trial %d failed (told FAIL, the search goes on): %s", trial.number, why)
                else:
                    study.tell(trial, values)
            if failed / told > self.max_failure_rate:
                log.error("%d of this launch's %d trials failed, more than "
                          "hydra.sweeper.max_failure_rate=%s: stopping the search",
                          failed, told, self.max_failure_rate)
                break
        if not told:
            log.info("study %r already has its %d trials: nothing to run (raise hydra.sweeper.n_trials for "
                     "more)", study.study_name, self.n_trials)
        _study.save_results(sweep_dir / RESULTS_FILE, _study.results(study, self.storage))
        return returns
