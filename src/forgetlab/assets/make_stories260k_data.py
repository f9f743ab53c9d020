"""Write the data that goes with the vendored stories260K checkpoint (run once; the outputs are committed):

    python -m forgetlab.assets.make_stories260k_data

stories260K_stories.txt  the model's OWN stories, one paragraph each: greedy continuations of a few story
                         openings and samples from BOS (temperature 0.8, seeded). What a model writes is
                         the honest measure of what it knows, so the loss on these stories after
                         fine-tuning says how much of its old ability is left (experiment=stories260k).
stories260K_task.jsonl   a small task it does not know: "Lily has a red ball. What color is the ball?" ->
                         "red" (prompt/completion rows; every name, colour and object is in its 512-token
                         vocabulary, so the task is learnable in a few hundred CPU steps).

Deterministic: the same torch version on CPU writes the same files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
from pathlib import Path

import torch

from forgetlab.assets import asset_path

OPENINGS = [
    "Once upon a time", "One day, a little boy named Tim", "Lily and Ben were best friends.",
    "Once upon a time, there was a big dog", "Sue had a small red car.", "One sunny day, Mom said",
    "There was a little bird who lived in a tree.", "Max wanted to play outside,",
    "Once upon a time, there was a little girl named Amy.", "The cat saw a big box.",
    "Tom and his mom went to the park.", "Anna found a shiny stone in the garden.",
]
NAMES = ["Lily", "Tim", "Ben", "Sue", "Tom", "Max", "Anna", "Sam", "Mia", "Jack", "Lucy", "Sara", "Bob",
         "Amy", "Kate", "Jill", "Joe", "Zoe", "Mom", "Dad"]
COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "brown", "black", "white"]
THINGS = ["ball", "car", "hat", "dog", "cat", "box", "kite", "bike", "cup", "bag", "boat", "book", "bird",
          "toy", "dress", "shoe", "bed", "door", "truck", "bear"]


def clean(text: str) -> str | None:
    """A story cut at its last finished sentence, paragraphs on single lines; None if too short."""
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    ends = [m.end() for m in re.finditer(r'[.!?]"?(?=\s|$)', text)]  # a sentence end, its closing quote kept
    text = text[: ends[-1]].strip() if ends else ""
    return text if len(text) >= 120 else None


@torch.no_grad()
def generate_stories(n: int, max_new_tokens: int = 160, seed: int = 0, batch: int = 32) -> list[str]:
    """`n` distinct stories: greedy continuations of OPENINGS, then seeded samples from BOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = asset_path("stories260K")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    stop = [tok.bos_token_id, tok.eos_token_id]  # llama2.c's stories end where the next one's BOS starts
    stories: dict[str, None] = {}
    for opening in OPENINGS:
        ids = torch.tensor([[tok.bos_token_id, *tok(opening, add_special_tokens=False)["input_ids"]]])
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop,
                             pad_token_id=tok.eos_token_id)
        story = clean(tok.decode(out[0], skip_special_tokens=True))
        if story:
            stories[story] = None
    torch.manual_seed(seed)
    for _ in itertools.count():
        if len(stories) >= n:
            break
        ids = torch.full((batch, 1), tok.bos_token_id)
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.8, top_k=0,
                             eos_token_id=stop, pad_token_id=tok.eos_token_id)
        for row in out:
            story = clean(tok.decode(row, skip_special_tokens=True))
            if story:
                stories[story] = None
    return list(stories)[:n]


def color_task(seed: int = 0) -> list[dict[str, str]]:
    """Every name x colour x object once, shuffled: "Lily has a red ball. What color is the ball?" -> "red"."""
    rows = [{"prompt": f"{name} has a {color} {thing}. What color is the {thing}?", "completion": color}
            for name, color, thing in itertools.product(NAMES, COLORS, THINGS)]
    random.Random(seed).shuffle(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--stories", type=int, default=240)
    parser.add_argument("--task-rows", type=int, default=1200)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    stories = generate_stories(args.stories)
    (args.out / "stories260K_stories.txt").write_text("\n\n".join(stories) + "\n", encoding="utf-8")
    rows = color_task()[: args.task_rows]
    (args.out / "stories260K_task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(stories)} stories, {len(rows)} task rows -> {args.out}")


if __name__ == "__main__":
    main()
