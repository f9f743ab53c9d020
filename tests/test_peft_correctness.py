"""The PEFT path is what it claims: each LoRA variant preset composes, configures peft as named and trains 2
steps through the real Lightning loop; the frozen base weights stay bit-identical (PiSSA excepted: it moves
the top singular directions into the adapter by design); the merged export gives the adapter model's outputs;
and a LoRA run at learning rate 0 scores exactly as the base model it started from."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from forgetlab.config import validate
from forgetlab.strategies.adapters import apply_params, merged_copy
from forgetlab.strategies.export import load_run_model
from forgetlab.strategies.saving import save_final_model
from forgetlab.strategies.weight_movement import snapshot_weights, weight_movement
from forgetlab.training.fit import fit
from forgetlab.training.mixing import build_training_data
from tests.conftest import TINY, compose_config

LINEAR = 32  # nn.Linear weights of the tiny T5 (lm_head is tied to the embeddings): 24 attention, 8 MLP
MLP = 8


def lora_config(lm):
    return lm.model.peft_config["default"]


CHECKS = {  # what each preset must have told peft
    "lora": lambda c: not c.use_rslora and not c.use_dora and c.init_lora_weights is True,
    "lora_all_linear": lambda c: set(c.target_modules) >= {"q", "k", "v", "o", "wi", "wo"},
    "rslora": lambda c: c.use_rslora and not c.use_dora,
    "pissa": lambda c: c.init_lora_weights == "pissa",
    "dora": lambda c: c.use_dora and not c.use_rslora,
}


@pytest.mark.parametrize("preset", list(CHECKS))
def test_variant_trains_two_steps_keeps_base_weights_and_exports_the_same_model(preset, tmp_path):
    cfg = compose_config(TINY + [f"strategy={preset}", "strategy.optim.steps=2"], tmp_path / "run")
    config = validate(cfg)
    torch.manual_seed(0)
    lm = instantiate(cfg.model.build)
    suite = instantiate(cfg.tasks, _convert_="all")
    lm.model.save_pretrained(tmp_path / "base")
    lm.tokenizer.save_pretrained(tmp_path / "base")
    start = snapshot_weights(lm.model)
    apply_params(config.strategy.params, lm)
    assert CHECKS[preset](lora_config(lm)), lora_config(lm)
    at_init = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    merged0 = dict(merged_copy(lm.model).named_parameters())
    for name, w in start.items():  # the adapter starts as the identity: merged == base (to rounding)
        assert torch.allclose(merged0[name], w, atol=1e-5), name

    optim = config.strategy.optim
    train, _ = build_training_data(config.strategy.data, suite, optim.steps * optim.batch_size, seed=0)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    stats = fit(lm, train, trainer, optim, seed=0)
    assert stats["steps"] == 2
    trained = [n for n, p in lm.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained), trained[:5]
    assert any(not torch.equal(p.detach(), at_init[n]) for n, p in lm.model.named_parameters() if p.requires_grad)
    frozen = {n: p for n, p in lm.model.named_parameters() if not p.requires_grad}
    assert all(torch.equal(p.detach(), at_init[n]) for n, p in frozen.items()), "a frozen weight moved"
    base_layers = {n.replace(".base_layer", "").removeprefix("base_model.model."): p for n, p in frozen.items()
                   if ".base_layer." in n}
    assert len(base_layers) == (LINEAR if preset == "lora_all_linear" else LINEAR - MLP)
    changed = [n for n, p in base_layers.items() if not torch.equal(p.detach(), start[n])]
    if preset == "pissa":  # the residual W - B0 A0 is the frozen weight, by design
        assert len(changed) == len(base_layers)
    else:
        assert changed == [], changed

    movement = weight_movement(start, lm.model)
    assert movement["spectral"]["total"]["unchanged"] == (0 if preset == "lora_all_linear" else MLP)
    assert movement["spectral"]["total"]["matrices"] + movement["spectral"]["total"]["unchanged"] == LINEAR

    save_final_model(lm, tmp_path / "run", str(tmp_path / "base"))
    exported, _ = load_run_model(tmp_path / "run")
    rows = suite.tasks[suite.target].splits["test"][:8]
    batch = lm.collate([lm.encode(p, c) for p, c in zip(rows["prompt"], rows["completion"])])
    lm.model.eval()
    with torch.no_grad():
        adapter_logits = lm.model(**batch).logits
        exported_logits = exported(**batch).logits
    assert torch.allclose(adapter_logits, exported_logits, atol=1e-5), (adapter_logits - exported_logits).abs().max()
    before_generate = lm.generate(rows["prompt"], 12)
    lm.replace_model(exported)
    assert lm.generate(rows["prompt"], 12) == before_generate


@pytest.fixture(scope="module")
def lora_lr0_run(tmp_path_factory, cache_dir):
    from forgetlab.run import run_experiment

    run_dir = tmp_path_factory.mktemp("lora_lr0")
    cfg = compose_config(TINY + ["strategy=lora", "strategy.optim.lr=0", "strategy.optim.steps=2",
                                 "eval.every_n_steps=0"], run_dir, cache_dir)
    return run_dir, run_experiment(cfg)


def test_lora_at_lr_zero_scores_exactly_as_the_base_model(lora_lr0_run):
    _, metrics = lora_lr0_run
    assert metrics["steps"] == 2
    assert metrics["after"] == metrics["before"]  # every score and loss, bit for bit
    assert metrics["mean_forgetting"] == 0.0 and metrics["target_gain"] == 0.0
    assert all(v == 0.0 for v in metrics["loss_increase"].values())
    movement = metrics["weight_movement"]
    assert movement["total_l2"] == 0.0 and movement["adapter_l2_norm"] > 0  # A is random, B is zero
    assert movement["spectral"]["total"] == {"matrices": 0, "intruders": 0, "with_intruders": 0, "skipped": 0,
                                             "unchanged": LINEAR}


def test_repair_of_an_adapter_run_at_lambda_one_is_exact(lora_lr0_run):
    from forgetlab.strategies.repair import repair_run

    run_dir, metrics = lora_lr0_run
    out = repair_run(run_dir, [1.0], budget=None, write=False)
    assert out["results"][0]["after"] == metrics["after"]
    assert out["results"][0]["intruders"] == 0


def test_small_svds_run_on_one_thread_and_the_count_is_restored():
    from forgetlab.strategies.weight_movement import small_svd_threads

    threads = torch.get_num_threads()
    with small_svd_threads([torch.zeros(512, 128)]):
        assert torch.get_num_threads() == 1
    with small_svd_threads([torch.zeros(513, 128)]):
        assert torch.get_num_threads() == threads
    assert torch.get_num_threads() == threads
