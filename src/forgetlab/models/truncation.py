"""Counts of examples cut to fit a model's `max_length`, per task and split, for metrics.json.

A pretrained model has a hard input limit and real data (dialogues, documents) runs past it. Cutting is
the only way to train and score such examples, but it must never be silent: the first time a task's split
is seen with cut examples a warning says how many, and every count (zeros too) lands in metrics.json
(`truncated`), so a reader can tell whether a score describes whole inputs.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class TruncationLog:
    """Per task and split: how many examples were cut (the largest count seen, e.g. before vs after)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def record(self, task: str, split: str, cut: int, total: int, max_length: int) -> None:
        seen = self.counts.setdefault(task, {})
        if cut and split not in seen:
            log.warning("task %r: %d of %d %s examples do not fit max_length=%d tokens and were truncated "
                        "(model.build.max_length)", task, cut, total, split, max_length)
        seen[split] = max(cut, seen.get(split, 0))

    def state_dict(self) -> dict[str, dict[str, int]]:
        """The counts, for a training checkpoint: a resumed run may not score again what was scored before
        the checkpoint (e.g. the validation split, at evaluations the checkpoint already holds)."""
        return {task: dict(splits) for task, splits in self.counts.items()}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        """Merge a checkpoint's counts into this log (largest count per task and split, as `record`)."""
        for task, splits in state.items():
            seen = self.counts.setdefault(task, {})
            for split, cut in splits.items():
                seen[split] = max(int(cut), seen.get(split, 0))

    def summary(self, max_length: int) -> dict:
        """What metrics.json records: the limit and the counts by task and split."""
        return {"max_length": max_length, "tasks": {t: dict(sorted(s.items())) for t, s in sorted(self.counts.items())}}
