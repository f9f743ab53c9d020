"""Any transformers model by hub id or local folder; seq2seq or causal is read from its own config."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from forgetlab.models.language_model import LanguageModel


def load_pretrained(
    name_or_path: str,
    kind: str = "auto",
    separator: str = "\n",
    max_length: int = 256,
    dtype: str = "float32",
    name: str | None = None,
    trust_remote_code: bool = False,
) -> LanguageModel:
    """Load model and tokenizer with `from_pretrained`; `kind='auto'` asks `config.is_encoder_decoder`.

    Weights load from safetensors only (no pickle), and code shipped with a model runs only when the
    model config sets `trust_remote_code: true` (recorded in run_record.json with the resolved config)."""
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
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(source, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    return LanguageModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        name=name or Path(name_or_path).name,
        separator=separator if kind == "causal" else "",
        max_length=max_length,
    )
