"""Batches for training: tokenise a prompt/completion dataset once with `datasets.map`, then shuffle with
a seeded, resumable sampler, so the order of examples is part of the experiment's seed and a run resumed
from a mid-epoch checkpoint sees the same batches as one that was never interrupted."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from forgetlab.training.sampler import ResumableBatchSampler, ResumableDataLoader


class InstructionDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: Dataset,
        encode_batch: Callable[[dict], dict],
        collate: Callable[[list[dict]], dict],
        batch_size: int,
        seed: int,
        task_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.raw_train = train
        self.encode_batch = encode_batch
        self.collate = collate
        self.batch_size = batch_size
        self.seed = seed
        self.task_names = task_names or sorted(set(train["task"]))
        self.train_data: Dataset | None = None
        self.truncated: dict[str, tuple[int, int]] = {}  # task -> (examples cut to fit, examples)

    def setup(self, stage: str | None = None) -> None:
        if self.train_data is None:
            index = {t: i for i, t in enumerate(self.task_names)}
            data = self.raw_train.map(self.encode_batch, batched=True, load_from_cache_file=False)
            if "truncated" in data.column_names:
                for task, cut in zip(data["task"], data["truncated"]):
                    n_cut, n = self.truncated.get(task, (0, 0))
                    self.truncated[task] = (n_cut + int(cut), n + 1)
            data = data.map(lambda b: {"task_id": [index[t] for t in b["task"]]}, batched=True,
                            load_from_cache_file=False)
            self.train_data = data.select_columns(["input_ids", "labels", "task_id"])

    def train_dataloader(self) -> DataLoader:
        n = len(self.train_data)
        if self.trainer is not None and self.trainer.world_size > 1:
            # Lightning shards a plain shuffling loader with a DistributedSampler (it cannot rebuild a custom
            # batch sampler for that); such a run resumes mid-epoch from the epoch's start, as before.
            generator = torch.Generator().manual_seed(self.seed)
            return DataLoader(self.train_data, batch_size=self.batch_size, shuffle=True,
                              drop_last=n >= self.batch_size, generator=generator, collate_fn=self.collate)
        sampler = ResumableBatchSampler(n, self.batch_size, self.seed, drop_last=n >= self.batch_size)
        return ResumableDataLoader(self.train_data, sampler, collate_fn=self.collate, num_workers=0)
