"""Run directories: the one place that knows their file names, how to find them and what state they are in.

A run directory holds `metrics.json` (the result, written last and atomically), `run_record.json` (how to
rerun it), `.hydra/overrides.yaml` (Hydra's record of the command line), `checkpoints/` and
`predictions/` (every scored test example). A sweep
directory holds one run directory per job plus `sweep_summary.json` and `pareto_front.json`.

A run counts as completed only when its metrics.json parses, says `completed` and carries every key in
`REQUIRED_KEYS`; anything else is unfinished (a sweep relaunch reruns it, a report lists it apart).
Light on purpose (no torch): the report and reproduce commands import it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

METRICS_FILE = "metrics.json"
RECORD_FILE = "run_record.json"
OVERRIDES_FILE = ".hydra/overrides.yaml"
CHECKPOINT_DIR = "checkpoints"
SUMMARY_FILE = "sweep_summary.json"
PARETO_FILE = "pareto_front.json"
REPAIR_FILE = "repair.json"  # forgetlab-repair's intruder-scaling curve, beside metrics.json
INTERPOLATION_FILE = "interpolation.json"  # forgetlab-interpolate's theta0 + alpha (theta - theta0) curve
# Every scored test example: predictions/<step>/<task>.jsonl, step = before | after | selected |
# repair/lambda=<l> | stage_<t> (evaluation/predictions.py)
PREDICTIONS_DIR = "predictions"
# Keys a completed metrics.json must hold to count as done (resume, reports).
REQUIRED_KEYS = ("strategy", "forgetting", "mean_forgetting", "target_gain", "before", "after")
# Folders inside a run (or beside runs) that never hold runs themselves; pruned to keep the walk fast.
SKIP_DIRS = {"checkpoints", "logs", "wandb", "__pycache__", ".git", ".hydra", "lightning_logs", "report",
             PREDICTIONS_DIR}


@dataclass
class RunState:
    """`status`: completed | failed | incomplete | missing | corrupted | partial; `reason` says why in words."""

    status: str
    reason: str = ""
    metrics: dict[str, Any] | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_state(run_dir: str | Path) -> RunState:
    """What a run directory's metrics.json says; never raises on a broken file, it says what is wrong."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return RunState("missing", "missing metrics.json (run never finished or crashed hard)")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        return RunState("corrupted", f"corrupted metrics.json: {err}")
    if not isinstance(metrics, dict):
        return RunState("corrupted", "corrupted metrics.json: not a JSON object")
    status = metrics.get("status")
    if status == "failed":
        return RunState("failed", f"failed: {metrics.get('error') or 'no error recorded'}", metrics)
    if status != "completed":
        return RunState("incomplete", f"incomplete: status={status!r}", metrics)
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    if missing:
        return RunState("partial", f"partial metrics.json: missing {', '.join(missing)}", metrics)
    if not all(isinstance(metrics[k], dict) for k in ("forgetting", "before", "after")):
        return RunState("partial", "partial metrics.json: forgetting/before/after not objects", metrics)
    if not all(_is_number(metrics[k]) for k in ("mean_forgetting", "target_gain")):
        return RunState("partial", "partial metrics.json: mean_forgetting/target_gain not numbers", metrics)
    return RunState("completed", "", metrics)


def completed_metrics(run_dir: str | Path) -> dict | None:
    """The metrics of a completed run (every required key present), else None."""
    state = run_state(run_dir)
    return state.metrics if state.completed else None


def read_json_or_none(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_overrides(run_dir: str | Path) -> list[str] | None:
    """The job's command-line overrides as Hydra recorded them, or None."""
    path = Path(run_dir) / OVERRIDES_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError):
        return None
    return [str(x) for x in data] if isinstance(data, list) else None


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """`['strategy=full', '+x=1', '~y']` -> `{'strategy': 'full', 'x': '1'}` (deletions carry no value)."""
    params: dict[str, str] = {}
    for item in overrides:
        item = str(item)
        if item.startswith("~") or "=" not in item:
            continue
        key, value = item.split("=", 1)
        params[key.lstrip("+")] = value
    return params


def is_run_dir(path: Path) -> bool:
    if (path / METRICS_FILE).is_file() or (path / ".hydra").is_dir():
        return True
    ckpt = path / CHECKPOINT_DIR
    return ckpt.is_dir() and any(ckpt.glob("*.ckpt"))


def find_run_dirs(paths: list[str | Path], exclude: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """(run_dir, root it was found under) for every run below `paths`, each once, in path order.

    A run's own subfolders are not searched: a run never contains another run.
    """
    excluded = {Path(p).resolve() for p in exclude or []}
    found: dict[Path, Path] = {}
    for root in map(Path, paths):
        if not root.exists():
            continue
        for dirpath, dirnames, _ in os.walk(root, followlinks=False):
            here = Path(dirpath)
            if here.resolve() in excluded:
                dirnames[:] = []
                continue
            if is_run_dir(here):
                found.setdefault(here.resolve(), root)
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
    return list(found.items())


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """Every job directory of a sweep, sorted."""
    return sorted(path for path, _ in find_run_dirs([sweep_dir]))


def shown(path: str | Path, base: str | Path | None = None) -> str:
    """A path as a person should read it: relative to `base` (default: the working directory) when it lies
    below it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(base or Path.cwd()).resolve())) or "."
    except ValueError:
        return str(path)


def make_run_dir(output_dir: str) -> Path:
    """Create a run's directory, or fail naming the setting that chose it (paths.output_dir follows
    paths.root, hydra.run.dir or hydra.sweep.dir)."""
    from forgetlab.config import ConfigError

    run_dir = Path(output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"paths.output_dir={str(run_dir)!r} cannot be created ({err.strerror}); it follows "
                          "paths.root (or hydra.run.dir / hydra.sweep.dir): point it at a writable folder") from None
    return run_dir
