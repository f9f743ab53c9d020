"""forgetlab's configuration: the typed schema (schema.py, registered in Hydra's ConfigStore by
`register_configs`), the checks run before any model loads (checks.py), and the resolved config as a
plain dict for records and W&B."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forgetlab.config.checks import ConfigError, validate
from forgetlab.config.schema import TrainConfig

log = logging.getLogger(__name__)
SCHEMA_NAME = "train_schema"

__all__ = ["ConfigError", "TrainConfig", "register_configs", "resolved_container", "validate"]


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore as `train_schema`, the first entry of conf/train.yaml's
    defaults list, and register the `${asset:NAME}` resolver. Called when the `forgetlab.conf` package is
    imported, i.e. whenever Hydra composes."""
    from hydra.core.config_store import ConfigStore

    from forgetlab.assets import RESOLVER, asset_path
    from forgetlab.config.schema import composition_schema

    ConfigStore.instance().store(name=SCHEMA_NAME, node=composition_schema())  # tasks.custom left open
    # ${asset:stories260K}: a file shipped in the package (forgetlab/assets), by name instead of a machine path
    OmegaConf.register_new_resolver(RESOLVER, asset_path, replace=True)


def resolved_container(cfg: DictConfig) -> dict[str, Any]:
    """The config with every interpolation resolved (for run records and W&B); unresolved, with a warning,
    where that is impossible (e.g. ${hydra:...} outside a Hydra app)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001 - recording must never break a run
        log.warning("could not resolve the whole config (%s); recording it unresolved", err)
        return OmegaConf.to_container(cfg, resolve=False)
