"""Benchmark of the built-in default (issue 2 targets), measured on this machine in one go:

1. base stage from scratch (fresh cache): wall time and mean exact match over the base tasks
   (target: >= 90% within 10 minutes on 2 cores);
2. the default run with the base cached: wall time, target gain (>= 30 points) and mean forgetting
   (partial: between 10 and 70 points);
3. the same command again: metrics.json identical apart from `timing` and `base.cached`.

    python benchmarks/bench_default.py [--outputs DIR] [extra overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MACHINE_FACTS = ("timing", "base")


def run(outputs: Path, run_dir: Path, overrides: list[str]) -> tuple[float, dict]:
    env = {**os.environ, "FORGETLAB_OUTPUTS": str(outputs), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forgetlab.cli", *overrides, f"hydra.run.dir={run_dir}"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, default=None, help="outputs root (default: a fresh temp dir)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="forgetlab-bench-"))

    first_wall, first = run(outputs, outputs / "bench_run1", args.overrides)
    base = json.loads((Path(first["base"]["path"]) / "base.json").read_text())
    second_wall, second = run(outputs, outputs / "bench_run2", args.overrides)

    base_scores = {t: round(s["score"], 1) for t, s in base["validation_scores"].items()}
    same = {k: v for k, v in first.items() if k not in MACHINE_FACTS} == {
        k: v for k, v in second.items() if k not in MACHINE_FACTS}
    print(f"base stage: {base['steps']} steps in {base['train_wall_time_s']:.0f}s training "
          f"({first_wall:.0f}s for the whole first command), tokens/s {base['tokens_per_s']:.0f}")
    print(f"base mean exact match (validation): {base['mean_validation_score']:.1f}  {base_scores}")
    print(f"default run with base cached: {second_wall:.0f}s wall "
          f"(training {second['timing']['train_wall_time_s']:.0f}s, {second['timing']['tokens_per_s']:.0f} tokens/s)")
    print(f"target {second['target']}: {second['target_score_before']:.1f} -> {second['target_score_after']:.1f} "
          f"(gain {second['target_gain']:.1f})")
    print(f"mean forgetting {second['mean_forgetting']:.1f} points; per task "
          + ", ".join(f"{t} {v:.1f}" for t, v in second["forgetting"].items()))
    print(f"mean loss increase {second['mean_loss_increase']:.3f}")
    print(f"second run identical to first (apart from timing/base.cached): {same}")


if __name__ == "__main__":
    main()
