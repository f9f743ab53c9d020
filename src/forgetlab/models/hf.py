"""Any transformers model by hub id or local folder; seq2seq or causal is read from its own config.

What a pretrained checkpoint expects is read from the checkpoint where it can be: the input limit from
its config (`max_length: null`), whether prompts start with BOS from what its tokenizer does
(`add_bos: auto`, true for Llama-family tokenizers), and whether it has a chat template. The presets in
conf/model/ only name the checkpoint and the switches that are a choice (chat template, checkpointing).
"""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, masking_utils

from forgetlab.models.language_model import LanguageModel

log = logging.getLogger(__name__)

# config attributes that bound the positions a model can attend to (absolute position embeddings)
POSITION_LIMITS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")
UNSET_TOKENIZER_LIMIT = 1_000_000  # transformers' placeholder model_max_length is ~1e30


def position_limit(config: Any) -> tuple[str, int] | None:
    """(attribute, value) of the model's hard input limit, or None (T5's relative positions have none)."""
    for attr in POSITION_LIMITS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return attr, value
    return None


def resolve_max_length(requested: int | None, config: Any, tokenizer: Any, name: str) -> int:
    """`requested`, checked against the model's limit; None = the model's own limit (its config, else the
    tokenizer's `model_max_length`)."""
    hard = position_limit(config)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    tok_limit = tok_limit if isinstance(tok_limit, int) and 0 < tok_limit < UNSET_TOKENIZER_LIMIT else None
    if requested is None:
        value = hard[1] if hard else tok_limit
        if value is None:
            raise ValueError(f"model.build.max_length: {name!r} declares no input limit (config "
                             f"{list(POSITION_LIMITS)} or tokenizer model_max_length); set model.build.max_length")
        return value
    if requested < 1:
        raise ValueError(f"model.build.max_length={requested} is out of range; allowed: [1, inf)")
    if hard and requested > hard[1]:
        raise ValueError(f"model.build.max_length={requested} exceeds the {hard[1]} positions of {name!r} "
                         f"(config.{hard[0]}); allowed: [1, {hard[1]}] or null for the model's own")
    return requested


def expects_bos(tokenizer: Any) -> bool:
    """What `add_bos: auto` means: whether inputs start with BOS (Llama family yes; GPT-2, Qwen, T5 no).

    Yes when the tokenizer adds BOS by itself, or when it is a Llama sentencepiece tokenizer that does not
    switch BOS off: Llama-family models were trained with BOS first, and `LlamaTokenizer` documents
    `add_bos_token=True`, but transformers 5 loads a tokenizer.json folder whose tokenizer_config.json does
    not name `add_bos_token` without it (llama2.c conversions such as the vendored stories260K)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    if tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]:
        return True
    llama = any(c.__name__ in ("LlamaTokenizer", "LlamaTokenizerFast") for c in type(tokenizer).__mro__)
    return llama and tokenizer.init_kwargs.get("add_bos_token") is not False


# attention implementations whose masks transformers builds from restarting position ids when no attention mask
# is passed (masking_utils.find_packed_sequence_indices), or that run variable-length kernels on them (flash)
PACKED_ATTENTION = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3")
PACKED_MASKS = ("create_causal_mask", "create_sliding_window_causal_mask")


def packing_blocker(model: Any, kind: str) -> str | None:
    """Why examples packed into one row could attend to each other in `model`, or None when packing is exact:
    a decoder-only model whose modelling code builds its mask with transformers' mask functions (which read
    packed position ids), under an attention implementation that honours them, without virtual tokens."""
    if kind != "causal":
        return "an encoder-decoder model: its encoder has no packed-sequence mask"
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        return "prompt learning prepends virtual tokens that every packed example would attend to"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    impl = getattr(base.config, "_attn_implementation", None)
    if impl not in PACKED_ATTENTION:
        return f"attention implementation {impl!r}; packed masks need one of {list(PACKED_ATTENTION)}"
    module = sys.modules.get(type(base).__module__)
    if not any(getattr(module, name, None) is getattr(masking_utils, name) for name in PACKED_MASKS):
        return f"{type(base).__name__} builds its own attention mask, which ignores packed position ids"
    if "position_ids" not in inspect.signature(base.forward).parameters:
        return f"{type(base).__name__} takes no position ids"
    return None


def packing_refused(label: str, blocker: str) -> ValueError:
    return ValueError(f"model.build.packing=true: {label!r} cannot keep packed examples apart ({blocker}); "
                      "allowed: model.build.packing=auto (packs only where exact) or false (padded batches)")


def _switch(value: Any, key: str) -> str:
    text = str(value).lower()
    if text not in ("auto", "true", "false"):
        raise ValueError(f"model.build.{key}={value!r}; allowed values: ['auto', true, false]")
    return text


def load_pretrained(
    name_or_path: str,
    kind: str = "auto",
    separator: str = "\n",
    max_length: int | None = None,
    dtype: str = "float32",
    name: str | None = None,
    trust_remote_code: bool = False,
    add_bos: Any = "auto",
    chat_template: bool = False,
    max_new_tokens: int = 256,
    gradient_checkpointing: bool = False,
    packing: Any = "auto",
) -> LanguageModel:
    """Load model and tokenizer with `from_pretrained`; `kind='auto'` asks `config.is_encoder_decoder`.

    Weights load from safetensors only (no pickle), and code shipped with a model runs only when the
    model config sets `trust_remote_code: true` (recorded in run_record.json with the resolved config).
    `add_bos: auto` follows the tokenizer; `chat_template: true` renders prompts with the tokenizer's chat
    template (instruction models); `gradient_checkpointing: true` trades compute for activation memory;
    `packing: auto` trains on padding-free packed batches where the model keeps packed examples apart exactly
    (true: refused where it cannot; false: padded batches)."""
    local = Path(name_or_path).expanduser()
    source = str(local) if local.exists() else name_or_path
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise FileNotFoundError(
            f"model.name_or_path={name_or_path!r} is neither a local folder with a config.json nor a hub id "
            f"available offline (HF_HUB_OFFLINE is respected). Original error: {err}"
        ) from err
    if kind == "auto":
        kind = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    if kind not in ("seq2seq", "causal"):
        raise ValueError(f"model.kind must be one of ['auto', 'seq2seq', 'causal'], got {kind!r}")
    bos_mode = _switch(add_bos, "add_bos")
    packing_mode = _switch(packing, "packing")
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(source, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    label = name or Path(name_or_path).name
    if gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ValueError(f"model.build.gradient_checkpointing=true: {label!r} does not support it; set false")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # the cache is useless in training and conflicts with checkpointing
    lm = LanguageModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        name=label,
        separator=separator if kind == "causal" else "",
        max_length=resolve_max_length(max_length, config, tokenizer, label),
        add_bos=expects_bos(tokenizer) if bos_mode == "auto" else bos_mode == "true",
        chat_template=bool(chat_template),
        max_new_tokens=max_new_tokens,
        packing=packing_mode,
    )
    blocker = packing_blocker(model, lm.kind)
    if packing_mode == "true" and blocker:  # refused at load, before anything is scored or trained
        raise packing_refused(label, blocker)
    log.info("%s: %s, max_length %d, BOS %s, chat template %s, packed training %s", label, kind, lm.max_length,
             "yes" if lm.add_bos else "no", "yes" if lm.chat_template else "no",
             "no" if packing_mode == "false" or blocker else "yes")
    return lm
