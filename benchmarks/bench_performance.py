"""Performance of forgetlab's paths against the obvious alternatives, measured in one process (issue 12).

On the same model (the built-in tiny T5, fresh weights for every measurement), data, batch size, steps and
optimizer (the default's `strategy.optim.optimizer`, fused AdamW, which is also the HF Trainer's default):
1. training step time: forgetlab's training path (`training.fit`: Lightning, the resumable loader, the
   configured trainer) vs a minimal raw PyTorch loop vs the transformers Trainer, all on plain shuffled
   batches of the same padding (the default; length grouping is measured separately in 4.), and a plain
   LightningModule on the raw loop's batches (what Lightning alone adds);
2. evaluation: batched scoring (one encoder pass per batch, length-sorted) vs per-example scoring;
3. data preparation: building the tasks, the training mixture and its tokenisation, cold (empty cache)
   vs cached (what the second job of a sweep pays);
4. pad fraction of the training batches with and without length grouping.
Repeats are alternated (A, B, C, A, B, C, ...) so machine load hits all alike; medians and ratios are
printed and written as JSON.

    python benchmarks/bench_performance.py [--reps 5] [--steps 30] [--out bench_performance.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from forgetlab.config.schema import OptimConfig
from forgetlab.evaluation.scoring import score_task
from forgetlab.training.datamodule import InstructionDataModule
from forgetlab.training.fit import fit
from forgetlab.training.mixing import build_training_data
from forgetlab.utils.console import quiet_third_party


def default_config():
    """The built-in default as `forgetlab` composes it (conf/train.yaml): model, tasks and lr come from there."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="forgetlab.conf", version_base="1.3"):
        return compose("train", overrides=["paths.root=/tmp/forgetlab-perf"])


CFG = default_config()
LR = float(CFG.strategy.optim.lr)
FUSED = bool(CFG.strategy.optim.optimizer.get("fused", False))


def make_optimizer(params):
    """The default run's optimizer (strategy.optim.optimizer: fused AdamW), for every loop alike."""
    return instantiate(CFG.strategy.optim.optimizer)(list(params), lr=LR)


def build_model():
    return instantiate(CFG.model.build)


def build_tasks(cache_dir: str | None = None):
    return instantiate(CFG.tasks, cache_dir=cache_dir, _convert_="all")


class StepClock(L.Callback):
    """Steady-state step time inside Lightning: from the start of step `skip` to the end of the last (on a
    GPU after its queued work is done)."""

    def __init__(self, skip: int) -> None:
        self.skip, self.start, self.end = skip, None, None

    @staticmethod
    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.skip and self.start is None:
            self.start = self.now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = self.now()


def forgetlab_step_time(train, steps: int, batch: int, skip: int) -> float:
    lm = build_model()
    clock = StepClock(skip)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, gradient_clip_val=1.0, deterministic=True, callbacks=[clock])
    fit(lm, train, trainer, OptimConfig(lr=LR, batch_size=batch, steps=steps, group_by_length=False), seed=0)
    return (clock.end - clock.start) / (steps - skip)


def batches_of(lm, train, batch: int, steps: int, group: bool) -> list[dict]:
    """The batches forgetlab's loader gives, for loops that are handed the same data."""
    dm = InstructionDataModule(train, lm.encode_batch, lm.collate, batch, seed=0, group_by_length=group)
    dm.setup()
    loader = dm.train_dataloader()
    out = []
    while len(out) < steps:
        out += [{k: v for k, v in b.items() if k != "task_id"} for b in loader]
    return out[:steps]


def raw_step_time(train, steps: int, batch: int, skip: int) -> float:
    """A minimal PyTorch loop: forward, loss, backward, clip, optimizer step."""
    lm = build_model()
    data = batches_of(lm, train, batch, steps, group=False)  # plain batches, as the other two loops get
    opt = make_optimizer(lm.model.parameters())
    lm.model.train()
    start = None
    for i, b in enumerate(data):
        if i == skip:
            start = time.perf_counter()
        nll, ntok = lm.token_losses(b)
        loss = nll.sum() / ntok.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / (steps - skip)


class PlainModule(L.LightningModule):
    """The least a LightningModule can be: the raw loop's loss, Lightning's automatic optimization."""

    def __init__(self, lm) -> None:
        super().__init__()
        self.lm, self.model = lm, lm.model

    def training_step(self, batch, batch_idx):
        nll, ntok = self.lm.token_losses(batch)
        return nll.sum() / ntok.sum()

    def configure_optimizers(self):
        return make_optimizer(self.model.parameters())


