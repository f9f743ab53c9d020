"""GPU variant of the performance benchmark (issue 12): a ~100M-parameter T5 built from config, trained
through forgetlab's training path (`training.fit` with the `trainer=gpu` config: Lightning, bf16-mixed) on
the built-in default's training data, then scored on its evaluation tasks. Prints and writes as JSON:

- steady-state step time, trained tokens/s (label + input tokens that are not padding) and padded tokens/s;
- model FLOPs utilisation: FLOPs per token x padded tokens/s over the GPU's peak bf16 FLOP/s, with FLOPs per
  token 2N forward + 2N input gradients + 2T weight gradients (N parameters, T trainable): 6N for full
  fine-tuning (the rule of Kaplan et al. 2020), less for LoRA (`--strategy lora`, whose frozen weights get no
  weight gradients); attention FLOPs are left out, so MFU is slightly under-counted;
- batched scoring throughput (examples/s: greedy generation + loss, one encoder pass per batch);
- peak GPU memory.

Runs in well under 5 minutes on one large GPU. On a machine without one, `--device cpu` with a small model
checks that the script works (its numbers say nothing about GPUs):

    python benchmarks/bench_gpu.py [--steps 200] [--batch 256] [--d-model 768] [--layers 6] [--strategy lora] [--out FILE]
    python benchmarks/bench_gpu.py --device cpu --d-model 64 --layers 1 --steps 6 --batch 8 --max-eval-examples 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_performance import StepClock  # the same clock as the CPU benchmark
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from forgetlab.config import validate
from forgetlab.evaluation.scoring import score_tasks
from forgetlab.models.placement import place_for_scoring
from forgetlab.strategies.adapters import apply_params
from forgetlab.training.fit import fit
from forgetlab.training.mixing import build_training_data
from forgetlab.utils.console import quiet_third_party

# Dense bf16 peak FLOP/s by device name (vendor data sheets, without sparsity).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def peak_flops(device: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device != "gpu" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def compose_config(args) -> object:
    """The default run's config with the model scaled up and the chosen trainer (what `forgetlab` composes)."""
    overrides = [f"trainer={'gpu' if args.device == 'gpu' else 'cpu'}", "paths.root=outputs",
                 "paths.output_dir=outputs/bench_gpu",
                 f"model.build.d_model={args.d_model}", f"model.build.d_ff={4 * args.d_model}",
                 f"model.build.num_heads={max(1, args.d_model // 64)}", "model.build.d_kv=64",
                 f"model.build.num_layers={args.layers}", f"model.build.num_decoder_layers={args.layers}",
                 f"strategy={args.strategy}", f"strategy.optim.steps={args.steps}", f"strategy.optim.batch_size={args.batch}"]
    with initialize_config_module(config_module="forgetlab.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--d-model", type=int, default=768, help="width (768 with 6+6 layers: ~99M parameters)")
    parser.add_argument("--layers", type=int, default=6, help="encoder layers (the decoder has as many)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--strategy", default="full", help="a conf/strategy/ name whose params apply (full, lora, ...)")
    parser.add_argument("--batch", type=int, default=256, help="the built-in tasks' inputs are ~30 tokens")
    parser.add_argument("--max-eval-examples", type=int, default=None, help="per task (default: whole test split)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s if not in the table")
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.json"))
    args = parser.parse_args()
    if args.device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu and a small model to check the script")

    quiet_third_party(False)
    cfg = compose_config(args)
    config = validate(cfg)
    lm = instantiate(cfg.model.build)
    suite = instantiate(cfg.tasks, _convert_="all")
    optim = config.strategy.optim
    train, _ = build_training_data(config.strategy.data, suite, optim.steps * optim.batch_size, seed=0)
    params = sum(p.numel() for p in lm.model.parameters())
    apply_params(config.strategy.params, lm, seed=0)  # peft wraps the model for LoRA and the like
    trainable = sum(p.numel() for p in lm.model.parameters() if p.requires_grad)
    flops_per_token = 4 * params + 2 * trainable  # 6N when every parameter trains
    skip = min(10, args.steps // 2)
    clock = StepClock(skip)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    stats = fit(lm, train, trainer, optim, seed=0)
    step_s = (clock.end - clock.start) / (args.steps - skip)
    padded_per_s = stats["tokens_per_s"] / (1.0 - stats["pad_fraction"])  # tensor positions, padding included

    place_for_scoring(lm, cfg.trainer)  # what a run does: the trainer's device, bf16 autocast on GPU
    start = time.perf_counter()
    scores = score_tasks(lm, suite.eval_tasks(), "test", config.eval.batch_size, args.max_eval_examples,
                         config.eval.max_batch_tokens)
    eval_s = time.perf_counter() - start
    examples = sum(s["n"] for s in scores.values())

    peak = peak_flops(args.device, args.peak_tflops)
    result = {
        "device": torch.cuda.get_device_name() if args.device == "gpu" else "cpu",
        "precision": str(cfg.trainer.precision), "strategy": args.strategy, "parameters": params,
        "trainable_parameters": trainable, "steps": args.steps, "batch": args.batch,
        "step_time_ms": 1000 * step_s, "trained_tokens_per_s": stats["tokens_per_s"],
        "pad_fraction": stats["pad_fraction"], "padded_tokens_per_s": padded_per_s,
        "mfu": flops_per_token * padded_per_s / peak if peak else None,
        "eval_examples_per_s": examples / eval_s, "eval_examples": examples,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
