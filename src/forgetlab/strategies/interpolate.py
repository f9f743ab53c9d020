"""`forgetlab-interpolate RUN_DIR [--alphas 0 0.25 0.5 0.75 1] [--budgets 1 2 5 10] [--extrapolate]`: the
weights theta(alpha) = theta0 + alpha (theta - theta0) between the model a run started from (alpha = 0) and
the run's own (alpha = 1), every task rescored per alpha: a whole learning-forgetting curve from one finished
run, without training (WiSE-FT, Wortsman et al. 2022; model averaging, Lin et al. 2024).

What alpha scales, by kind of run (`method` in interpolation.json):
- `weights` (full fine-tuning): every floating tensor, torch.lerp(theta0, theta, alpha), which gives theta0 and
  theta exactly at the ends, so alpha = 0 and 1 reproduce the starting model's and the run's scores bit for bit.
- `lora_scale` (LoRA, rsLoRA): the adapter's contribution, scaling * alpha in every LoRA layer (W x + alpha
  s B A x), unmerged as the run scored it: exactly the weight-space line, and exact at both ends. Anything
  else the adapter trains (modules_to_save) is interpolated from its initial value.
- `adapter_from_init` (IA3, prompt tuning, other peft methods): the adapter's own parameters between their
  initial values (rebuilt with the run's seed, as the run built them) and the trained ones. For IA3 the
  initial vectors are ones, so alpha = 0 is the starting model; for prompt tuning alpha = 0 is the untrained
  virtual tokens, which are not the starting model (its gain and forgetting at alpha = 0 say how far apart).
- `merged` (DoRA, and LoRA inits that change the base weights such as PiSSA): their adapter switched to zero
  is not the starting model, so the run's merged weights are interpolated as for full fine-tuning; alpha = 1
  is then the merged model (same scores as the run, losses to float rounding).

Continual sequences: each stage t's weights are interpolated against theta at stage 0 (the starting model of
the sequence, the same reference its forgetting is measured against), giving one curve per stage in
`stages`; the top-level `results` are the last stage's. (Against each stage's start would answer another
question: how much of that one stage to keep.)

alpha outside [0, 1] extrapolates (a known trick, Ilharco et al. 2023) and is refused unless `--extrapolate`
(in a run: diagnostics.extrapolate=true) says it is deliberate.

Writes RUN_DIR/interpolation.json (gain and forgetting per alpha, the best alpha under each forgetting budget)
and prints one line per alpha; every other file of the run is left as it was. Shares its machinery with
`forgetlab-repair` (strategies/rescore.py). Exit status: 0 done, 1 RUN_DIR is not a finished run it can
interpolate or an alpha is refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from forgetlab.config import ConfigError
from forgetlab.config.checks import check_alphas
from forgetlab.evaluation.continual import learned_at
from forgetlab.run_dirs import INTERPOLATION_FILE
from forgetlab.strategies.export import load_run_model
from forgetlab.strategies.rescore import FinishedRun, best_under_budgets, rescore
from forgetlab.training.distributed import rank_and_world
from forgetlab.utils.io import write_json

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
LORA_INITS_KEEPING_BASE = (True, False, "gaussian")  # other inits (pissa, olora, ...) rewrite the base weights


def floating_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every floating parameter and buffer (tied ones once), by name."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return {n: t for n, t in named if t.is_floating_point()}


def lora_scales_exactly(config: Any) -> bool:
    """Whether scaling a LoRA adapter's contribution by 0 gives back the starting model (plain LoRA/rsLoRA)."""
    from peft import PeftType

    return (config.peft_type == PeftType.LORA and not getattr(config, "use_dora", False)
            and config.init_lora_weights in LORA_INITS_KEEPING_BASE)


