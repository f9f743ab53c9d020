"""Build a Llama-family model folder offline: a byte-level BPE tokenizer trained with `tokenizers` on local
text (the repository's Markdown and Python files, and the built-in tasks' prompts and answers), and a
randomly initialised `LlamaForCausalLM` of ~10-30M parameters, saved as a Hugging Face folder that
`forgetlab model=hf model.build.name_or_path=<folder>` (or `model=llama_local`) loads.

Why: the real-model path (BPE tokens, BOS from the tokenizer, a position limit, truncation) needs a real
format to be measured on, and no hub is reachable here. The tokenizer adds BOS as Llama's does.

    python benchmarks/build_llama_folder.py --out outputs/llama-12m --corpus-out outputs/llama-12m-corpus.txt
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from forgetlab.tasks.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]


def local_paragraphs(root: Path = ROOT) -> list[str]:
    """Paragraphs (blank-line separated) of the repository's .md and .py files, in a fixed order."""
    out = []
    for path in sorted([*root.glob("*.md"), *root.glob("docs/*.md"), *root.glob("experiments/**/*.md"),
                        *root.glob("src/forgetlab/**/*.py")]):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            block = block.strip()
            if len(block) >= 40:
                out.append(block)
    return out


def task_text(n_per_task: int = 200, seed: int = 0) -> list[str]:
    """Prompts and answers of the built-in tasks, one line each (so the tokenizer knows their words)."""
    rng = random.Random(seed)
    lines = []
    for family in FAMILIES.values():
        for _ in range(n_per_task):
            _, fields, answer = family.sample(rng)
            lines.append(f"{rng.choice(family.templates).format(**fields)} {answer}")
    return lines


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", bos)])  # BOS, as Llama's
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=max_length)


def build(out: Path, vocab_size: int = 8192, hidden: int = 256, layers: int = 8, heads: int = 4,
          intermediate: int = 704, positions: int = 512, seed: int = 0) -> tuple[int, list[str]]:
    """Write the folder; return its parameter count and the local paragraphs (the pre-training corpus)."""
    paragraphs = local_paragraphs()
    tok = train_tokenizer(paragraphs + task_text(), vocab_size, positions)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=positions, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters()), paragraphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/llama-local"))
    parser.add_argument("--corpus-out", type=Path, default=None, help="also write the local text as paragraphs")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    n, paragraphs = build(args.out, args.vocab_size, args.hidden, args.layers)
    if args.corpus_out:
        args.corpus_out.parent.mkdir(parents=True, exist_ok=True)
        args.corpus_out.write_text("\n\n".join(p.replace("\n\n", "\n") for p in paragraphs) + "\n")
    print(f"{args.out}: LlamaForCausalLM, {n / 1e6:.1f}M parameters, {len(paragraphs)} local paragraphs")


if __name__ == "__main__":
    main()
