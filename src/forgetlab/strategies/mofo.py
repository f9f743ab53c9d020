"""MoFO, the momentum-filtered optimizer (Chen et al. 2024, "MoFO: Momentum-Filtered Optimizer for Mitigating
Forgetting in LLM Fine-Tuning"): Adam's moments are updated for every entry, but each step moves only the
`fraction` of each parameter tensor's entries with the largest |first moment|; the others keep their value.

The partition unit is one parameter tensor (each weight matrix, each bias, each norm scale is a block of its
own, as in the paper's implementation). A step moves ceil(fraction x numel) entries of every tensor with a
gradient (at least one); fraction=1 is AdamW exactly.

Built on torch's AdamW (its fused / foreach kernels, amsgrad, state_dict layout): the step runs AdamW on
every entry, then puts back the entries outside each tensor's top fraction, so they and their decoupled
weight decay are untouched, bit for bit. That costs one copy of the trainable weights during a step.
Select it with `strategy.optim.optimizer._target_=forgetlab.strategies.mofo.MoFO` (conf/strategy/mofo.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


def fraction_problem(fraction: Any) -> str | None:
    """Why `fraction` is not a valid MoFO fraction, or None: a number in (0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return "is not a number; allowed: (0, 1], the share of each parameter tensor updated per step"
    if not 0 < fraction <= 1:
        return "is out of range; allowed: (0, 1], the share of each parameter tensor updated per step (1 = AdamW)"
    return None


def top_count(fraction: float, numel: int) -> int:
    """Entries of a tensor with `numel` entries that one step updates."""
    return min(numel, max(1, math.ceil(fraction * numel)))


class MoFO(torch.optim.AdamW):
    """AdamW that updates, per parameter tensor, only the `fraction` of entries with the largest |momentum|."""

    DEFAULT_FRACTION = 0.15

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 fraction: float = DEFAULT_FRACTION, maximize: bool = False, foreach: bool | None = None,
                 capturable: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        if (problem := fraction_problem(fraction)) is not None:
            raise ValueError(f"MoFO fraction={fraction!r} {problem}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                         fused=fused)
        self.defaults["fraction"] = fraction
        for group in self.param_groups:
            group.setdefault("fraction", fraction)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:  # gradients first: the weights must be copied as the step finds them
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            kept = [[p.detach().clone() if p.grad is not None and group["fraction"] < 1 else None
                     for p in group["params"]] for group in self.param_groups]
        super().step()
        with torch.no_grad():
            for group, olds in zip(self.param_groups, kept, strict=True):
                for p, old in zip(group["params"], olds, strict=True):
                    if old is None:
                        continue
                    k = top_count(group["fraction"], p.numel())
                    if k == p.numel():
                        continue
                    moved = torch.topk(self.state[p]["exp_avg"].abs().reshape(-1), k, sorted=False).indices
                    flat_old = old.view(-1)
                    flat_old[moved] = p.detach().reshape(-1)[moved]
                    p.copy_(old)
        return loss
