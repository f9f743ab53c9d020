"""Which parameters train: peft configs built from YAML (`_target_: peft.LoraConfig` etc.) and applied to
`lm.model` with `peft.get_peft_model`. Nothing here writes an adapter by hand. `partial` freezes some of the
model's own tensors instead (strategies/partial.py: chosen blocks, tensor kinds, names; HFT).

Target modules default to peft's own table per architecture, plus forgetlab's additions kept apart below
(Biderman et al. 2024 for LoRA on all attention projections); `target_modules: all-linear` is peft's. A target name that matches no module fails before any training, listing the
model's linear modules, instead of peft's error halfway into a run.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from peft import PeftModel, get_peft_model
from transformers.pytorch_utils import Conv1D

from forgetlab.config import ConfigError
from forgetlab.config.schema import ParamsConfig, ParamsKind
from forgetlab.models.language_model import LanguageModel
from forgetlab.strategies.partial import freeze_all_but, select_tensors

log = logging.getLogger(__name__)

# forgetlab's additions to peft's default target modules (peft.utils.constants), by model type. peft's LoRA
# default wraps only the query and value projections (T5 q,v; GPT-2 c_attn; Llama q_proj,v_proj); Biderman
# et al. 2024 find targeting more modules matters more than rank, so forgetlab's LoRA preset also wraps the
# key and output projections (GPT-2's c_attn holds q,k,v already; `attn.c_proj`, not `c_proj`, which would
# also hit the MLP). IA3 uses peft's defaults unchanged.
_LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "smollm3")
FORGETLAB_EXTRA_TARGETS: dict[str, dict[str, list[str]]] = {
    "lora": {"t5": ["k", "o"], "mt5": ["k", "o"], "gpt2": ["attn.c_proj"],
             **{m: ["k_proj", "o_proj"] for m in _LLAMA_FAMILY}},
    "ia3": {},
}


def peft_default_targets(kind: str, model_type: str) -> tuple[list[str] | None, list[str] | None]:
    """(target modules, IA3 feed-forward modules) peft itself uses for this architecture."""
    from peft.utils import constants

    if kind == "ia3":
        return (constants.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(model_type),
                constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type))
    return constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type), None


def default_target_modules(kind: str, model_type: str) -> list[str] | None:
    """peft's default for the architecture plus forgetlab's additions (FORGETLAB_EXTRA_TARGETS)."""
    targets, _ = peft_default_targets(kind, model_type)
    if targets is None:
        return None
    extra = FORGETLAB_EXTRA_TARGETS.get(kind, {}).get(model_type, [])
    return list(dict.fromkeys([*targets, *extra]))


TASK_TYPES = {"seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM"}


def linear_module_names(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every nn.Linear / GPT-2 Conv1D in `model`, by full name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}


def _matches(module_name: str, target: str) -> bool:
    """peft's rule for a list entry: the full name, or its dotted suffix."""
    return module_name == target or module_name.endswith("." + target)


def _short_names(names: list[str]) -> list[str]:
    """Names to suggest: the last one and last two components of each module name, deduplicated."""
    out = set()
    for n in names:
        parts = n.split(".")
        out.add(parts[-1])
        if len(parts) > 1 and not parts[-2].isdigit():
            out.add(".".join(parts[-2:]))
    return sorted(out)


ALL_LINEAR = "all-linear"


def resolve_target_modules(params: ParamsConfig, lm: LanguageModel) -> list[str] | str | None:
    """The target modules this run wraps; checked against the model's modules."""
    if params.kind == ParamsKind.prompt_tuning:
        if params.target_modules:
            raise ConfigError("strategy.params.target_modules does not apply to prompt_tuning (it trains virtual "
                              "input tokens, not modules); set it to null")
        return None
    model_type = getattr(lm.model.config, "model_type", "")
    targets = params.target_modules
    if targets == ALL_LINEAR:
        return ALL_LINEAR  # peft's own: every linear layer but the output head
    if isinstance(targets, str):
        raise ConfigError(f"strategy.params.target_modules={targets!r}: give a list of module names or "
                          f"{ALL_LINEAR!r}")
    if targets is None:
        targets = default_target_modules(params.kind.value, model_type)
    linear = list(linear_module_names(lm.model))
    if targets is None:
        raise ConfigError(
            f"strategy.params.target_modules: no default for model_type {model_type!r}; set it to some of the "
            f"model's linear modules: {_short_names(linear)}")
    all_modules = [n for n, _ in lm.model.named_modules()]
    missing = [t for t in targets if not any(_matches(n, t) for n in all_modules)]
    if missing:
        raise ConfigError(
            f"strategy.params.target_modules: {missing} match no module of {lm.name!r}; "
            f"its linear modules are: {_short_names(linear)}")
    return list(targets)


