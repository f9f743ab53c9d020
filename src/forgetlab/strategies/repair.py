"""`forgetlab-repair RUN_DIR [--lambdas 1 0.75 0.5 0.25 0] [--budget 5]`: scale the intruder singular values of
a finished run by lambda and rescore every task (Shuttleworth et al. 2025 recover forgotten ability this way).

For each lambda, every linear weight W of the run's merged model gets W - (1 - lambda) sum_j s_j u_j v_j^T over
its intruder dimensions relative to the pre-trained W0 (strategies/spectral.py; k, eps and max_numel from the
run's `diagnostics`). W0 is the model the run started from: the base-stage checkpoint of a built-in model
(metrics.json `base.path`/model), else the recorded `model.build` (its `name_or_path`), loaded as the run
loaded it. The run's tasks are rebuilt from run_record.json and scored on the test split like the run's own
after-scores (same thread count and determinism; lambda = 1 reproduces them). Forgetting and gain are
measured against metrics.json's `before`.

Writes RUN_DIR/repair.json and the scored examples of each lambda (predictions/repair/lambda=<l>/, as the
run's own eval.predictions settings say) and prints one line per lambda; every other file of the run is left
as it was.
Exit status: 0 done, 1 RUN_DIR is not a finished run this can repair.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from forgetlab.evaluation.predictions import PredictionWriter
from forgetlab.run_dirs import REPAIR_FILE
from forgetlab.strategies.export import load_run_model
from forgetlab.strategies.rescore import FinishedRun, best_within, rescore
from forgetlab.strategies.spectral import repair_state_dict
from forgetlab.strategies.weight_movement import linear_weight_names
from forgetlab.training.distributed import rank_and_world
from forgetlab.utils.io import write_json

DEFAULT_LAMBDAS = (1.0, 0.75, 0.5, 0.25, 0.0)
DEFAULT_BUDGET = 5.0


def linear_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every linear layer's weight (tied ones once), detached, by parameter name."""
    params = dict(model.named_parameters())
    return {k: params[k].detach() for k in linear_weight_names(model, params)}


def best_lambda(results: Sequence[dict], budget: float | None) -> dict | None:
    """The entry with the highest target gain whose mean forgetting is within `budget` (ties: larger lambda,
    the smaller change); None when no lambda fits or there is no budget."""
    return best_within(results, "lambda", budget)


class IntruderRepair:
    """The weight edit of the repair: the run's merged model with its intruder singular values scaled."""

    key, step = "lambda", "repair"

    def __init__(self, k: int, eps: float, max_numel: int | None) -> None:
        self.k, self.eps, self.max_numel = k, eps, max_numel

    def load(self, run: FinishedRun) -> None:
        self.before = linear_weights(run.starting_model())
        model, _ = load_run_model(run.run_dir)
        run.lm.replace_model(model)
        self.params = dict(model.named_parameters())
        self.tuned = {k: v.clone() for k, v in linear_weights(model).items()}

    def apply(self, run: FinishedRun, lam: float) -> dict[str, Any]:
        new, info = repair_state_dict(self.before, self.tuned, lam, k=self.k, eps=self.eps, max_numel=self.max_numel)
        with torch.no_grad():
            for name, weight in new.items():
                self.params[name].copy_(weight)
        return {"intruders": info["intruders"], "matrices_repaired": info["repaired"],
                "per_matrix": info["per_matrix"]}


def repair_run(run_dir: str | Path, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
               budget: float | None = DEFAULT_BUDGET, write: bool = True) -> dict:
    """Scores of the run's model with its intruders scaled by each lambda; written to RUN_DIR/repair.json."""
    run = FinishedRun.load(run_dir)
    if write:  # each lambda's examples: predictions/repair/lambda=<l>/<task>.jsonl, as the run's eval.* say
        run.predictions = PredictionWriter.from_eval(run.run_dir, run.config.get("eval") or {})
    diag = run.diagnostics
    edit = IntruderRepair(diag.intruder_k, diag.intruder_eps, diag.max_numel)
    results = rescore(run, edit, lambdas, run.metrics["before"], run.metrics["target"])
    head = run.headline()
    out = {**{k: head[k] for k in ("run_name", "strategy", "target")},
           "k": diag.intruder_k, "eps": diag.intruder_eps, "max_numel": diag.max_numel, "budget": budget,
           "run": head["run"], "results": results, "best": None,
           "predictions": run.predictions.summary(after=None) if run.predictions else None}
    best = best_lambda(results, budget)
    if best is not None:
        out["best"] = {k: best[k] for k in ("lambda", "target_gain", "mean_forgetting")}
    if write and rank_and_world()[0] == 0:  # several processes score it together; one writes
        write_json(run.run_dir / REPAIR_FILE, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="forgetlab-repair",
        description="Scale a finished run's intruder singular values by lambda and rescore every task.",
        epilog="Example: forgetlab-repair outputs/runs/2026-01-01_lora-length-s0 --lambdas 1 0.5 0 --budget 5",
    )
    parser.add_argument("run_dir", help="a completed run directory (metrics.json, run_record.json, adapter/ "
                                        "or model/)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(DEFAULT_LAMBDAS),
                        help="scales of the intruder singular values (1 = the run as it is, 0 = removed)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="mean forgetting (points) the best lambda may cost (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        out = repair_run(args.run_dir, args.lambdas, args.budget)
    except (FileNotFoundError, ValueError) as err:
        print(f"forgetlab-repair: {err}", file=sys.stderr)
        return 1
    for r in out["results"]:
        print(f"lambda={r['lambda']:<5g} target_gain={r['target_gain']:7.2f}  "
              f"mean_forgetting={r['mean_forgetting']:7.2f}  intruders={r['intruders']}  "
              f"matrices_repaired={r['matrices_repaired']}")
    best = out["best"]
    print(f"best lambda within forgetting {args.budget:g}: " + ("none" if best is None else f"{best['lambda']:g}")
          + f"  ({Path(args.run_dir) / REPAIR_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
