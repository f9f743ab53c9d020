"""Sweeps (Hydra multirun) that survive failures and relaunches.

- `objectives`: what the task function returns (Optuna reads it): `optimized_metrics` from the config,
  NaN for a failed job so the other jobs go on.
- `completed_metrics`: a job whose run dir already holds a completed metrics.json is skipped on relaunch
  (Hydra has no resume of its own, hydra#3328).
- `SweepSummary`: a Hydra callback; at the end of a multirun it lists every job of the sweep dir with its
  status (`sweep_summary.json`), writes the Pareto front (`pareto_front.json`) and makes the app exit
  non-zero if a job of this launch failed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from forgetlab.utils.io import write_json

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "sweep_summary.json"
PARETO_FILE = "pareto_front.json"
OPTUNA_RESULTS = "optimization_results.yaml"
# Objectives of the Pareto front when the config names none: learn the target, forget little.
DEFAULT_OBJECTIVES = (("target_gain", "maximize"), ("mean_forgetting", "minimize"))
SKIP_DIRS = {"checkpoints", "logs", "wandb", ".hydra", "__pycache__"}

# Set by SweepSummary in the launching process; `forgetlab.train.main` turns it into the exit status.
state: dict[str, Any] = {"failed_jobs": []}


def metric_value(metrics: dict, key: str) -> float:
    """`metrics['a']['b']` for key 'a.b' (or 'a/b'), as a float."""
    value: Any = metrics
    for part in key.replace("/", ".").split("."):
        value = value[part]
    return float(value)


def objectives(cfg: DictConfig, metrics: dict | None) -> float | list[float]:
    """The task function's return: the `optimized_metrics` values (a list: one per Optuna direction), or
    mean forgetting when none are configured. NaN stands for a failed job."""
    keys = cfg.get("optimized_metrics")
    if not keys:
        return math.nan if metrics is None else metric_value(metrics, "mean_forgetting")
    keys = [keys] if isinstance(keys, str) else list(keys)
    return [math.nan if metrics is None else metric_value(metrics, k) for k in keys]


def read_metrics(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def completed_metrics(run_dir: Path) -> dict | None:
    """The metrics of a run dir whose metrics.json says `completed`, else None."""
    metrics = read_metrics(run_dir)
    return metrics if metrics is not None and metrics.get("status") == "completed" else None


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job directory below a sweep dir (one with `.hydra/` or metrics.json), sorted."""
    found = []
    for hydra_dir in Path(sweep_dir).rglob(".hydra"):
        if not SKIP_DIRS.intersection(hydra_dir.parent.relative_to(sweep_dir).parts):
            found.append(hydra_dir.parent)
    for metrics in Path(sweep_dir).rglob(METRICS_FILE):
        if metrics.parent not in found and not SKIP_DIRS.intersection(metrics.relative_to(sweep_dir).parts):
            found.append(metrics.parent)
    return sorted(set(found))


def _overrides(job: Path) -> list[str]:
    try:
        return [str(o) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []]
    except (OSError, yaml.YAMLError):
        return []


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    better = [(x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions)]
    strictly = [(x > y) if d == "maximize" else (x < y) for x, y, d in zip(a, b, directions)]
    return all(better) and any(strictly)


def pareto_front(points: list[dict], keys: list[str], directions: list[str]) -> list[dict]:
    """The points (each with 'values': {key: float}) that no other point dominates."""
    vecs = [[p["values"][k] for k in keys] for p in points]
    return [p for p, v in zip(points, vecs)
            if not any(dominates(w, v, directions) for w in vecs if w is not v)]


def objective_spec(config: DictConfig) -> tuple[list[str], list[str]]:
    """(metric keys, directions) of the sweep: the Optuna ones if the search is active, else the default."""
    keys = config.get("optimized_metrics")
    directions = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if keys and directions is not None:
        keys = [keys] if isinstance(keys, str) else [str(k) for k in keys]
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
        metrics = read_metrics(job)
        status = "missing" if metrics is None else str(metrics.get("status", "unknown"))
        mtime = (job / METRICS_FILE).stat().st_mtime if metrics is not None else None
        entry = {"job": str(job.relative_to(sweep_dir)), "status": status, "overrides": _overrides(job),
                 "this_launch": since is None or (mtime is not None and mtime >= since)}
        if status == "failed":
            entry["error"] = metrics.get("error")
        jobs.append(entry)
        if status == "completed":
            try:
                values = {k: metric_value(metrics, k) for k in keys}
            except (KeyError, TypeError, ValueError):
                continue
            if all(math.isfinite(v) for v in values.values()):
                points.append({"job": entry["job"], "overrides": entry["overrides"],
                               "strategy": metrics.get("strategy"), "seed": metrics.get("seed"),
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
            log.warning("could not read %s: %s", optuna_file, err)
    write_json(sweep_dir / PARETO_FILE, front)
    return summary


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml): summary, Pareto front and exit status of a multirun."""

    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # file times can be a little coarse
        state["failed_jobs"] = []
        # made before the sweeper starts: the Optuna study's sqlite file lives in it
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = summarize_sweep(sweep_dir, config, self.started)
        state["failed_jobs"] = summary["failed_this_launch"]
        counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
        log.info("sweep %s: %s; summary in %s, Pareto front in %s", sweep_dir, counts or "no jobs",
                 SUMMARY_FILE, PARETO_FILE)
        for job in summary["jobs"]:
            if job["status"] == "failed" and job["this_launch"]:
                log.error("FAILED %s: %s", job["job"], job.get("error"))
        if state["failed_jobs"]:
            log.error("%d job(s) failed; relaunch the same command to rerun only them (completed jobs "
                      "are skipped)", len(state["failed_jobs"]))
