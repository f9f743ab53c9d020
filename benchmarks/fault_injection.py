"""Fault injection: a 12-job sweep is killed three times at random moments (SIGKILL during the base stage,
SIGTERM during one job's training, SIGKILL during another's), relaunched with the same command each time,
and compared job by job with the same sweep run without faults.

    python benchmarks/fault_injection.py [--out /tmp/forgetlab-faults] [--seed 0]

Prints: jobs complete, metrics.json identical to the clean sweep (timing and cache flags aside; the
keys that differ when not),
training-log rows identical, and anything lost. Exit status 0 only if nothing differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from forgetlab.reproduce.compare import compare_metrics

SWEEP = ["experiment=tiny", "strategy.optim.steps=40", "checkpoint_every_n_steps=5", "eval.every_n_steps=10",
         "strategy=full,replay", "seed=0,1,2,3,4,5"]
SHOWN_KEYS = 5  # differing metrics.json keys named per job


def command(root: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "forgetlab.cli", "-m", *SWEEP, f"sweep_name={name}", f"paths.root={root}"]


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 900) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def in_training(sweep: Path, done_before: set[str]) -> Path | None:
    """A job that has a checkpoint but no completed metrics.json yet (it is training)."""
    for ckpt in sweep.glob("*/checkpoints/last.ckpt"):
        job = ckpt.parent.parent
        if job.name not in done_before and not (job / "metrics.json").exists():
            return job
    return None


def completed(sweep: Path) -> set[str]:
    out = set()
    for m in sweep.glob("*/metrics.json"):
        try:
            if json.loads(m.read_text()).get("status") == "completed":
                out.add(m.parent.name)
        except ValueError:
            pass
    return out


def metrics_difference(clean: dict, faulty: dict) -> str | None:
    """None when two metrics.json contents agree exactly, else which keys differ (the first few). Compared as
    `forgetlab-reproduce` compares them: timing and cache provenance (base.cached, base.path, before_cached:
    a relaunch reads what a killed attempt cached) are machine facts, not results."""
    _, beyond = compare_metrics(clean, faulty)
    if not beyond:
        return None
    keys = [d.key for d in beyond]
    return "metrics differ: " + ", ".join(keys[:SHOWN_KEYS]) + (f" (+{len(keys) - SHOWN_KEYS} more)"
                                                                 if len(keys) > SHOWN_KEYS else "")


def rows(job: Path) -> list[tuple]:
    with open(job / "logs" / "metrics.csv", newline="") as f:
        return sorted(tuple(sorted((k, v) for k, v in r.items() if v)) for r in csv.DictReader(f))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/forgetlab-faults"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    clean_root, faulty_root = args.out / "clean", args.out / "faulty"

    start = time.time()
    subprocess.run(command(clean_root, "s"), env=env(), check=True, capture_output=True)
    print(f"clean sweep: {time.time() - start:.0f} s")

    sweep = faulty_root / "sweeps" / "s"
    faults = []
    # 1: SIGKILL while the base stage trains (its temporary folder exists)
    proc = subprocess.Popen(command(faulty_root, "s"), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if wait_for(lambda: any((faulty_root / "cache" / "base").glob(".*.tmp")), proc):
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        faults.append("SIGKILL during the base stage")
    proc.wait()
    # 2 and 3: SIGTERM, then SIGKILL, while a job is training
    for sig in (signal.SIGTERM, signal.SIGKILL):
        done = completed(sweep)
        proc = subprocess.Popen(command(faulty_root, "s"), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if wait_for(lambda done=done: in_training(sweep, done) is not None, proc):
            job = in_training(sweep, done)
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(sig)
            faults.append(f"{signal.Signals(sig).name} during {job.name if job else 'a job'}")
        proc.wait()
    relaunch = subprocess.run(command(faulty_root, "s"), env=env(), capture_output=True, text=True, check=False)

    clean_jobs = sorted(p.parent.name for p in (clean_root / "sweeps" / "s").glob("*/metrics.json"))
    n_complete = len(completed(sweep))
    same_metrics = same_rows = 0
    lost = []
    for name in clean_jobs:
        a, b = clean_root / "sweeps" / "s" / name, sweep / name
        if not (b / "metrics.json").exists():
            lost.append(f"{name}: no metrics.json")
            continue
        differ = metrics_difference(json.loads((a / "metrics.json").read_text()),
                                    json.loads((b / "metrics.json").read_text()))
        if differ is None:
            same_metrics += 1
        else:
            lost.append(f"{name}: {differ}")
        if rows(a) == rows(b):
            same_rows += 1
        else:
            lost.append(f"{name}: training log differs")
    n = len(clean_jobs)
    print("faults injected:", "; ".join(faults) or "none (the runs were too quick to hit)")
    print(f"relaunch exit status: {relaunch.returncode}")
    print(f"jobs complete: {n_complete}/{n}")
    print(f"metrics.json identical to the clean sweep: {same_metrics}/{n}")
    print(f"training logs identical: {same_rows}/{n}")
    print("lost:", "; ".join(lost) or "nothing")
    return 0 if not lost and n_complete == n == 12 and len(faults) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
