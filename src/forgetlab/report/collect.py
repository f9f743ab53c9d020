"""Find run directories below the given paths and load what each one left behind.

Every directory that looks like a run (it has a metrics.json, a Hydra `.hydra/` folder or checkpoints)
becomes one `Run`, whatever state it is in: a report must name the runs it could not use instead of
silently averaging fewer seeds than the reader thinks.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetlab.run_dirs import RECORD_FILE, find_run_dirs, parse_overrides, read_overrides, run_state, shown


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


def _command(run_dir: Path, overrides: list[str] | None, metrics: dict | None) -> tuple[str, str]:
    """The command that reproduces a run: recorded if the run says, else rebuilt from its overrides."""
    record = run_dir / RECORD_FILE
    if record.is_file():
        try:
            cmd = json.loads(record.read_text()).get("command")
        except (json.JSONDecodeError, OSError, AttributeError):
            cmd = None
        if isinstance(cmd, list):
            cmd = shlex.join(str(c) for c in cmd)
        if cmd:
            return str(cmd), RECORD_FILE
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
    overrides = read_overrides(run_dir)
    state = run_state(run_dir)
    run = Run(path=run_dir, display=shown(run_dir, Path(root).resolve().parent), status=state.status,
              reason=state.reason, metrics=state.metrics, overrides=overrides or [],
              params=parse_overrides(overrides or []))
    run.command, run.command_source = _command(run_dir, overrides, run.metrics)
    return run


def collect_runs(paths: list[str | Path], exclude: list[Path] | None = None) -> list[Run]:
    """Every run below `paths` (single run dirs, sweep dirs, whole output trees), completed or not."""
    return [load_run(d, root) for d, root in find_run_dirs([Path(p) for p in paths], exclude)]
