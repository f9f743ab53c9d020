"""The base stage: a built-in model learns the base tasks from random init (multi-task), so that there is
something to forget. The result is cached under outputs/ keyed by a hash of everything that determines
it; a file lock makes concurrent sweep jobs wait for one trainer instead of training it twice."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import lightning as L
from filelock import FileLock

from forgetlab.config.schema import BaseStageConfig
from forgetlab.evaluation.scoring import score_tasks
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.fit import fit
from forgetlab.training.mixing import mixture_rates, sample_mixture, train_sizes
from forgetlab.utils.io import file_hash, read_json, stable_hash, write_json

log = logging.getLogger(__name__)
WEIGHTS = "model/model.safetensors"


def base_key(spec: dict) -> str:
    return stable_hash(spec, length=12)


def load_or_train_base(
    lm: LanguageModel,
    suite: TaskSuite,
    spec: dict,
    cache_dir: str | Path,
    base: BaseStageConfig,
    make_trainer: Callable[[int, Path], L.Trainer],
    eval_batch_size: int = 256,
) -> dict:
    """Load the cached base weights into `lm`, training and caching them first if absent.

    `spec` must contain everything that changes the result (model and task config, seeds, threads, the
    base stage's settings); it is hashed into the cache folder's name and saved beside the weights.
    `make_trainer(max_steps, log_dir)` builds the Trainer. Returns the base record: key, path, weights
    hash, scores on the base tasks, whether it was cached.
    """
    key = base_key(spec)
    root = Path(cache_dir) / "base"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{lm.name}-{key}"
    with FileLock(str(final) + ".lock"):
        cached = (final / "base.json").exists()
        if not cached:
            log.info("training the base stage (%d steps on %s), cached for later runs", base.steps,
                     ", ".join(suite.base))
            tmp = root / f".{final.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tasks = {t: suite.tasks[t] for t in suite.base}
            train = sample_mixture(tasks, mixture_rates(train_sizes(suite, suite.base)),
                                   base.steps * base.batch_size, base.seed)
            stats = fit(lm, train, make_trainer(base.steps, tmp), base, seed=base.seed)
            scores = score_tasks(lm, tasks, "validation", eval_batch_size)
            lm.model.save_pretrained(tmp / "model")
            lm.tokenizer.save_pretrained(tmp / "model")
            record = {
                "key": key,
                "spec": spec,
                "weights_sha256": file_hash(tmp / WEIGHTS),
                "validation_scores": scores,
                "mean_validation_score": sum(s["score"] for s in scores.values()) / len(scores),
                **stats,
            }
            write_json(tmp / "base.json", record)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    record = read_json(final / "base.json")
    lm.replace_model(type(lm.model).from_pretrained(final / "model"))
    return {**record, "path": str(final), "cached": cached}
