"""The strategy as run.py sees it: check it against the model before any training, apply it after the
starting scores (peft wrapper + penalty), and save what the run produced at the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from forgetlab.config import ConfigError, PenaltyConfig, PenaltyKind, StrategyConfig
from forgetlab.models.language_model import LanguageModel
from forgetlab.strategies.adapters import apply_params, build_peft_config, is_peft
from forgetlab.strategies.export import BASE_FILE
from forgetlab.strategies.penalties import EWC, L2SP, diagonal_fisher
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.mixing import mixture_rates, sample_mixture
from forgetlab.utils.io import write_json

Penalty = Callable[[torch.nn.Module], torch.Tensor]



def check_strategy(strategy: StrategyConfig, lm: LanguageModel, suite: TaskSuite) -> None:
    """Fail now, before any training, on what would fail later: unknown target modules, a peft config
    peft rejects, EWC without earlier tasks to estimate the Fisher on."""
    if strategy.params.kind.value != "all":
        build_peft_config(strategy.params, lm)
    if strategy.penalty.kind == PenaltyKind.ewc:
        _old_tasks(suite)


def _old_tasks(suite: TaskSuite) -> list[str]:
    old = [t for t in suite.base if t != suite.target]
    if not old:
        raise ConfigError("strategy.penalty.kind=ewc estimates the Fisher on earlier tasks: tasks.base must name "
                          "at least one task besides the target")
    return old


def fisher_examples(suite: TaskSuite, n: int, seed: int):
    """`n` training examples from the earlier (base) tasks, proportional to their sizes."""
    old = _old_tasks(suite)
    rates = mixture_rates({t: len(suite.tasks[t].splits["train"]) for t in old}, "proportional")
    return sample_mixture(suite.tasks, rates, n, seed)


def build_penalty(penalty: PenaltyConfig, lm: LanguageModel, suite: TaskSuite, seed: int) -> Penalty | None:
    """The loss term for `penalty.kind`, anchored at the model's current (starting) trainable weights."""
    if penalty.kind == PenaltyKind.none:
        return None
    if penalty.kind == PenaltyKind.l2sp:
        return L2SP(lm.model, penalty.alpha)
    fisher = diagonal_fisher(lm, fisher_examples(suite, penalty.fisher_examples, seed))
    return EWC(lm.model, penalty.lam, fisher)


def apply_strategy(strategy: StrategyConfig, lm: LanguageModel, suite: TaskSuite, seed: int) -> Penalty | None:
    """Choose the parameters that train (peft wraps `lm.model`), then build the penalty on them."""
    apply_params(strategy.params, lm)
    return build_penalty(strategy.penalty, lm, suite, seed)


def save_final_model(lm: LanguageModel, run_dir: Path, base_model: str | None) -> Path:
    """PEFT runs: the adapter alone in `adapter/` (+ where its base model is); full runs: `model/`.
    Both with the tokenizer, so `forgetlab-export` can build a loadable model from the run dir."""
    if is_peft(lm.model):
        out = Path(run_dir) / "adapter"
        lm.model.save_pretrained(out)
        write_json(out / BASE_FILE, {"base_model": base_model, "kind": lm.kind})
    else:
        out = Path(run_dir) / "model"
        lm.model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    return out
