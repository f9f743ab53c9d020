"""The sweeper's config, registered in Hydra's ConfigStore: `hydra/sweeper=forgetlab_optuna`, and the
samplers as `hydra/sweeper/sampler=tpe|nsgaii|gp|random` (any other: set `hydra.sweeper.sampler._target_`)."""


from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    """Multi-objective aware TPE (Optuna's default sampler)."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10  # random trials before TPE models the results


@dataclass
class NSGAIISamplerConf:
    """Genetic multi-objective search; suits many trials (a population per generation)."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50


@dataclass
class GPSamplerConf:
    """Gaussian-process Bayesian optimisation (logEHVI for several objectives); suits few, costly trials."""

    _target_: str = "optuna.samplers.GPSampler"
    seed: int | None = None
    n_startup_trials: int = 10


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class ForgetlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.forgetlab_optuna_sweeper.sweeper.ForgetlabOptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler itself (its seed depends on the study)
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    # minimize | maximize, or one per objective: [maximize, minimize] (the task function returns a list)
    direction: Any = "minimize"
    # null: the sweep folder's name. The same name and storage on a relaunch continue the study.
    study_name: str | None = None
    # a file path: Optuna's JournalStorage (shared by workers on one file system); an RDB URL
    # (sqlite:///..., postgresql://...): RDBStorage; null: in memory
    storage: str | None = "${hydra.sweep.dir}/optuna.journal"
    journal_lock: str = "symlink"  # how journal writers exclude each other: symlink | open (O_EXCL; NFSv3+)
    n_trials: int = 20  # trials of the whole study (all launches and workers); a relaunch runs the rest
    n_jobs: int = 1  # trials per batch, launched together (in parallel with a parallel launcher)
    max_failure_rate: float = 1.0  # stop once more than this share of this launch's trials failed
    params: dict[str, str] | None = None  # the search space: key -> interval(...), choice(...), a,b,c


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="forgetlab_optuna", node=ForgetlabOptunaSweeperConf,
                provider="forgetlab")
    store.store(group="hydra/sweeper/sampler", name="tpe", node=TPESamplerConf, provider="forgetlab")
    store.store(group="hydra/sweeper/sampler", name="nsgaii", node=NSGAIISamplerConf, provider="forgetlab")
    store.store(group="hydra/sweeper/sampler", name="gp", node=GPSamplerConf, provider="forgetlab")
    store.store(group="hydra/sweeper/sampler", name="random", node=RandomSamplerConf, provider="forgetlab")


register_configs()  # Hydra's plugin scan imports this module
