"""The base stage: a built-in model learns the base tasks from random init (multi-task), so that there is
something to forget. The result is cached under outputs/ keyed by a hash of everything that determines
it; a file lock makes concurrent sweep jobs wait for one trainer instead of training it twice.

A cache entry appears whole (trained in a temporary folder, then renamed) and is checked at load against
the weights hash recorded when it was written; a finished entry is read without taking the lock, so a
read-only shared cache works.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
from filelock import FileLock

from forgetlab.config import ConfigError
from forgetlab.config.schema import BaseStageConfig
from forgetlab.evaluation.scoring import score_tasks
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.fit import fit
from forgetlab.training.mixing import mixture_rates, sample_mixture, train_sizes
from forgetlab.utils.io import file_hash, read_json, stable_hash, write_json

log = logging.getLogger(__name__)
WEIGHTS = "model/model.safetensors"
RECORD = "base.json"


def base_key(spec: dict) -> str:
    return stable_hash(spec, length=12)


def intact(entry: Path) -> bool:
    """True if `entry` holds a finished base whose weights still hash to what was recorded. A damaged
    entry is moved aside (`<name>.damaged-<time>`) so it is trained again; read-only, it is an error."""
    if not (entry / RECORD).exists():
        return False
    try:
        expected = read_json(entry / RECORD)["weights_sha256"]
        actual = file_hash(entry / WEIGHTS)
    except (OSError, ValueError, KeyError) as err:
        expected, actual = "a readable record and weights", f"unreadable ({err})"
    if actual == expected:
        return True
    log.warning("base-stage cache %s is damaged (weights hash %s, recorded %s): training it again",
                entry, actual, expected)
    if not os.access(entry.parent, os.W_OK):
        raise RuntimeError(f"the base-stage cache {entry} is damaged and read-only: delete it, or point "
                           "paths.cache_dir at a writable folder")
    entry.rename(entry.with_name(f"{entry.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"))
    return False


def check_writable(root: Path, cache_dir: str | Path) -> None:
    """Training the base needs a writable cache: say so with the setting that chose the folder."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"paths.cache_dir={str(cache_dir)!r}: cannot create {root} ({err.strerror}); the "
                          "base stage is trained once and cached there: choose a writable folder") from None
    if not os.access(root, os.W_OK):
        raise ConfigError(f"paths.cache_dir={str(cache_dir)!r}: {root} is not writable and holds no base stage "
                          "for this config; choose a writable folder (or one that has it)")


def train_base(entry: Path, lm: LanguageModel, suite: TaskSuite, spec: dict, base: BaseStageConfig,
               make_trainer: Callable[[int, Path], L.Trainer], eval_batch_size: int) -> None:
    """Train the base stage into a temporary folder beside `entry`, then rename it into place."""
    log.info("training the base stage (%d steps on %s), cached for later runs", base.steps, ", ".join(suite.base))
    tmp = entry.with_name(f".{entry.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tasks = {t: suite.tasks[t] for t in suite.base}
    train = sample_mixture(tasks, mixture_rates(train_sizes(suite, suite.base)), base.steps * base.batch_size,
                           base.seed)
    stats = fit(lm, train, make_trainer(base.steps, tmp), base, seed=base.seed)
    scores = score_tasks(lm, tasks, "validation", eval_batch_size)
    lm.model.save_pretrained(tmp / "model")
    lm.tokenizer.save_pretrained(tmp / "model")
    write_json(tmp / RECORD, {
        "key": base_key(spec),
        "spec": spec,
        "weights_sha256": file_hash(tmp / WEIGHTS),
        "validation_scores": scores,
        "mean_validation_score": sum(s["score"] for s in scores.values()) / len(scores),
        **stats,
    })
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)


def load_or_train_base(
    lm: LanguageModel,
    suite: TaskSuite,
    spec: dict,
    cache_dir: str | Path,
    base: BaseStageConfig,
    make_trainer: Callable[[int, Path], L.Trainer],
    eval_batch_size: int = 256,
    may_train: bool = True,
) -> dict:
    """Load the cached base weights into `lm`, training and caching them first if absent.

    `spec` must contain everything that changes the result (model and task config, seeds, threads, the
    base stage's settings); it is hashed into the cache folder's name and saved beside the weights.
    `make_trainer(max_steps, log_dir)` builds the Trainer. Returns the base record: key, path, weights
    hash, scores on the base tasks, whether it was cached.

    `may_train=False` (the other processes of a multi-process run) never trains: it waits until the
    process that may (rank 0) has cached the entry.
    """
    root = Path(cache_dir) / "base"
    entry = root / f"{lm.name}-{base_key(spec)}"
    cached = intact(entry)
    if not cached and not may_train:
        log.info("waiting for rank 0 to train the base stage into %s", entry)
        while not cached:
            time.sleep(2.0)
            cached = intact(entry)
    if not cached:
        check_writable(root, cache_dir)
        with FileLock(str(entry) + ".lock"):
            cached = intact(entry)  # another job may have trained it while this one waited
            if not cached:
                train_base(entry, lm, suite, spec, base, make_trainer, eval_batch_size)
    record = read_json(entry / RECORD)
    lm.replace_model(type(lm.model).from_pretrained(entry / "model"))
    return {**record, "path": str(entry), "cached": cached}
