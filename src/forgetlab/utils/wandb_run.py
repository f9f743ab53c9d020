"""One Weights & Biases run per forgetlab run (per Hydra job under `-m`), started before training and
closed in `run_and_record`'s `finally`, so a failing job never leaks its run into the next job's.

    forgetlab logger=wandb                                    # group = run name
    forgetlab -m experiment=compare_strategies logger=wandb   # group = sweep folder, job_type = strategy

Offline automatically without an API key (`wandb sync <run dir>/wandb/offline-run-*` later). W&B is a
copy: if it cannot start or log, the run goes on with a warning and its local files are complete.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forgetlab.utils.loggers import wandb_mode

log = logging.getLogger(__name__)

_state: dict[str, Any] = {"run": None, "failed": False}


def wandb_spec(cfg: DictConfig) -> DictConfig | None:
    """The `logger.<name>` entry that configures W&B, if any."""
    for spec in (cfg.get("logger") or {}).values():
        if spec is not None and "wandb" in str(spec.get("_target_", "")).lower():
            return spec
    return None


def _hydra() -> tuple[Any, bool]:
    """(HydraConfig node or None, whether this is a multirun job)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None, False
        hc = HydraConfig.get()
        return hc, hc.mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001
        return None, False


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """name / group / job_type / tags of this run: explicit `logger.wandb.*` values win; otherwise under
    `-m` the group is the sweep folder's name and the name the job's overrides, and for a single run both
    are `run_name`."""
    spec = wandb_spec(cfg) or {}
    hc, multirun = _hydra()
    run_name = str(cfg.get("run_name") or "forgetlab")
    name, group = run_name, run_name
    if multirun:
        group = Path(str(hc.sweep.dir)).name
        name = str(hc.job.override_dirname or "") or f"{run_name}-job{hc.job.num}"
    strategy = str(cfg.strategy.name) if "strategy" in cfg else None
    tags = [str(t) for t in (spec.get("tags") or [])]
    return {
        "name": spec.get("name") or name,
        "group": spec.get("group") or group,
        "job_type": spec.get("job_type") or strategy,
        "tags": tags,
    }


def resolved_config(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra app
        log.warning("W&B config logged unresolved (%s)", err)
        return OmegaConf.to_container(cfg, resolve=False)


def start(cfg: DictConfig):
    """Start this run's W&B run if the config asks for W&B; None if not wanted, disabled or failed."""
    _state.update(run=None, failed=False)
    spec = wandb_spec(cfg)
    if spec is None:
        return None
    mode = wandb_mode()
    if mode == "disabled":
        return None
    try:
        import wandb

        if wandb.run is not None:  # a run left open by someone else: never log into it
            log.warning("closing a W&B run left open (%s) before starting this run's own", wandb.run.name)
            wandb.finish()
        ident = run_identity(cfg)
        out = Path(str(spec.get("save_dir") or cfg.paths.output_dir))
        out.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=spec.get("project") or "forgetlab", entity=spec.get("entity"), dir=str(out), mode=mode,
            config=resolved_config(cfg), **ident,
        )
        _state["run"] = run
        log.info("W&B run %s (%s, group %s, job_type %s)", ident["name"], mode, ident["group"],
                 ident["job_type"])
        return run
    except Exception as err:  # noqa: BLE001 - W&B must never stop a run
        _state["failed"] = True
        warnings.warn(f"W&B failed to start, continuing without it: {err}", stacklevel=2)
        return None


def current():
    """The run `start` opened for this forgetlab run, or None."""
    return _state["run"]


def start_failed() -> bool:
    return bool(_state["failed"])


def flatten(metrics: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> 'a/b/c' keys; lists of scalars kept, other lists (history) left out."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, list):
            if all(isinstance(v, (int, float, str, bool)) or v is None for v in value):
                flat[name] = value
        elif isinstance(value, float) and not math.isfinite(value):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat


TABLE_COLUMNS = ["task", "role", "before_score", "after_score", "change", "before_loss", "after_loss"]


def task_rows(metrics: dict) -> list[list]:
    before, after, target = metrics.get("before") or {}, metrics.get("after") or {}, metrics.get("target")
    rows = []
    for task in before:
        b, a = before[task], after.get(task, {})
        rows.append([task, "target" if task == target else "old", b.get("score"), a.get("score"),
                     None if a.get("score") is None else a["score"] - b["score"], b.get("loss"), a.get("loss")])
    return rows


def log_results(metrics: dict) -> bool:
    """Summary = metrics.json (flattened) and a per-task before/after table; True if it worked."""
    run = current()
    if run is None:
        return False
    try:
        import wandb

        run.summary.update(flatten({k: v for k, v in metrics.items() if k != "history"}))
        if metrics.get("before"):
            run.log({"results/tasks": wandb.Table(columns=TABLE_COLUMNS, data=task_rows(metrics))})
        return True
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"could not log the results to W&B (metrics.json is complete): {err}", stacklevel=2)
        return False


def finish(error: BaseException | None = None) -> None:
    """Close this run's W&B run (exit code 1 if the run failed); never raises."""
    run, _state["run"] = _state["run"], None
    try:
        import wandb

        if run is not None and error is not None:
            try:
                run.summary.update({"status": "failed", "error": f"{type(error).__name__}: {error}"})
            except Exception as err:  # noqa: BLE001
                log.warning("could not mark the W&B run failed: %s", err)
        if run is not None or wandb.run is not None:
            wandb.finish(exit_code=1 if error is not None else 0)
    except Exception as err:  # noqa: BLE001 - closing W&B must never hide the run's own outcome
        log.warning("could not close the W&B run: %s", err)
