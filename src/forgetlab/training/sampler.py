"""What a resumed run needs to see exactly the batches and random draws of an uninterrupted one.

Lightning restores a train loader's position only if the loader object itself has `state_dict` /
`load_state_dict` (`CombinedLoader._state_dicts` checks the *loader*, not its sampler), and it checkpoints
no RNG state. So: a batch sampler whose order is a pure function of (seed, epoch), a DataLoader that
reports the position of the next batch to train on, and a callback that puts the global RNG states into
the checkpoint.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of a seeded permutation, a new one each epoch, that can start at any batch of any epoch.

    The order of an epoch depends only on (seed, epoch), and is the one Lightning trained on with the
    `DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))` this replaces, so earlier runs
    keep their data order. `epoch` and `next_batch` say where the next iteration starts; they advance as
    batches are yielded, so the sampler's state is the number of batches it has handed out.

    With `lengths` (one per example) batches are grouped by length, as transformers' LengthGroupedSampler
    does: the epoch's permutation is cut into mega-batches of `group_batches` batches, each mega-batch is
    sorted by length and cut into batches, and the batches are shuffled. Examples of one batch then have
    nearly equal lengths (little padding) while the epoch's content and its randomness stay the same.

    Under DDP every process builds the same sampler with its `rank` and the `world_size`: the batches are
    still the global ones (`batch_size` = examples per optimizer step over all processes) and each process
    takes every `world_size`-th example of each, from its `rank` on. So N processes train on exactly the
    batches of one, and the state (counted in global batches) resumes on any number of processes.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, drop_last: bool = True,
                 lengths: Sequence[int] | None = None, group_batches: int = 50,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_samples < 0 or batch_size < 1:
            raise ValueError(f"need num_samples >= 0 and batch_size >= 1, got {num_samples} and {batch_size}")
        if lengths is not None and len(lengths) != num_samples:
            raise ValueError(f"got {len(lengths)} lengths for {num_samples} examples")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.drop_last = seed, drop_last
        self.lengths, self.group_batches = lengths, max(1, group_batches)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.next_batch = 0

    def __len__(self) -> int:
        """Batches in a whole epoch (not the ones left), which is what Lightning counts an epoch by."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def order(self, epoch: int) -> list[int]:
        """The permutation of the dataset used in `epoch`.

        Replays the draws the replaced loader made from its generator each epoch under Lightning: the
        iterator's base seed, then RandomSampler's permutation. (Lightning stops a sized epoch by count, so
        RandomSampler never reached the second, zero-length permutation a plain for-loop would draw.)
        """
        g, n = torch.Generator().manual_seed(self.seed), self.num_samples
        perm = torch.empty(0, dtype=torch.int64)
        for _ in range(epoch + 1):
            torch.empty((), dtype=torch.int64).random_(generator=g)
            perm = torch.randperm(n, generator=g)
        return perm.tolist()

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch`, in the order they are trained on."""
        order, bs = self.order(epoch), self.batch_size
        batches = [order[b * bs:(b + 1) * bs] for b in range(len(self))]
        if self.lengths is None:
            return batches
        lengths, size = self.lengths, bs * self.group_batches
        kept = [i for batch in batches for i in batch]
        grouped = []
        for start in range(0, len(kept), size):
            mega = sorted(kept[start:start + size], key=lambda i: lengths[i], reverse=True)
            grouped += [mega[j:j + bs] for j in range(0, len(mega), bs)]
        shuffle = torch.randperm(len(grouped), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return [grouped[k] for k in shuffle.tolist()]

    def position(self) -> tuple[int, int]:
        """(epoch, batch) where the next iteration starts; past the last batch means the next epoch."""
        if self.next_batch >= len(self):
            return self.epoch + 1, 0
        return self.epoch, self.next_batch

    def __iter__(self) -> Iterator[list[int]]:
        self.epoch, self.next_batch = self.position()
        epoch, batches = self.epoch, self.batches(self.epoch)
        for b in range(self.next_batch, len(self)):
            self.epoch, self.next_batch = epoch, b + 1
            yield batches[b][self.rank::self.world_size]

    def state_dict(self) -> dict[str, int]:
        epoch, next_batch = self.position()
        return {"seed": self.seed, "epoch": epoch, "next_batch": next_batch,
                "num_samples": self.num_samples, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from `state`; refuse one written for other data, which would silently change the order."""
        mine = (self.seed, self.num_samples, self.batch_size)
        theirs = (state["seed"], state["num_samples"], state["batch_size"])
        if mine != theirs:
            raise ValueError(
                f"checkpointed data order is for (seed, num_samples, batch_size) = {theirs}, this run has"
                f" {mine}; resume with the same data and batch size or start a new run"
            )
        self.epoch, self.next_batch = int(state["epoch"]), int(state["next_batch"])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableBatchSampler` that Lightning recognises as resumable.

    Its state is the position after the last batch it *yielded*, counted here rather than in the sampler
    so that worker processes reading indices ahead do not move it. That is the next batch to train on
    because Lightning fetches a sized loader's batches on demand (`_PrefetchDataFetcher` skips
    pre-fetching when the length is known) and ends the epoch by count, never exhausting the iterator.
    """

    def __init__(self, dataset: Dataset, batch_sampler: ResumableBatchSampler, **kwargs: Any) -> None:
        # Own generator: DataLoader.__iter__ draws a base seed from it, or from the global torch RNG when
        # there is none, which would shift dropout in a resumed run that calls iter() at another time.
        kwargs.setdefault("generator", torch.Generator().manual_seed(batch_sampler.seed))
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        # position after the last batch yielded to the consumer
        self._epoch, self._next_batch = batch_sampler.epoch, batch_sampler.next_batch

    def _position(self) -> tuple[int, int]:
        if self._next_batch >= len(self.batch_sampler):
            return self._epoch + 1, 0
        return self._epoch, self._next_batch

    def __iter__(self) -> Iterator[Any]:
        self._epoch, self._next_batch = self._position()
        self.batch_sampler.epoch, self.batch_sampler.next_batch = self._epoch, self._next_batch
        return self._batches(super().__iter__())

    def _batches(self, inner: Iterator[Any]) -> Iterator[Any]:
        for batch in inner:
            self._next_batch += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        state = self.batch_sampler.state_dict()
        state["epoch"], state["next_batch"] = self._position()
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.load_state_dict(state)
        self._epoch, self._next_batch = self.batch_sampler.epoch, self.batch_sampler.next_batch


def collect_rng_states() -> dict[str, Any]:
    """Global RNG states of torch (and CUDA), numpy and Python, as types `torch.load(weights_only=True)`
    accepts (numpy's key array becomes a list)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, key.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), py_gauss],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("torch.cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    name, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = states["python"]
    random.setstate((version, tuple(internal), py_gauss))


class RngStateCheckpoint(L.Callback):
    """Saves the global RNG states in every checkpoint and puts them back before the first resumed step.

    Lightning's checkpoints hold no RNG state, so without this a resumed run draws different dropout
    masks. The states are applied at the first `on_train_batch_start` after loading, not at load time,
    so whatever Lightning or other callbacks draw while setting up (e.g. an evaluation at train start)
    does not shift them.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "RngStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
