"""A continual run's stages on disk, so a killed sequence resumes at the stage where it stopped.

`stages/00/scores.json` holds row 0 (the starting model); `stages/<t>/` (t = 1..T) holds the weights after
stage t (`weights.pt`), what the strategy carries to the next stage (`fisher.pt` for EWC,
`replay_memory.json` for reservoir replay), the Lightning checkpoints of the stage in progress, and
`scores.json`, written last. Every file is written atomically, and a stage counts as complete only when
its scores.json and every file it needs are on disk and load. Each scores.json records a fingerprint of
the settings that produced it, so stages of a different config are never mixed into one matrix.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from forgetlab.config import ConfigError
from forgetlab.run_dirs import shown
from forgetlab.training.checkpoint_files import checkpoint_error
from forgetlab.utils.io import read_json, write_bytes, write_json

STAGES_DIR = "stages"
SCORES_FILE = "scores.json"
WEIGHTS_FILE = "weights.pt"
FISHER_FILE = "fisher.pt"
MEMORY_FILE = "replay_memory.json"


class StageStore:
    """`stages/` of one run; `fingerprint` identifies the config the stages belong to."""

    def __init__(self, run_dir: str | Path, fingerprint: str) -> None:
        self.root = Path(run_dir) / STAGES_DIR
        self.fingerprint = fingerprint

    def dir(self, t: int) -> Path:
        return self.root / f"{t:02d}"

    def path(self, t: int, name: str) -> Path:
        return self.dir(t) / name

    def scores(self, t: int) -> dict | None:
        """The stage's record if scores.json is there and readable; a record of another config is an error."""
        path = self.path(t, SCORES_FILE)
        try:
            record = read_json(path)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or "scores" not in record:
            return None
        if record.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"{shown(path)} was written by a run with other settings (fingerprint "
                f"{record.get('fingerprint')} != {self.fingerprint}); a sequence resumes only with its own "
                "settings: point paths.output_dir at a new folder, or delete that folder's stages/")
        return record

    def complete(self, t: int, needs: list[str]) -> bool:
        """Scores written, and every file in `needs` present and loadable."""
        if self.scores(t) is None:
            return False
        for name in needs:
            path = self.path(t, name)
            if not path.is_file():
                return False
            if name.endswith(".pt") and checkpoint_error(path) is not None:
                return False
        return True

    def completed_prefix(self, last: int, needs: list[str]) -> int:
        """The last stage t such that stages 1..t are all complete (0 = none)."""
        done = 0
        while done < last and self.complete(done + 1, needs):
            done += 1
        return done

    def write_tensors(self, t: int, name: str, tensors: dict[str, torch.Tensor]) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().to("cpu") for k, v in tensors.items()}, buffer)
        write_bytes(self.path(t, name), buffer.getvalue())

    def read_tensors(self, t: int, name: str) -> dict[str, torch.Tensor]:
        return torch.load(self.path(t, name), map_location="cpu", weights_only=True)

    def write_json(self, t: int, name: str, data: Any) -> None:
        write_json(self.path(t, name), data)

    def read_json(self, t: int, name: str) -> Any:
        return read_json(self.path(t, name))

    def finish(self, t: int, record: dict) -> None:
        """Write scores.json, the mark that stage t is complete: call it after every other file of the stage."""
        write_json(self.path(t, SCORES_FILE), {**record, "fingerprint": self.fingerprint})
