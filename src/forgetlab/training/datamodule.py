"""Batches for training: tokenise a prompt/completion dataset once with `datasets.map`, then shuffle with
a seeded, resumable sampler, so the order of examples is part of the experiment's seed and a run resumed
from a mid-epoch checkpoint sees the same batches as one that was never interrupted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
from datasets import Dataset
from torch.utils.data import DataLoader

from forgetlab.training.distributed import per_device_batch_size
from forgetlab.training.sampler import ResumableBatchSampler, ResumableDataLoader
from forgetlab.utils.columns import column, content_hash
from forgetlab.utils.dataset_cache import cached_dataset
from forgetlab.utils.io import stable_hash


class InstructionDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: Dataset,
        encode_batch: Callable[[dict], dict],
        collate: Callable[[list[dict]], dict],
        batch_size: int,
        seed: int,
        task_names: list[str] | None = None,
        group_by_length: bool = False,
        cache_dir: str | Path | None = None,
        encoding_key: dict | None = None,
    ) -> None:
        super().__init__()
        self.raw_train = train
        self.encode_batch = encode_batch
        self.collate = collate
        self.batch_size = batch_size
        self.seed = seed
        self.task_names = task_names or sorted(set(column(train, "task")))
        self.group_by_length = group_by_length
        self.cache_dir = cache_dir if encoding_key is not None else None  # tokenised data is cached by both
        self.encoding_key = encoding_key
        self.train_data: Dataset | None = None
        self.truncated: dict[str, tuple[int, int]] = {}  # task -> (examples cut to fit, examples)

    def setup(self, stage: str | None = None) -> None:
        if self.train_data is None:
            def tokenise() -> Dataset:
                # Named by the rows' fingerprint and the encoding: otherwise datasets names the result by
                # pickling `encode_batch`, i.e. the whole model with its weights (~0.5 s a call).
                fingerprint = None if self.encoding_key is None else stable_hash(
                    {"rows": self.raw_train._fingerprint, "encoding": self.encoding_key})
                data = self.raw_train.map(self.encode_batch, batched=True, load_from_cache_file=False,
                                          new_fingerprint=fingerprint)
                return data.select_columns([c for c in ("input_ids", "labels", "task", "truncated")
                                            if c in data.column_names])

            key = {"rows": content_hash(self.raw_train, ["task", "prompt", "completion"]) if self.cache_dir else None,
                   "encoding": self.encoding_key}
            data = cached_dataset(self.cache_dir, "tokenized", key, tokenise)
            index = {t: i for i, t in enumerate(self.task_names)}
            if "truncated" in data.column_names:
                for task, cut in zip(column(data, "task"), column(data, "truncated")):
                    n_cut, n = self.truncated.get(task, (0, 0))
                    self.truncated[task] = (n_cut + int(cut), n + 1)
            data = data.add_column("task_id", [index[t] for t in column(data, "task")])
            self.train_data = data.select_columns(["input_ids", "labels", "task_id"])

    def train_dataloader(self) -> DataLoader:
        n = len(self.train_data)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        per_device_batch_size(self.batch_size, world)  # the global batch must split evenly over the processes
        lengths = None
        if self.group_by_length:  # sort key: (input length, label length); both are padded per batch
            lengths = list(zip(map(len, column(self.train_data, "input_ids")),
                               map(len, column(self.train_data, "labels"))))
        # `batch_size` is the global batch; under DDP each process takes its share of every global batch
        # (the Trainer is built with use_distributed_sampler=False, so Lightning adds no sampler of its own).
        sampler = ResumableBatchSampler(n, self.batch_size, self.seed, drop_last=n >= self.batch_size,
                                        lengths=lengths, rank=rank, world_size=world)
        return ResumableDataLoader(self.train_data, sampler, collate_fn=self.collate, num_workers=0)
