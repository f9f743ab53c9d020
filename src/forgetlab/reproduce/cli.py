"""`forgetlab-reproduce`: rerun a finished run from its `run_record.json` and prove it gives the same result.

Usage:

    forgetlab-reproduce RUN_DIR                      # exact: every metric must be bit-identical
    forgetlab-reproduce RUN_DIR --tolerance 1e-6     # numbers may differ by up to 1e-6 (absolute)
    forgetlab-reproduce RUN_DIR --out /tmp/rerun     # rerun into this directory
    forgetlab-reproduce RUN_DIR --rerun-dir OTHER    # no rerun: compare RUN_DIR with an existing run

What it does:

1. Reads RUN_DIR/run_record.json (written by every run; runs without one fall back to
   RUN_DIR/.hydra/overrides.yaml) and reruns the `forgetlab` CLI in a subprocess with the recorded
   overrides, the recorded thread count and `hydra.run.dir=<new dir>`. The new directory is
   `<RUN_DIR>-reproduce-<timestamp>` unless `--out` is given; its log is `reproduce.log` there.
   The recorded `paths.root` / `paths.cache_dir` are passed only if they still exist; otherwise the
   default applies (`$FORGETLAB_OUTPUTS` or ./outputs). The base-stage cache is keyed by a hash of all
   that determines it, so reusing it or training it again gives the same weights. The subprocess runs in
   the original working directory if it still exists (relative data paths resolve as they did), else in
   the current one; nothing else depends on where RUN_DIR or the checkout lives, so a copied or moved
   run directory reproduces too.
2. Compares the two metrics.json files leaf by leaf and prints a table of every leaf that differs (key,
   original, rerun, abs diff). Ignored: the `timing` section, `base.cached` and `base.path` (facts about
   the machine, not results). Non-numeric leaves (text, hashes, missing keys) must match exactly.
3. Compares the two run_record.json files and warns when package versions, data fingerprints
   (named task/split), the base checkpoint hash, the git commit (or uncommitted diff), the resolved
   config, threads, determinism or hardware differ: the usual causes of a difference.
4. Writes `reproduce.json` (command, warnings, differences, verdict) into the new directory.

Exit status: 0 all metrics within --tolerance (default 0: exact), 1 some metric differs beyond it,
2 the rerun failed (or RUN_DIR is not a run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from forgetlab.reproduce.compare import Difference, compare_metrics, compare_records
from forgetlab.run_dirs import METRICS_FILE, RECORD_FILE, read_json_or_none, read_overrides

REPORT_FILE = "reproduce.json"
LOG_FILE = "reproduce.log"
EXIT_OK, EXIT_DIFFERENT, EXIT_FAILED = 0, 1, 2
_PLAIN = re.compile(r"[\w./:@+-]+")


def override_key(override: str) -> str:
    """`+a.b=1` -> `a.b`; `~a.b` -> `a.b`; `model=tiny_gpt` -> `model`."""
    return override.split("=", 1)[0].lstrip("+~")


def hydra_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged (paths with spaces, commas...)."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_record(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The run's record, or a minimal one from Hydra's overrides.yaml for runs that predate records."""
    path = run_dir / RECORD_FILE
    if path.exists():
        return json.loads(path.read_text()), []
    legacy = run_dir / ".hydra" / "overrides.yaml"
    overrides = read_overrides(run_dir)
    if overrides is not None:
        return {"overrides": overrides}, [(f"{path} is missing: rerunning from {legacy} without the facts "
                                           "(versions, data, commit) that would explain a difference")]
    raise FileNotFoundError(f"{run_dir} has neither {RECORD_FILE} nor .hydra/overrides.yaml: not a forgetlab run")


def rerun_plan(record: dict[str, Any], out_dir: Path) -> tuple[list[str], Path, list[str]]:
    """(overrides for the rerun, working directory, notes) from a run record."""
    notes: list[str] = []
    dropped = ("paths", "threads", "hydra")
    overrides = [o for o in record.get("overrides") or [] if override_key(o).split(".")[0] not in dropped]
    config = record.get("config") or {}
    threads = (record.get("threads") or {}).get("configured", config.get("threads"))
    if threads is not None:
        overrides.append(f"threads={threads}")
    recorded = record.get("paths") or {}
    for key in ("root", "cache_dir"):
        value = recorded.get(key)
        if value and Path(value).is_dir():
            overrides.append(f"paths.{key}={hydra_value(value)}")
        elif value:
            notes.append(f"recorded paths.{key} {value} no longer exists: using the default")
    # Overrides of paths.* that are not the two above (e.g. a user's own path keys) are kept if they exist.
    for o in record.get("overrides") or []:
        key = override_key(o)
        if key.startswith("paths.") and key not in ("paths.root", "paths.cache_dir", "paths.output_dir",
                                                    "paths.data_cache_dir"):
            value = o.split("=", 1)[1] if "=" in o else ""
            if value and Path(value.strip("'\"")).exists():
                overrides.append(o)
            else:
                notes.append(f"dropped override {o}: the path no longer exists")
    # A verification rebuilds its data and scores its starting model itself, never from the data cache.
    overrides.append("paths.data_cache_dir=null")
    overrides.append(f"hydra.run.dir={hydra_value(out_dir)}")
    cwd = record.get("cwd")
    workdir = Path(cwd) if cwd and Path(cwd).is_dir() else Path.cwd()
    return overrides, workdir, notes


