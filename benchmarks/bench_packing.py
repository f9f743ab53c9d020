"""Padding-free training and chat masks measured through `model=hf`'s loader on real-format data.

Data: JSONL files in the formats forgetlab reads (summarisation: a paragraph -> its first sentence; sentence
classification: a sentence -> its kind; chat: two-turn conversations about a paragraph), built from the
repository's own Markdown and Python paragraphs, so their lengths vary the way real text does. Model: the
vendored stories260K (a real pretrained Llama checkpoint, 512 positions) or any folder (--model; on a GPU a
wider Llama from benchmarks/build_llama_folder.py).

1. Packing: the same examples, steps and seed trained with model.build.packing=true and =false, alternated
   (--repeats), reporting pad_fraction and training tokens/s (fit's own numbers) and their ratio.
2. Chat masks: a chat task trained with train_on=last (loss on the assistant answer only: the mask built turn
   by turn) vs train_on=all (loss on every token, no mask), alternated: training tokens/s and the seconds it
   took to tokenise (render + mask) the training data.

    python benchmarks/bench_packing.py --steps 30 --repeats 2 --out outputs/bench-packing.json
    python benchmarks/bench_packing.py --device gpu --model outputs/llama-local --batch 64 --steps 100
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

import forgetlab.assets
from forgetlab.config.schema import OptimConfig
from forgetlab.models.hf import load_pretrained
from forgetlab.tasks.external import build_external_task
from forgetlab.training.fit import fit
from forgetlab.training.mixing import sample_mixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_llama_folder import local_paragraphs

STORIES = Path(forgetlab.assets.__file__).with_name("stories260K")
# Zephyr's chat template (HuggingFaceH4/zephyr-7b-beta): turns end with EOS, which the stories tokenizer has
ZEPHYR = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + "
          "eos_token }}{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}"
          "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n'  + message['content'] + eos_token }}{% endif %}"
          "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}")


def write_data(out: Path, n: int) -> dict[str, Path]:
    """Three real-format JSONL files from the repository's own text."""
    paragraphs = [re.sub(r"\s+", " ", p)[:1200] for p in local_paragraphs()]
    sentences = [s.strip() for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if 20 <= len(s.strip()) <= 300]
    files = {
        "summarization": [{"dialogue": p, "summary": re.split(r"(?<=[.!?])\s", p)[0][:200]} for p in paragraphs[:n]],
        "classification": [{"sentence": s, "label": "code" if re.search(r"[_()=]", s) else "prose"}
                           for s in sentences[:n]],
        "chat": [{"messages": [{"role": "user", "content": f"What is this about?\n{p}"},
                               {"role": "assistant", "content": p.split(". ")[0][:200]},
                               {"role": "user", "content": "And in three words?"},
                               {"role": "assistant", "content": " ".join(p.split()[:3])}]} for p in paragraphs[:n]],
    }
    paths = {}
    for name, rows in files.items():
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def chat_model(model: Path, tmp: Path) -> Path:
    """A copy of `model` whose tokenizer carries Zephyr's chat template (when it has none)."""
    folder = tmp / "chat-model"
    shutil.copytree(model, folder, dirs_exist_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.setdefault("chat_template", ZEPHYR)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def train_once(model: Path, task, args, packing: str) -> dict:
    lm = load_pretrained(str(model), packing=packing, dtype="bfloat16" if args.device == "gpu" else "float32")
    train = sample_mixture({task.name: task}, {task.name: 1.0}, args.steps * args.batch, seed=0)
    trainer = L.Trainer(max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator=args.device, devices=1,
                        precision="bf16-mixed" if args.device == "gpu" else "32-true", use_distributed_sampler=False)
    optim = OptimConfig(lr=1e-4, batch_size=args.batch, steps=args.steps,
                        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "fused": args.device == "gpu"})
    start = time.perf_counter()
    stats = fit(lm, train, trainer, optim, seed=0)
    return {"packed": stats["batch"]["packed"], "pad_fraction": stats["pad_fraction"],
            "tokens_per_s": stats["tokens_per_s"], "tokens_seen": stats["tokens_seen"],
            "setup_s": time.perf_counter() - start - stats["train_wall_time_s"]}


def alternate(runs: dict, repeats: int) -> dict:
    """{label: thunk} run in turn `repeats` times; the median of each number per label."""
    seen: dict[str, list[dict]] = {k: [] for k in runs}
    for _ in range(repeats):
        for label, thunk in runs.items():
            seen[label].append(thunk())
            print(label, seen[label][-1], flush=True)
    return {label: {k: statistics.median(r[k] for r in rs) if not isinstance(rs[0][k], bool) else rs[0][k]
                    for k in rs[0]} for label, rs in seen.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=STORIES)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=400, help="rows per data file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-packing.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    data = write_data(tmp, args.rows)
    sizes = {"train": args.rows - 40, "validation": 0, "test": 20}
    result: dict = {"model": str(args.model), "device": args.device, "steps": args.steps, "batch": args.batch,
                    "repeats": args.repeats, "torch_threads": args.threads}
    for kind in ("summarization", "classification"):
        task = build_external_task(kind, str(data[kind]), sizes, 0, kind=kind, shrink=True)
        runs = {mode: (lambda m=mode, t=task: train_once(args.model, t, args, m)) for mode in ("true", "false")}
        res = alternate(runs, args.repeats)
        res["tokens_per_s_ratio"] = res["true"]["tokens_per_s"] / res["false"]["tokens_per_s"]
        result[f"packing/{kind}"] = res
    model = chat_model(args.model, tmp)
    chat = {}
    for train_on in ("last", "all"):
        chat[train_on] = build_external_task("chat", str(data["chat"]), sizes, 0, kind="chat", shrink=True,
                                             train_on=train_on)
    runs = {f"train_on={t}": (lambda t=t: train_once(model, chat[t], args, "false")) for t in chat}
    res = alternate(runs, args.repeats)
    res["tokens_per_s_ratio_mask_vs_none"] = res["train_on=last"]["tokens_per_s"] / res["train_on=all"]["tokens_per_s"]
    result["chat_mask"] = res
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
