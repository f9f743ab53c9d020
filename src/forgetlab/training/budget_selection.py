"""Keep the checkpoint a forgetting budget asks for (`select.max_forgetting`): the periodic-evaluation step
with the best target score whose mean forgetting on the old tasks (validation) is within the budget.

The weights of that step exist only at that step, so `BudgetSelection` saves them the moment the choice
changes; after training, `score_selected` scores them on the test split beside the final model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import lightning as L
import torch

from forgetlab.config.schema import EvalConfig
from forgetlab.evaluation.forgetting import summarize_forgetting
from forgetlab.evaluation.predictions import PredictionWriter
from forgetlab.evaluation.scoring import score_tasks_examples
from forgetlab.evaluation.selection import best_under_budgets, select_under_budget
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.task import InstructionTask
from forgetlab.training.callbacks import PeriodicEvaluation
from forgetlab.training.sharded import whole
from forgetlab.utils.io import write_bytes

log = logging.getLogger(__name__)
SELECTED_FILE = "selected.pt"
# A hard link to selected.pt as it was when the last Lightning checkpoint was written: a run resumed from
# that checkpoint restores it, since selected.pt may since hold a step the resumed run never reached.
PINNED_FILE = ".selected-at-checkpoint.pt"


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies (on CPU) of the parameters that train: the whole model or a peft adapter alike; whole under
    FSDP / ZeRO-3 (gathered one at a time: every process must call this)."""
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            with whole(p) as tensor:
                out[name] = tensor.to("cpu", copy=True)
    return out


def save_selected(path: Path, step: int, weights: Mapping[str, torch.Tensor]) -> None:
    """{"step", "weights"} via torch.save, written atomically (a killed run never leaves half a file)."""
    buffer = io.BytesIO()
    torch.save({"step": int(step), "weights": dict(weights)}, buffer)
    write_bytes(path, buffer.getvalue())


