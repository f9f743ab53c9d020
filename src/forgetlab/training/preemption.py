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
    """True for a preemption or Ctrl-C: the run can resume; it did not fail. That is Lightning's SIGTERM, and
    any other `SystemExit` raised inside a run, which forgetlab never raises itself: a scheduler's signal
    handler ending the process, e.g. submitit's preemption/timeout handler that requeues the job."""
    return isinstance(error, (SystemExit, KeyboardInterrupt))


def exit_status(error: BaseException, default: int) -> int:
    """The exit status for an interruption: a scheduler's own (submitit's local requeue code must reach the
    executor, or the job is not requeued), else `default`."""
    if isinstance(error, SystemExit) and not isinstance(error, SIGTERMException) and isinstance(error.code, int):
        return error.code or default
    return default


class CheckpointOnSigterm(L.Callback):
    """Saves `dirpath/filename` when training stops on SIGTERM."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            log.warning("SIGTERM at step %d: checkpoint saved to %s; rerun the same command to resume",
                        trainer.global_step, self.path)
