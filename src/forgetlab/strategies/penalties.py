"""Penalties added to the training loss, pulling the model back toward where it started.

All are plain objects, never nn.Modules, so nothing of theirs enters a checkpoint; each is built before
training from the starting model:

- L2-SP (Li et al. 2018): (alpha/2) * ||w - w0||^2
- EWC (Kirkpatrick et al. 2017): (lam/2) * sum_i F_i (w_i - w0_i)^2, with F the diagonal empirical Fisher
  (mean over examples of the squared gradient of the gold answer's log-likelihood) on the base tasks.
- LwF (Li & Hoiem 2016): weight * T^2 * KL(p_start/T || p/T) on the training batch's own inputs, the
  starting model's next-token distribution as the target (`Distillation`).

L2-SP and EWC are `penalty(model) -> scalar`; the distillation term needs the batch and the logits the
training step computed, and says so with `needs_logits` (training/module.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from datasets import Dataset

from forgetlab.config.schema import DistillTokens, PenaltyConfig, PenaltyKind
from forgetlab.models.language_model import IGNORE_INDEX, LanguageModel
from forgetlab.strategies.adapters import is_peft
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.mixing import old_task_rates, sample_mixture
from forgetlab.training.module import Penalty
from forgetlab.utils.columns import column


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class _Anchored:
    """Weighted squared distance of the trainable weights to their starting values."""

    def __init__(self, model: torch.nn.Module, strength: float, weights: dict[str, torch.Tensor] | None = None):
        self.strength = strength
        self.anchor = {n: p.detach().clone() for n, p in trainable(model).items()}
        self.weights = weights  # per-parameter importance (EWC's Fisher); None = 1 everywhere

    def _on(self, table: dict[str, torch.Tensor], name: str, like: torch.Tensor) -> torch.Tensor:
        t = table[name]
        if t.device != like.device or t.dtype != like.dtype:
            t = table[name] = t.to(device=like.device, dtype=like.dtype)
        return t

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        params = trainable(model)
        missing = set(self.anchor) - set(params)
        if missing:
            raise KeyError(f"penalty anchored on parameters the model no longer trains: {sorted(missing)[:5]}")
        total = None
        for name, p in params.items():
            sq = (p - self._on(self.anchor, name, p)).pow(2)
            if self.weights is not None:
                sq = sq * self._on(self.weights, name, p)
            term = sq.sum()
            total = term if total is None else total + term
        if total is None:
            return torch.zeros(())
        return 0.5 * self.strength * total


class L2SP(_Anchored):
    """(alpha/2) * ||w - w0||^2 over the trainable weights; w0 = the weights when this is built."""

    def __init__(self, model: torch.nn.Module, alpha: float):
        super().__init__(model, alpha)


class EWC(_Anchored):
    """(lam/2) * sum_i F_i (w_i - w*_i)^2; w* = the weights when this is built, F = `fisher`."""

    def __init__(self, model: torch.nn.Module, lam: float, fisher: dict[str, torch.Tensor]):
        super().__init__(model, lam, {n: f.detach().clone() for n, f in fisher.items()})
        self.fisher = self.weights


def diagonal_fisher(lm: LanguageModel, examples: Dataset) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher of the trainable parameters: the mean over `examples` (prompt/completion
    rows) of the squared gradient of log p(gold completion | prompt), one example at a time."""
    model = lm.model
    params = trainable(model)
    names, tensors = list(params), list(params.values())
    fisher = [torch.zeros_like(p) for p in tensors]
    was_training = model.training
    model.eval()  # dropout off: the Fisher of the model as it is
    try:
        for prompt, completion in zip(column(examples, "prompt"), column(examples, "completion")):
            batch = lm.collate([lm.encode(prompt, completion)])
            batch = {k: v.to(tensors[0].device) for k, v in batch.items()}
            nll, _ = lm.token_losses(batch)
            grads = torch.autograd.grad(nll.sum(), tensors, allow_unused=True)
            for f, g in zip(fisher, grads):
                if g is not None:
                    f.add_(g.detach().pow(2))
    finally:
        model.train(was_training)
    n = max(len(examples), 1)
    return {name: f / n for name, f in zip(names, fisher)}


class Distillation:
    """weight * T^2 * KL(p_start/T || p/T), averaged over the distilled positions of the batch (Learning
    without Forgetting, Li & Hoiem 2016), p_start the starting model's next-token distribution on the same
    inputs, computed without gradient every step.

    The starting model costs no copy for a peft run: it is the same model with the adapter switched off
    (peft's `disable_adapter()`). A full fine-tuning run keeps a frozen copy of its starting weights; it is an
    attribute of this plain object, not a submodule of the LightningModule, so checkpoints never hold it,
    and a resumed run rebuilds it from the same starting weights. The teacher runs in eval mode (no dropout).
    Under DDP the term is each process's own mean (exact on one device)."""

    needs_logits = True

    def __init__(self, lm: LanguageModel, weight: float, temperature: float,
                 tokens: DistillTokens = DistillTokens.answer) -> None:
        self.weight, self.temperature, self.tokens = weight, temperature, tokens
        self.teacher: torch.nn.Module | None = None
        if not is_peft(lm.model):
            self.teacher = copy.deepcopy(lm.model).eval().requires_grad_(False)

    @torch.no_grad()
    def teacher_logits(self, lm: LanguageModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.teacher is None:  # peft: the same weights, adapter off
            model, was_training = lm.model, lm.model.training
            model.eval()
            try:
                with model.disable_adapter():
                    return lm.label_logits(batch)[0]
            finally:
                model.train(was_training)
        device = batch["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return lm.label_logits(batch, model=self.teacher)[0]

    def positions(self, lm: LanguageModel, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Which logits are distilled: the answer tokens, or every non-padding position (causal models)."""
        if self.tokens == DistillTokens.all and lm.kind == "causal":
            return batch["attention_mask"][:, 1:].bool()
        return targets != IGNORE_INDEX

    def __call__(self, lm: LanguageModel, batch: dict[str, torch.Tensor], logits: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
        mask = self.positions(lm, batch, targets)
        t = self.temperature
        student = F.log_softmax(logits[mask].float() / t, dim=-1)
        teacher = F.log_softmax(self.teacher_logits(lm, batch)[mask].float() / t, dim=-1)
        kl = F.kl_div(student, teacher, log_target=True, reduction="sum") / mask.sum().clamp(min=1)
        return self.weight * t * t * kl


def build_penalty(penalty: PenaltyConfig, lm: LanguageModel, suite: TaskSuite, seed: int) -> Penalty | None:
    """The loss term for `penalty.kind`, anchored at the model's current (starting) weights; EWC's Fisher is
    estimated on `fisher_examples` rows of the earlier tasks, at their proportional rates."""
    if penalty.kind == PenaltyKind.none:
        return None
    if penalty.kind == PenaltyKind.l2sp:
        return L2SP(lm.model, penalty.alpha)
    if penalty.kind == PenaltyKind.lwf:
        return Distillation(lm, penalty.lwf_weight, penalty.temperature, penalty.lwf_tokens)
    rates = old_task_rates(suite, "strategy.penalty.kind=ewc")
    fisher = diagonal_fisher(lm, sample_mixture(suite.tasks, rates, penalty.fisher_examples, seed))
    return EWC(lm.model, penalty.lam, fisher)