def load_selected(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _saved_step(path: Path) -> int | None:
    return int(load_selected(path)["step"]) if path.is_file() else None


class BudgetSelection(L.Callback):
    """After each periodic evaluation, re-chooses the step under the budget and saves the trainable weights
    to `dirpath/selected.pt` when the choice moves to the step just evaluated. Off when `max_forgetting` is
    None. Reads the history of the PeriodicEvaluation callback, which must come before it in the list."""

    def __init__(self, max_forgetting: float | None, targets: str | Sequence[str], dirpath: str | Path) -> None:
        self.max_forgetting, self.targets, self.dirpath = max_forgetting, targets, Path(dirpath)
        # select_under_budget's result for the saved step, plus that step's full validation scores
        self.selection: dict | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / SELECTED_FILE

    @property
    def enabled(self) -> bool:
        return self.max_forgetting is not None

    def _periodic(self, trainer: L.Trainer) -> PeriodicEvaluation:
        callbacks = list(trainer.callbacks)
        periodic = next((c for c in callbacks if isinstance(c, PeriodicEvaluation)), None)
        if periodic is None or periodic.every <= 0:
            raise ValueError("select.max_forgetting needs periodic evaluation (eval.every_n_steps > 0 and the "
                             "periodic_evaluation callback)")
        if callbacks.index(periodic) > callbacks.index(self):
            raise ValueError("the budget_selection callback must come after periodic_evaluation")
        return periodic

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.enabled:
            self._periodic(trainer)   # a bad setup fails before training, not at the first evaluation

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        history = self._periodic(trainer).history
        if not history or history[-1]["step"] != trainer.global_step:
            return   # no evaluation at this step: the weights in hand are not the ones scored
        choice = select_under_budget(history, self.targets, self.max_forgetting)
        unchanged = self.selection is not None and choice is not None and choice["step"] == self.selection["step"]
        # Earlier entries never change, so a new choice is always the step just evaluated.
        if choice is None or unchanged or choice["step"] != trainer.global_step:
            return
        weights = trainable_weights(pl_module.lm.model)  # on every rank: a collective under FSDP / ZeRO-3
        if trainer.is_global_zero:   # one writer; every rank keeps the same choice
            save_selected(self.path, choice["step"], weights)
        self.selection = {**choice, "validation": history[-1]["scores"]}
        log.info("budget %g: kept step %d (target %.2f, forgetting %.2f)", self.max_forgetting, choice["step"],
                 choice["target_score"], choice["mean_forgetting"])

    def on_train_start(self, trainer, pl_module) -> None:
        self._update(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._update(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._update(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.enabled and trainer.is_global_zero and self.path.is_file():
            _pin(self.path, self.dirpath / PINNED_FILE)

    @property
    def state_key(self) -> str:
        return "BudgetSelection"

    def state_dict(self) -> dict:
        return {"selection": self.selection}

    def load_state_dict(self, state_dict: dict) -> None:
        self.selection = state_dict.get("selection")
        if self.selection is None:
            return
        step, pinned = self.selection["step"], self.dirpath / PINNED_FILE
        if _saved_step(self.path) != step and _saved_step(pinned) == step:
            _pin(pinned, self.path)
        if _saved_step(self.path) != step:
            log.warning("%s does not hold step %d of the resumed run's selection; choosing again", self.path, step)
            self.selection = None


def _pin(source: Path, dest: Path) -> None:
    """Make `dest` the same file as `source`: a hard link (free: selected.pt is replaced, never rewritten in
    place), a copy where links are not supported; atomic either way."""
    if dest.exists() and os.path.samefile(source, dest):
        return   # already linked (renaming a link over itself would leave the temp name behind)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


@contextlib.contextmanager
def swapped_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """`model` with `weights` loaded into its trainable parameters, put back exactly on exit: scores a kept
    checkpoint without a second copy of the model in memory."""
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - {n for n, p in params.items() if p.requires_grad})
    if unknown:
        raise ValueError(f"selected weights name parameters the model does not train: {unknown[:5]}")
    current = {name: params[name].detach().to("cpu", copy=True) for name in weights}
    try:
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor)
        yield
    finally:
        with torch.no_grad():
            for name, tensor in current.items():
                params[name].copy_(tensor)


def score_selected(lm: LanguageModel, callbacks: Sequence[L.Callback], tasks: Mapping[str, InstructionTask],
                   evalc: EvalConfig, before: Mapping[str, dict], target: str | Sequence[str],
                   predictions: PredictionWriter | None = None) -> dict | None:
    """metrics.json `selected`: the kept step, its validation scores (from the history) and its test scores,
    with forgetting against `before`; None without a budget. The final model is left as it was. The test
    examples go to `predictions` as step `selected`."""
    selector = next((c for c in callbacks if isinstance(c, BudgetSelection)), None)
    if selector is None or not selector.enabled or selector.selection is None:
        return None
    choice, saved = selector.selection, load_selected(selector.path)
    if saved["step"] != choice["step"]:
        raise RuntimeError(f"{selector.path} holds step {saved['step']}, not the selected step {choice['step']}")
    with swapped_weights(lm.model, saved["weights"]):
        test, rows = score_tasks_examples(lm, dict(tasks), "test", evalc.batch_size, evalc.test_max_examples,
                                          evalc.max_batch_tokens)
    if predictions is not None:
        predictions.write("selected", rows)
    return {
        "budget": choice["budget"],
        "step": choice["step"],
        "validation_target_score": choice["target_score"],
        "validation_mean_forgetting": choice["mean_forgetting"],
        "validation": choice["validation"],
        "test": test,
        "test_summary": summarize_forgetting(dict(before), test, target),
    }


def budget_table(history: Sequence[Mapping], target: str | Sequence[str],
                 budgets: Sequence[float]) -> dict[str, dict | None] | None:
    """metrics.json `best_under_budgets`: the best step under each standard budget, or None with fewer than
    two evaluations (nothing to choose between)."""
    return best_under_budgets(history, target, budgets) if len(history) >= 2 else None
