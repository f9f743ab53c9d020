"""A disk cache of prepared datasets (generated task splits, tokenised training data), keyed by what
they are made from, so the second job of a sweep loads in milliseconds what the first one built.

An entry is a folder `<root>/<kind>/<key>` written by `save_to_disk` into a temporary folder and renamed
into place, so a killed job never leaves a half-written entry and concurrent jobs that build the same
entry both end with a complete one. Loading is memory-mapped (`load_from_disk`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from datasets import Dataset, DatasetDict, load_from_disk

from forgetlab.utils.io import stable_hash

log = logging.getLogger(__name__)
D = TypeVar("D", Dataset, DatasetDict)


def cached_dataset(root: str | Path | None, kind: str, key: Any, build: Callable[[], D]) -> D:
    """`build()`'s dataset, from `<root>/<kind>/<hash of key>` when present, else built and stored there.
    With `root=None` (or an unwritable root) it is built every time."""
    if root is None:
        return build()
    entry = Path(root) / kind / stable_hash(key)
    if (entry / ".complete").is_file():
        try:
            return load_from_disk(str(entry))
        except (OSError, ValueError) as err:  # unreadable: rebuild, and replace it below
            log.warning("data cache entry %s is unreadable (%s); rebuilding it", entry, err)
    data = build()
    tmp: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        data.save_to_disk(str(tmp))
        (tmp / ".complete").touch()
        if (entry / ".complete").is_file():  # another job finished the same entry first: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)  # a half-written or unreadable one
            os.replace(tmp, entry)
    except OSError as err:  # a full disk, a read-only cache or a concurrent writer costs speed, never the run
        log.warning("could not cache %s data in %s (%s); continuing without the cache", kind, entry.parent, err)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        return data
    return load_from_disk(str(entry))
