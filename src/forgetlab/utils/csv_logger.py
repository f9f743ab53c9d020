"""Lightning's CSVLogger, except that a resumed run keeps the rows its interrupted attempt wrote.

Lightning deletes `metrics.csv` when a logger starts in a folder that has one. Here the old rows stay,
up to the step where the resumed run starts logging again (rows at or after it are the interrupted
attempt's replay and are replaced), so the file reads as one uninterrupted run. A row the attempt computed
but never wrote (Lightning hands a step's row to the loggers after that step's checkpoint) comes back from
the checkpoint (`restore_row`, training/module.py) and is added where it is missing.
"""

from __future__ import annotations

import csv
import math
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only


def _step(row: dict) -> float | None:
    try:
        return float(row.get("step", ""))
    except (TypeError, ValueError):
        return None


def _covers(row: dict, restored: dict) -> bool:
    """Whether a row read back from the file already holds the restored row (same step, its keys)."""
    return _step(row) == _step(restored) and set(restored) <= set(row)


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        self._previous: list[dict] | None = None
        self._restored: list[dict] = []
        path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        if os.path.isfile(path):
            os.replace(path, path + ".previous")  # the parent deletes metrics.csv; keep it until merged
        if os.path.isfile(path + ".previous"):  # also left by an attempt killed before its first save
            with open(path + ".previous", newline="") as f:
                self._previous = [{k: v for k, v in row.items() if k and v != ""} for row in csv.DictReader(f)]
        super().__init__(log_dir)

    def restore_row(self, values: dict, step: int) -> None:
        self._restored.append({**values, "step": step})

    def save(self) -> None:
        if (self._previous is not None and self.metrics) or self._restored:
            first = min((m["step"] for m in self.metrics), default=math.inf)
            kept = [r for r in self._previous or [] if (_step(r) is not None and _step(r) < first)]
            kept += [r for r in self._restored if not any(_covers(k, r) for k in kept)]
            self.metrics = sorted(kept, key=_step) + self.metrics  # sorted() is stable: order within a step
            self._previous, self._restored = None, []
            super().save()
            previous = os.path.join(self.log_dir, self.NAME_METRICS_FILE + ".previous")
            if os.path.exists(previous):
                os.remove(previous)
            return
        super().save()


class ResumableCSVLogger(CSVLogger):
    """`CSVLogger` whose metrics.csv survives a resume (conf/logger/csv.yaml)."""

    @rank_zero_only
    def restore_row(self, values: dict, step: int) -> None:
        """A row of `step` that the interrupted attempt computed but did not write: added unless the file
        has it."""
        self.experiment.restore_row(values, step)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment
