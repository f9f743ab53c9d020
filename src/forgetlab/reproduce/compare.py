"""Comparisons for `forgetlab-reproduce`: metrics.json leaf by leaf, and two run records for the facts
that would explain a difference (versions, data, base weights, source commit, config, hardware).
Pure Python (no torch), so the check is quick and can run anywhere."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Machine facts, not results: wall-clock timing, where the base stage was found, whether it (or its scores, or
# the self-distilled answers) came from a cache. A relaunched job reads what its killed attempt cached.
IGNORED_KEYS = ("timing", "base.cached", "base.path", "before_cached", "sdft.cached")
# Config keys that differ between a run and its rerun by design: where outputs are written and the
# sweep folder's name (a timestamp by default) are bookkeeping, not what determines a result.
IGNORED_CONFIG_KEYS = ("paths", "sweep_name")

_MISSING = object()


@dataclass
class Difference:
    key: str
    original: Any
    rerun: Any

    @property
    def numeric(self) -> bool:
        return _is_number(self.original) and _is_number(self.rerun)

    @property
    def abs_diff(self) -> float | None:
        if not self.numeric:
            return None
        if _both_nan(self.original, self.rerun):
            return 0.0
        return abs(float(self.original) - float(self.rerun))

    def within(self, tolerance: float) -> bool:
        """Numbers may differ by up to `tolerance`; anything else (text, a missing key) must be equal."""
        d = self.abs_diff
        return d is not None and d <= tolerance

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "original": _show(self.original), "rerun": _show(self.rerun),
                "abs_diff": self.abs_diff}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _show(x: Any) -> Any:
    return None if x is _MISSING else x


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts/lists keyed by dotted paths: {"a": {"b": [1, 2]}} -> {"a.b[0]": 1, "a.b[1]": 2}.
    Empty containers are leaves, so {} vs {"x": 1} still shows up."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, (list, tuple)) and data:
        out = {}
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def is_ignored(key: str, ignored: Iterable[str]) -> bool:
    """`key` is one of `ignored` or lies below one ("timing" covers "timing.tokens_per_s", "timing[0]")."""
    return any(key == p or key.startswith((p + ".", p + "[")) for p in ignored)


def diff_trees(original: Any, rerun: Any, ignored: Iterable[str] = ()) -> list[Difference]:
    """Every leaf that differs (or exists on one side only), in the original's key order."""
    ignored = tuple(ignored)
    a, b = flatten(original), flatten(rerun)
    diffs = []
    for key in list(a) + [k for k in b if k not in a]:
        if is_ignored(key, ignored):
            continue
        x, y = a.get(key, _MISSING), b.get(key, _MISSING)
        if x is _MISSING or y is _MISSING:
            diffs.append(Difference(key, x, y))
        elif _is_number(x) and _is_number(y):
            if float(x) != float(y) and not _both_nan(x, y):
                diffs.append(Difference(key, x, y))
        elif x != y or type(x) is not type(y):
            diffs.append(Difference(key, x, y))
    return diffs


def compare_metrics(original: dict, rerun: dict, tolerance: float = 0.0,
                    ignored: Iterable[str] = IGNORED_KEYS) -> tuple[list[Difference], list[Difference]]:
    """(all differences, those beyond `tolerance`) between two metrics.json contents."""
    diffs = diff_trees(original, rerun, ignored)
    return diffs, [d for d in diffs if not d.within(tolerance)]


def _changed(section: str, a: Any, b: Any, what: str) -> list[str]:
    return [f"{what} differs: {section}{'.' if d.key else ''}{d.key}: {_show(d.original)!r} (original) "
            f"vs {_show(d.rerun)!r} (rerun)" for d in diff_trees(a, b)]


def _replace_prefixes(data: Any, prefixes: list[tuple[str, str]]) -> Any:
    if isinstance(data, dict):
        return {k: _replace_prefixes(v, prefixes) for k, v in data.items()}
    if isinstance(data, list):
        return [_replace_prefixes(v, prefixes) for v in data]
    if isinstance(data, str):
        for prefix, name in prefixes:
            if data == prefix or data.startswith(prefix.rstrip("/") + "/"):
                return name + data[len(prefix.rstrip("/")):]
    return data


def _portable_config(record: dict) -> dict:
    """The resolved config without `paths`, and with values under the run's own directories (e.g. a
    logger's save_dir = the output dir) written relative to them: they differ between runs by design."""
    config = record.get("config") or {}
    paths = config.get("paths") if isinstance(config.get("paths"), dict) else {}
    recorded = record.get("paths") or {}
    prefixes = []
    for key in ("output_dir", "cache_dir", "root"):
        for value in (paths.get(key), recorded.get(key)):
            if isinstance(value, str) and value and "${" not in value:
                prefixes.append((value, f"<paths.{key}>"))
    prefixes.sort(key=lambda p: len(p[0]), reverse=True)
    rest = {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}
    return _replace_prefixes(rest, prefixes)


def compare_records(original: dict, rerun: dict) -> list[str]:
    """Warnings naming every fact that differs between two run_record.json contents and could explain a
    difference in results: package versions, data fingerprints (task/split), base weights hash, git
    commit / uncommitted changes, the resolved config (except paths), threads, determinism, hardware."""
    warnings: list[str] = []
    warnings += _changed("versions", original.get("versions"), rerun.get("versions"), "package version")

    fa, fb = original.get("data_fingerprints") or {}, rerun.get("data_fingerprints") or {}
    for task in list(fa) + [t for t in fb if t not in fa]:
        sa, sb = fa.get(task) or {}, fb.get(task) or {}
        for split in list(sa) + [s for s in sb if s not in sa]:
            if sa.get(split) != sb.get(split):
                warnings.append(f"data fingerprint differs: task {task!r} split {split!r} ({task}/{split}): "
                                f"{sa.get(split)} (original) vs {sb.get(split)} (rerun)")

    ba, bb = original.get("base") or {}, rerun.get("base") or {}
    if ba.get("weights_sha256") != bb.get("weights_sha256"):
        warnings.append(f"base checkpoint hash differs: {ba.get('weights_sha256')} (original) vs "
                        f"{bb.get('weights_sha256')} (rerun)")

    ga, gb = original.get("git") or {}, rerun.get("git") or {}
    if ga.get("commit") != gb.get("commit"):
        warnings.append(f"git commit differs: {ga.get('commit') or 'unknown'} (original) vs "
                        f"{gb.get('commit') or 'unknown'} (rerun)")
    elif ga.get("diff_sha256") != gb.get("diff_sha256"):
        warnings.append(f"uncommitted changes differ at commit {ga.get('commit')}: diff "
                        f"{ga.get('diff_sha256')} (original) vs {gb.get('diff_sha256')} (rerun)")

    ca, cb = _portable_config(original), _portable_config(rerun)
    warnings += _changed("config", ca, cb, "config")
    warnings += _changed("threads", original.get("threads"), rerun.get("threads"), "thread count")
    warnings += _changed("deterministic", original.get("deterministic"), rerun.get("deterministic"),
                         "determinism setting")
    warnings += _changed("hardware", original.get("hardware"), rerun.get("hardware"), "hardware")
    return warnings
