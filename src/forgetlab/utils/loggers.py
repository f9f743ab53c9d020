"""Build the configured Lightning loggers (conf/logger/). CSV always works; a W&B logger logs into the run's
own `WandbSession` and is left out, with a warning, when W&B is disabled or could not start."""

from __future__ import annotations

import warnings
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from forgetlab.utils.wandb_run import WandbSession, is_wandb_spec


def build_loggers(specs: DictConfig | None, wandb: WandbSession | None = None, save_dir: str | None = None,
                  prefix: str = "") -> list[Logger]:
    """One logger per `logger.<name>` entry. `save_dir` moves the local files (the base stage keeps its logs
    beside its cached weights); `prefix` names the stage in W&B (e.g. 'base')."""
    loggers: list[Logger] = []
    for name, spec in (specs or {}).items():
        if spec is None:
            continue
        if not is_wandb_spec(spec):
            extra: dict[str, Any] = {"save_dir": save_dir} if save_dir else {}
            loggers.append(instantiate(spec, **extra))
            continue
        if wandb is None or wandb.run is None:
            continue  # W&B not started for this run (disabled, or it failed and said so)
        try:
            loggers.append(instantiate(spec, experiment=wandb.run, prefix=prefix))
        except Exception as err:  # noqa: BLE001 - W&B must never stop training
            warnings.warn(f"logger {name!r} (W&B) failed to start, continuing without it: {err}", stacklevel=1)
    return loggers
