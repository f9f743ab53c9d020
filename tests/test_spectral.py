"""Intruder dimensions on small matrices whose answer is known by construction."""

from __future__ import annotations

import json

import pytest
import torch

from forgetlab.strategies.spectral import (
    DEFAULT_EPS,
    DEFAULT_K,
    default_group,
    intruder_dimensions,
    repair_state_dict,
    scale_intruders,
    spectral_diagnostics,
)


def orthonormal(n: int, r: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))
    return q


def planted(m: int = 64, n: int = 48, rank: int = 8, sigma: float = 5.0, seed: int = 0):
    """W0 of rank `rank` (singular values in [1, 2]) and W = W0 + sigma u v^T, u and v orthogonal to W0.

    [U0 u] diag(S0, sigma) [V0 v]^T is then an exact SVD of W: its top direction (sigma > 2) is new.
    """
    gen = torch.Generator().manual_seed(seed)
    left, right = orthonormal(m, rank + 1, gen), orthonormal(n, rank + 1, gen)
    s0 = torch.linspace(2.0, 1.0, rank, dtype=torch.float64)
    w0 = (left[:, :rank] * s0) @ right[:, :rank].T
    update = sigma * torch.outer(left[:, rank], right[:, rank])
    return w0.float(), (w0 + update).float(), update.float()


