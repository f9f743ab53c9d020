"""Padding-free training batches (what TRL calls padding-free packing): a batch's examples are laid end to end
in rows of up to the model's `max_length` tokens instead of each padded to the longest.

Boundaries are kept exactly: position ids restart at 0 for every example, and no attention mask is passed,
so transformers' own mask code reads the restarts as separate sequences (a block-diagonal causal mask under
eager/SDPA/flex attention, variable-length kernels under flash-attention; `masking_utils.
find_packed_sequence_indices`). The first token of each example gets no label (unpacked, nothing predicts it
either), and `example_ids` tells the loss which example each position belongs to, so every example's summed
loss and token count are what the padded batch gives. Only the layout of one batch changes: the sampler, the
examples per step and the loss normalisation by label tokens stay as they are.

`attention_mask` stays in the batch as the count of real tokens (pad_fraction); the model never sees it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from forgetlab.models.hf import packing_blocker, packing_refused
from forgetlab.models.language_model import IGNORE_INDEX, LanguageModel

MODES = ("auto", "true", "false")


def resolve_packing(lm: LanguageModel) -> bool:
    """Whether `lm` trains on packed batches: `lm.packing` auto = where it is exact, true = always (refused where
    examples could see each other), false = never."""
    mode = str(lm.packing).lower()
    if mode not in MODES:
        raise ValueError(f"model.build.packing={lm.packing!r}; allowed values: ['auto', true, false]")
    if mode == "false":
        return False
    blocker = packing_blocker(lm.model, lm.kind)
    if blocker and mode == "true":
        raise packing_refused(lm.name, blocker)  # e.g. prompt tuning added after the model loaded
    return blocker is None


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indices per row, first-fit decreasing: each row holds at most `capacity` tokens (an example longer
    than that gets a row of its own), and rows keep their examples in batch order."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(capacity - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return [sorted(row) for row in rows]


class PackedCollator:
    """`collate_fn` for packed batches of a decoder-only model (see the module's docstring)."""

    def __init__(self, capacity: int, pad_id: int) -> None:
        self.capacity = capacity
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        rows = pack_rows(lengths, self.capacity)
        width = max(sum(lengths[i] for i in row) for row in rows)
        shape = (len(rows), width)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        labels = np.full(shape, IGNORE_INDEX, dtype=np.int64)
        positions = np.zeros(shape, dtype=np.int64)
        examples = np.full(shape, -1, dtype=np.int64)
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                n, end = lengths[i], start + lengths[i]
                ids[r, start:end] = features[i]["input_ids"]
                labels[r, start:end] = features[i]["labels"]
                labels[r, start] = IGNORE_INDEX  # the previous example's last token must not predict it
                positions[r, start:end] = np.arange(n)
                examples[r, start:end] = i
                start = end
            positions[r, start:] = np.arange(width - start)  # padding: a sequence of its own, never labelled
        batch = {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
                 "position_ids": torch.from_numpy(positions), "example_ids": torch.from_numpy(examples),
                 "attention_mask": torch.from_numpy((examples >= 0).astype(np.int64))}
        if "task_id" in features[0]:
            batch["task_id"] = torch.tensor([f["task_id"] for f in features], dtype=torch.long)
        return batch


def training_collate(lm: LanguageModel) -> Any:
    """The training batches' collate function: packed where `lm.packing` resolves to on, else padded."""
    return PackedCollator(lm.max_length, lm.tokenizer.pad_token_id) if resolve_packing(lm) else lm.collate
