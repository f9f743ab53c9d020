"""Time of `spectral_diagnostics` on a tiny T5's linear weights: batched SVDs vs one matrix at a time.

The "fine-tuned" weights are the model's own plus small dense noise, with a rank-4 update on the attention
q/v matrices (LoRA's usual targets) so some intruders exist. Repetitions alternate (batched, single, ...)
so machine load hits both alike; medians are reported with their ratio.

    python benchmarks/bench_spectral.py --reps 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics

import torch

from forgetlab.models.tiny import build_tiny_t5
from forgetlab.strategies.adapters import linear_module_names
from forgetlab.strategies.spectral import spectral_diagnostics


def perturbed_linear_weights(noise: float, rank: int, seed: int) -> tuple[dict, dict]:
    """(before, after) for every nn.Linear weight of a tiny T5."""
    lm = build_tiny_t5()
    gen = torch.Generator().manual_seed(seed)
    before = {f"{n}.weight": m.weight.detach().clone() for n, m in linear_module_names(lm.model).items()}
    after = {}
    for name, w in before.items():
        w2 = w + noise * w.std() * torch.randn(w.shape, generator=gen)
        if name.endswith((".q.weight", ".v.weight")):
            b, a = torch.randn(w.shape[0], rank, generator=gen), torch.randn(rank, w.shape[1], generator=gen)
            w2 = w2 + 2 * torch.linalg.matrix_norm(w, ord=2) * (b @ a) / torch.linalg.matrix_norm(b @ a, ord=2)
        after[name] = w2
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before, after = perturbed_linear_weights(args.noise, args.rank, seed=0)
    before = {n: t.to(args.device) for n, t in before.items()}
    after = {n: t.to(args.device) for n, t in after.items()}
    shapes = sorted({tuple(t.shape) for t in after.values()})
    print(f"{len(after)} linear weights, shapes {shapes}, {sum(t.numel() for t in after.values())} elements")

    times: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(args.reps + 1):  # the first pass warms up (allocator, LAPACK workspaces)
        for batched in (True, False):
            res = spectral_diagnostics(before, after, batched=batched)
            if rep:
                times[batched].append(res["seconds"] * 1000)
    fast, slow = statistics.median(times[True]), statistics.median(times[False])
    print(f"batches: {res['batches']} one-by-one vs {spectral_diagnostics(before, after)['batches']} batched")
    print(f"intruders: {res['total']}  groups with any: "
          f"{sorted(g for g, v in res['groups'].items() if v['intruders'])}")
    print(f"batched {fast:.1f} ms, one-by-one {slow:.1f} ms (median of {args.reps}), ratio {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
