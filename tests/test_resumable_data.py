"""A run killed and resumed from its last checkpoint must train on exactly the batches, and end with exactly
the weights, of a run that was never interrupted: mid-epoch, at an epoch boundary, across epochs, and
resumed twice. A tiny linear model with dropout and numpy/python noise in the loss makes every RNG count."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from datasets import Dataset
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from forgetlab.training.datamodule import InstructionDataModule
from forgetlab.training.sampler import ResumableBatchSampler, ResumableDataLoader, RngStateCheckpoint

N_EXAMPLES, BATCH = 20, 4  # 5 batches an epoch
STEPS = 13                 # spans three epochs


class Killed(RuntimeError):
    """Stands in for a preemption."""


class KillAt(L.Callback):
    """Raise before the step after `step` runs, as if the job were killed there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


class Toy(L.LightningModule):
    """Linear regression, dropout and numpy/python noise in the loss; records the examples it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)
        self.linear = torch.nn.Linear(4, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["idx"].tolist())
        pred = self.linear(self.drop(batch["x"])).squeeze(-1)
        noise = 1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()
        return noise * torch.nn.functional.mse_loss(pred, batch["y"])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.05)


def raw_data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_EXAMPLES, 4, generator=g)
    return Dataset.from_dict({
        "idx": list(range(N_EXAMPLES)), "x": x.tolist(), "y": (x.sum(1) + 0.5).tolist(),
        "task": ["a" if i % 2 else "b" for i in range(N_EXAMPLES)],
    })


def encode_batch(batch: dict) -> dict:
    # The example's index rides in input_ids[0] so the model can record what it was given.
    return {"input_ids": [[i, *x] for i, x in zip(batch["idx"], batch["x"])], "labels": batch["y"]}


def collate(rows: list[dict]) -> dict:
    ids = torch.tensor([r["input_ids"] for r in rows])
    return {"idx": ids[:, 0].long(), "x": ids[:, 1:], "y": torch.tensor([r["labels"] for r in rows])}


class ShufflingDataModule(InstructionDataModule):
    """The loader InstructionDataModule had before it could resume, to check the data order is kept."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_data, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(self.seed), collate_fn=self.collate)


def train(ckpt_dir: Path, max_steps: int, every: int, kill_at: int | None = None, resume: bool = False,
          datamodule: type[InstructionDataModule] = InstructionDataModule) -> tuple[Toy, list[str]]:
    """One attempt of a run, as fit.py makes it: seed, build, fit (resuming from last.ckpt if asked)."""
    L.seed_everything(0, verbose=False)
    module = Toy()
    data = datamodule(raw_data(), encode_batch, collate, BATCH, seed=3)
    callbacks: list[L.Callback] = [RngStateCheckpoint()]
    if kill_at is not None:
        callbacks.append(KillAt(kill_at))
    callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                     every_n_train_steps=every))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, max_epochs=-1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, deterministic=True, callbacks=callbacks)
    ckpt = str(ckpt_dir / "last.ckpt") if resume else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        except Killed:
            pass
    return module, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Toy:
    module, _ = train(tmp_path_factory.mktemp("full"), STEPS, every=100)
    assert len(module.seen) == STEPS
    return module


def assert_same_weights(a: Toy, b: Toy) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"{name} differs after resuming"


@pytest.mark.parametrize(("every", "kill_at", "saved_at"), [
    (3, 7, 6),    # killed mid-epoch 1; last checkpoint mid-epoch 1 (batch 1 of 5)
    (2, 4, 4),    # checkpoint and kill at the same step, mid-epoch 0
    (5, 11, 10),  # last checkpoint exactly at the end of epoch 1
    (4, 9, 8),    # checkpoint one batch before the end of epoch 1
])
def test_resume_continues_the_same_batches_and_weights(tmp_path, uninterrupted, every, kill_at, saved_at):
    first, _ = train(tmp_path, STEPS, every, kill_at=kill_at)
    assert first.seen == uninterrupted.seen[:kill_at]
    resumed, messages = train(tmp_path, STEPS, every, resume=True)
    assert resumed.seen == uninterrupted.seen[saved_at:]
    assert_same_weights(resumed, uninterrupted)
    assert not [m for m in messages if "not resumable" in m], messages


