"""TruncationLog travels in a training checkpoint: a resumed run reports the counts its killed attempt saw."""

from __future__ import annotations

import pickle

from forgetlab.models.truncation import TruncationLog


def test_counts_survive_a_checkpoint_and_merge_with_what_the_relaunch_records():
    killed = TruncationLog()
    killed.record("reverse", "train", 0, 200, 64)
    killed.record("reverse", "validation", 0, 16, 64)   # scored at evaluations the checkpoint holds
    killed.record("copy", "validation", 3, 16, 64)
    state = pickle.loads(pickle.dumps(killed.state_dict()))  # as torch.save stores it

    relaunch = TruncationLog()
    relaunch.record("reverse", "train", 0, 200, 64)     # the training data is tokenised again
    relaunch.record("copy", "validation", 1, 16, 64)
    relaunch.load_state_dict(state)
    assert relaunch.summary(64) == {"max_length": 64, "tasks": {
        "copy": {"validation": 3}, "reverse": {"train": 0, "validation": 0}}}
    snapshot = killed.state_dict()
    snapshot["reverse"]["validation"] = 9
    assert killed.counts["reverse"]["validation"] == 0  # a checkpoint holds a copy, not the live counts
