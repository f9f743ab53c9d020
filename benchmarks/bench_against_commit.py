"""The default run's wall time against an older forgetlab, on the same machine in one go (issue 12: "default
run wall time at most half of an earlier commit's").

Runs the same command (default: the default run, `forgetlab` with no overrides) alternately through this
checkout's Python and a baseline Python that has the older commit installed, each with its own outputs root
(so each has its own base-stage and data caches, built by a warm-up run that is not counted), and prints
medians of the whole command's wall time, their ratio, and this checkout's timing split (metrics.json
`timing`) with the share spent scoring.

A baseline environment that shares this one's packages:

    git worktree add ../forgetlab-old 3b19fe0
    python -m venv ../old-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > ../old-venv/lib/python3.11/site-packages/deps.pth
    ../old-venv/bin/pip install --no-deps --no-build-isolation -e ../forgetlab-old

    python benchmarks/bench_against_commit.py --baseline-python ../old-venv/bin/python [--reps 5] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCORING = ("scoring_before_s", "periodic_evaluation_s", "scoring_after_s")


def run(python: str, outputs: Path, run_dir: Path, overrides: list[str]) -> float:
    env = {**os.environ, "FORGETLAB_OUTPUTS": str(outputs), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    subprocess.run([python, "-m", "forgetlab.cli", *overrides, f"hydra.run.dir={run_dir}"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-python", required=True, help="python of an environment with the old commit")
    parser.add_argument("--reps", type=int, default=5, help="alternated repeats of each (medians are reported)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a fresh temp dir)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="forgetlab-vs-commit-"))
    sides = {"current": sys.executable, "baseline": args.baseline_python}
    for name, python in sides.items():  # warm-up: trains (or finds) each side's cached base stage
        print(f"warm-up {name}: {run(python, out / name, out / name / 'warmup', args.overrides):.1f}s", flush=True)
    walls: dict[str, list[float]] = {name: [] for name in sides}
    timings = []
    for rep in range(args.reps):
        for name, python in (sides.items() if rep % 2 == 0 else reversed(sides.items())):
            run_dir = out / name / f"rep{rep}"
            walls[name].append(run(python, out / name, run_dir, args.overrides))
            if name == "current":
                timings.append(json.loads((run_dir / "metrics.json").read_text())["timing"])
            print(f"rep {rep} {name}: {walls[name][-1]:.1f}s", flush=True)
    med = {name: statistics.median(w) for name, w in walls.items()}
    seconds = [k for k, v in timings[0].items() if isinstance(v, (int, float)) and k.endswith("_s")
               and not k.endswith("per_s")]  # tokens_per_s is a rate, reported on its own
    split = {k: statistics.median(t[k] for t in timings) for k in seconds}
    tokens_per_s = statistics.median(t.get("tokens_per_s", 0.0) for t in timings)
    scoring = sum(split.get(k, 0.0) for k in SCORING)
    result = {"reps": args.reps, "overrides": args.overrides, "wall_s": walls, "median_wall_s": med,
              "ratio_current_to_baseline": med["current"] / med["baseline"], "current_timing_median_s": split,
              "current_tokens_per_s": tokens_per_s,
              "current_scoring_share_of_run": scoring / split["wall_time_s"]}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"median wall time: current {med['current']:.1f}s, baseline {med['baseline']:.1f}s, "
          f"ratio {result['ratio_current_to_baseline']:.2f}")
    print("current timing (medians): " + ", ".join(f"{k} {v:.1f}s" for k, v in split.items())
          + f"; training throughput {tokens_per_s:,.0f} tokens/s")
    print(f"scoring (before + periodic + after) = {100 * result['current_scoring_share_of_run']:.1f}% of the run's "
          f"wall time; JSON in {out / 'result.json'}")


if __name__ == "__main__":
    main()
