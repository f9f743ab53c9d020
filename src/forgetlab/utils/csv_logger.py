"""Lightning's CSVLogger, except that a resumed run keeps the rows its interrupted attempt wrote.

Lightning deletes `metrics.csv` when a logger starts in a folder that has one. Here the old rows stay,
up to the step where the resumed run starts logging again (rows at or after it are the interrupted
attempt's replay and are replaced), so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


def _step(row: dict) -> float | None:
    try:
        return float(row.get("step") or "")
    except ValueError:
        return None


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        self._previous: list[dict] | None = None
        path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        if os.path.isfile(path):
            os.replace(path, path + ".previous")  # the parent deletes metrics.csv; keep it until merged
        if os.path.isfile(path + ".previous"):  # also left by an attempt killed before its first save
            with open(path + ".previous", newline="") as f:
                self._previous = [{k: v for k, v in row.items() if k and v != ""} for row in csv.DictReader(f)]
        super().__init__(log_dir)

    def save(self) -> None:
        if self._previous is not None and self.metrics:
            first = min(m["step"] for m in self.metrics)
            kept = [r for r in self._previous if (_step(r) is not None and _step(r) < first)]
            self.metrics = kept + self.metrics
            self._previous = None
            super().save()
            os.remove(os.path.join(self.log_dir, self.NAME_METRICS_FILE + ".previous"))
            return
        super().save()


class ResumableCSVLogger(CSVLogger):
    """`CSVLogger` whose metrics.csv survives a resume (conf/logger/csv.yaml)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment
