"""Per-step cost of each method against full fine-tuning (issue 24), in one process.

Every method trains the built-in default's model (tiny T5, fresh weights of the same seed) on the same
batches of the default target, with its preset exactly as `forgetlab strategy=<preset>` composes it
(params choice, optimizer, penalty), in a minimal loop: forward, loss (+ penalty), backward, clip, step.
Repeats are alternated (full, bitfit, partial_top, ..., full, bitfit, ...) so machine load hits all alike;
the median step time of each and its ratio to full fine-tuning's are printed and written as JSON.

    python benchmarks/bench_method_overhead.py [--reps 5] [--steps 30] [--out bench_method_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from forgetlab.config import validate
from forgetlab.config.schema import DataConfig
from forgetlab.strategies.adapters import apply_params
from forgetlab.strategies.penalties import build_penalty
from forgetlab.training.datamodule import InstructionDataModule
from forgetlab.training.mixing import build_training_data
from forgetlab.utils.console import quiet_third_party

METHODS = ["full", "lora", "bitfit", "partial_top", "hft", "mofo", "l2sp", "ewc", "lwf", "sdft"]


def preset(name: str):
    """(composed config, typed config) of `forgetlab strategy=<name>`."""
    with initialize_config_module(config_module="forgetlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"strategy={name}", "paths.root=/tmp/forgetlab-overhead",
                                          "paths.output_dir=/tmp/forgetlab-overhead/run"])
    return cfg, validate(cfg)


def batches(cfg, suite, steps: int, batch: int) -> list[dict]:
    """The default target's training batches as forgetlab's loader gives them."""
    train, _ = build_training_data(DataConfig(), suite, steps * batch, seed=0)
    lm = instantiate(cfg.model.build)
    dm = InstructionDataModule(train, lm.encode_batch, lm.collate, batch, seed=0, group_by_length=False)
    dm.setup()
    out = []
    while len(out) < steps:
        out += [{k: v for k, v in b.items() if k != "task_id"} for b in dm.train_dataloader()]
    return out[:steps]


def step_time(name: str, data: list[dict], suite, skip: int) -> float:
    """Seconds per training step of the preset `name` (steps after the first `skip`)."""
    cfg, typed = preset(name)
    strategy = typed.strategy
    lm = instantiate(cfg.model.build)
    apply_params(strategy.params, lm, typed.seed)
    # L2-SP, EWC (its Fisher, estimated once before training, is not a per-step cost) or LwF (its frozen
    # starting copy and the teacher forward each step); sdft trains as full does (its one-time rewrite before
    # training is not a per-step cost either; metrics.json timing has it); replay changes which rows a batch
    # holds, not its cost, so it is left out
    penalty = build_penalty(strategy.penalty, lm, suite, typed.seed)
    distill = getattr(penalty, "needs_logits", False)
    params = [p for p in lm.model.parameters() if p.requires_grad]
    optimizer = instantiate(strategy.optim.optimizer)(params, lr=strategy.optim.lr)
    lm.model.train()
    start = None
    for i, b in enumerate(data):
        if i == skip:
            start = time.perf_counter()
        if distill:  # as training/module.py: the term reads the step's own logits
            logits, targets = lm.label_logits(b)
            nll, ntok = lm.losses_from_logits(logits, targets)
        else:
            nll, ntok = lm.token_losses(b)
        loss = nll.sum() / ntok.sum()
        if penalty is not None:
            loss = loss + (penalty(lm, b, logits, targets) if distill else penalty(lm.model))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / (len(data) - skip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the step time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--out", type=Path, default=Path("bench_method_overhead.json"))
    args = parser.parse_args()
    quiet_third_party(False)
    torch.set_num_threads(args.threads)
    cfg, typed = preset("full")
    suite = instantiate(cfg.tasks, cache_dir=None, _convert_="all")
    data = batches(cfg, suite, args.steps, typed.strategy.optim.batch_size)
    samples: dict[str, list[float]] = {m: [] for m in args.methods}
    for rep in range(args.reps):
        for method in args.methods:
            samples[method].append(step_time(method, data, suite, args.skip))
        print(f"repeat {rep + 1}/{args.reps}: " + ", ".join(f"{m} {v[-1] * 1e3:.1f} ms" for m, v in samples.items()),
              flush=True)
    med = {m: statistics.median(v) for m, v in samples.items()}
    result = {
        "setup": {"model": cfg.model.name, "target": cfg.tasks.target, "steps": args.steps, "skip": args.skip,
                  "batch_size": typed.strategy.optim.batch_size, "reps": args.reps, "threads": args.threads},
        "median_step_s": med,
        "ratio_to_full": {m: med[m] / med["full"] for m in med} if "full" in med else {},
        "samples": samples,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_step_s", "ratio_to_full")}, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