class Interpolation:
    """The weight edit theta0 + alpha (theta - theta0) of a run's model (`stage` None) or of stage t's."""

    key, step = "alpha", "interpolation"

    def __init__(self, stage: int | None = None) -> None:
        self.stage = stage
        self.method = ""
        self.lerp: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # name -> (live, start, end)
        self.scales: list[tuple[Any, dict[str, float]]] = []  # (LoRA layer, its scaling per adapter)

    # ------------------------------------------------------------------ loading
    def load(self, run: FinishedRun) -> None:
        peft_config = self._peft_config(run)
        if peft_config is None or not (peft_config.is_prompt_learning or peft_config.peft_type.value != "LORA"
                                       or lora_scales_exactly(peft_config)):
            self._load_plain(run)
        else:
            self._load_adapter(run, peft_config)

    def _peft_config(self, run: FinishedRun) -> Any:
        """The adapter's peft config, or None for a run (or stage) whose weights are a plain model."""
        if self.stage is None:
            adapter = run.run_dir / "adapter"
            if not (adapter / "adapter_config.json").exists():
                return None
            from peft import PeftConfig

            return PeftConfig.from_pretrained(adapter)
        from forgetlab.config import validate
        from forgetlab.config.schema import AdapterCarry, ParamsKind
        from forgetlab.strategies.adapters import build_peft_config

        config = validate(_as_config(run.config))
        if config.strategy.params.kind == ParamsKind.all or config.sequence.adapter == AdapterCarry.merge:
            return None  # merged after every stage: the stage's weights are a plain model
        return build_peft_config(config.strategy.params, run.lm)

    def _tuned_weights(self, run: FinishedRun) -> dict[str, torch.Tensor]:
        from forgetlab.training.stage_store import STAGES_DIR, WEIGHTS_FILE

        path = run.run_dir / STAGES_DIR / f"{self.stage:02d}" / WEIGHTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the sequence's stage {self.stage} weights are gone")
        return torch.load(path, map_location="cpu", weights_only=True)

    def _load_plain(self, run: FinishedRun) -> None:
        """Full fine-tuning (or a merged adapter): theta0 and theta as two plain models, theta edited."""
        start = floating_tensors(run.starting_model())
        if self.stage is None:
            model, _ = load_run_model(run.run_dir)  # adapters merged
            self.method = "weights" if not (run.run_dir / "adapter").is_dir() else "merged"
        else:
            from forgetlab.strategies.carry import load_stage_weights

            model = run.starting_model(fresh=True)
            load_stage_weights(model, self._tuned_weights(run))
            self.method = "weights"
        run.lm.replace_model(model)
        tuned = floating_tensors(model)
        if tuned.keys() != start.keys():
            raise ValueError(f"{run.run_dir}: the run's model and the starting model differ in their tensors "
                             f"({sorted(tuned.keys() ^ start.keys())[:5]}); cannot interpolate")
        self.lerp = {n: (t, start[n].detach().clone(), t.detach().clone()) for n, t in tuned.items()
                     if not torch.equal(t, start[n])}

    def _load_adapter(self, run: FinishedRun, peft_config: Any) -> None:
        """The run's adapter on a fresh starting model, built as the run built it (its seed: an adapter's
        initial values are part of the line for IA3 and prompt tuning)."""
        from peft import get_peft_model
        from peft.tuners.lora import LoraLayer

        peft_config.inference_mode = False  # the adapter's parameters require grad: they are what trained
        run.reseed()
        model = get_peft_model(run.starting_model(fresh=True), peft_config)
        adapter = {n: p for n, p in model.named_parameters() if p.requires_grad}
        initial = {n: p.detach().clone() for n, p in adapter.items()}
        if self.stage is None:
            from peft.utils import load_peft_weights, set_peft_model_state_dict

            set_peft_model_state_dict(model, load_peft_weights(str(run.run_dir / "adapter")))
        else:
            from forgetlab.strategies.carry import load_stage_weights

            load_stage_weights(model, self._tuned_weights(run))
        run.lm.replace_model(model)
        if peft_config.peft_type.value == "LORA" and not peft_config.is_prompt_learning:
            self.method = "lora_scale"
            self.scales = [(m, dict(m.scaling)) for m in model.modules() if isinstance(m, LoraLayer)]
            scaled = ("lora_A.", "lora_B.", "lora_embedding_A.", "lora_embedding_B.")
            adapter = {n: p for n, p in adapter.items() if not any(s in n for s in scaled)}
        else:
            self.method = "adapter_from_init"
        self.lerp = {n: (p, initial[n], p.detach().clone()) for n, p in adapter.items()}

    # ------------------------------------------------------------------ one alpha
    def apply(self, run: FinishedRun, alpha: float) -> dict[str, Any]:
        for layer, scaling in self.scales:
            for name, value in scaling.items():
                layer.scaling[name] = value * alpha
        with torch.no_grad():
            for live, start, end in self.lerp.values():
                live.copy_(torch.lerp(start, end, alpha))  # exact at alpha 0 and 1
        return {}


