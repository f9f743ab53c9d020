"""Forgetting budget (select.max_forgetting): the callback keeps the right step of a hand-made history, survives
a resume, and in a real tiny run the kept checkpoint reproduces the validation scores recorded for its step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from forgetlab.evaluation.scoring import score_tasks
from forgetlab.evaluation.selection import select_under_budget
from forgetlab.training.budget_selection import (
    PINNED_FILE,
    BudgetSelection,
    load_selected,
    swapped_weights,
    trainable_weights,
)
from forgetlab.training.callbacks import PeriodicEvaluation
from tests.conftest import TINY, compose_config
from tests.test_selection import HISTORY  # forgetting 0, 1, 3, 5, 20; target 10, 40, 60, 60, 75


class Tiny(torch.nn.Module):
    """A model with one trainable and one frozen parameter, the shape of a peft-wrapped model."""

    def __init__(self) -> None:
        super().__init__()
        self.adapter = torch.nn.Linear(2, 2)
        self.frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)


def drive(selector: BudgetSelection, history: list[dict], model: Tiny, upto: int | None = None):
    """Replay `history` as training would: weights change every step (= the step number), the periodic
    evaluation appends its entry, then the selector runs. Returns the trainer stand-in."""
    periodic = PeriodicEvaluation(every_n_steps=10)
    trainer = SimpleNamespace(callbacks=[periodic, selector], global_step=0, is_global_zero=True)
    module = SimpleNamespace(lm=SimpleNamespace(model=model))
    for entry in history if upto is None else [h for h in history if h["step"] <= upto]:
        trainer.global_step = entry["step"]
        with torch.no_grad():
            model.adapter.weight.fill_(entry["step"])
        periodic.history.append(entry)
        hook = selector.on_train_start if entry["step"] == 0 else selector.on_train_batch_end
        hook(trainer, module, *([] if entry["step"] == 0 else [None, None, 0]))
    return trainer, module


def kept_step(selector: BudgetSelection) -> int:
    saved = load_selected(selector.path)
    assert set(saved["weights"]) == {"adapter.weight", "adapter.bias"}   # trainable only, never the frozen one
    assert torch.all(saved["weights"]["adapter.weight"] == saved["step"])   # the weights of that very step
    return saved["step"]


@pytest.mark.parametrize(("budget", "step"), [(0, 0), (2, 10), (3, 20), (5, 20), (100, 40)])
def test_keeps_the_best_target_step_within_the_budget(tmp_path, budget, step):
    selector = BudgetSelection(budget, "t", tmp_path)
    drive(selector, HISTORY, Tiny())
    assert selector.selection["step"] == step == kept_step(selector)
    assert selector.selection["validation"] == HISTORY[[h["step"] for h in HISTORY].index(step)]["scores"]
    assert not list(tmp_path.glob("*.tmp"))


def test_off_without_a_budget_and_refuses_a_bad_setup(tmp_path):
    selector = BudgetSelection(None, "t", tmp_path)
    drive(selector, HISTORY, Tiny())
    assert selector.selection is None and not selector.path.exists()
    trainer = SimpleNamespace(callbacks=[BudgetSelection(5, "t", tmp_path), PeriodicEvaluation(every_n_steps=10)])
    with pytest.raises(ValueError, match="after periodic_evaluation"):
        trainer.callbacks[0].on_fit_start(trainer, None)
    trainer = SimpleNamespace(callbacks=[PeriodicEvaluation(every_n_steps=0), BudgetSelection(5, "t", tmp_path)])
    with pytest.raises(ValueError, match="eval.every_n_steps"):
        trainer.callbacks[1].on_fit_start(trainer, None)


def test_resume_restores_the_file_of_the_checkpointed_selection(tmp_path):
    """Checkpoint at step 20 (kept: 20), then step 40 is kept, then the run dies and resumes from step 20:
    selected.pt must hold step 20 again, or the resumed run would score weights it does not know about."""
    selector = BudgetSelection(100, "t", tmp_path)
    trainer, module = drive(selector, HISTORY, Tiny(), upto=20)
    selector.on_save_checkpoint(trainer, module, {})
    state = selector.state_dict()
    drive(selector, HISTORY, Tiny())
    assert kept_step(selector) == 40 and (tmp_path / PINNED_FILE).is_file()

    resumed = BudgetSelection(100, "t", tmp_path)
    resumed.load_state_dict(state)
    assert resumed.selection["step"] == 20 == kept_step(resumed)


def test_swapped_weights_puts_the_final_model_back_exactly():
    model = Tiny()
    final = {k: v.clone() for k, v in model.state_dict().items()}
    kept = {name: torch.full_like(p, 7.0) for name, p in trainable_weights(model).items()}
    with swapped_weights(model, kept):
        assert torch.all(model.adapter.weight == 7.0)
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="does not train"), swapped_weights(model, {"frozen": torch.zeros(3)}):
        pass


class LossScoredEvaluation(PeriodicEvaluation):
    """Periodic evaluation whose `score` is 100 - 10 * loss: the tiny model's exact match stays at 0 over a
    20-step run, the loss moves at every step, so the budget has real choices to make."""

    def _evaluate(self, trainer, pl_module) -> None:
        super()._evaluate(trainer, pl_module)
        for value in self.history[-1]["scores"].values():
            value["score"] = loss_score(value)


def loss_score(value: dict) -> float:
    return 100.0 - 10.0 * value["loss"]


def test_tiny_run_keeps_a_checkpoint_that_reproduces_its_validation_scores(tmp_path, cache_dir):
    from forgetlab.run import instantiate, run_experiment

    overrides = [*TINY, "select.max_forgetting=5", "eval.every_n_steps=5",
                 "callbacks.periodic_evaluation._target_=tests.test_budget_selection.LossScoredEvaluation"]
    cfg = compose_config(overrides, tmp_path, cache_dir)
    metrics = run_experiment(cfg)
    selected, history, target = metrics["selected"], metrics["history"], metrics["target"]
    steps = [h["step"] for h in history]
    assert steps == [0, 5, 10, 15, 20]
    assert selected["step"] in steps and selected["budget"] == 5.0
    assert selected["step"] == select_under_budget(history, target, 5)["step"]
    assert selected["step"] > 0   # the loss-based target improves at once: the choice did move
    entry = history[steps.index(selected["step"])]
    assert selected["validation"] == entry["scores"]
    assert selected["validation_mean_forgetting"] <= 5
    assert set(selected["test"]) == set(metrics["after"])
    assert selected["test_summary"]["mean_forgetting"] == pytest.approx(
        sum(metrics["before"][t]["score"] - selected["test"][t]["score"] for t in metrics["forgetting"]) / 3)
    assert list(metrics["best_under_budgets"]) == ["1", "2", "5", "10"]
    assert metrics["best_under_budgets"]["5"]["step"] == selected["step"]

    # A fresh model with the kept weights scores the validation split exactly as recorded at that step.
    lm = instantiate(cfg.model.build)
    tasks = instantiate(cfg.tasks, _convert_="all").eval_tasks()
    saved = load_selected(tmp_path / "checkpoints" / "selected.pt")
    assert saved["step"] == selected["step"]
    assert set(saved["weights"]) == {n for n, _ in lm.model.named_parameters()}   # full fine-tuning: all
    with swapped_weights(lm.model, saved["weights"]):
        again = score_tasks(lm, tasks, "validation", cfg.eval.batch_size, cfg.eval.val_max_examples)
    for task, value in again.items():
        assert value["loss"] == entry["scores"][task]["loss"]
        assert value["metrics"] == entry["scores"][task]["metrics"]
        assert loss_score(value) == entry["scores"][task]["score"]
    if selected["step"] != steps[-1]:   # and a kept step that is not the last differs from the final model
        assert selected["test"] != metrics["after"]
