"""Optional upload of a report to Weights & Biases. The files on disk are the report; W&B is a copy, so
any failure here (offline, no key, no network) is a warning and never an error."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from forgetlab.utils.wandb_run import wandb_mode


def log_report(out: Path, csv_path: Path, plots: dict[str, Path], project: str = "forgetlab",
               tables: dict[str, tuple[list, list]] | None = None) -> bool:
    """Log the group table, every plot and `tables` (name -> (columns, rows): the groups' generations
    before and after, report/forgotten.py) as one W&B run of job_type 'report'; True if it worked."""
    try:
        import wandb

        mode = wandb_mode()
        if mode == "disabled":
            warnings.warn("W&B is disabled (WANDB_MODE=disabled): report not logged", stacklevel=2)
            return False
        with open(csv_path, newline="") as f:
            header, *rows = list(csv.reader(f))
        run = wandb.init(project=project, job_type="report", mode=mode, dir=str(out))
        try:
            payload = {"report/groups": wandb.Table(columns=header, data=rows)}
            payload.update({f"report/{name}": wandb.Image(str(path)) for name, path in plots.items()})
            payload.update({f"report/{name}": wandb.Table(columns=columns, data=rows)
                            for name, (columns, rows) in (tables or {}).items()})
            run.log(payload)
        finally:
            run.finish()
        return True
    except Exception as err:  # noqa: BLE001 - W&B must never break a report
        warnings.warn(f"could not log the report to W&B, continuing without it: {err}", stacklevel=2)
        return False
