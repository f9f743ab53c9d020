"""Checks of a strategy against the loaded model and tasks, before any training: target modules that
exist, a peft config peft accepts, earlier tasks for replay and EWC to draw on."""

from __future__ import annotations

from forgetlab.config.schema import DataKind, PenaltyKind, StrategyConfig
from forgetlab.models.language_model import LanguageModel
from forgetlab.strategies.adapters import check_params
from forgetlab.tasks.formats import check_chat_model
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.mixing import old_task_rates, training_rates


def check_strategy(strategy: StrategyConfig, lm: LanguageModel, suite: TaskSuite) -> None:
    """Fail now on what would fail later, with the key to change in the message."""
    check_params(strategy.params, lm)
    check_chat_model(suite.tasks, lm.tokenizer, lm.kind, lm.name)  # kind chat needs the model's chat template
    if strategy.data.kind != DataKind.single:
        training_rates(strategy.data, suite)
    if strategy.penalty.kind == PenaltyKind.ewc:
        old_task_rates(suite, "strategy.penalty.kind=ewc")
