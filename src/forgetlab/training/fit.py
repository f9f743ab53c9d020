"""One function that trains a model on a dataset with Lightning: used by the base stage and by every
fine-tuning run, so both follow the same loop, seeding and logging."""

from __future__ import annotations

import time

import lightning as L
from datasets import Dataset

from forgetlab.config.schema import OptimConfig
from forgetlab.models.language_model import LanguageModel
from forgetlab.training.datamodule import InstructionDataModule
from forgetlab.training.module import InstructionTuner, Penalty


def fit(
    lm: LanguageModel,
    train: Dataset,
    trainer: L.Trainer,
    optim: OptimConfig,
    seed: int,
    penalty: Penalty | None = None,
    ckpt_path: str | None = None,
) -> dict[str, float]:
    """Train `lm.model` in place for `optim.steps` steps; return tokens seen, steps and wall time."""
    task_names = sorted(set(train["task"]))
    data = InstructionDataModule(train, lm.encode_batch, lm.collate, optim.batch_size, seed, task_names)
    module = InstructionTuner(lm, optim, penalty=penalty, task_names=task_names)
    data.setup("fit")  # tokenise now, so examples cut to fit the model are reported before training starts
    for task, (cut, n) in sorted(data.truncated.items()):
        lm.truncation.record(task, "train", cut, n, lm.max_length)
    lm.model.train()  # from_pretrained returns eval mode; dropout must be live while training
    L.seed_everything(seed, workers=True, verbose=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    wall = time.perf_counter() - start
    return {
        "tokens_seen": module.tokens_seen,
        "train_wall_time_s": wall,
        "tokens_per_s": module.tokens_seen / wall if wall > 0 else 0.0,
        "steps": trainer.global_step,
    }
