"""Build the configured Lightning loggers. CSV always works; W&B goes offline without an API key and,
if it cannot start at all, the run continues with a warning and its local files complete."""

from __future__ import annotations

import logging
import os
import warnings

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """'offline' unless the user asked for something else and a key exists; 'disabled' is respected."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return "disabled" if mode == "disabled" else "offline"
    return "online" if wandb_has_credentials() else "offline"


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    loggers: list[Logger] = []
    for name, spec in (cfg or {}).items():
        if spec is None:
            continue
        is_wandb = "wandb" in str(spec.get("_target_", "")).lower()
        try:
            if is_wandb:
                from forgetlab.utils import wandb_run

                mode = wandb_mode()
                if mode == "disabled" or wandb_run.start_failed():
                    continue
                if wandb_run.current() is not None:  # the run's own W&B run (utils/wandb_run.py)
                    loggers.append(instantiate(spec, experiment=wandb_run.current()))
                    continue
                loggers.append(instantiate(spec, offline=(mode == "offline")))
            else:
                loggers.append(instantiate(spec))
        except Exception as err:  # W&B must never stop training
            if not is_wandb:
                raise
            warnings.warn(f"logger {name!r} (W&B) failed to start, continuing without it: {err}", stacklevel=1)
    return loggers
