"""Every scored test example on disk: `predictions/<step>/<task>.jsonl` in the run folder, one JSON row per
example (`index`, `key`, `prompt`, `references`, `prediction`, `score`, `values`, `nll`, `tokens`: see
`scoring.score_task_examples`), so a forgetting number can be read example by example and recomputed.

Steps: `before` and `after` (run.py), `selected` (select.max_forgetting), `repair/lambda=<l>`
(diagnostics.repair_lambdas / forgetlab-repair) and `stage_<t>` (continual runs, t = 0 the start). Each file
is written whole and atomically, so a killed run leaves either the complete file or none, and a resumed
run rewrites it with the same rows. `eval.max_predictions` keeps the first N examples of each task (the
same N in every step, so before and after line up); `eval.compress_predictions` gzips them. Light on
purpose (no torch): the report reads these files.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgetlab.run_dirs import PREDICTIONS_DIR
from forgetlab.utils.io import write_bytes

SUFFIX, GZ_SUFFIX = ".jsonl", ".jsonl.gz"
_UNSAFE = re.compile(r"[^\w.=+-]")


def file_name(task: str, compress: bool = False) -> str:
    """The task's file name: its name with anything a path would misread replaced by '_'."""
    return _UNSAFE.sub("_", task) + (GZ_SUFFIX if compress else SUFFIX)


def encode_rows(rows: list[dict[str, Any]], compress: bool = False) -> bytes:
    """JSON lines (UTF-8, one row each); gzip with no timestamp, so the same rows give the same bytes."""
    data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8")
    return gzip.compress(data, mtime=0) if compress else data


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of one predictions file (.jsonl or .jsonl.gz)."""
    path = Path(path)
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def step_files(step_dir: str | Path) -> dict[str, Path]:
    """task file stem -> file, for every predictions file in one step's folder."""
    step_dir = Path(step_dir)
    if not step_dir.is_dir():
        return {}
    found = {}
    for path in sorted(step_dir.iterdir()):
        for suffix in (GZ_SUFFIX, SUFFIX):
            if path.is_file() and path.name.endswith(suffix):
                found[path.name[: -len(suffix)]] = path
    return found


def read_step(step_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """task -> rows for one step's folder (empty when it has none)."""
    return {task: read_rows(path) for task, path in step_files(step_dir).items()}


def _without_repeated_key(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `key` null where the prompt already holds it verbatim (a summarisation task's dialogue
    would otherwise be stored twice, doubling the file)."""
    key, prompt = row.get("key"), row.get("prompt")
    if isinstance(key, str) and isinstance(prompt, str) and key and key in prompt:
        return {**row, "key": None}
    return row


class PredictionWriter:
    """Writes one run's predictions files and remembers what it kept, for metrics.json `predictions`.

    `enabled=False` writes nothing (eval.predictions=false); `max_rows` keeps the first N rows per task and
    step; `compress` writes .jsonl.gz."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, max_rows: int | None = None,
                 compress: bool = False) -> None:
        self.run_dir, self.enabled, self.max_rows, self.compress = Path(run_dir), enabled, max_rows, compress
        self.kept: dict[str, dict[str, int]] = {}
        self.total: dict[str, dict[str, int]] = {}

    @classmethod
    def from_eval(cls, run_dir: str | Path, evalc: Any) -> PredictionWriter:
        """From an `EvalConfig` or the `eval` mapping of a recorded config (older records: the defaults)."""
        get = evalc.get if isinstance(evalc, Mapping) else lambda k, d=None: getattr(evalc, k, d)
        return cls(run_dir, bool(get("predictions", True)), get("max_predictions"),
                   bool(get("compress_predictions", False)))

    def step_dir(self, step: str) -> Path:
        return self.run_dir / PREDICTIONS_DIR / step

    def write(self, step: str, rows_by_task: Mapping[str, list[dict[str, Any]]]) -> None:
        """`predictions/<step>/<task>.jsonl` for every task (each file atomically)."""
        if not self.enabled:
            return
        for task, rows in rows_by_task.items():
            kept = [_without_repeated_key(r) for r in (rows if self.max_rows is None else rows[: self.max_rows])]
            write_bytes(self.step_dir(step) / file_name(task, self.compress), encode_rows(kept, self.compress))
            self.kept.setdefault(step, {})[task] = len(kept)
            self.total.setdefault(step, {})[task] = len(rows)

    def record_existing(self, step: str, totals: Mapping[str, int]) -> None:
        """Count the rows an earlier attempt of this run wrote for `step` (a resumed run's finished stages);
        `totals`: task -> examples scored. A missing file counts as 0 rows kept."""
        if not self.enabled or step in self.kept:
            return
        for task, total in totals.items():
            path = self.step_dir(step) / file_name(task, self.compress)
            self.kept.setdefault(step, {})[task] = len(read_rows(path)) if path.is_file() else 0
            self.total.setdefault(step, {})[task] = int(total)

    def summary(self, before: str = "before", after: str = "after") -> dict[str, Any] | None:
        """metrics.json `predictions`: the folder, which steps' folders hold the before and after rows, the
        cap and whether it cut any task, and the rows kept of the rows scored, per step and task."""
        if not self.enabled:
            return None
        capped = any(self.kept[s][t] < self.total[s][t] for s in self.kept for t in self.kept[s])
        return {"dir": PREDICTIONS_DIR, "before": before, "after": after,
                "format": GZ_SUFFIX[1:] if self.compress else SUFFIX[1:], "max_per_task": self.max_rows,
                "capped": capped, "kept": self.kept, "total": self.total}


GENERATION_COLUMNS = ["task", "index", "prompt", "reference", "before", "after", "score_before", "score_after"]
GENERATIONS_PER_TASK = 500  # rows per task in a W&B table of generations (the files hold them all)


def _reference(row: dict[str, Any]) -> str:
    refs = row.get("references") or [""]
    return str(refs[0]) + (f" (+{len(refs) - 1} more)" if len(refs) > 1 else "")


def pair_row(before: dict[str, Any], after: dict[str, Any]) -> list:
    """GENERATION_COLUMNS but the task, for one example's before and after rows."""
    return [before.get("index"), before.get("prompt") or "", _reference(before), before.get("prediction"),
            after.get("prediction"), before.get("score"), after.get("score")]


def generation_rows(before_dir: str | Path, after_dir: str | Path,
                    limit: int | None = GENERATIONS_PER_TASK) -> list[list]:
    """GENERATION_COLUMNS rows of every example in both steps' folders (matched by `index`; the first
    `limit` per task): what a W&B table of generations shows."""
    before, after = read_step(before_dir), read_step(after_dir)
    rows = []
    for task, task_rows in before.items():
        after_by_index = {r.get("index"): r for r in after.get(task, [])}
        pairs = [(b, after_by_index[b.get("index")]) for b in task_rows if b.get("index") in after_by_index]
        rows += [[task, *pair_row(b, a)] for b, a in pairs[:limit]]
    return rows


def run_generation_rows(run_dir: str | Path, metrics: Mapping[str, Any],
                        limit: int | None = GENERATIONS_PER_TASK) -> list[list]:
    """`generation_rows` of a finished run, from its metrics.json `predictions` (none when it kept none)."""
    info = metrics.get("predictions")
    if not isinstance(info, Mapping) or not info.get("after"):
        return []
    root = Path(run_dir) / str(info.get("dir") or PREDICTIONS_DIR)
    return generation_rows(root / str(info["before"]), root / str(info["after"]), limit)
