"""Step time of LoRA vs full fine-tuning on the same model and batch, measured in one process.

Both models start from the same weights; repetitions are interleaved (full, lora, full, lora, ...) so
machine load hits both alike, and the median of each is reported with the ratio.

    nice -n 19 python benchmarks/bench_lora_step.py --model tiny_t5 --reps 30 --batch-size 32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model

from forgetlab.models.language_model import LanguageModel
from forgetlab.models.tiny import build_tiny_gpt, build_tiny_t5
from forgetlab.strategies.adapters import DEFAULT_TARGET_MODULES, TASK_TYPES
from forgetlab.tasks.suite import build_suite


def make_step(lm: LanguageModel, batch: dict, lr: float):
    opt = torch.optim.AdamW([p for p in lm.model.parameters() if p.requires_grad], lr=lr)
    lm.model.train()

    def step() -> float:
        start = time.perf_counter()
        nll, ntok = lm.token_losses(batch)
        loss = nll.sum() / ntok.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny_t5", "tiny_gpt"], default="tiny_t5")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    full = build_tiny_t5() if args.model == "tiny_t5" else build_tiny_gpt()
    lora = LanguageModel(copy.deepcopy(full.model), full.tokenizer, full.kind, full.name, full.separator,
                         full.max_length)
    model_type = lora.model.config.model_type
    config = LoraConfig(task_type=TASK_TYPES[lora.kind], r=args.rank, lora_alpha=2 * args.rank,
                        target_modules=DEFAULT_TARGET_MODULES["lora"][model_type], fan_in_fan_out=model_type == "gpt2")
    lora.replace_model(get_peft_model(lora.model, config))

    suite = build_suite("reverse", ["copy"], {"train": args.batch_size, "validation": 1, "test": 1}, seed=0)
    rows = suite.tasks["reverse"].splits["train"]
    feats = [full.encode(p, c) for p, c in zip(rows["prompt"], rows["completion"])]
    batch = full.collate(feats)
    steps = {"full": make_step(full, batch, 3e-4), "lora": make_step(lora, batch, 3e-3)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.warmup + args.reps):
        for name, step in steps.items():
            t = step()
            if i >= args.warmup:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    counts = {k: lm.parameter_counts() for k, lm in (("full", full), ("lora", lora))}
    print(f"model={args.model} batch={args.batch_size} reps={args.reps} threads={args.threads} r={args.rank}")
    for k in ("full", "lora"):
        print(f"{k:5s} median step {med[k] * 1000:8.2f} ms   (min {min(times[k]) * 1000:.2f}, "
              f"max {max(times[k]) * 1000:.2f})   trainable {counts[k]['trainable_params']:,}")
    print(f"lora / full step time ratio: {med['lora'] / med['full']:.3f}")


if __name__ == "__main__":
    main()
