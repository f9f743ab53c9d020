"""Pick a checkpoint a run can actually resume from.

A checkpoint cut short (disk full, a copy or sync interrupted, a node lost while writing) makes
`trainer.fit(ckpt_path=...)` fail on every restart, so a preempted job would never finish. Before resuming,
each candidate is loaded once; a bad one is moved aside (kept for inspection, out of the way of the next
attempt) and the next newest checkpoint in the same folder is tried, down to none (start from step 0).

Sharded engines (trainer=fsdp, DeepSpeed) write a checkpoint as a folder named like the file (`last.ckpt/`):
each process's shards, torch.distributed.checkpoint's `.metadata`, and Lightning's `meta.pt` (loops,
callbacks, RNG) or DeepSpeed's `latest` tag. Such a folder counts when those index files are there and
`meta.pt` loads; the shards themselves are checked by the engine when it loads them.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
import zipfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)


LIGHTNING_META, SHARD_INDEX = "meta.pt", ".metadata"  # Lightning's state, torch.distributed.checkpoint's index


def sharded_checkpoint_error(path: Path) -> Exception | None:
    """Why the checkpoint folder `path` cannot be resumed from, or None if it can (see the module's note)."""
    if (path / "latest").is_file() or (path / "checkpoint").is_dir():  # DeepSpeed: it checks its own files
        return None
    if not (path / SHARD_INDEX).is_file() or not (path / LIGHTNING_META).is_file():
        return FileNotFoundError(f"a sharded checkpoint folder without {SHARD_INDEX} and {LIGHTNING_META}: cut "
                                 "short, or not a checkpoint")
    return checkpoint_error(path / LIGHTNING_META)


def checkpoint_error(path: str | Path) -> Exception | None:
    """Why `path` cannot be loaded as a checkpoint, or None if it can.

    First the zip container (`torch.save` writes a zip whose directory is at the end, so a truncated file
    has none), then `torch.load(weights_only=True)`, as Lightning 2.6 itself loads on torch >= 2.6. A
    Lightning checkpoint holds only tensors, containers and primitives (state dicts, loop progress,
    callback states, `RngStateCheckpoint`'s lists), so no type needs allow-listing. `mmap=True` unpickles
    the structure without reading every tensor into memory.
    A folder is a sharded checkpoint (`sharded_checkpoint_error`).
    """
    if Path(path).is_dir():
        return sharded_checkpoint_error(Path(path))
    if not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        return ValueError(f"not a complete torch zip checkpoint ({size} bytes): truncated, or not one")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure to load means "not usable"; the caller reports it
        return err
    return None


def _rejected_as_unsafe(error: Exception) -> bool:
    """An intact file holding objects weights_only refuses: a setup problem, not damage, so keep the file."""
    return isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)


def _candidates(path: Path) -> list[Path]:
    """`path` first, then the other checkpoints beside it, newest first."""
    others = [p for p in path.parent.glob("*.ckpt") if p.exists() and p != path]
    others.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    return ([path] if path.exists() else []) + others


def set_aside(path: Path, reason: Exception) -> Path:
    """Rename a bad checkpoint to `<name>.corrupt-<timestamp>` and warn, naming the file and the error."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    message = f"checkpoint {path} cannot be loaded ({type(reason).__name__}: {reason}); moved to {target}"
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return target


def usable_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint to resume from: `path` if it loads, else the newest other `*.ckpt` in its folder that
    does, else None (train from the start). Every damaged candidate tried is moved aside; an intact one
    that weights_only refuses raises instead, since discarding it would silently throw away training."""
    path = Path(path)
    if not path.parent.is_dir():
        return None
    for candidate in _candidates(path):
        error = checkpoint_error(candidate)
        if error is None:
            return candidate
        if _rejected_as_unsafe(error):
            raise RuntimeError(
                f"checkpoint {candidate} is intact but holds objects torch.load(weights_only=True) refuses;"
                " allow their types with torch.serialization.add_safe_globals or keep them out of the"
                " checkpoint (e.g. hyperparameters that are not plain values)"
            ) from error
        set_aside(candidate, error)
    return None
