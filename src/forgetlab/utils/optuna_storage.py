"""The Optuna study's storage, opened by forgetlab's sweeper (hydra_plugins.forgetlab_optuna_sweeper).

`hydra.sweeper.storage` is either
- a file path (the default `<sweep dir>/optuna.journal`): Optuna's JournalStorage, an append-only log that
  every worker on the same file system shares without a database server. Writers take a lock file next to
  the journal (a symlink, or a file opened with O_EXCL: `hydra.sweeper.journal_lock=symlink|open`); a file
  system on which that lock does not work would let two workers interleave their writes, so the lock is
  probed first and the storage refused with the reason;
- an RDB URL (`sqlite:///path.db`, `postgresql://...`, `mysql://...`): Optuna's RDBStorage. Two workers that
  start on a fresh database would both create its tables and one crashes, so they are created under a file
  lock (beside the sqlite file, else in the sweep folder);
- null: in memory (nothing to resume).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from forgetlab.config.checks import ConfigError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.storages.journal import BaseJournalFileLock

log = logging.getLogger(__name__)

JOURNAL_LOCKS = ("symlink", "open")


def is_rdb_url(storage: str) -> bool:
    return "://" in storage


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///path?options` URL, else None."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


def prepare_storage(storage: str, lock_dir: str | Path, journal_lock: str = "symlink") -> BaseStorage:
    """The storage `hydra.sweeper.storage` names (a journal file path or an RDB URL), ready for several
    workers: an RDB's tables created once, whichever worker comes first; a journal's lock probed."""
    if not is_rdb_url(storage):
        return journal_storage(storage, journal_lock)
    import optuna

    db = sqlite_path(storage)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    lock = (db.parent / f".{db.name}.lock") if db is not None else Path(lock_dir) / ".optuna-storage.lock"
    Path(lock).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        rdb = optuna.storages.RDBStorage(storage)
    log.info("Optuna storage ready: %s", storage)
    return rdb


def journal_storage(path: str | Path, journal_lock: str = "symlink") -> BaseStorage:
    """A JournalStorage in the file `path`, after checking that its lock works on that file system."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalFileSymlinkLock

    if journal_lock not in JOURNAL_LOCKS:
        raise ConfigError(f"hydra.sweeper.journal_lock={journal_lock!r}: expected one of "
                          f"{list(JOURNAL_LOCKS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = (JournalFileSymlinkLock if journal_lock == "symlink" else JournalFileOpenLock)(str(path))
    check_journal_lock(lock, path, journal_lock)
    log.info("Optuna storage ready: journal %s (%s lock)", path, journal_lock)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def _second_lock_attempt(path: Path, journal_lock: str) -> None:
    """What a second worker's lock does while the first holds it; must fail with EEXIST."""
    lock_file = f"{path}.lock"
    if journal_lock == "symlink":
        os.symlink(str(path), lock_file)
    else:
        os.close(os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))


def check_journal_lock(lock: BaseJournalFileLock, path: Path, journal_lock: str) -> None:
    """Take and release the journal's lock once, and check that a second taker is kept out meanwhile.

    Raises ConfigError naming the file, the lock and the system's error where any step fails (a file system
    without symlinks or without exclusive creation, e.g. some network or FUSE mounts)."""
    other = "open" if journal_lock == "symlink" else "symlink"
    advice = (f"use hydra.sweeper.journal_lock={other}, or an RDB URL (hydra.sweeper.storage=sqlite:///... "
              "on a local disk, or postgresql://user:pass@host/db), or put the sweep on another file system")
    where = f"hydra.sweeper.storage={path}"
    try:
        lock.acquire()
    except OSError as err:
        raise ConfigError(f"{where}: the file system of {path.parent} cannot lock the Optuna journal "
                          f"({journal_lock} lock {path}.lock: {err}); {advice}") from err
    problem = None
    if not os.path.lexists(f"{path}.lock"):
        problem = f"the {journal_lock} lock file {path}.lock vanished right after it was created"
    else:
        try:
            _second_lock_attempt(path, journal_lock)
            problem = f"a second {journal_lock} lock on {path}.lock succeeded while the first was held, so " \
                      "workers would not exclude each other"
        except OSError as err:
            if err.errno != errno.EEXIST:
                problem = (f"a second {journal_lock} lock on {path}.lock failed with {err} instead of "
                           "'file exists'")
    try:
        lock.release()
    except RuntimeError as err:
        problem = problem or f"the {journal_lock} lock {path}.lock could not be released ({err})"
    if problem:
        raise ConfigError(f"{where}: {problem}; {advice}")
