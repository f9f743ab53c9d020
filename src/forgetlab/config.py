"""Typed schema of the settings forgetlab itself reads, checked right after Hydra composes the config.

Components built by `_target_` (model, tasks, trainer, loggers) are checked by their own constructors;
this schema covers the rest, so a typo or an unknown choice fails before any training with a message
naming the key and the allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from transformers import SchedulerType


class ConfigError(ValueError):
    """A config value forgetlab cannot run with; the message names the key and what is allowed."""


class DataKind(str, Enum):
    single = "single"  # the target task only
    multitask = "multitask"  # the target mixed with other tasks at FLAN-style rates
    replay = "replay"  # the target plus a fraction of earlier (base) tasks' training data


class ParamsKind(str, Enum):
    all = "all"  # full fine-tuning
    lora = "lora"  # low-rank adapters on `target_modules` (peft.LoraConfig)
    ia3 = "ia3"  # learned rescaling of activations (peft.IA3Config)
    prompt_tuning = "prompt_tuning"  # learned virtual input tokens; the model's weights stay frozen


class PenaltyKind(str, Enum):
    none = "none"
    l2sp = "l2sp"  # (alpha/2) * ||w - w0||^2 over the trainable weights (Li et al. 2018)
    ewc = "ewc"  # (lam/2) * sum_i F_i (w_i - w0_i)^2, F = diagonal empirical Fisher on the base tasks


class MixingMode(str, Enum):
    proportional = "proportional"
    uniform = "uniform"
    temperature = "temperature"


@dataclass
class DataConfig:
    kind: DataKind = DataKind.single
    # multitask: tasks mixed with the target (empty = the base tasks)
    tasks: list[str] = field(default_factory=list)
    mixing: MixingMode = MixingMode.proportional
    cap: int | None = None  # per-task example cap for proportional / temperature mixing
    temperature: float = 1.0
    # replay: fraction of each batch drawn from the base tasks' training data
    replay_fraction: float = 0.2


@dataclass
class ParamsConfig:
    """Which parameters train. `all` trains every weight; the others wrap the model with peft."""

    kind: ParamsKind = ParamsKind.all
    # The peft config, built by Hydra: {_target_: peft.LoraConfig, r: 8, lora_alpha: 16, ...}.
    # `task_type` is filled in from the model's kind; required unless kind=all.
    peft: Any = None
    # Modules peft wraps (LoRA, IA3). null = the default for the model's architecture
    # (forgetlab.strategies.adapters.DEFAULT_TARGET_MODULES); a name that matches no module fails
    # before training with the model's linear module names.
    target_modules: list[str] | None = None


@dataclass
class PenaltyConfig:
    """A term added to the training loss that pulls the weights back toward where they started."""

    kind: PenaltyKind = PenaltyKind.none
    alpha: float = 0.01  # l2sp: strength of (alpha/2) * ||w - w0||^2
    lam: float = 100.0  # ewc: strength of (lam/2) * sum F_i (w_i - w0_i)^2; sweep on a log scale
    fisher_examples: int = 128  # ewc: base-task training examples the diagonal Fisher is averaged over


@dataclass
class OptimConfig:
    lr: float = 3e-4
    batch_size: int = 32
    steps: int = 300
    warmup_steps: int = 0
    weight_decay: float = 0.0
    scheduler: str = "constant_with_warmup"


@dataclass
class StrategyConfig:
    name: str = "full"
    data: DataConfig = field(default_factory=DataConfig)
    params: ParamsConfig = field(default_factory=ParamsConfig)
    penalty: PenaltyConfig = field(default_factory=PenaltyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class BaseStageConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    scheduler: str = "cosine"
    seed: int = 0


@dataclass
class EvalConfig:
    batch_size: int = 256
    every_n_steps: int = 25  # periodic validation during fine-tuning; 0 disables it
    val_max_examples: int | None = None
    test_max_examples: int | None = None


SCHEMAS: dict[str, Any] = {
    "strategy": StrategyConfig,
    "base": BaseStageConfig,
    "eval": EvalConfig,
}


def _check_scheduler(key: str, name: str) -> None:
    allowed = [s.value for s in SchedulerType]
    if name not in allowed:
        raise ConfigError(f"{key}={name!r} is not a scheduler; allowed values: {allowed}")


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check the sections in SCHEMAS against their dataclasses; return them as typed objects."""
    typed: dict[str, Any] = {}
    for key, schema in SCHEMAS.items():
        if key not in cfg:
            raise ConfigError(f"config has no '{key}' section; compose it from conf/train.yaml")
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), cfg[key])
        except OmegaConfBaseException as err:
            full_key = getattr(err, "full_key", None) or ""
            msg = str(err).split("\n")[0]
            raise ConfigError(f"{key}.{full_key}: {msg}" if full_key else f"{key}: {msg}") from None
        typed[key] = OmegaConf.to_object(merged)
    _check_scheduler("strategy.optim.scheduler", typed["strategy"].optim.scheduler)
    _check_scheduler("base.scheduler", typed["base"].scheduler)
    data = typed["strategy"].data
    if not 0.0 <= data.replay_fraction < 1.0:
        raise ConfigError(f"strategy.data.replay_fraction={data.replay_fraction} must be in [0, 1)")
    _check_params_and_penalty(typed["strategy"])
    return typed


PEFT_CLASSES = {
    ParamsKind.lora: "LoraConfig", ParamsKind.ia3: "IA3Config", ParamsKind.prompt_tuning: "PromptTuningConfig",
}


def _check_params_and_penalty(strategy: StrategyConfig) -> None:
    params, penalty = strategy.params, strategy.penalty
    if params.kind == ParamsKind.all:
        if params.peft is not None:
            raise ConfigError("strategy.params.peft is set but strategy.params.kind=all; allowed kinds with a "
                              f"peft config: {[k.value for k in PEFT_CLASSES]}")
    else:
        expected = PEFT_CLASSES[params.kind]
        target = params.peft.get("_target_") if isinstance(params.peft, dict) else None
        if not target:
            raise ConfigError(f"strategy.params.kind={params.kind.value} needs strategy.params.peft with "
                              f"_target_: peft.{expected} (see conf/strategy/{params.kind.value}.yaml)")
        if target.rsplit(".", 1)[-1] != expected:
            raise ConfigError(f"strategy.params.peft._target_={target!r} does not match "
                              f"strategy.params.kind={params.kind.value}; expected peft.{expected}")
    if penalty.alpha < 0 or penalty.lam < 0:
        raise ConfigError("strategy.penalty.alpha and strategy.penalty.lam must be >= 0")
    if penalty.kind == PenaltyKind.ewc and penalty.fisher_examples < 1:
        raise ConfigError(f"strategy.penalty.fisher_examples={penalty.fisher_examples} must be >= 1")