def lightning_step_time(train, steps: int, batch: int, skip: int) -> float:
    """Plain Lightning (the same Trainer flags as forgetlab's) on the raw loop's pre-built batches: what
    Lightning's loop costs by itself, so the gap to the raw loop splits into Lightning's part and forgetlab's
    (its loader, per-task loss sums, logging)."""
    lm = build_model()
    data = batches_of(lm, train, batch, steps, group=False)
    clock = StepClock(skip)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, gradient_clip_val=1.0, deterministic=True, callbacks=[clock])
    L.seed_everything(0, verbose=False)
    trainer.fit(PlainModule(lm), train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return (clock.end - clock.start) / (steps - skip)


def hf_trainer_step_time(train, steps: int, batch: int, skip: int, workdir: Path) -> float:
    """transformers.Trainer on the same tokenised data and collate function (its own loop and loss)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    lm = build_model()
    dm = InstructionDataModule(train, lm.encode_batch, lm.collate, batch, seed=0)
    dm.setup()
    times: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == skip and "start" not in times:
                times["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times["end"] = time.perf_counter()

    args = TrainingArguments(output_dir=str(workdir / "hf"), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=LR, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
                             optim="adamw_torch_fused" if FUSED else "adamw_torch",
                             logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True, seed=0, remove_unused_columns=False)

    def collate(features):
        out = lm.collate(features)
        out.pop("task_id", None)
        return out

    trainer = Trainer(model=lm.model, args=args, train_dataset=dm.train_data, data_collator=collate,
                      callbacks=[Clock()])
    trainer.train()
    return (times["end"] - times["start"]) / (steps - skip)


def eval_examples_per_s(suite, n: int, batch_size: int) -> float:
    lm = build_model()
    task = suite.tasks[suite.target]
    start = time.perf_counter()
    score_task(lm, task, "test", batch_size=batch_size, max_examples=n)
    return n / (time.perf_counter() - start)


def data_prep_s(cache: Path | None, steps: int, batch: int) -> float:
    """Build the tasks, the training mixture and its tokenisation, as a run does."""
    from forgetlab.config.schema import DataConfig

    start = time.perf_counter()
    suite = build_tasks(str(cache) if cache else None)
    lm = build_model()
    train, _ = build_training_data(DataConfig(), suite, steps * batch, seed=0)
    InstructionDataModule(train, lm.encode_batch, lm.collate, batch, seed=0, group_by_length=True,
                          cache_dir=cache, encoding_key=lm.encoding_key()).setup()
    return time.perf_counter() - start


def pad_fraction(train, batch: int, steps: int, group: bool) -> float:
    lm = build_model()
    real = total = 0
    for b in batches_of(lm, train, batch, steps, group):
        real += int(b["attention_mask"].sum()) + int((b["labels"] != -100).sum())
        total += b["attention_mask"].numel() + b["labels"].numel()
    return 1 - real / total


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the step time")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-examples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench_performance.json"))
    args = parser.parse_args()
    quiet_third_party(False)
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="forgetlab-perf-"))
    suite = build_tasks()
    from forgetlab.config.schema import DataConfig

    train, _ = build_training_data(DataConfig(), suite, args.steps * args.batch_size, seed=0)

    t: dict[str, list[float]] = {k: [] for k in ("forgetlab", "lightning", "raw", "hf_trainer", "eval_batched",
                                                 "eval_per_example", "data_cold", "data_cached")}
    for rep in range(args.reps):
        t["forgetlab"].append(forgetlab_step_time(train, args.steps, args.batch_size, args.skip))
        t["lightning"].append(lightning_step_time(train, args.steps, args.batch_size, args.skip))
        t["raw"].append(raw_step_time(train, args.steps, args.batch_size, args.skip))
        t["hf_trainer"].append(hf_trainer_step_time(train, args.steps, args.batch_size, args.skip, workdir))
        t["eval_batched"].append(eval_examples_per_s(suite, args.eval_examples, 256))
        t["eval_per_example"].append(eval_examples_per_s(suite, args.eval_examples, 1))
        cache = workdir / f"cache{rep}"
        t["data_cold"].append(data_prep_s(cache, args.steps, args.batch_size))
        t["data_cached"].append(data_prep_s(cache, args.steps, args.batch_size))
        print(f"repeat {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.4g}" for k, v in t.items()), flush=True)

    med = {k: median(v) for k, v in t.items()}
    result = {
        "setup": {"model": CFG.model.name, "target": suite.target, "steps": args.steps,
                  "batch_size": args.batch_size, "reps": args.reps, "threads": args.threads},
        "medians": {
            "step_time_s": {k: med[k] for k in ("forgetlab", "lightning", "raw", "hf_trainer")},
            "eval_examples_per_s": {"batched": med["eval_batched"], "per_example": med["eval_per_example"]},
            "data_prep_s": {"cold": med["data_cold"], "cached": med["data_cached"]},
        },
        "ratios": {
            "forgetlab_speed_vs_raw": med["raw"] / med["forgetlab"],
            "forgetlab_speed_vs_hf_trainer": med["hf_trainer"] / med["forgetlab"],
            "plain_lightning_speed_vs_raw": med["raw"] / med["lightning"],
            "batched_vs_per_example_eval": med["eval_batched"] / med["eval_per_example"],
            "data_cold_vs_cached": med["data_cold"] / med["data_cached"],
        },
        "pad_fraction": {"grouped": pad_fraction(train, args.batch_size, args.steps, True),
                         "plain": pad_fraction(train, args.batch_size, args.steps, False)},
        "samples": t,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("medians", "ratios", "pad_fraction")}, indent=2))
    print(f"written: {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
