"""Small file helpers: files written atomically and readable by the team, so a killed run or a full disk
never leaves half a file, and a shared cache is not private to whoever wrote it first."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class UnreadableJSONError(ValueError):
    """A file that should hold JSON does not (truncated, empty, binary): names the file, unlike json's own."""


def current_umask() -> int:
    """The process umask, read without changing it where possible.

    `os.umask` can only be read by setting it, and the umask is shared by every thread: between the two
    calls of the classic `os.umask(0)`/restore, another thread would create world-writable files. So read
    `Umask:` from /proc/self/status (Linux >= 4.7); elsewhere set the strictest mask (0o077) for that
    instant instead of 0, so a file another thread creates meanwhile is at worst too private, never open.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically: readers see the old file or the new one, never a mix.

    The data goes to a temp file beside `path`, is fsynced (a rename can reach the disk before the data),
    and is renamed over `path`. `mkstemp` creates the temp file 0600, so it is given `0o666 & ~umask`, the
    mode `open()` would give a new file, before the rename, so the file never appears private even briefly.
    If anything fails, the temp file is removed, `path` is untouched, and the OSError names `path`.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        message = f"writing {path} failed, previous file left as it was: {err.strerror or err}"
        raise OSError(err.errno, message, str(path)) from err
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """`write_bytes` for text."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, data: Any) -> None:
    # Serialise first, so data that cannot be written never touches the file at all.
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise UnreadableJSONError(f"{path} does not hold valid JSON (truncated or damaged?): {err}") from err


def stable_hash(data: Any, length: int = 16) -> str:
    """Hash of JSON-serialisable data, independent of key order."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def file_hash(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
