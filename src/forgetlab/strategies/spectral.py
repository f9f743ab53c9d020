"""Intruder dimensions: new high-ranking singular directions that fine-tuning put into a weight matrix.

Shuttleworth, Andreas, Torralba & Sharma, "LoRA vs Full Fine-tuning: An Illusion of Equivalence"
(NeurIPS 2025, arXiv:2410.21228). With W0 = U0 S0 V0^T (pre-trained) and W = U S V^T (fine-tuned), a
left singular vector u_j among the top k of W (by singular value) is an *intruder dimension* when

    max_i |cos(u_j, u0_i)| < eps        (i over ALL left singular vectors of W0)

i.e. it resembles no direction the pre-trained matrix had. The paper finds LoRA creates them and full
fine-tuning does not, that models with them forget more of the pre-training distribution, and that
scaling their singular values down after training (s_j -> lam * s_j) recovers much of what was forgotten.

Defaults k = 10, eps = 0.5: the paper examines the top-10 singular vectors of each fine-tuned matrix and
shows the LoRA/full-FT gap holds over a range of thresholds; 0.5 is the threshold its public intruder-count
script defaults to (`find_number_of_intruder_dimensions(..., k=10)`, `--intruder_dimension_threshold 0.5`),
and peft's `reduce_intruder_dimension(top_k=10, threshold_epsilon=0.5)` uses the same pair. Sweep eps
(e.g. 0.3-0.7) before trusting a count: it is a threshold, not a constant of nature.

Conventions, and why:
- Singular vectors are compared with |cos|: their sign is arbitrary.
- Directions with a numerically zero singular value (tolerance as `torch.linalg.matrix_rank`:
  s_max * max(m, n) * float32 eps) are left out on both sides. Such vectors are an arbitrary basis of a
  null space (LAPACK and cuSOLVER pick different ones), so matching against them would be noise, and a
  direction W does not use cannot intrude. Pre-trained matrices are full rank, where this changes nothing;
  a rank-deficient matrix stored in bf16/fp16 has rounding noise above the tolerance, which then counts.
- Matrices are taken as stored. nn.Linear stores (out, in), so left singular vectors live in the output
  space; GPT-2's Conv1D stores (in, out), so there they live in the input space. W0 and W share the layout,
  so the test is consistent either way (the script above also uses the stored `state_dict` tensors).
- SVDs run in float32 (torch.linalg.svd has no half-precision kernel); inputs are never changed.
- Compare merged weights: a PEFT model's W is W0 + the adapter's delta (see adapters.merged_copy).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

DEFAULT_K = 10
DEFAULT_EPS = 0.5
DEFAULT_BATCH_NUMEL = 1 << 24  # elements per stacked SVD batch (64 MiB float32 per side): bounds memory

_INDEX = re.compile(r"\d+")


def default_group(name: str) -> str:
    """The parameter's name without layer indices, so the same module across layers forms one group.

    Drops each numeric component with the container before it and the trailing 'weight':
    'encoder.block.0.layer.0.SelfAttention.q.weight' -> 'encoder.SelfAttention.q',
    'transformer.h.3.attn.c_attn.weight' -> 'transformer.attn.c_attn'.
    """
    parts = name.split(".")
    if parts and parts[-1] == "weight":
        parts = parts[:-1]
    keep: list[str] = []
    for part in parts:
        if _INDEX.fullmatch(part):
            if keep:
                keep.pop()
        else:
            keep.append(part)
    return ".".join(keep) or name


def _live(s: Tensor, shape: tuple[int, int]) -> Tensor:
    """Which singular values are not numerically zero (s sorted descending, shape (..., r))."""
    tol = s[..., :1] * max(shape) * torch.finfo(torch.float32).eps
    return s > tol


def _analyse(w0: Tensor, w: Tensor, k: int, eps: float) -> dict[str, Tensor]:
    """The batched core: w0, w float32 of shape (b, m, n); per item the top-k similarities and flags."""
    shape = (w.shape[-2], w.shape[-1])
    u0, s0, _ = torch.linalg.svd(w0, full_matrices=False)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    kk = min(k, s.shape[-1])
    sims = (u[..., :kk].mT @ u0).abs()  # (b, kk, r): |cos(u_j, u0_i)|, columns are unit vectors
    sims = sims.masked_fill(~_live(s0, shape)[..., None, :], 0.0)
    best = sims.amax(dim=-1)
    intruder = (best < eps) & _live(s, shape)[..., :kk]
    return {"u": u, "s": s, "vh": vh, "best": best, "intruder": intruder}


def _as_f32(t: Tensor, device: torch.device | str | None) -> Tensor:
    return t.detach().to(device=device if device is not None else t.device, dtype=torch.float32)


def _check_pair(w0: Tensor, w: Tensor) -> None:
    if w0.ndim != 2 or w0.shape != w.shape:
        raise ValueError(f"need two matrices of one shape, got {tuple(w0.shape)} and {tuple(w.shape)}")


def _report(out: dict[str, Tensor], i: int) -> dict:
    """Item i of a batch as JSON-ready Python values."""
    flags = out["intruder"][i].tolist()
    best = out["best"][i].tolist()
    s = out["s"][i, : len(flags)].tolist()
    idx = [j for j, f in enumerate(flags) if f]
    return {
        "count": len(idx),
        "indices": idx,
        "singular_values": [s[j] for j in idx],
        "max_similarity": [best[j] for j in idx],
        "top_k_similarity": best,
        "k": len(flags),
    }


def intruder_dimensions(w0: Tensor, w: Tensor, k: int = DEFAULT_K, eps: float = DEFAULT_EPS) -> dict:
    """The intruder dimensions of fine-tuned `w` relative to pre-trained `w0` (same shape, any device).

    Returns count, indices (ranks among W's singular vectors, 0 = largest), their singular values and
    their max |cos| with W0's singular vectors, plus `top_k_similarity` for all top-k (to vary eps later)
    and the k used (min(k, min(m, n))).
    """
    _check_pair(w0, w)
    out = _analyse(_as_f32(w0, w.device)[None], _as_f32(w, w.device)[None], k, eps)
    return _report(out, 0)


def scale_intruders(w0: Tensor, w: Tensor, lam: float, k: int = DEFAULT_K, eps: float = DEFAULT_EPS) -> Tensor:
    """W' = W - sum_{j intruder} (1 - lam) s_j u_j v_j^T: intruder singular values scaled by `lam`.

    lam = 1 (or no intruders) returns a bitwise copy of `w`; lam = 0 removes the intruders. The result has
    `w`'s dtype and device.
    """
    _check_pair(w0, w)
    if lam == 1:
        return w.detach().clone()
    out = _analyse(_as_f32(w0, w.device)[None], _as_f32(w, w.device)[None], k, eps)
    return _scaled(w, out, 0, lam)


def _scaled(w: Tensor, out: dict[str, Tensor], i: int, lam: float) -> Tensor:
    """Item i of a batch with its intruders scaled; a clone of `w` when it has none."""
    idx = out["intruder"][i].nonzero().flatten()
    if idx.numel() == 0:
        return w.detach().clone()
    u, s, vh = out["u"][i][:, idx], out["s"][i][idx], out["vh"][i][idx, :]
    fixed = _as_f32(w, u.device) - (1.0 - lam) * ((u * s) @ vh)
    return fixed.to(device=w.device, dtype=w.dtype)


def _plan(before: Mapping[str, Tensor], after: Mapping[str, Tensor], max_numel: int | None,
          batched: bool, batch_numel: int) -> tuple[list[list[str]], dict[str, list[str]]]:
    """Eligible matrices in SVD batches of one shape, and what was skipped and why."""
    skipped: dict[str, list[str]] = {"too_large": [], "shape_mismatch": []}
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, w in after.items():
        w0 = before.get(name)
        if w0 is None or w.ndim != 2 or not w.is_floating_point():
            continue
        if w0.shape != w.shape:
            skipped["shape_mismatch"].append(name)
        elif max_numel is not None and w.numel() > max_numel:
            skipped["too_large"].append(name)
        else:
            by_shape.setdefault(tuple(w.shape), []).append(name)
    batches = []
    for shape, names in by_shape.items():
        size = max(1, batch_numel // (shape[0] * shape[1])) if batched else 1
        batches.extend(names[i:i + size] for i in range(0, len(names), size))
    return batches, skipped


def _run_batch(before: Mapping[str, Tensor], after: Mapping[str, Tensor], names: list[str], k: int, eps: float,
               device: torch.device | str | None) -> dict[str, Tensor]:
    dev = device if device is not None else after[names[0]].device
    w0 = torch.stack([_as_f32(before[n], dev) for n in names])
    w = torch.stack([_as_f32(after[n], dev) for n in names])
    return _analyse(w0, w, k, eps)


def spectral_diagnostics(
    before: Mapping[str, Tensor],
    after: Mapping[str, Tensor],
    k: int = DEFAULT_K,
    eps: float = DEFAULT_EPS,
    max_numel: int | None = None,
    group_fn: Callable[[str], str] | None = None,
    batched: bool = True,
    batch_numel: int = DEFAULT_BATCH_NUMEL,
    device: torch.device | str | None = None,
) -> dict:
    """Intruder dimensions of every 2-D floating matrix present in both state dicts with one shape.

    Matrices with more than `max_numel` elements are skipped (listed under skipped.too_large) so a large
    model's embeddings need not hold up the report. Matrices of equal shape share one batched SVD
    (`batched=False` does them one by one, for comparison). `group_fn` (default `default_group`) names each
    matrix's group; groups and the total give matrices, intruders and matrices with any intruder. `device`
    (default: where each matrix lives) is where the SVDs run. Pass only the matrices you care about
    (e.g. linear layers: embeddings are 2-D too). Output is JSON-ready.
    """
    start = time.perf_counter()
    group_fn = group_fn or default_group
    batches, skipped = _plan(before, after, max_numel, batched, batch_numel)
    per_matrix: dict[str, dict] = {}
    for names in batches:
        out = _run_batch(before, after, names, k, eps, device)
        for i, name in enumerate(names):
            per_matrix[name] = _report(out, i)
    groups: dict[str, dict[str, int]] = {}
    for name, rep in sorted(per_matrix.items()):
        g = groups.setdefault(group_fn(name), {"matrices": 0, "intruders": 0, "with_intruders": 0})
        g["matrices"] += 1
        g["intruders"] += rep["count"]
        g["with_intruders"] += int(rep["count"] > 0)
    total = {key: sum(g[key] for g in groups.values()) for key in ("matrices", "intruders", "with_intruders")}
    total["skipped"] = sum(len(v) for v in skipped.values())
    return {
        "k": k,
        "eps": eps,
        "max_numel": max_numel,
        "total": total,
        "groups": dict(sorted(groups.items())),
        "per_matrix": dict(sorted(per_matrix.items())),
        "skipped": skipped,
        "batches": len(batches),
        "seconds": time.perf_counter() - start,
    }


def repair_state_dict(
    before: Mapping[str, Tensor],
    after: Mapping[str, Tensor],
    lam: float,
    k: int = DEFAULT_K,
    eps: float = DEFAULT_EPS,
    max_numel: int | None = None,
    batch_numel: int = DEFAULT_BATCH_NUMEL,
    device: torch.device | str | None = None,
) -> tuple[dict[str, Tensor], dict]:
    """`after` with `scale_intruders` applied to every eligible matrix (as in `spectral_diagnostics`).

    Returns (new_state_dict, info). Entries left alone (no intruders, not eligible, or lam = 1) are the
    input tensors themselves, not copies, so repairing a large model costs memory only for what changes;
    repaired ones are new tensors with the original dtype and device.
    """
    start = time.perf_counter()
    batches, skipped = _plan(before, after, max_numel, True, batch_numel)
    new = dict(after)
    counts: dict[str, int] = {}
    for names in batches:
        out = _run_batch(before, after, names, k, eps, device)
        for i, name in enumerate(names):
            n = int(out["intruder"][i].sum())
            if n:
                counts[name] = n
                if lam != 1:
                    new[name] = _scaled(after[name], out, i, lam)
    info = {
        "lam": lam,
        "k": k,
        "eps": eps,
        "matrices": sum(len(b) for b in batches),
        "repaired": len(counts) if lam != 1 else 0,
        "intruders": sum(counts.values()),
        "per_matrix": dict(sorted(counts.items())),
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
    }
    return new, info