def full_rank_planted(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Full-rank tall W0 and W = W0 + sigma u v^T, u outside W0's column space, sigma = 10 ||W0||."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(64, 24, generator=gen)
    u0 = torch.linalg.svd(w0, full_matrices=False)[0]
    u = torch.randn(64, generator=gen)
    u -= u0 @ (u0.T @ u)
    v = torch.randn(24, generator=gen)
    sigma = 10 * float(torch.linalg.matrix_norm(w0, ord=2))
    return w0, w0 + sigma * torch.outer(u / u.norm(), v / v.norm()), sigma


def test_defaults_follow_the_paper():
    assert DEFAULT_K == 10 and DEFAULT_EPS == 0.5


def test_rescaled_singular_values_are_not_intruders():
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(40, 30, generator=gen)
    u0, s0, vh0 = torch.linalg.svd(w0, full_matrices=False)
    for s in (2 * s0, s0.flip(0)):  # doubled, and reordered: W's top vectors are W0's bottom ones
        res = intruder_dimensions(w0, (u0 * s) @ vh0)
        assert res["count"] == 0 and res["indices"] == []
        assert res["k"] == 10 and min(res["top_k_similarity"]) > 0.99


def test_planted_update_orthogonal_to_w0_is_intruder_zero():
    w0, w, _ = planted()
    res = intruder_dimensions(w0, w)
    assert res["count"] == 1 and res["indices"] == [0]
    assert res["singular_values"][0] == pytest.approx(5.0, rel=1e-4)
    assert res["max_similarity"][0] < 1e-3
    # the rank-8 W0 leaves W with 9 live directions: the 10th (zero) singular vector is not counted
    assert res["k"] == 10 and res["top_k_similarity"][1:9] == pytest.approx([1.0] * 8, abs=1e-3)


def test_intruder_in_full_rank_tall_matrix():
    """The paper's regime: W0 full rank; a large update along a direction outside W0's column space."""
    w0, w, sigma = full_rank_planted()
    res = intruder_dimensions(w0, w)
    assert res["indices"][:1] == [0] and res["count"] >= 1
    assert res["singular_values"][0] > 0.9 * sigma


def test_wide_matrix_with_spread_direction():
    """Wide W0 (full row rank: its U0 spans everything): u spread evenly over U0 has |cos| = 1/sqrt(32)."""
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(32, 80, generator=gen)
    u0 = torch.linalg.svd(w0, full_matrices=False)[0]
    u = u0.sum(dim=1) / 32**0.5
    v = torch.randn(80, generator=gen)
    v /= v.norm()
    w = w0 + 50 * float(torch.linalg.matrix_norm(w0, ord=2)) * torch.outer(u, v)
    res = intruder_dimensions(w0, w)
    assert res["indices"][:1] == [0]
    assert res["max_similarity"][0] < 0.25
    assert intruder_dimensions(w0, w, eps=0.1)["count"] == 0  # 1/sqrt(32) ~ 0.18 is above 0.1


def test_k_is_capped_by_the_smaller_side_and_shapes_must_match():
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(3, 7, generator=gen)
    assert intruder_dimensions(w0, 2 * w0, k=10)["k"] == 3
    with pytest.raises(ValueError):
        intruder_dimensions(w0, w0.T)


def test_half_precision_inputs_are_analysed_in_float32():
    w0, w, _ = full_rank_planted()
    res = intruder_dimensions(w0.bfloat16(), w.bfloat16())
    assert res["indices"] == [0]
    fixed = scale_intruders(w0.bfloat16(), w.bfloat16(), lam=0.0)
    assert fixed.dtype == torch.bfloat16 and intruder_dimensions(w0, fixed.float())["count"] == 0


def model_like(seed: int = 5) -> tuple[dict, dict]:
    """A before/after pair named like a 2-layer T5, with planted intruders in the q matrices only."""
    gen = torch.Generator().manual_seed(seed)
    before, after = {}, {}
    for stack in ("encoder", "decoder"):
        for i in range(2):
            for name, shape in (("SelfAttention.q", (32, 32)), ("SelfAttention.k", (32, 32)),
                                ("DenseReluDense.wi", (64, 32)), ("DenseReluDense.wo", (32, 64))):
                key = f"{stack}.block.{i}.layer.0.{name}.weight"
                w0 = torch.randn(shape, generator=gen)
                w = w0 + 0.01 * torch.randn(shape, generator=gen)
                if name.endswith(".q"):
                    w = w + 100 * torch.outer(torch.randn(32, generator=gen), torch.randn(32, generator=gen))
                before[key], after[key] = w0, w
            before[f"{stack}.block.{i}.layer.0.layer_norm.weight"] = torch.ones(32)
            after[f"{stack}.block.{i}.layer.0.layer_norm.weight"] = torch.ones(32)
    return before, after


def test_default_group_strips_layer_indices():
    assert default_group("encoder.block.0.layer.0.SelfAttention.q.weight") == "encoder.SelfAttention.q"
    assert default_group("transformer.h.11.attn.c_attn.weight") == "transformer.attn.c_attn"
    assert default_group("model.layers.3.mlp.down_proj.weight") == "model.mlp.down_proj"
    assert default_group("shared.weight") == "shared"


def test_diagnostics_groups_sum_to_total_and_output_is_json():
    before, after = model_like()
    rep = spectral_diagnostics(before, after)
    json.dumps(rep)
    assert rep["total"]["matrices"] == 16 and rep["total"]["skipped"] == 0  # norms (1-D) are not matrices
    for key in ("matrices", "intruders", "with_intruders"):
        assert sum(g[key] for g in rep["groups"].values()) == rep["total"][key]
    assert set(rep["groups"]) == {f"{s}.{m}" for s in ("encoder", "decoder") for m in
                                  ("SelfAttention.q", "SelfAttention.k", "DenseReluDense.wi", "DenseReluDense.wo")}
    assert rep["groups"]["encoder.SelfAttention.q"]["with_intruders"] == 2
    assert rep["groups"]["encoder.SelfAttention.k"]["intruders"] == 0
    assert rep["total"]["with_intruders"] == 4
    assert rep["seconds"] >= 0


def test_batched_equals_one_by_one():
    before, after = model_like(seed=6)
    batched = spectral_diagnostics(before, after, batched=True)
    single = spectral_diagnostics(before, after, batched=False)
    assert batched["batches"] == 3 and single["batches"] == 16  # three shapes vs sixteen matrices
    assert batched["total"] == single["total"] and batched["groups"] == single["groups"]
    for name, rep in single["per_matrix"].items():
        other = batched["per_matrix"][name]
        assert other["indices"] == rep["indices"]
        assert other["top_k_similarity"] == pytest.approx(rep["top_k_similarity"], abs=1e-5)
        assert other["singular_values"] == pytest.approx(rep["singular_values"], rel=1e-5)


def test_small_batch_numel_splits_batches_without_changing_results():
    before, after = model_like(seed=7)
    full = spectral_diagnostics(before, after)
    split = spectral_diagnostics(before, after, batch_numel=2048)  # two 32x32 per batch, one 64x32
    assert split["batches"] > full["batches"]
    assert split["total"] == full["total"]


def test_max_numel_skips_and_counts():
    before, after = model_like(seed=8)
    before["odd"], after["odd"] = torch.zeros(4, 4), torch.zeros(4, 5)
    rep = spectral_diagnostics(before, after, max_numel=32 * 32)
    assert sorted(rep["skipped"]["too_large"]) == sorted(n for n in after if "DenseReluDense" in n)
    assert rep["skipped"]["shape_mismatch"] == ["odd"]
    assert rep["total"]["skipped"] == 9 and rep["total"]["matrices"] == 8


def test_scale_at_one_is_bitwise_unchanged():
    w0, w, _ = planted()
    out = scale_intruders(w0, w, lam=1.0)
    assert torch.equal(out, w) and out is not w
    gen = torch.Generator().manual_seed(9)
    a0 = torch.randn(20, 20, generator=gen)
    assert torch.equal(scale_intruders(a0, 2 * a0, lam=0.0), 2 * a0)  # no intruders: nothing to scale


def test_scale_at_zero_removes_planted_intruder():
    w0, w, _ = planted()
    fixed = scale_intruders(w0, w, lam=0.0)
    assert intruder_dimensions(w0, fixed)["count"] == 0
    assert torch.allclose(fixed, w0, atol=1e-5)
    half = scale_intruders(w0, w, lam=0.5)
    assert float(torch.linalg.matrix_norm(half, ord=2)) == pytest.approx(2.5, rel=1e-4)


def test_repair_state_dict():
    w0, w, _ = planted()
    clean0 = torch.randn(20, 20, generator=torch.Generator().manual_seed(10))
    big0, big, _ = planted(m=80, n=64)
    before = {"a.weight": w0, "b.weight": clean0, "b.bias": torch.zeros(20), "big.weight": big0}
    after = {"a.weight": w, "b.weight": 3 * clean0, "b.bias": torch.ones(20), "big.weight": big}
    new, info = repair_state_dict(before, after, lam=0.0, max_numel=64 * 48)
    json.dumps(info)
    assert torch.allclose(new["a.weight"], w0, atol=1e-5)
    assert new["b.weight"] is after["b.weight"] and new["b.bias"] is after["b.bias"]
    assert new["big.weight"] is after["big.weight"] and info["skipped"]["too_large"] == ["big.weight"]
    assert info["matrices"] == 2 and info["repaired"] == 1 and info["per_matrix"] == {"a.weight": 1}
    assert torch.equal(after["a.weight"], w)  # the input is left alone
    same, info1 = repair_state_dict(before, after, lam=1.0)
    assert all(same[n] is after[n] for n in after) and info1["repaired"] == 0 and info1["intruders"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    before, after = model_like(seed=11)
    cpu = spectral_diagnostics(before, after)
    gpu = spectral_diagnostics({n: t.cuda() for n, t in before.items()}, {n: t.cuda() for n, t in after.items()})
    assert gpu["total"] == cpu["total"]
    w0, w, _ = planted()
    fixed = scale_intruders(w0.cuda(), w.cuda(), lam=0.0)
    assert fixed.is_cuda and torch.allclose(fixed.cpu(), w0, atol=1e-4)
    on_gpu = spectral_diagnostics(before, after, device="cuda")
    assert on_gpu["total"] == cpu["total"]
