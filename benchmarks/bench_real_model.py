"""The real-model path measured on a real format: a ~10M-parameter Llama folder (benchmarks/build_llama_folder.py)
run through `model=hf`, next to the built-in models.

1. Throughput: training tokens/s (metrics.json timing) of a short full fine-tuning run, and evaluation
   examples/s (greedy generation + loss, `score_tasks`) on the same task, for the Llama folder and the built-in
   tiny T5 / GPT-2 (their base stage off: random weights run at the same speed).
2. Forgetting of plain text: pre-train the folder on local text (a held-out-text task whose train split is the
   pre-training data, its test split the held-out text), then fine-tune on one target (`topic`) with full
   fine-tuning and with LoRA, each with the held-out text as an evaluation task; print its loss before/after.

Every run goes through forgetlab's own `run_experiment`, so the numbers describe the path a user takes.

    nice -n 5 python benchmarks/bench_real_model.py --out outputs/bench-real
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import open_dict

from forgetlab.evaluation.scoring import score_tasks
from forgetlab.run import instantiate, run_experiment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_llama_folder import build


def config(overrides: list[str], run_dir: Path, custom: dict | None = None):
    with initialize_config_module(config_module="forgetlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.cache_dir = str(run_dir.parent / "cache")
        if custom:
            cfg.tasks.custom = custom
    return cfg


def CORPUS(path: Path) -> dict:
    return {"source": str(path), "kind": "text", "shrink": True,
            "sizes": {"train": 880, "validation": 15, "test": 100}}


QUICK = ["eval.every_n_steps=0", "diagnostics.spectral=false", "callbacks.progress=null", "threads=2"]


def throughput(name: str, model: list[str], out: Path, steps: int) -> dict:
    """Training tokens/s of `steps` steps on `topic`, and evaluation examples/s on its test split."""
    overrides = [*model, "tasks.target=topic", "tasks.base=[]", "tasks.eval=[topic]", "strategy=full",
                 f"strategy.optim.steps={steps}", "strategy.optim.batch_size=16",
                 "tasks.sizes={train: 512, validation: 8, test: 128}", *QUICK]
    cfg = config(overrides, out / f"throughput-{name}")
    metrics = run_experiment(cfg)
    lm = instantiate(cfg.model.build)
    suite = instantiate(cfg.tasks, _convert_="all")
    start = time.perf_counter()
    score_tasks(lm, suite.eval_tasks(), "test", 64)
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in lm.model.parameters())
    return {"model": name, "params_M": round(params / 1e6, 2), "train_tokens_per_s": round(metrics["timing"]["tokens_per_s"]),
            "eval_examples_per_s": round(128 / seconds, 1)}


def pretrain(folder: Path, corpus: Path, out: Path, steps: int) -> tuple[Path, dict]:
    custom = {"corpus": CORPUS(corpus)}
    overrides = ["model=hf", f"model.build.name_or_path={folder}", "model.build.max_length=128",
                 "tasks.target=corpus", "tasks.base=[]", "tasks.eval=[corpus]",
                 "tasks.sizes={train: 2000, validation: 16, test: 128}", "strategy=full", "strategy.optim.lr=1e-3",
                 "strategy.optim.warmup_steps=20", "strategy.optim.scheduler=cosine", f"strategy.optim.steps={steps}",
                 "strategy.optim.batch_size=16", *QUICK]
    metrics = run_experiment(config(overrides, out / "pretrain", custom))
    return out / "pretrain" / "model", metrics


def finetune(folder: Path, corpus: Path, out: Path, strategy: str, lr: float, steps: int) -> dict:
    custom = {"corpus": CORPUS(corpus)}
    overrides = ["model=hf", f"model.build.name_or_path={folder}", "model.build.max_length=128",
                 "tasks.target=topic", "tasks.base=[corpus]", "tasks.eval=[topic,corpus]",
                 "tasks.sizes={train: 2000, validation: 16, test: 128}", f"strategy={strategy}",
                 f"strategy.optim.lr={lr}", f"strategy.optim.steps={steps}", "strategy.optim.batch_size=16", *QUICK]
    # the text task holds the same paragraphs with the same seed as in pre-training: its test split is unseen
    m = run_experiment(config(overrides, out / f"finetune-{strategy}", custom))
    return {"strategy": strategy, "lr": lr, "trainable_params": m["trainable_params"],
            "topic_before": m["before"]["topic"]["score"], "topic_after": m["after"]["topic"]["score"],
            "held_out_loss_before": round(m["before"]["corpus"]["loss"], 4),
            "held_out_loss_after": round(m["after"]["corpus"]["loss"], 4),
            "held_out_loss_increase": round(m["loss_increase"]["corpus"], 4),
            "train_wall_s": round(m["timing"]["train_wall_time_s"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-real"))
    parser.add_argument("--throughput-steps", type=int, default=20)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--skip-throughput", action="store_true",
                        help="only the held-out text part (on a busy machine the speeds mean little)")
    args = parser.parse_args()
    out = args.out.resolve()
    folder, corpus = out / "llama", out / "corpus.txt"
    started = time.perf_counter()
    n, paragraphs = build(folder)
    corpus.write_text("\n\n".join(p.replace("\n\n", "\n") for p in paragraphs) + "\n")
    print(f"Llama folder: {n / 1e6:.1f}M parameters; {len(paragraphs)} local paragraphs", flush=True)
    rows = []
    if not args.skip_throughput:
        rows.append(throughput("llama (model=hf)", ["model=hf", f"model.build.name_or_path={folder}",
                                                    "model.build.max_length=128"], out, args.throughput_steps))
        for builtin in ("tiny_t5", "tiny_gpt"):
            rows.append(throughput(builtin, [f"model={builtin}", "model.base_stage=false"], out,
                                   args.throughput_steps))
    for row in rows:
        print(json.dumps(row), flush=True)
    pretrained, pre = pretrain(folder, corpus, out, args.pretrain_steps)
    print(json.dumps({"pretrain_steps": args.pretrain_steps,
                      "held_out_loss_random_init": round(pre["before"]["corpus"]["loss"], 4),
                      "held_out_loss_pretrained": round(pre["after"]["corpus"]["loss"], 4),
                      "truncated": pre["truncated"]["tasks"]["corpus"]}), flush=True)
    results = [finetune(pretrained, corpus, out, "full", 1e-4, args.finetune_steps),
               finetune(pretrained, corpus, out, "lora", 1e-3, args.finetune_steps)]
    for row in results:
        print(json.dumps(row), flush=True)
    summary = {"throughput": rows, "pretrain": {k: pre[k] for k in ("before", "after", "truncated")},
               "finetune": results, "wall_s": round(time.perf_counter() - started)}
    (out / "bench_real_model.json").write_text(json.dumps(summary, indent=2))
    print(f"total {summary['wall_s']} s -> {out / 'bench_real_model.json'}")


if __name__ == "__main__":
    main()
