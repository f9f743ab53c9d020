"""How far fine-tuning moved the weights, and in how many directions.

- per-group L2 distance ||theta - theta_0|| (embeddings, norms, encoder/decoder/blocks x attention/MLP);
- the effective rank of Delta W for every linear layer: exp(entropy of the normalised singular values)
  (Roy & Vetterli 2007) — 1 for a rank-one update, k for k equal directions;
- intruder dimensions of every linear layer (`spectral`, strategies/spectral.py): new top singular
  directions of W that W0 did not have, the signature Shuttleworth et al. 2025 tie to LoRA's forgetting.
  Layers fine-tuning left bit-identical have none by definition and skip the SVD (`unchanged`); the time
  taken is logged, not stored, so a rerun's metrics.json still matches exactly.

The SVDs of small matrices run on one CPU thread (`small_svd_threads`): threads gain nothing there, and on
shared cores OpenMP threads stall. Measured on the tiny T5's 32 linear weights on a loaded 2-core machine:
0.43 s on one thread, 4.4-6.9 s on two.

PEFT runs are measured on the merged model (adapters folded into the weights), so LoRA's Delta W is the
product B A it really applied; prompt tuning leaves the weights where they were (movement 0) and its
learned prompt shows up in `adapter_l2_norm`.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from forgetlab.config.schema import DiagnosticsConfig
from forgetlab.strategies.adapters import is_peft, linear_module_names, merged_copy
from forgetlab.strategies.spectral import spectral_diagnostics

log = logging.getLogger(__name__)
SMALL_SIDE = 512  # matrices at most this many rows and columns count as small for `small_svd_threads`


@contextmanager
def small_svd_threads(matrices: list[torch.Tensor]) -> Iterator[None]:
    """One torch thread while the SVDs of these matrices run, if all are small CPU matrices; restored after."""
    small = all(m.device.type == "cpu" and max(m.shape) <= SMALL_SIDE for m in matrices)
    threads = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def snapshot_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter, by name: the start the movement is measured from."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}


def effective_rank(matrix: torch.Tensor) -> float:
    """exp(H(p)), p = singular values / their sum; 0 for a zero matrix."""
    s = torch.linalg.svdvals(matrix.detach().double().cpu())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(math.exp(-(p * p.log()).sum().item()))


def group_of(name: str) -> str:
    """The layer group a parameter belongs to, e.g. 'encoder.attention', 'decoder.mlp', 'embeddings'."""
    low = name.lower()
    if any(k in low for k in ("lora_", "ia3_", "prompt_encoder", "adapter")):
        return "adapters"
    if any(k in low for k in ("shared", "embed", "wte", "wpe", "lm_head")):
        return "embeddings"
    if "norm" in low or ".ln_" in low or low.startswith("ln_"):
        return "norms"
    part = "encoder" if "encoder" in low else "decoder" if "decoder" in low else "blocks"
    if "encdecattention" in low or "crossattention" in low or "cross_attn" in low:
        return f"{part}.cross_attention"
    if "attention" in low or "attn" in low:
        return f"{part}.attention"
    if any(k in low for k in ("mlp", "densereludense", "feed_forward", "ffn")):
        return f"{part}.mlp"
    return part


def linear_weight_names(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> list[str]:
    """`<module>.weight` of every linear layer of `model` that `params` holds (named_parameters lists a tied
    weight once, so GPT-2's lm_head, tied to the embeddings, is not measured twice)."""
    return [key for key in (f"{n}.weight" for n in linear_module_names(model)) if key in params]


def spectral_summary(start: dict[str, torch.Tensor], now: dict[str, torch.Tensor], keys: list[str],
                     diagnostics: DiagnosticsConfig) -> dict:
    """Intruder dimensions of the linear weights `keys`, per layer group; unchanged matrices skip the SVD."""
    moved = [k for k in keys if not torch.equal(start[k], now[k])]
    rep = spectral_diagnostics({k: start[k] for k in moved}, {k: now[k] for k in moved},
                               k=diagnostics.intruder_k, eps=diagnostics.intruder_eps,
                               max_numel=diagnostics.max_numel, group_fn=group_of)
    log.debug("spectral diagnostics: %d matrices in %.3f s", len(moved), rep.pop("seconds"))
    rep["total"]["unchanged"] = len(keys) - len(moved)
    return rep


def weight_movement(start: dict[str, torch.Tensor], model: torch.nn.Module,
                    diagnostics: DiagnosticsConfig | None = None) -> dict:
    """Movement of `model` (merged if peft) from `start` (a `snapshot_weights` of the model before).

    `diagnostics` (default: the schema's) says whether and how to count intruder dimensions (`spectral`).
    """
    diagnostics = diagnostics if diagnostics is not None else DiagnosticsConfig()
    plain = merged_copy(model)
    now = {n: p.detach().cpu() for n, p in plain.named_parameters()}
    missing = sorted(set(start) - set(now))
    if missing:
        raise KeyError(f"weights missing after training (renamed?): {missing[:5]}")
    sq: dict[str, float] = {}
    for name, w0 in start.items():
        d = float((now[name].double() - w0.double()).pow(2).sum())
        sq[group_of(name)] = sq.get(group_of(name), 0.0) + d
    start_norm = math.sqrt(sum(float(w.double().pow(2).sum()) for w in start.values()))
    total = math.sqrt(sum(sq.values()))
    linear = [k for k in linear_weight_names(plain, now) if k in start]
    with small_svd_threads([now[k] for k in linear]):
        ranks = {key.removesuffix(".weight"): effective_rank(now[key] - start[key]) for key in linear}
        spectral = spectral_summary(start, now, linear, diagnostics) if diagnostics.spectral else None
    values = [r for r in ranks.values() if r > 0]  # summary over the layers that moved
    out = {
        "per_group_l2": {g: math.sqrt(v) for g, v in sorted(sq.items())},
        "total_l2": total,
        "relative_l2": total / start_norm if start_norm > 0 else 0.0,
        "effective_rank": {
            "mean": statistics.fmean(values) if values else 0.0,
            "median": statistics.median(values) if values else 0.0,
            "min": min(values, default=0.0),
            "max": max(values, default=0.0),
            "layers_moved": len(values),
            "layers": len(ranks),
            "per_layer": ranks,
        },
    }
    if spectral is not None:
        out["spectral"] = spectral
    if is_peft(model):
        adapters = [p for n, p in model.named_parameters() if p.requires_grad]
        out["adapter_l2_norm"] = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in adapters))
    return out
