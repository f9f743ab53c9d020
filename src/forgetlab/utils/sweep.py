"""Sweeps (Hydra multirun) that survive failures and relaunches.

- `objectives`: what the task function returns (a sweeper reads it): `optimized_metrics` from the config.
  A failed job returns NaN under the basic sweeper (so the other jobs go on) and re-raises under forgetlab's
  Optuna sweeper (hydra_plugins.forgetlab_optuna_sweeper), which tells the trial FAIL with the job's error
  and goes on.
- Resume: a job whose run dir is completed (forgetlab.run_dirs) is skipped on relaunch (Hydra has no
  resume of its own, hydra#3328).
- `SweepSummary`: a Hydra callback; at the end of a multirun it lists every job of the sweep dir with its
  status (`sweep_summary.json`), writes the Pareto front (`pareto_front.json`) and, if the summary names
  a job of this launch as failed, ends the process with exit status 1.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from forgetlab.pareto import MAXIMIZE, MINIMIZE, pareto_front
from forgetlab.run_dirs import (
    METRICS_FILE,
    PARETO_FILE,
    SUMMARY_FILE,
    job_dirs,
    read_overrides,
    run_state,
    shown,
)
from forgetlab.utils.io import write_json

log = logging.getLogger(__name__)

OPTUNA_RESULTS = "optimization_results.yaml"  # written by the Optuna sweeper at the end of a search
# Objectives of the Pareto front when the config names none: learn the target, forget little.
DEFAULT_OBJECTIVES = (("target_gain", MAXIMIZE), ("mean_forgetting", MINIMIZE))


def _hydra_config() -> Any:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001
        return None


def is_multirun() -> bool:
    from hydra.types import RunMode

    hc = _hydra_config()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def sweeper_marks_failures() -> bool:
    """True under an Optuna sweeper, which records a job that raised as a failed trial and goes on."""
    hc = _hydra_config()
    return hc is not None and "optuna" in str(OmegaConf.select(hc, "sweeper._target_", default="")).lower()


def metric_value(metrics: dict, key: str) -> float:
    """`metrics['a']['b']` for key 'a.b' (or 'a/b'), as a float."""
    value: Any = metrics
    for part in key.replace("/", ".").split("."):
        value = value[part]
    return float(value)


def objective_keys(cfg: DictConfig) -> list[str] | None:
    keys = cfg.get("optimized_metrics")
    if not keys:
        return None
    return [str(keys)] if isinstance(keys, str) else [str(k) for k in keys]


def objectives(cfg: DictConfig, metrics: dict | None) -> float | list[float]:
    """The task function's return: the `optimized_metrics` values (a list: one per Optuna direction), or
    mean forgetting when none are configured. NaN stands for a failed job."""
    keys = objective_keys(cfg)
    if keys is None:
        return math.nan if metrics is None else metric_value(metrics, "mean_forgetting")
    return [math.nan if metrics is None else metric_value(metrics, k) for k in keys]


def objective_spec(config: DictConfig) -> tuple[list[str], list[str]]:
    """(metric keys, directions) of the sweep: the Optuna ones if the search is active, else the default."""
    keys = objective_keys(config)
    directions = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if keys and directions is not None:
        directions = [directions] if isinstance(directions, str) else [str(d) for d in directions]
        if len(keys) == len(directions):
            return keys, [d.lower() for d in directions]
        log.warning("optimized_metrics %s and hydra.sweeper.direction %s differ in length; "
                    "Pareto front over the default objectives", keys, directions)
    return [k for k, _ in DEFAULT_OBJECTIVES], [d for _, d in DEFAULT_OBJECTIVES]


def summarize_sweep(sweep_dir: Path, config: DictConfig, since: float | None = None) -> dict:
    """Write sweep_summary.json and pareto_front.json into `sweep_dir`; return the summary.

    A job counts as failed in this launch if its metrics.json says failed and was written after `since`.
    """
    sweep_dir = Path(sweep_dir)
    keys, directions = objective_spec(config)
    jobs, points = [], []
    for job in job_dirs(sweep_dir):
        state = run_state(job)
        path = job / METRICS_FILE
        mtime = path.stat().st_mtime if path.exists() else None
        entry = {"job": str(job.relative_to(sweep_dir.resolve())), "status": state.status,
                 "overrides": read_overrides(job) or [],
                 "this_launch": since is None or (mtime is not None and mtime >= since)}
        if not state.completed and state.status != "missing":
            entry["error" if state.status == "failed" else "reason"] = (
                (state.metrics or {}).get("error") if state.status == "failed" else state.reason)
        jobs.append(entry)
        if state.completed:
            try:
                values = {k: metric_value(state.metrics, k) for k in keys}
            except (KeyError, TypeError, ValueError):
                continue
            if all(math.isfinite(v) for v in values.values()):
                points.append({"job": entry["job"], "overrides": entry["overrides"],
                               "strategy": state.metrics.get("strategy"), "seed": state.metrics.get("seed"),
                               "values": values})
    failed_now = [j for j in jobs if j["status"] == "failed" and j["this_launch"]]
    summary = {
        "sweep_dir": str(sweep_dir),
        "counts": {s: sum(j["status"] == s for j in jobs) for s in sorted({j["status"] for j in jobs})},
        "failed_this_launch": [j["job"] for j in failed_now],
        "jobs": jobs,
    }
    write_json(sweep_dir / SUMMARY_FILE, summary)
    front = {
        "objectives": [{"metric": k, "direction": d} for k, d in zip(keys, directions)],
        "n_completed": len(points),
        "front": pareto_front(points, keys, directions),
    }
    optuna_file = sweep_dir / OPTUNA_RESULTS
    if optuna_file.exists():
        try:
            front["optuna"] = yaml.safe_load(optuna_file.read_text())
        except (OSError, yaml.YAMLError) as err:
            log.warning("could not read %s: %s", shown(optuna_file), err)
    write_json(sweep_dir / PARETO_FILE, front)
    return summary


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml): summary, Pareto front and exit status of a multirun."""

    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # file times can be a little coarse
        # made before the sweeper starts (the Optuna sweeper opens its study's journal in it)
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = summarize_sweep(sweep_dir, config, self.started)
        counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
        log.info("sweep %s: %s; summary in %s, Pareto front in %s", shown(sweep_dir), counts or "no jobs",
                 SUMMARY_FILE, PARETO_FILE)
        for job in summary["jobs"]:
            if job["status"] == "failed" and job["this_launch"]:
                log.error("FAILED %s: %s", job["job"], job.get("error"))
        if summary["failed_this_launch"]:
            log.error("%d job(s) failed; relaunch the same command to rerun only them (completed jobs "
                      "are skipped)", len(summary["failed_this_launch"]))
            raise SystemExit(1)  # the launch's exit status, from the summary just written