def build_peft_config(params: ParamsConfig, lm: LanguageModel) -> Any:
    """The peft config object for this run: the YAML node plus task type, targets and Conv1D layout."""
    node = {k: v for k, v in dict(params.peft).items() if v is not None}  # null = peft's default
    extra: dict[str, Any] = {"task_type": TASK_TYPES[lm.kind]}
    targets = resolve_target_modules(params, lm)
    if targets == ALL_LINEAR:
        extra["target_modules"] = targets
    elif targets is not None:
        extra["target_modules"] = targets
        linear = linear_module_names(lm.model)
        conv1d = any(isinstance(m, Conv1D) and any(_matches(n, t) for t in targets) for n, m in linear.items())
        if conv1d and "fan_in_fan_out" not in node:
            extra["fan_in_fan_out"] = True  # GPT-2 stores its projections transposed (Conv1D)
        if params.kind == ParamsKind.ia3 and "feedforward_modules" not in node:
            _, feedforward = peft_default_targets("ia3", getattr(lm.model.config, "model_type", ""))
            extra["feedforward_modules"] = [t for t in targets if t in (feedforward or [])]
    try:
        return instantiate(node, _convert_="all", **extra)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"strategy.params.peft: {type(cause).__name__}: {cause}") from None


PEFT_KINDS = (ParamsKind.lora, ParamsKind.ia3, ParamsKind.prompt_tuning)


def check_params(params: ParamsConfig, lm: LanguageModel) -> None:
    """Before any training: the peft config peft accepts, or a partial selection that trains something."""
    if params.kind in PEFT_KINDS:
        build_peft_config(params, lm)
    elif params.kind == ParamsKind.partial:
        select_tensors(params.partial, lm.model, seed=0)  # the seed only moves HFT's half, never its size


def apply_params(params: ParamsConfig, lm: LanguageModel, seed: int = 0) -> dict[str, Any] | None:
    """Wrap `lm.model` with peft (only the adapter's parameters train from here on), or freeze what
    `partial` leaves out (strategies/partial.py; `seed` draws HFT's half). Returns what metrics.json
    records of a partial selection (`params_selection`), else None."""
    if params.kind == ParamsKind.all:
        return None
    if params.kind == ParamsKind.partial:
        selection = select_tensors(params.partial, lm.model, seed)
        freeze_all_but(lm.model, selection)
        counts = lm.parameter_counts()
        log.info("partial: %d of %d parameters train (%d of %d tensors)", counts["trainable_params"],
                 counts["total_params"], len(selection.trainable), len(selection.trainable) + len(selection.frozen))
        return selection.summary(lm.model, seed)
    config = build_peft_config(params, lm)
    if params.kind == ParamsKind.prompt_tuning and lm.kind == "causal":
        # virtual tokens take positions: keep prompt + answer + virtual tokens within the position table
        limit = getattr(lm.model.config, "n_positions", None) or getattr(lm.model.config, "max_position_embeddings", None)
        if limit is not None and lm.max_length + config.num_virtual_tokens > limit:
            lm.max_length = limit - config.num_virtual_tokens
            log.warning("prompt tuning: max_length lowered to %d to leave room for %d virtual tokens",
                        lm.max_length, config.num_virtual_tokens)
    lm.replace_model(get_peft_model(lm.model, config))
    counts = lm.parameter_counts()
    log.info("%s: %d of %d parameters train", params.kind.value, counts["trainable_params"], counts["total_params"])
    return None


def is_peft(model: torch.nn.Module) -> bool:
    return isinstance(model, PeftModel)


def merged_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The plain transformers model this run amounts to: adapters merged into a copy (the run's model is
    untouched). Prompt tuning has nothing to merge: its frozen base model is returned."""
    if not is_peft(model):
        return model
    if model.peft_config[model.active_adapter].is_prompt_learning:
        return model.get_base_model()
    import copy

    return copy.deepcopy(model).merge_and_unload()
