"""The Optuna study's storage, ready before any worker of a search asks it for a trial.

Several workers share one study when they run the same `forgetlab -m hparams_search=...` command (on one
machine, or as cluster jobs) with the same `hydra.sweeper.storage` and `study_name`: the database hands
out the trial numbers. Two workers that start on a fresh database would both create its tables and
version stamp, and one crashes (`UNIQUE constraint failed: alembic_version`); so the sweep's start
(forgetlab.utils.sweep.SweepSummary) creates them first, under a file lock beside the sqlite file.
hydra-optuna-sweeper 1.3 pins optuna 2.x, whose storages are RDB URLs (sqlite, PostgreSQL, MySQL) and Redis;
Optuna's journal file storage needs optuna >= 3.1.
"""

from __future__ import annotations

import logging
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///path?options` URL, else None."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


def prepare_storage(url: str, lock_dir: str | Path) -> None:
    """Create the storage's tables once, whichever worker comes first (the others wait on the lock)."""
    import optuna

    db = sqlite_path(url)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    lock = (db.parent / f".{db.name}.lock") if db is not None else Path(lock_dir) / ".optuna-storage.lock"
    with FileLock(str(lock)):
        optuna.storages.get_storage(url)
    log.info("Optuna storage ready: %s", url)
