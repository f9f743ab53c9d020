"""SIGTERM (what SLURM and most schedulers send before preemption) ends a run with a checkpoint to resume
from, not a lost stretch of training.

Lightning turns SIGTERM into `SIGTERMException` at the end of the training step that was running, after
its callbacks: the state then is exactly that of a finished step, so the checkpoint saved here resumes
like any periodic one. The console app records the run as `interrupted` and exits non-zero.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def is_interruption(error: BaseException) -> bool:
    """True for a preemption (SIGTERM) or Ctrl-C: the run can resume; it did not fail."""
    return isinstance(error, (SIGTERMException, KeyboardInterrupt))


class CheckpointOnSigterm(L.Callback):
    """Saves `dirpath/filename` when training stops on SIGTERM."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            log.warning("SIGTERM at step %d: checkpoint saved to %s; rerun the same command to resume",
                        trainer.global_step, self.path)