def test_resume_twice_in_one_epoch(tmp_path, uninterrupted):
    train(tmp_path, STEPS, every=1, kill_at=6)
    second, _ = train(tmp_path, STEPS, every=1, kill_at=8, resume=True)
    assert second.seen == uninterrupted.seen[6:8]
    third, _ = train(tmp_path, STEPS, every=1, resume=True)
    assert third.seen == uninterrupted.seen[8:]
    assert_same_weights(third, uninterrupted)


def test_raising_max_steps_continues_the_run(tmp_path, uninterrupted):
    """Stopping cleanly at max_steps=m and resuming with max_steps=N is the same as never stopping."""
    first, _ = train(tmp_path, 7, every=100)
    resumed, _ = train(tmp_path, STEPS, every=100, resume=True)
    assert first.seen + resumed.seen == uninterrupted.seen
    assert_same_weights(resumed, uninterrupted)


def test_order_matches_the_shuffling_dataloader_it_replaces(tmp_path, uninterrupted):
    """Runs made with DataLoader(shuffle=True, seeded generator) keep their data order, epoch after epoch."""
    before, _ = train(tmp_path, STEPS, every=100, datamodule=ShufflingDataModule)
    assert before.seen == uninterrupted.seen
    assert_same_weights(before, uninterrupted)


def test_each_epoch_is_a_new_permutation_of_every_example():
    sampler = ResumableBatchSampler(10, 5, seed=0)
    epochs = [[i for batch in sampler for i in batch] for _ in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert ResumableBatchSampler(10, 5, seed=1).order(0) != sampler.order(0)


def test_state_is_the_position_after_the_last_batch_yielded():
    """Lightning fetches a sized loader's batches on demand: the last batch yielded is the one trained on."""
    loader = ResumableDataLoader(list(range(12)), ResumableBatchSampler(12, 4, seed=0))
    it = iter(loader)
    first = [next(it).tolist(), next(it).tolist()]
    assert (loader.state_dict()["epoch"], loader.state_dict()["next_batch"]) == (0, 2)
    last = next(it).tolist()
    assert (loader.state_dict()["epoch"], loader.state_dict()["next_batch"]) == (1, 0)
    assert sorted(i for batch in [*first, last] for i in batch) == list(range(12))

    resumed = ResumableDataLoader(list(range(12)), ResumableBatchSampler(12, 4, seed=0))
    resumed.load_state_dict({**loader.state_dict(), "epoch": 0, "next_batch": 2})
    assert [b.tolist() for b in resumed] == [last]
    assert [b.tolist() for b in resumed] == [b.tolist() for b in loader]  # both now in epoch 1


def test_state_from_other_data_is_refused():
    loader = ResumableDataLoader(list(range(12)), ResumableBatchSampler(12, 4, seed=0))
    state = ResumableBatchSampler(16, 4, seed=0).state_dict()
    with pytest.raises(ValueError, match="num_samples"):
        loader.load_state_dict(state)


def test_length_grouping_keeps_each_epochs_examples_and_cuts_padding():
    """Grouped batches hold the same examples per epoch as plain ones, with far less padding, and resume
    at the same batch."""
    rng = __import__("random").Random(0)
    lengths = [rng.randint(5, 60) for _ in range(400)]
    plain = ResumableBatchSampler(400, 16, seed=3)
    grouped = ResumableBatchSampler(400, 16, seed=3, lengths=lengths, group_batches=10)
    for epoch in range(2):
        assert sorted(i for b in grouped.batches(epoch) for i in b) == sorted(plain.order(epoch)[:400])
    assert grouped.batches(0) != grouped.batches(1)

    def pad_share(batches):
        width = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        return 1 - sum(lengths[i] for b in batches for i in b) / width

    assert pad_share(grouped.batches(0)) < 0.1
    assert pad_share(plain.batches(0)) > 0.3
    # batches are shuffled after grouping: lengths do not run monotonically through the epoch
    firsts = [lengths[b[0]] for b in grouped.batches(0)]
    assert firsts != sorted(firsts, reverse=True)

    loader = ResumableDataLoader(list(range(400)), grouped)
    it = iter(loader)
    seen = [next(it).tolist() for _ in range(7)]
    resumed = ResumableDataLoader(list(range(400)), ResumableBatchSampler(400, 16, seed=3, lengths=lengths,
                                                                          group_batches=10))
    resumed.load_state_dict(loader.state_dict())
    assert next(iter(resumed)).tolist() == next(it).tolist()
    assert seen == [b for b in grouped.batches(0)[:7]]
