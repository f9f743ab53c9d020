"""How a strategy carries from one stage of a continual sequence to the next (`sequence.*`):

- EWC accumulates Fisher information: after stage t, F <- decay * F + F_t, F_t the diagonal empirical
  Fisher on stage t's tasks at the weights that just learned them; stage t+1 is penalised by
  (lam/2) Σ F (θ - θ_t)², anchored at the end of stage t (online EWC, Schwarz et al. 2018; decay 1 = the
  plain sum). With tasks.base as stage 0, stage 1 starts from the Fisher of the base tasks.
- L2-SP anchors at the weights before stage 1 (`l2sp_anchor=start`) or at the end of the previous stage.
- A peft adapter is either kept and trained on through every stage, or merged into the weights after each
  stage, with a new adapter for the next (`adapter=merge`).
- Replay's reservoir memory (training/stage_data.py) is offered each stage's own examples.

The state that crosses a stage boundary is saved with the stage (training/stage_store.py), so a resumed
sequence continues from exactly what an uninterrupted one had in memory.
"""

from __future__ import annotations

import torch

from forgetlab.config.schema import (
    AdapterCarry,
    DataKind,
    L2SPAnchor,
    ParamsKind,
    PenaltyKind,
    ReplayMemory,
    TrainConfig,
)
from forgetlab.models.language_model import LanguageModel
from forgetlab.strategies.adapters import PEFT_KINDS, apply_params, is_peft
from forgetlab.strategies.penalties import EWC, L2SP, Distillation, diagonal_fisher, trainable
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.mixing import mixture_rates, sample_mixture, train_sizes
from forgetlab.training.module import Penalty
from forgetlab.training.stage_data import ReplayBuffer, base_memory
from forgetlab.training.stage_store import FISHER_FILE, MEMORY_FILE, WEIGHTS_FILE, StageStore


def stage_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a stage keeps of the model: a kept adapter alone (the frozen weights are the start's), else
    every weight."""
    if is_peft(model):
        return {n: p.detach() for n, p in trainable(model).items()}
    return dict(model.state_dict())


def load_stage_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load `stage_weights` back: every weight of a plain model, every trainable one of a kept adapter."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    lacking = set(trainable(model)) - set(weights) if is_peft(model) else set(missing)
    if unexpected or lacking:
        raise RuntimeError(f"stage weights do not fit the model: missing {sorted(lacking)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")


class Carry:
    """The cross-stage state of one sequence for one strategy."""

    def __init__(self, config: TrainConfig, suite: TaskSuite) -> None:
        self.config, self.suite = config, suite
        self.strategy, self.sequence = config.strategy, config.sequence
        self.peft = self.strategy.params.kind in PEFT_KINDS
        self.partial = self.strategy.params.kind == ParamsKind.partial
        self.merge = self.peft and self.sequence.adapter == AdapterCarry.merge
        self.penalty_kind = self.strategy.penalty.kind
        self.reservoir = (self.strategy.data.kind == DataKind.replay
                          and self.sequence.replay == ReplayMemory.reservoir)
        self.fisher: dict[str, torch.Tensor] | None = None
        self.memory: ReplayBuffer | None = ReplayBuffer(self.sequence.memory_size) if self.reservoir else None
        self.start_anchor: L2SP | None = None

    @property
    def files(self) -> list[str]:
        """The files a complete stage holds for this strategy."""
        return [WEIGHTS_FILE, *([FISHER_FILE] if self.penalty_kind == PenaltyKind.ewc else []),
                *([MEMORY_FILE] if self.reservoir else [])]

    # ------------------------------------------------------------------ sequence start
    def prepare(self, lm: LanguageModel) -> None:
        """Before any stage (and before a resumed run loads its last stage): wrap a kept adapter, take the
        L2-SP start anchor."""
        if (self.peft and not self.merge) or self.partial:  # partial: the same tensors train in every stage
            apply_params(self.strategy.params, lm, self.config.seed)
        if self.penalty_kind == PenaltyKind.l2sp and self.sequence.l2sp_anchor == L2SPAnchor.start:
            self.start_anchor = L2SP(lm.model, self.strategy.penalty.alpha)

    def initial(self, lm: LanguageModel, seed: int) -> None:
        """The state before stage 1 when tasks.base is stage 0: the base tasks' Fisher, a memory of them."""
        base = list(self.suite.base) if self.sequence.include_base else []
        if self.penalty_kind == PenaltyKind.ewc and base:
            self.fisher = self._fisher(lm, base, seed)
        if self.reservoir and base:
            self.memory = base_memory(self.sequence.memory_size, self.suite, seed)

    # ------------------------------------------------------------------ each stage
    def begin_stage(self, lm: LanguageModel) -> Penalty | None:
        """A new adapter (merge mode) and the penalty of this stage, anchored at the weights now."""
        if self.merge:
            apply_params(self.strategy.params, lm)
        penalty = self.strategy.penalty
        if self.penalty_kind == PenaltyKind.l2sp:
            return self.start_anchor or L2SP(lm.model, penalty.alpha)
        if self.penalty_kind == PenaltyKind.ewc and self.fisher is not None:
            return EWC(lm.model, penalty.lam, self.fisher)
        if self.penalty_kind == PenaltyKind.lwf:  # the teacher: the model at this stage's start (kept adapter: off)
            return Distillation(lm, penalty.lwf_weight, penalty.temperature, penalty.lwf_tokens)
        return None

    def end_stage(self, lm: LanguageModel, stage: list[str], stream, seed: int) -> None:
        """After training stage `stage` on `stream` (its training rows): merge, add the stage's Fisher, offer
        the stage's own rows to the memory."""
        if self.merge:
            lm.replace_model(lm.model.merge_and_unload())
        if self.penalty_kind == PenaltyKind.ewc:
            new = self._fisher(lm, stage, seed)
            decay = self.sequence.ewc_decay
            self.fisher = new if self.fisher is None else {
                n: decay * self.fisher[n].to(f.device) + f for n, f in new.items()}
        if self.memory is not None:
            self.memory.offer(stream.filter(lambda row: row["task"] in stage), seed)

    def _fisher(self, lm: LanguageModel, tasks: list[str], seed: int) -> dict[str, torch.Tensor]:
        rows = sample_mixture(self.suite.tasks, mixture_rates(train_sizes(self.suite, tasks)),
                              self.strategy.penalty.fisher_examples, seed)
        return diagonal_fisher(lm, rows)

    # ------------------------------------------------------------------ on disk
    def save(self, store: StageStore, t: int, lm: LanguageModel) -> None:
        store.write_tensors(t, WEIGHTS_FILE, stage_weights(lm.model))
        if self.penalty_kind == PenaltyKind.ewc:
            store.write_tensors(t, FISHER_FILE, self.fisher or {})
        if self.memory is not None:
            store.write_json(t, MEMORY_FILE, self.memory.state())

    def load(self, store: StageStore, t: int, lm: LanguageModel) -> None:
        """The state an uninterrupted run had after stage t (called after `prepare`)."""
        load_stage_weights(lm.model, store.read_tensors(t, WEIGHTS_FILE))
        if self.penalty_kind == PenaltyKind.ewc:
            self.fisher = store.read_tensors(t, FISHER_FILE) or None
        if self.memory is not None:
            self.memory = ReplayBuffer.from_state(store.read_json(t, MEMORY_FILE))
