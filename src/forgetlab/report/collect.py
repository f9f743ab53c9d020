"""Find run directories below the given paths and load what each one left behind.

Every directory that looks like a run (it has a metrics.json, a Hydra `.hydra/` folder or checkpoints)
becomes one `Run`, whatever state it is in: a report must name the runs it could not use instead of
silently averaging fewer seeds than the reader thinks.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METRICS_FILE = "metrics.json"
RUN_RECORD_FILE = "run_record.json"
# Keys a completed metrics.json must hold for its run to enter the tables.
REQUIRED_KEYS = ("strategy", "forgetting", "mean_forgetting", "target_gain", "before", "after")
# Folders inside a run (or beside runs) that never hold runs themselves; pruned to keep the walk fast.
SKIP_DIRS = {"checkpoints", "logs", "wandb", "__pycache__", ".git", ".hydra", "lightning_logs"}


@dataclass
class Run:
    """One run directory: `status` is 'completed' only if its metrics can be averaged."""

    path: Path
    display: str                      # path shown to people: relative to the folder it was found under
    status: str                       # completed | failed | incomplete | missing | corrupted | partial
    reason: str = ""                  # why a run is not completed, in words
    metrics: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)   # overrides as key -> value
    command: str = ""
    command_source: str = ""          # run_record.json | .hydra/overrides.yaml | metrics.json (approximate)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def get(self, key: str, default: Any = None) -> Any:
        return (self.metrics or {}).get(key, default)


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_run_dir(path: Path) -> bool:
    if (path / METRICS_FILE).is_file() or (path / ".hydra").is_dir():
        return True
    ckpt = path / "checkpoints"
    return ckpt.is_dir() and any(ckpt.glob("*.ckpt"))


def find_run_dirs(paths: list[Path], exclude: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """(run_dir, root it was found under) for every run below `paths`, each once, in path order.

    A run's own subfolders are not searched: a run never contains another run.
    """
    excluded = {p.resolve() for p in exclude or []}
    found: dict[Path, Path] = {}
    for root in paths:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, _ in os.walk(root, followlinks=False):
            here = Path(dirpath)
            if here.resolve() in excluded:
                dirnames[:] = []
                continue
            if _is_run_dir(here):
                found.setdefault(here.resolve(), root)
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
    return [(path, root) for path, root in found.items()]


def _read_overrides(run_dir: Path) -> list[str] | None:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError):
        return None
    return [str(x) for x in data] if isinstance(data, list) else None


def _command(run_dir: Path, overrides: list[str] | None, metrics: dict | None) -> tuple[str, str]:
    """The command that reproduces a run: recorded if the run says, else rebuilt from its overrides."""
    record = run_dir / RUN_RECORD_FILE
    if record.is_file():
        try:
            cmd = json.loads(record.read_text()).get("command")
        except (json.JSONDecodeError, OSError, AttributeError):
            cmd = None
        if isinstance(cmd, list):
            cmd = shlex.join(str(c) for c in cmd)
        if cmd:
            return str(cmd), RUN_RECORD_FILE
    if overrides is not None:
        return shlex.join(["forgetlab", *overrides]), ".hydra/overrides.yaml"
    if metrics and metrics.get("strategy"):
        parts = [f"strategy={metrics['strategy']}"]
        if isinstance(metrics.get("target"), str):
            parts.append(f"tasks.target={metrics['target']}")
        if metrics.get("seed") is not None:
            parts.append(f"seed={metrics['seed']}")
        return shlex.join(["forgetlab", *parts]), "metrics.json (approximate)"
    return "", ""


def load_run(run_dir: Path, root: Path) -> Run:
    """Read one run directory; never raises on a broken run, it says what is wrong instead."""
    run_dir = Path(run_dir)
    try:
        display = str(run_dir.relative_to(Path(root).resolve().parent))
    except ValueError:
        display = str(run_dir)
    overrides = _read_overrides(run_dir)
    run = Run(path=run_dir, display=display, status="completed", overrides=overrides or [],
              params=parse_overrides(overrides or []))
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        run.status, run.reason = "missing", "missing metrics.json (run never finished or crashed hard)"
    else:
        try:
            metrics = json.loads(metrics_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
            metrics = None
            run.status, run.reason = "corrupted", f"corrupted metrics.json: {err}"
        if metrics is not None and not isinstance(metrics, dict):
            metrics = None
            run.status, run.reason = "corrupted", "corrupted metrics.json: not a JSON object"
        if metrics is not None:
            run.metrics = metrics
            status = metrics.get("status")
            if status == "failed":
                run.status, run.reason = "failed", f"failed: {metrics.get('error') or 'no error recorded'}"
            elif status != "completed":
                run.status, run.reason = "incomplete", f"incomplete: status={status!r}"
            else:
                missing = [k for k in REQUIRED_KEYS if k not in metrics]
                if missing:
                    run.status, run.reason = "partial", f"partial metrics.json: missing {', '.join(missing)}"
                elif not isinstance(metrics["forgetting"], dict) or not isinstance(metrics["before"], dict) \
                        or not isinstance(metrics["after"], dict):
                    run.status, run.reason = "partial", "partial metrics.json: forgetting/before/after not objects"
                elif not all(_is_number(metrics[k]) for k in ("mean_forgetting", "target_gain")):
                    run.status, run.reason = "partial", "partial metrics.json: mean_forgetting/target_gain not numbers"
    run.command, run.command_source = _command(run_dir, overrides, run.metrics)
    return run


def collect_runs(paths: list[str | Path], exclude: list[Path] | None = None) -> list[Run]:
    """Every run below `paths` (single run dirs, sweep dirs, whole output trees), completed or not."""
    return [load_run(d, root) for d, root in find_run_dirs([Path(p) for p in paths], exclude)]
