"""One function that trains a model on a dataset with Lightning: used by the base stage and by every
fine-tuning run, so both follow the same loop, seeding and logging."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from datasets import Dataset

from forgetlab.config.schema import OptimConfig
from forgetlab.models.language_model import LanguageModel
from forgetlab.training.datamodule import InstructionDataModule
from forgetlab.training.distributed import per_device_batch_size
from forgetlab.training.module import InstructionTuner, Penalty
from forgetlab.training.packing import PackedCollator, training_collate
from forgetlab.utils.columns import column


def fit(
    lm: LanguageModel,
    train: Dataset,
    trainer: L.Trainer,
    optim: OptimConfig,
    seed: int,
    penalty: Penalty | None = None,
    ckpt_path: str | None = None,
    data_cache_dir: str | None = None,
) -> dict[str, Any]:
    """Train `lm.model` in place for `optim.steps` steps; return tokens seen, steps, wall time and the batch.

    `optim.batch_size` is the global batch: with N processes (DDP) each trains on its share of every batch,
    and the token counts are sums over all processes. With `data_cache_dir` the tokenised training data is
    cached there for later runs.
    """
    task_names = sorted(set(column(train, "task")))
    collate = training_collate(lm)  # padding-free packed batches where the model allows it (model.build.packing)
    data = InstructionDataModule(train, lm.encode_batch, collate, optim.batch_size, seed, task_names,
                                 group_by_length=optim.group_by_length, cache_dir=data_cache_dir,
                                 encoding_key=lm.encoding_key())
    module = InstructionTuner(lm, optim, penalty=penalty, task_names=task_names)
    data.setup("fit")  # tokenise now, so examples cut to fit the model are reported before training starts
    for task, (cut, n) in sorted(data.truncated.items()):
        lm.truncation.record(task, "train", cut, n, lm.max_length)
    lm.model.train()  # from_pretrained returns eval mode; dropout must be live while training
    L.seed_everything(seed, workers=True, verbose=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    end = time.perf_counter()
    wall = end - start
    # throughput over the training loop: under DDP `wall` also holds the start of the other processes
    loop = end - (module.loop_started or start)
    return {
        "tokens_seen": module.tokens_seen,
        "pad_fraction": module.pad_fraction,
        "train_wall_time_s": wall,
        "tokens_per_s": module.tokens_seen / loop if loop > 0 else 0.0,
        "steps": trainer.global_step,
        "batch": {
            "global": optim.batch_size * trainer.accumulate_grad_batches,
            "per_process": per_device_batch_size(optim.batch_size, trainer.world_size),
            "processes": trainer.world_size,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "packed": isinstance(collate, PackedCollator),  # examples laid end to end, padding-free
        },
    }
