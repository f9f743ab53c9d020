"""Files are replaced atomically, get the user's umask (a shared cache stays readable), survive a full
disk untouched, and a damaged JSON file is reported by name."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from forgetlab.utils import io
from forgetlab.utils.io import (
    UnreadableJSONError,
    current_umask,
    read_json,
    stable_hash,
    write_bytes,
    write_json,
    write_text,
)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip(tmp_path):
    write_json(tmp_path / "a" / "m.json", {"b": 1, "a": [1.5, "x"]})
    assert read_json(tmp_path / "a" / "m.json") == {"b": 1, "a": [1.5, "x"]}
    assert (tmp_path / "a" / "m.json").read_text().endswith("}\n")
    write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.bin", "m.json", "t.txt"]  # no temp files


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_users_umask_not_mkstemps_0600(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    write_json(tmp_path / "new.json", {})
    (tmp_path / "old.json").write_text("{}")
    os.chmod(tmp_path / "old.json", 0o600)
    write_json(tmp_path / "old.json", {"x": 1})  # replacing a private file gives the shared mode too
    assert mode(tmp_path / "new.json") == expected
    assert mode(tmp_path / "old.json") == expected


def test_umask_without_proc_is_read_and_left_as_it_was(monkeypatch, umask):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(io, "open", no_proc, raising=False)
    umask(0o002)
    assert current_umask() == 0o002
    assert os.umask(0o002) == 0o002


def test_a_full_disk_leaves_the_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"version": 1})
    real_write, calls = os.write, []

    def fill_disk(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # half the data fits, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", fill_disk)
    with pytest.raises(OSError) as info:
        write_json(target, {"version": 2, "padding": "x" * 1000})
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert str(target) in str(info.value) and info.value.filename == str(target)
    assert read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_an_error_when_flushing_to_disk_is_reported_too(tmp_path, monkeypatch):
    """Network filesystems often report a full disk or quota only at fsync/close."""
    target = tmp_path / "m.json"
    write_json(target, [1])

    def quota(fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", quota)
    with pytest.raises(OSError, match=str(target)):
        write_json(target, [2])
    monkeypatch.undo()
    assert read_json(target) == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_data_that_cannot_be_serialised_never_touches_the_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"ok": True})
    with pytest.raises(ValueError, match="Circular"):
        write_json(target, _circular())
    assert read_json(target) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def _circular() -> dict:
    d: dict = {}
    d["d"] = d
    return d


@pytest.mark.parametrize("content", [b'{"a": [1, 2', b"", b"\xff\xfe\x00garbage", b"not json"])
def test_a_damaged_json_file_is_reported_by_name(tmp_path, content):
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    with pytest.raises(UnreadableJSONError, match=str(path)) as info:
        read_json(path)
    assert isinstance(info.value, ValueError)


def test_truncating_a_written_file_is_detected(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"scores": list(range(50))})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UnreadableJSONError):
        read_json(path)


def test_a_missing_file_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "nope.json")


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash(json.loads('{"b": [1, 2], "a": 1}'))


def test_a_run_folder_that_cannot_be_created_names_the_setting(tmp_path):
    from forgetlab.config import ConfigError
    from forgetlab.run_dirs import make_run_dir

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"paths.output_dir=.*cannot be created.*writable folder"):
        make_run_dir(str(blocked / "run"))
    assert make_run_dir(str(tmp_path / "new" / "run")).is_dir()
