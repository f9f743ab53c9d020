"""One Weights & Biases run per forgetlab run (per Hydra job under `-m`), held by a `WandbSession` that the
console app opens around the run and closes in its `__exit__`, so a failing job never leaks its W&B run
into the next job's and nothing about W&B lives in module state.

    forgetlab logger=wandb                                    # group = run name
    forgetlab -m experiment=compare_strategies logger=wandb   # group = sweep folder, job_type = strategy

Offline automatically without an API key (`wandb sync <run dir>/wandb/offline-run-*` later). W&B is a
copy: if it cannot start or log, the run goes on with a warning and its local files are complete.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from forgetlab.config import resolved_container
from forgetlab.evaluation.predictions import GENERATION_COLUMNS, run_generation_rows

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["task", "role", "before_score", "after_score", "change", "before_loss", "after_loss"]


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


def is_wandb_spec(spec: Any) -> bool:
    return spec is not None and "wandb" in str(spec.get("_target_", "")).lower()


def wandb_spec(cfg: DictConfig) -> DictConfig | None:
    """The `logger.<name>` entry that configures W&B, if any."""
    return next((s for s in (cfg.get("logger") or {}).values() if is_wandb_spec(s)), None)


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
    return {
        "name": spec.get("name") or name,
        "group": spec.get("group") or group,
        "job_type": spec.get("job_type") or strategy,
        "tags": [str(t) for t in (spec.get("tags") or [])],
    }


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


def task_rows(metrics: dict) -> list[list]:
    before, after, target = metrics.get("before") or {}, metrics.get("after") or {}, metrics.get("target")
    rows = []
    for task in before:
        b, a = before[task], after.get(task, {})
        change = None if a.get("score") is None or b.get("score") is None else a["score"] - b["score"]
        rows.append([task, "target" if task == target else "old", b.get("score"), a.get("score"), change,
                     b.get("loss"), a.get("loss")])
    return rows


class WandbSession:
    """This run's W&B run, if the config asks for W&B: `with WandbSession(cfg) as wandb: ...`.

    `run` is the open W&B run (None when W&B is not wanted, disabled, or failed to start: then `failed`
    says which). Loggers built with this session log into `run` instead of starting their own.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.run: Any = None
        self.failed = False
        self.mode = wandb_mode()

    @property
    def wanted(self) -> bool:
        return wandb_spec(self.cfg) is not None and self.mode != "disabled" and not self.failed

    def __enter__(self) -> WandbSession:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.finish(exc)
        return False

    def start(self) -> Any:
        spec = wandb_spec(self.cfg)
        if spec is None or self.mode == "disabled":
            return None
        try:
            import wandb

            if wandb.run is not None:  # a run left open by someone else: never log into it
                log.warning("closing a W&B run left open (%s) before starting this run's own", wandb.run.name)
                wandb.finish()
            ident = run_identity(self.cfg)
            out = Path(str(spec.get("save_dir") or self.cfg.paths.output_dir))
            out.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=spec.get("project") or "forgetlab", entity=spec.get("entity"), dir=str(out),
                mode=self.mode, config=resolved_container(self.cfg), **ident,
                settings=wandb.Settings(silent=not self.cfg.get("verbose", False)),
            )
            log.info("W&B run %s (%s, group %s, job_type %s)", ident["name"], self.mode, ident["group"],
                     ident["job_type"])
        except Exception as err:  # noqa: BLE001 - W&B must never stop a run
            self.failed, self.run = True, None
            warnings.warn(f"W&B failed to start, continuing without it: {err}", stacklevel=2)
        return self.run

    def log_results(self, metrics: dict) -> bool:
        """Summary = metrics.json (flattened), a per-task before/after table and the test examples'
        generations before and after (from predictions/, evaluation/predictions.py); True if it worked."""
        if self.run is None:
            return False
        try:
            import wandb

            self.run.summary.update(flatten({k: v for k, v in metrics.items() if k != "history"}))
            if metrics.get("before"):
                self.run.log({"results/tasks": wandb.Table(columns=TABLE_COLUMNS, data=task_rows(metrics))})
            generations = run_generation_rows(self.cfg.paths.output_dir, metrics)
            if generations:
                self.run.log({"results/generations": wandb.Table(columns=GENERATION_COLUMNS, data=generations)})
            return True
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"could not log the results to W&B (metrics.json is complete): {err}", stacklevel=2)
            return False

    def finish(self, error: BaseException | None = None) -> None:
        """Close this run's W&B run (exit code 1 if the run failed); never raises."""
        run, self.run = self.run, None
        wandb = sys.modules.get("wandb")  # never imported: no W&B run can be open (and importing costs ~1.7 s)
        if wandb is None:
            return
        try:
            if run is not None and error is not None:
                try:
                    run.summary.update({"status": "failed", "error": f"{type(error).__name__}: {error}"})
                except Exception as err:  # noqa: BLE001
                    log.warning("could not mark the W&B run failed: %s", err)
            if run is not None or wandb.run is not None:
                wandb.finish(exit_code=1 if error is not None else 0)
        except Exception as err:  # noqa: BLE001 - closing W&B must never hide the run's own outcome
            log.warning("could not close the W&B run: %s", err)
