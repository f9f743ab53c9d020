"""Partial fine-tuning (blocks, tensor kinds, names; BitFit; HFT) and the MoFO optimizer: what trains stays the
only thing that moves, after real optimizer steps on the tiny models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from forgetlab.config import ConfigError, validate
from forgetlab.config.schema import BlockChoice, ParamsConfig, ParamsKind, PartialConfig, TensorKind
from forgetlab.strategies.adapters import apply_params
from forgetlab.strategies.mofo import MoFO, top_count
from forgetlab.strategies.partial import BLOCK, describe_tensors, select_tensors
from tests.conftest import TINY, compose_config

PRESETS = ["bitfit", "partial_top", "hft", "mofo"]


@pytest.fixture
def t5():
    from forgetlab.models.tiny import build_tiny_t5

    return build_tiny_t5(name="tiny_t5", d_model=32, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16,
                         d_ff=64, dropout_rate=0.0, init_seed=0, max_length=64)


@pytest.fixture
def gpt():
    from forgetlab.models.tiny import build_tiny_gpt

    return build_tiny_gpt(name="tiny_gpt", n_embd=32, n_layer=3, n_head=2, dropout=0.0, init_seed=0, max_length=64)


def llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2))


def partial(**kw) -> ParamsConfig:
    return ParamsConfig(kind=ParamsKind.partial, partial=PartialConfig(**kw))


def train_steps(lm, optimizer_cls=torch.optim.AdamW, steps: int = 3, **kw) -> torch.optim.Optimizer:
    """A few real optimizer steps on the language-modelling loss of a small batch."""
    optimizer = optimizer_cls([p for p in lm.model.parameters() if p.requires_grad], lr=1e-2, **kw)
    train_steps_with(lm, optimizer, steps)
    return optimizer


def train_steps_with(lm, optimizer: torch.optim.Optimizer, steps: int = 1) -> None:
    batch = lm.collate([lm.encode(p, c) for p, c in [("abc", "cba"), ("hello", "olleh"), ("xy z", "z yx")]])
    for _ in range(steps):
        nll, count = lm.token_losses(batch)
        (nll.sum() / count.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_only_selected_moved(lm, before: dict[str, torch.Tensor]) -> None:
    for name, p in lm.model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[name]), f"{name} trains but did not move"
        else:
            assert torch.equal(p, before[name]), f"{name} is frozen but moved"


# ---------------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_and_validate(preset, tmp_path):
    typed = validate(compose_config([f"strategy={preset}"], tmp_path))
    assert typed.strategy.name == preset
    if preset == "mofo":
        assert typed.strategy.optim.optimizer["_target_"] == "forgetlab.strategies.mofo.MoFO"
        assert typed.strategy.params.kind == ParamsKind.all
    else:
        assert typed.strategy.params.kind == ParamsKind.partial


# ---------------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("name,expected", [
    ("encoder.block.1.layer.0.SelfAttention.q.weight", ("encoder.block", "1")),
    ("decoder.block.0.layer.2.DenseReluDense.wo.weight", ("decoder.block", "0")),
    ("transformer.h.3.attn.c_attn.bias", ("transformer.h", "3")),
    ("model.layers.12.mlp.down_proj.weight", ("model.layers", "12")),
    ("bert.encoder.layer.5.output.dense.weight", ("bert.encoder.layer", "5")),
])
def test_blocks_are_found_by_name_on_every_family(name, expected):
    assert BLOCK.match(name).groups() == expected
    assert BLOCK.match("shared.weight") is None and BLOCK.match("transformer.wte.weight") is None


def test_top_and_bottom_blocks_per_stack(t5, gpt):
    top = select_tensors(PartialConfig(blocks=BlockChoice.top, k=1, freeze_embeddings=True), t5.model, 0)
    blocks = {".".join(n.split(".")[:3]) for n in top.trainable if BLOCK.match(n)}
    assert blocks == {"encoder.block.1", "decoder.block.1"}
    assert "shared.weight" in top.frozen and "decoder.final_layer_norm.weight" in top.trainable
    bottom = select_tensors(PartialConfig(blocks=BlockChoice.bottom, k=2), gpt.model, 0)
    assert {n.split(".")[2] for n in bottom.trainable if BLOCK.match(n)} == {"0", "1"}
    assert "transformer.wte.weight" in bottom.trainable  # outside the blocks: trains unless frozen
    model = llama()
    top = select_tensors(PartialConfig(blocks=BlockChoice.top, k=1, kinds=[TensorKind.matrix]), model, 0)
    assert {n for n in top.trainable if not n.startswith("model.layers.2.")} == {"lm_head.weight"}
    assert len([n for n in top.trainable if n.startswith("model.layers.2.")]) == 7


@pytest.mark.parametrize("config", [
    {"blocks": BlockChoice.top, "k": 1, "freeze_embeddings": True},
    {"include": ["*.SelfAttention.*", "*.layer_norm.*"], "exclude": ["encoder.*"]},
    {"half": True, "freeze_embeddings": True},
])
def test_frozen_tensors_stay_bit_identical_after_real_steps(t5, config):
    apply_params(partial(**config), t5)
    frozen = [n for n, p in t5.model.named_parameters() if not p.requires_grad]
    assert frozen and len(frozen) < len(list(t5.model.parameters()))
    before = snapshot(t5.model)
    train_steps(t5)
    assert_only_selected_moved(t5, before)


def test_include_and_exclude_patterns(t5):
    sel = select_tensors(PartialConfig(include=["*.SelfAttention.*"], exclude=["encoder.*"]), t5.model, 0)
    assert sel.trainable and all(n.startswith("decoder.") and ".SelfAttention." in n for n in sel.trainable)


# ---------------------------------------------------------------------------------------------- BitFit


def test_bitfit_trains_only_biases_on_gpt2(gpt):
    summary = apply_params(partial(kinds=[TensorKind.bias]), gpt)
    trainable = [n for n, p in gpt.model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(".bias") for n in trainable)
    assert len(trainable) == len([n for n, _ in gpt.model.named_parameters() if n.endswith(".bias")])
    assert summary["trainable_tensors"] == len(trainable)
    before = snapshot(gpt.model)
    train_steps(gpt)
    assert_only_selected_moved(gpt, before)


def test_strict_bitfit_on_t5_is_refused_naming_what_it_has(t5):
    kinds = {t.kind for t in describe_tensors(t5.model)}
    assert TensorKind.bias not in kinds  # T5 has no bias vectors at all
    with pytest.raises(ConfigError) as err:
        select_tensors(PartialConfig(kinds=[TensorKind.bias]), t5.model, 0)
    msg = str(err.value)
    assert "strategy.params.partial" in msg and "'matrix'" in msg and "'norm'" in msg
    assert "{'encoder.block': 2, 'decoder.block': 2}" in msg and "kinds=[bias,norm]" in msg


def test_bitfit_preset_trains_norm_scales_on_t5(t5, tmp_path):
    params = validate(compose_config(["strategy=bitfit"], tmp_path)).strategy.params
    apply_params(params, t5)
    trainable = [n for n, p in t5.model.named_parameters() if p.requires_grad]
    assert trainable and all("layer_norm" in n for n in trainable)


# ---------------------------------------------------------------------------------------------- HFT


def _matrices_per_block(model) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for t in describe_tensors(model):
        if t.block is not None and t.kind == TensorKind.matrix:
            out.setdefault(t.block, []).append(t.name)
    return out


@pytest.mark.parametrize("family", ["t5", "gpt", "llama"])
def test_hft_freezes_half_of_each_blocks_matrices_and_the_same_half_per_seed(family, t5, gpt):
    model = {"t5": t5.model, "gpt": gpt.model, "llama": None}[family] or llama()
    sel = select_tensors(PartialConfig(half=True), model, seed=0)
    frozen = set(sel.frozen)
    for block, matrices in _matrices_per_block(model).items():
        n_frozen = sum(m in frozen for m in matrices)
        allowed = {len(matrices) // 2, math.ceil(len(matrices) / 2)}  # Llama's 7: 3 or 4
        assert n_frozen in allowed, (block, n_frozen, len(matrices))
    assert all(t.kind != TensorKind.matrix or t.block is not None or t.name not in frozen
               for t in describe_tensors(model))  # outside the blocks nothing is frozen
    assert select_tensors(PartialConfig(half=True), model, seed=0).frozen == sel.frozen
    assert select_tensors(PartialConfig(half=True), model, seed=1).frozen != sel.frozen


def test_hft_freezes_a_frozen_matrix_s_bias_with_it(gpt):
    sel = select_tensors(PartialConfig(half=True), gpt.model, seed=3)
    for module in sel.half_frozen:
        assert f"{module}.weight" in sel.frozen and f"{module}.bias" in sel.frozen


# ---------------------------------------------------------------------------------------------- MoFO


@pytest.mark.parametrize("fraction", [0.1, 0.5])
@pytest.mark.parametrize("fused", [False, True])
def test_mofo_updates_exactly_the_fraction_of_each_tensor(t5, fraction, fused):
    """Per tensor, one step moves ceil(fraction x numel) entries: those with the largest |momentum|. (Decoupled
    weight decay, AdamW's default 0.01, moves a selected entry even where its gradient is zero.)"""
    optimizer = train_steps(t5, MoFO, steps=2, fraction=fraction, fused=fused)  # moments exist
    before = snapshot(t5.model)
    train_steps_with(t5, optimizer)
    for name, p in t5.model.named_parameters():
        moved = (p != before[name]).reshape(-1)
        assert int(moved.sum()) == top_count(fraction, p.numel()), name
        momentum = optimizer.state[p]["exp_avg"].abs().reshape(-1)
        assert momentum[moved].min() >= momentum[~moved].max(), f"{name}: not the largest |momentum|"


def test_mofo_without_weight_decay_moves_at_most_the_fraction(gpt):
    optimizer = train_steps(gpt, MoFO, steps=1, fraction=0.3, weight_decay=0.0)
    before = snapshot(gpt.model)
    train_steps_with(gpt, optimizer)
    for name, p in gpt.model.named_parameters():
        k, moved = top_count(0.3, p.numel()), int((p != before[name]).sum())
        nonzero = int((optimizer.state[p]["exp_avg"] != 0).sum())
        assert moved <= k and (moved > 0 or nonzero == 0), name


def test_mofo_with_fraction_one_is_adamw_exactly(gpt):
    import copy

    other = copy.deepcopy(gpt)
    train_steps(gpt, MoFO, steps=3, fraction=1.0, weight_decay=0.1)
    train_steps(other, torch.optim.AdamW, steps=3, weight_decay=0.1)
    assert all(torch.equal(a, b) for a, b in zip(gpt.model.parameters(), other.model.parameters(), strict=True))


def test_mofo_resumes_identically_from_a_state_dict(t5):
    import copy

    resumed = copy.deepcopy(t5)
    train_steps(t5, MoFO, steps=4, fraction=0.2)
    optimizer = train_steps(resumed, MoFO, steps=2, fraction=0.2)
    state = copy.deepcopy(optimizer.state_dict())
    assert state["param_groups"][0]["fraction"] == 0.2
    fresh = MoFO(list(resumed.model.parameters()), lr=1e-2, fraction=0.9)  # the saved fraction wins
    fresh.load_state_dict(state)
    train_steps_with(resumed, fresh, steps=2)
    assert all(torch.equal(a, b) for a, b in zip(t5.model.parameters(), resumed.model.parameters(), strict=True))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("overrides,needles", [
    (["strategy=mofo", "strategy.optim.optimizer.fraction=0"], ["strategy.optim.optimizer.fraction=0", "(0, 1]"]),
    (["strategy=mofo", "strategy.optim.optimizer.fraction=1.5"], ["fraction=1.5", "(0, 1]"]),
    (["strategy=partial_top", "strategy.params.partial.k=null"], ["strategy.params.partial.k", "blocks=top"]),
    (["strategy=hft", "strategy.params.partial.k=2"], ["strategy.params.partial.k=2", "top|bottom"]),
    (["strategy.params.partial.half=true"], ["strategy.params.partial.half", "kind=partial"]),
    (["strategy=hft", "strategy.params.partial.kinds=[weights]"], ["kinds", "matrix"]),
])
def test_bad_config_fails_at_validation_naming_the_key(overrides, needles, tmp_path):
    from hydra.errors import HydraException

    with pytest.raises((ConfigError, HydraException)) as err:
        validate(compose_config(overrides, tmp_path))
    msg = str(err.value) + str(err.value.__cause__)
    assert all(n in msg for n in needles), msg


def test_mofo_refuses_a_bad_fraction_when_built_directly():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        MoFO([torch.nn.Parameter(torch.zeros(3))], fraction=0.0)


@pytest.mark.parametrize("config,needles", [
    ({"include": ["*.no_such_module.*"]}, ["partial.include", "'*.no_such_module.*'", "'encoder.block': 2"]),
    ({"blocks": BlockChoice.top, "k": 3}, ["partial.k=3", "1..2"]),
    ({"kinds": [TensorKind.embedding], "freeze_embeddings": True}, ["selects no parameter", "'embedding': 3"]),
])
def test_selections_the_model_cannot_meet_name_what_it_has(t5, config, needles):
    with pytest.raises(ConfigError) as err:
        select_tensors(PartialConfig(**config), t5.model, 0)
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_empty_selection_fails_before_the_base_stage_trains(tmp_path):
    from forgetlab.run import run_experiment

    cfg = compose_config(TINY + ["strategy=partial_top", "strategy.params.partial.include=[*.nothing]"],
                         tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ConfigError, match="strategy.params.partial.include"):
        run_experiment(cfg)
    assert not (tmp_path / "cache" / "base").exists(), "must fail before the base stage trains"


# ---------------------------------------------------------------------------------------------- a whole run


def test_hft_run_records_its_half_and_leaves_it_untouched(tmp_path, cache_dir):
    """The tiny experiment with HFT: metrics.json lists the frozen half, and the saved model's frozen
    matrices equal the base's bit for bit."""
    from safetensors.torch import load_file

    from forgetlab.run import run_experiment

    metrics = run_experiment(compose_config(TINY + ["strategy=hft", "seed=3"], tmp_path / "run", cache_dir))
    half = metrics["params_selection"]["half"]
    assert half["seed"] == 3 and half["frozen_matrices"]
    base = load_file(next(Path(metrics["base"]["path"]).glob("model/*.safetensors")))
    final = load_file(next((tmp_path / "run").glob("**/model.safetensors")))
    for module in half["frozen_matrices"]:
        assert torch.equal(base[f"{module}.weight"], final[f"{module}.weight"]), module
    trained = [n for n in final if n.endswith(".weight") and n.rsplit(".", 1)[0] not in half["frozen_matrices"]
               and "layer_norm" not in n and n in base]
    assert any(not torch.equal(base[n], final[n]) for n in trained)
