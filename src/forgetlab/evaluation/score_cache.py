"""Scores of a starting model, kept so the jobs of a sweep do not score the same model again.

Every job of a sweep starts from the same cached base weights and scores the same test splits the same
way before fine-tuning, so the "before" scores are one computation repeated N times (about a tenth of a
default run); the per-example rows are kept with them, so every job still writes its before-predictions.
The key holds everything the scores depend on: the weights' hash, each task's data and metric, the
scoring settings, the thread count and the library versions. A scored model without a
content hash (a hub checkpoint by name) is scored every time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgetlab.training.distributed import from_zero, rank_and_world
from forgetlab.utils.io import UnreadableJSONError, read_json, stable_hash, write_text

log = logging.getLogger(__name__)


def scoring_key(weights_sha256: str, tasks: dict, split: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What a model's scores on `split` of `tasks` depend on, as JSON-able data."""
    import torch
    import transformers

    from forgetlab import __version__
    from forgetlab.evaluation.scoring import describe_metrics

    key = {
        "weights_sha256": weights_sha256,
        "split": split,
        "tasks": {name: {"rows": task.fingerprint(split), "kind": task.kind, "metric": repr(task.metric),
                         "max_answer_chars": task.max_answer_chars} for name, task in tasks.items()},
        "metrics": describe_metrics(tasks),
        "settings": settings,
        "versions": {"forgetlab": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
    }
    return json.loads(json.dumps(key, default=str))  # as it reads back from the cache file


def cached_scores(cache_dir: str | Path | None, key: dict[str, Any] | None,
                  compute: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict, bool]:
    """(scores, per-example rows by task, whether they came from the cache): `compute()` (which returns
    the first two) unless `<cache_dir>/scores/<hash>.json` holds both for exactly `key`; freshly computed
    ones are stored there. An entry without rows (written before predictions were kept) is computed again,
    so every job of a sweep writes its before-predictions. With several processes every one must call this;
    the entry is read and written by rank 0 alone, the rows are rank 0's ({} on the others)."""
    if cache_dir is None or key is None:
        return *compute(), False
    path = Path(cache_dir) / "scores" / f"{stable_hash(key)}.json"
    # Several processes (DDP): rank 0 alone reads and writes the entry and tells the others whether it hit,
    # so all of them either take its scores or score together (evaluation/scoring.py shares the work).
    rank = rank_and_world()[0]
    entry = _read_entry(path, key) if rank == 0 else None
    if from_zero(entry is not None):
        return from_zero(entry["scores"] if entry else None), (entry["predictions"] if entry else {}), True
    scores, rows = compute()
    if rank == 0:
        try:  # one line, not indented: the rows make it the size of the test sets
            write_text(path, json.dumps({"key": key, "scores": scores, "predictions": rows}, default=str) + "\n")
        except OSError as err:  # a read-only cache costs time, never the run
            log.warning("could not cache scores in %s (%s)", path.parent, err)
    return scores, rows, False


def _read_entry(path: Path, key: dict[str, Any]) -> dict | None:
    """The cache entry at `path` if it is readable, for exactly `key`, and holds the rows."""
    if not path.is_file():
        return None
    try:
        entry = read_json(path)
        if entry.get("key") == key and isinstance(entry.get("predictions"), dict):
            return entry
    except (OSError, UnreadableJSONError, KeyError, AttributeError) as err:
        log.warning("ignoring unreadable score cache %s (%s)", path, err)
    return None
