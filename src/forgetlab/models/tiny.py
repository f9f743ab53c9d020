"""Tiny models built from a transformers config and the character tokenizer: nothing is downloaded.

Sizes follow a probe on a 2-core CPU (see shared/REFERENCE.md): ~1M parameters learn the built-in
template tasks in minutes.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from forgetlab.models.language_model import LanguageModel
from forgetlab.models.tokenizer import SEP, build_char_tokenizer


def build_tiny_t5(
    d_model: int = 128,
    num_layers: int = 2,
    num_decoder_layers: int = 2,
    num_heads: int = 4,
    d_kv: int = 32,
    d_ff: int = 512,
    dropout_rate: float = 0.0,
    init_seed: int = 0,
    max_length: int = 128,
    name: str = "tiny_t5",
) -> LanguageModel:
    """An encoder-decoder T5 with random weights drawn from `init_seed`."""
    tok = build_char_tokenizer(model_max_length=max_length)
    config = T5Config(
        vocab_size=len(tok),
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=num_layers,
        num_decoder_layers=num_decoder_layers,
        num_heads=num_heads,
        dropout_rate=dropout_rate,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(init_seed)
    model = T5ForConditionalGeneration(config)
    return LanguageModel(model=model, tokenizer=tok, kind="seq2seq", name=name, max_length=max_length)


def build_tiny_gpt(
    n_embd: int = 128,
    n_layer: int = 4,
    n_head: int = 4,
    dropout: float = 0.0,
    init_seed: int = 0,
    max_length: int = 128,
    name: str = "tiny_gpt",
) -> LanguageModel:
    """A decoder-only GPT-2 with random weights drawn from `init_seed`; prompt and answer meet at <sep>."""
    tok = build_char_tokenizer(model_max_length=max_length)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=max_length,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(init_seed)
    model = GPT2LMHeadModel(config)
    return LanguageModel(model=model, tokenizer=tok, kind="causal", name=name, separator=SEP, max_length=max_length)