def forgetlab_command() -> list[str]:
    """The `forgetlab` console script of this interpreter's environment, or the same app via -m."""
    script = Path(sys.executable).parent / ("forgetlab.exe" if os.name == "nt" else "forgetlab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "forgetlab.cli"]


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return repr(x)
    return json.dumps(x) if not isinstance(x, str) else x


def difference_table(diffs: list[Difference], tolerance: float) -> Table:
    table = Table(title="metrics that differ (original vs rerun)", show_lines=False)
    table.add_column("key", no_wrap=True)
    table.add_column("original", no_wrap=True)
    table.add_column("rerun", no_wrap=True)
    table.add_column("abs diff", no_wrap=True)
    table.add_column("", no_wrap=True)
    for d in diffs:
        ok = d.within(tolerance)
        table.add_row(Text(d.key), Text(_fmt(d.as_dict()["original"])), Text(_fmt(d.as_dict()["rerun"])),
                      Text("—" if d.abs_diff is None else f"{d.abs_diff:.3g}"),
                      Text("within tolerance" if ok else "BEYOND", style="green" if ok else "bold red"))
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="forgetlab-reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="directory of a finished run (holds metrics.json, run_record.json)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="largest absolute difference allowed per metric (default 0: exact)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the rerun (default: <RUN_DIR>-reproduce-<timestamp>)")
    p.add_argument("--rerun-dir", type=Path, default=None,
                   help="compare with this existing run instead of rerunning")
    p.add_argument("--timeout", type=float, default=None, help="seconds before the rerun is abandoned")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True, highlight=False)
    run_dir = args.run_dir.expanduser().resolve()
    original_metrics = read_json_or_none(run_dir / METRICS_FILE)
    try:
        record, notes = load_record(run_dir)
    except FileNotFoundError as err:
        console.print(f"error: {err}", style="bold red", markup=False)
        return EXIT_FAILED
    if original_metrics is None:
        console.print(f"error: {run_dir / METRICS_FILE} is missing or unreadable", style="bold red", markup=False)
        return EXIT_FAILED
    if original_metrics.get("status") != "completed":
        notes.append(f"the original run did not complete (status {original_metrics.get('status')!r})")

    report: dict[str, Any] = {"original": str(run_dir), "tolerance": args.tolerance}
    if args.rerun_dir is not None:
        out_dir = args.rerun_dir.expanduser().resolve()
        report.update(rerun=str(out_dir), command=None, returncode=None)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = (args.out or run_dir.parent / f"{run_dir.name}-reproduce-{stamp}").expanduser().resolve()
        if out_dir.exists() and any(out_dir.iterdir()):
            # A run resumes from checkpoints/last.ckpt in its directory: never rerun into an old one.
            console.print(f"error: {out_dir} exists and is not empty", style="bold red", markup=False)
            return EXIT_FAILED
        out_dir.mkdir(parents=True, exist_ok=True)
        overrides, workdir, plan_notes = rerun_plan(record, out_dir)
        notes += plan_notes
        cmd = forgetlab_command() + overrides
        report.update(rerun=str(out_dir), command=cmd, cwd=str(workdir))
        console.print(f"rerunning {run_dir.name} -> {out_dir}", markup=False)
        console.print("  " + " ".join(overrides), markup=False, style="dim")
        env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
        with open(out_dir / LOG_FILE, "w") as log:
            try:
                proc = subprocess.run(cmd, check=False, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=args.timeout)
                report["returncode"] = proc.returncode
            except subprocess.TimeoutExpired:
                report["returncode"] = None
                notes.append(f"the rerun took longer than {args.timeout} s and was stopped")

    for note in notes:
        console.print(f"note: {note}", style="yellow", markup=False)
    report["notes"] = notes

    rerun_metrics = read_json_or_none(out_dir / METRICS_FILE)
    failed = (args.rerun_dir is None and report.get("returncode") != 0) or rerun_metrics is None \
        or rerun_metrics.get("status") != "completed"
    if failed:
        log_path = out_dir / LOG_FILE
        tail = log_path.read_text(errors="replace").splitlines()[-30:] if log_path.exists() else []
        console.print("\n".join(tail), markup=False, style="dim")
        console.print(f"RERUN FAILED (exit code {report.get('returncode')}); see {log_path}",
                      style="bold red", markup=False)
        report.update(verdict="rerun_failed", warnings=[], differences=[])
        _write_report(out_dir, report)
        return EXIT_FAILED

    rerun_record = read_json_or_none(out_dir / RECORD_FILE)
    if "config" not in record:
        warnings: list[str] = []
    elif rerun_record is None:
        warnings = [f"the rerun wrote no {RECORD_FILE}: cannot check versions, data or commit"]
    else:
        warnings = compare_records(record, rerun_record)
    for w in warnings:
        console.print(f"warning: {w}", style="yellow", markup=False)

    diffs, beyond = compare_metrics(original_metrics, rerun_metrics, args.tolerance)
    if diffs:
        console.print(difference_table(diffs, args.tolerance))
    verdict = "identical" if not diffs else ("within_tolerance" if not beyond else "different")
    report.update(verdict=verdict, warnings=warnings, differences=[d.as_dict() for d in diffs],
                  n_beyond_tolerance=len(beyond))
    _write_report(out_dir, report)
    if verdict == "identical":
        console.print(f"REPRODUCED: metrics identical ({out_dir / METRICS_FILE})", style="bold green", markup=False)
        return EXIT_OK
    if verdict == "within_tolerance":
        console.print(f"REPRODUCED within tolerance {args.tolerance}: {len(diffs)} metric(s) differ slightly",
                      style="bold green", markup=False)
        return EXIT_OK
    console.print(f"NOT REPRODUCED: {len(beyond)} metric(s) differ beyond tolerance {args.tolerance}: "
                  + ", ".join(d.key for d in beyond[:10]) + (" ..." if len(beyond) > 10 else ""),
                  style="bold red", markup=False)
    return EXIT_DIFFERENT


def _write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{REPORT_FILE}.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(out_dir / REPORT_FILE)


if __name__ == "__main__":
    sys.exit(main())
