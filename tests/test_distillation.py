"""Distillation from the starting model (LwF, strategy.penalty.kind=lwf): the term is zero while the model is
the starting model and positive once it moved, for full fine-tuning (a frozen copy) and peft (the adapter
switched off); it composes with every data kind; the frozen copy never enters a checkpoint; a run killed
and resumed ends exactly as the uninterrupted one; without a starting model it fails before training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from forgetlab.config import ConfigError, validate
from forgetlab.config.schema import DistillTokens
from forgetlab.strategies.penalties import Distillation
from tests.conftest import TINY, compose_config

SHORT = [*TINY, "eval.every_n_steps=0", "diagnostics.spectral=false"]
EXAMPLES = [("reverse: abc", "cba"), ("copy: hello", "hello"), ("uppercase: dog", "DOG")]


class CrashAt(L.Callback):
    """Ends training with an error after `step` optimizer steps (a killed run, in process)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def tiny_lm(model: str = "tiny_t5"):
    cfg = compose_config([*TINY, f"model={model}"])
    return instantiate(cfg.model.build)


def term(lm, distill: Distillation) -> torch.Tensor:
    batch = lm.collate([lm.encode(p, c) for p, c in EXAMPLES])
    logits, targets = lm.label_logits(batch)
    return distill(lm, batch, logits, targets)


def one_step(lm) -> None:
    params = [p for p in lm.model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    batch = lm.collate([lm.encode(p, c) for p, c in EXAMPLES])
    nll, ntok = lm.token_losses(batch)
    (nll.sum() / ntok.sum()).backward()
    opt.step()


@pytest.mark.parametrize("params", ["all", "lora", "ia3"])
def test_term_is_zero_at_the_start_and_positive_after_a_step(params):
    lm = tiny_lm()
    if params != "all":
        from forgetlab.config.schema import ParamsConfig, ParamsKind
        from forgetlab.strategies.adapters import apply_params

        peft = {"lora": {"_target_": "peft.LoraConfig", "r": 4, "lora_alpha": 8},
                "ia3": {"_target_": "peft.IA3Config"}}[params]
        apply_params(ParamsConfig(kind=ParamsKind(params), peft=peft), lm)
    lm.model.train()
    distill = Distillation(lm, weight=1.0, temperature=2.0)
    assert (distill.teacher is None) == (params != "all")  # peft: no copy, the adapter switched off
    start = term(lm, distill).item()
    assert abs(start) < 1e-6  # zero up to float32 rounding of two forwards of the same weights
    one_step(lm)
    after = term(lm, distill)
    assert after.item() > 1e-5 and after.requires_grad  # 10x the bound at the start (float noise)
    assert lm.model.training  # the teacher's eval mode does not leak into training


def test_all_tokens_distils_the_prompt_positions_of_a_causal_model():
    lm = tiny_lm("tiny_gpt")
    batch = lm.collate([lm.encode(p, c) for p, c in EXAMPLES])
    _, targets = lm.label_logits(batch)
    answer = Distillation(lm, 1.0, 1.0).positions(lm, batch, targets)
    every = Distillation(lm, 1.0, 1.0, DistillTokens.all).positions(lm, batch, targets)
    assert every.sum() > answer.sum() and bool((every | ~answer).all())


def test_no_starting_model_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"strategy.penalty.kind=lwf.*model.base_stage=false"):
        validate(compose_config([*TINY, "strategy=lwf", "model.base_stage=false"], tmp_path / "x"))


def penalties_logged(run_dir: Path) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [float(r["train/penalty"]) for r in csv.DictReader(f) if r.get("train/penalty")]


@pytest.mark.parametrize("extra", [["strategy=replay"], ["strategy=multitask"], ["strategy=lora"]],
                         ids=["replay", "multitask", "lora"])
def test_composes_with_data_kinds_and_peft(extra, tmp_path, cache_dir):
    from forgetlab.run import run_experiment

    metrics = run_experiment(compose_config([*SHORT, *extra, "strategy.penalty.kind=lwf", "strategy.optim.steps=4",
                                             "trainer.log_every_n_steps=1"], tmp_path / "run", cache_dir))
    logged = penalties_logged(tmp_path / "run")
    assert metrics["steps"] == 4 and len(logged) == 4
    assert abs(logged[0]) < 1e-6 and logged[-1] > 1e-4  # the first step sees the starting model itself


def stable(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k != "timing"}
    out["base"] = {k: v for k, v in (metrics.get("base") or {}).items() if k != "cached"}
    return out


def test_checkpoint_holds_no_frozen_copy_and_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path, cache_dir):
    from forgetlab.run import run_experiment

    common = [*SHORT, "strategy=lwf", "strategy.optim.steps=20", "checkpoint_every_n_steps=10"]
    reference = run_experiment(compose_config(common, tmp_path / "ref", cache_dir))

    crash = ["+callbacks.crash._target_=tests.test_distillation.CrashAt", "+callbacks.crash.step=13"]
    with pytest.raises(RuntimeError, match="crash at step 13"):
        run_experiment(compose_config([*common, *crash], tmp_path / "run", cache_dir))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 10
    keys = set(ckpt["state_dict"])
    assert keys and all(k.startswith("model.") for k in keys)  # the model being trained, nothing else
    from transformers import AutoModelForSeq2SeqLM

    trained = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ref" / "model")
    assert len(keys) == len(trained.state_dict())

    resumed = run_experiment(compose_config(common, tmp_path / "run", cache_dir))
    assert stable(resumed) == stable(json.loads(json.dumps(reference)))
