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

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forgetlab.config.schema import DiagnosticsConfig
from forgetlab.evaluation.forgetting import summarize_forgetting
from forgetlab.evaluation.predictions import PredictionWriter
from forgetlab.evaluation.scoring import score_tasks_examples
from forgetlab.models.language_model import LanguageModel
from forgetlab.run_dirs import METRICS_FILE, RECORD_FILE, REPAIR_FILE, completed_metrics
from forgetlab.strategies.export import load_run_model
from forgetlab.strategies.spectral import repair_state_dict
from forgetlab.strategies.weight_movement import linear_weight_names
from forgetlab.tasks.suite import TaskSuite
from forgetlab.utils.determinism import make_deterministic
from forgetlab.utils.io import read_json, write_json

DEFAULT_LAMBDAS = (1.0, 0.75, 0.5, 0.25, 0.0)
DEFAULT_BUDGET = 5.0


def linear_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every linear layer's weight (tied ones once), detached, by parameter name."""
    params = dict(model.named_parameters())
    return {k: params[k].detach() for k in linear_weight_names(model, params)}


def pretrained_source(config: dict, metrics: dict) -> str | None:
    """Where W0 lives: the base-stage checkpoint of a built-in model; None = the recorded `model.build`."""
    base = metrics.get("base")
    return str(Path(base["path"]) / "model") if base and base.get("path") else None


def load_pretrained_weights(lm: LanguageModel, source: str | None) -> dict[str, torch.Tensor]:
    """W0 of every linear layer: `lm` as built from the record (model=hf) or the checkpoint at `source`."""
    if source is None:
        return linear_weights(lm.model)  # loaded from the recorded name_or_path, as the run loaded it
    if not Path(source).is_dir():
        raise FileNotFoundError(f"the base model this run started from is gone: {source} "
                                "(base-stage cache cleared?)")
    return linear_weights(type(lm.model).from_pretrained(source))


def best_lambda(results: Sequence[dict], budget: float | None) -> dict | None:
    """The entry with the highest target gain whose mean forgetting is within `budget` (ties: larger lambda,
    the smaller change); None when no lambda fits or there is no budget."""
    if budget is None:
        return None
    fits = [r for r in results if r["mean_forgetting"] <= budget + 1e-9]
    return max(fits, key=lambda r: (r["target_gain"], r["lambda"]), default=None)


def rebuild(run_dir: Path) -> tuple[dict, dict, LanguageModel, TaskSuite]:
    """(metrics, resolved config, the run's model in a LanguageModel, task suite) from the run's files."""
    metrics = completed_metrics(run_dir)
    if metrics is None:
        raise ValueError(f"{run_dir / METRICS_FILE} is not the record of a completed run")
    record = read_json(run_dir / RECORD_FILE)
    config = record.get("config") or {}
    if "model" not in config or "tasks" not in config:
        raise ValueError(f"{run_dir / RECORD_FILE} holds no resolved model/tasks config")
    cfg = OmegaConf.create(config)
    make_deterministic(cfg.get("seed", 0), cfg.get("threads", 0), cfg.get("deterministic", True))
    lm: LanguageModel = instantiate(cfg.model.build)  # tokenizer, kind and lengths exactly as the run had them
    suite: TaskSuite = instantiate(cfg.tasks, _convert_="all")
    return metrics, config, lm, suite


def repair_run(run_dir: str | Path, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
               budget: float | None = DEFAULT_BUDGET, write: bool = True) -> dict:
    """Scores of the run's model with its intruders scaled by each lambda; written to RUN_DIR/repair.json."""
    run_dir = Path(run_dir)
    metrics, config, lm, suite = rebuild(run_dir)
    diag = DiagnosticsConfig(**(config.get("diagnostics") or {}))
    before_w = load_pretrained_weights(lm, pretrained_source(config, metrics))
    model, _ = load_run_model(run_dir)
    lm.replace_model(model)
    tuned = {k: v.clone() for k, v in linear_weights(model).items()}
    evalc = config.get("eval") or {}
    predictions = PredictionWriter.from_eval(run_dir, evalc)  # predictions/repair/lambda=<l>/<task>.jsonl
    predictions.enabled = predictions.enabled and write
    results = []
    for lam in lambdas:
        new, info = repair_state_dict(before_w, tuned, float(lam), k=diag.intruder_k, eps=diag.intruder_eps,
                                      max_numel=diag.max_numel)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in new:
                    param.copy_(new[name])
        after, rows = score_tasks_examples(lm, suite.eval_tasks(), "test", evalc.get("batch_size", 256),
                                           evalc.get("test_max_examples"), evalc.get("max_batch_tokens"))
        predictions.write(f"repair/lambda={float(lam):g}", rows)
        results.append({"lambda": float(lam), **summarize_forgetting(metrics["before"], after, metrics["target"]),
                        "after": after, "intruders": info["intruders"], "matrices_repaired": info["repaired"],
                        "per_matrix": info["per_matrix"]})
    out = {
        "run_name": metrics.get("run_name"),
        "strategy": metrics.get("strategy"),
        "target": metrics["target"],
        "k": diag.intruder_k,
        "eps": diag.intruder_eps,
        "max_numel": diag.max_numel,
        "budget": budget,
        "run": {k: metrics[k] for k in ("target_gain", "mean_forgetting")},
        "results": results,
        "best": None,
        "predictions": predictions.summary(after=None),  # one folder per lambda: predictions/repair/lambda=<l>/
    }
    best = best_lambda(results, budget)
    if best is not None:
        out["best"] = {k: best[k] for k in ("lambda", "target_gain", "mean_forgetting")}
    if write:
        write_json(run_dir / REPAIR_FILE, out)
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