def _as_config(config: dict) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create(config)


def interpolate_run(run_dir: str | Path, alphas: Sequence[float] = DEFAULT_ALPHAS,
                    budgets: Sequence[float] | None = None, extrapolate: bool = False, write: bool = True) -> dict:
    """Gain and forgetting of theta0 + alpha (theta - theta0) for each alpha, and the best alpha under each
    forgetting budget (default: the run's `select.budgets`); written to RUN_DIR/interpolation.json."""
    check_alphas(alphas, extrapolate, "alphas")
    run = FinishedRun.load(run_dir)
    if budgets is None:
        budgets = (run.config.get("select") or {}).get("budgets") or [1.0, 2.0, 5.0, 10.0]
    before = run.metrics["before"]
    out: dict[str, Any] = {**run.headline(), "alphas": [float(a) for a in alphas], "extrapolate": extrapolate,
                           "budgets": [float(b) for b in budgets], "method": None}
    stages = (run.config.get("sequence") or {}).get("stages") or []
    if isinstance(run.metrics.get("continual"), dict) and stages:
        out["reference"] = "stage 0 (the sequence's starting model)"
        out["stages"] = []
        for t in range(1, len(stages) + 1):
            edit = Interpolation(stage=t)
            target = list(learned_at(stages[:t]))
            results = rescore(run, edit, alphas, before, target, step=f"interpolation/stage_{t}")
            out["stages"].append({"stage": t, "target": target, "results": results,
                                  "best_under_budgets": best_under_budgets(results, "alpha", budgets)})
            out["method"] = edit.method
        out["results"] = out["stages"][-1]["results"]
    else:
        edit = Interpolation()
        out["results"] = rescore(run, edit, alphas, before, run.metrics["target"])
        out["method"] = edit.method
    out["best_under_budgets"] = best_under_budgets(out["results"], "alpha", budgets)
    if write and rank_and_world()[0] == 0:  # several processes score it together; one writes
        write_json(run.run_dir / INTERPOLATION_FILE, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="forgetlab-interpolate",
        description="Rescore every task of a finished run at theta0 + alpha (theta - theta0) for each alpha.",
        epilog="Example: forgetlab-interpolate outputs/runs/2026-01-01_full-length-s0 --alphas 0 0.5 1 --budgets 5",
    )
    parser.add_argument("run_dir", help="a completed run directory (metrics.json, run_record.json, adapter/, "
                                        "model/ or stages/)")
    parser.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS),
                        help="0 = the starting model, 1 = the run as trained (default: %(default)s)")
    parser.add_argument("--budgets", type=float, nargs="+", default=None,
                        help="mean forgetting (points) budgets to pick the best alpha under (default: the run's "
                             "select.budgets)")
    parser.add_argument("--extrapolate", action="store_true", help="allow alphas outside [0, 1] (deliberately)")
    args = parser.parse_args(argv)
    try:
        out = interpolate_run(args.run_dir, args.alphas, args.budgets, args.extrapolate)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        print(f"forgetlab-interpolate: {err}", file=sys.stderr)
        return 1
    for r in out["results"]:
        print(f"alpha={r['alpha']:<5g} target_gain={r['target_gain']:7.2f}  mean_forgetting={r['mean_forgetting']:7.2f}")
    for b in out["best_under_budgets"]:
        print(f"best alpha within forgetting {b['budget']:g}: " + ("none" if b["alpha"] is None else f"{b['alpha']:g}"))
    print(f"({Path(args.run_dir) / INTERPOLATION_FILE}, method {out['method']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
