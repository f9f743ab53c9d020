"""A character-level tokenizer built offline.

Why characters: the built-in tasks work on letters (reverse, uppercase, count vowels). A small BPE splits
the same word differently in prompt and answer, which makes letter tasks unlearnable for a tiny model.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK, SEP = "<pad>", "</s>", "<unk>", "<sep>"
SPECIAL_TOKENS = [PAD, EOS, UNK, SEP]
DEFAULT_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " "


def build_char_tokenizer(alphabet: str = DEFAULT_ALPHABET, model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """Return a fast tokenizer whose vocabulary is the special tokens plus one id per character."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in dict.fromkeys(alphabet):
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        sep_token=SEP,
        model_max_length=model_max_length,
    )
