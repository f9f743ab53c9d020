"""One experiment, top to bottom: composed config -> base model -> scores before -> fine-tune -> scores
after -> metrics.json. Tasks, models and strategies never import each other; they meet here."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import datasets
import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from forgetlab import __version__
from forgetlab.config import validate
from forgetlab.evaluation.forgetting import summarize_forgetting
from forgetlab.evaluation.scoring import score_tasks
from forgetlab.models.language_model import LanguageModel
from forgetlab.strategies.builder import apply_strategy, check_strategy, save_final_model
from forgetlab.strategies.weight_movement import snapshot_weights, weight_movement
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.base_stage import load_or_train_base
from forgetlab.training.callbacks import PeriodicEvaluation
from forgetlab.training.fit import fit
from forgetlab.training.mixing import composition
from forgetlab.training.recipes import build_training_data
from forgetlab.utils.determinism import make_deterministic
from forgetlab.utils.io import write_json
from forgetlab.utils.loggers import build_loggers
from forgetlab.utils.run_record import write_run_record

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def instantiate(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising the component's own error (which names the bad key and the
    allowed values) instead of Hydra's wrapper around it."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise


def trainer_factory(cfg: DictConfig):
    """A Trainer built from `cfg.trainer` for the base stage: no checkpoints, CSV logs in `log_dir`."""

    def make(max_steps: int, log_dir: Path) -> L.Trainer:
        logger = L.pytorch.loggers.CSVLogger(str(log_dir), name="logs", version="")
        return instantiate(cfg.trainer, max_steps=max_steps, logger=logger, callbacks=[],
                           enable_checkpointing=False)

    return make


def prepare_base(cfg: DictConfig, lm: LanguageModel, suite: TaskSuite, base) -> dict | None:
    """Give a built-in model its base abilities (cached); pretrained models start as they are."""
    if not cfg.model.get("base_stage", False):
        return None
    spec = {
        "forgetlab": __version__,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "base_tasks": list(suite.base),
        "task_fingerprints": {t: suite.tasks[t].fingerprint("train") for t in suite.base},
        "base": OmegaConf.to_container(cfg.base, resolve=True),
        "threads": cfg.threads,
        "trainer": {k: cfg.trainer.get(k) for k in ("accelerator", "precision", "gradient_clip_val")},
    }
    return load_or_train_base(
        lm, suite, spec, cfg.paths.cache_dir, steps=base.steps, batch_size=base.batch_size, lr=base.lr,
        warmup_steps=base.warmup_steps, scheduler=base.scheduler, seed=base.seed,
        make_trainer=trainer_factory(cfg), eval_batch_size=cfg.eval.batch_size,
    )


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment described by `cfg` and return (and write) its metrics."""
    datasets.disable_progress_bars()
    typed = validate(cfg)
    strategy, evalc = typed["strategy"], typed["eval"]
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    make_deterministic(cfg.seed, cfg.threads, cfg.deterministic)

    suite: TaskSuite = instantiate(cfg.tasks, _convert_="all")
    lm: LanguageModel = instantiate(cfg.model.build)
    check_strategy(strategy, lm, suite)  # bad target modules etc. fail here, before any training
    base = prepare_base(cfg, lm, suite, typed["base"])
    eval_tasks = suite.eval_tasks()
    write_run_record(run_dir, cfg, suite, base)

    # Reseed: what follows must not depend on whether the base stage was trained now or loaded from cache.
    make_deterministic(cfg.seed, cfg.threads, cfg.deterministic)
    before = score_tasks(lm, eval_tasks, "test", evalc.batch_size, evalc.test_max_examples)
    start = snapshot_weights(lm.model)
    penalty = apply_strategy(strategy, lm, suite, cfg.seed)  # peft wraps lm.model; L2-SP/EWC anchor here

    optim = strategy.optim
    train, rates = build_training_data(strategy.data, suite, optim.steps * optim.batch_size, cfg.seed)
    periodic = PeriodicEvaluation(eval_tasks, evalc.every_n_steps, evalc.val_max_examples, evalc.batch_size)
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                 every_n_train_steps=cfg.checkpoint_every_n_steps)
    loggers = build_loggers(cfg.logger)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[periodic, checkpoint])
    resume = ckpt_dir / "last.ckpt"
    stats = fit(
        lm, train, trainer, lr=optim.lr, batch_size=optim.batch_size, seed=cfg.seed,
        warmup_steps=optim.warmup_steps, weight_decay=optim.weight_decay, scheduler=optim.scheduler,
        penalty=penalty, ckpt_path=str(resume) if resume.exists() else None,
    )

    after = score_tasks(lm, eval_tasks, "test", evalc.batch_size, evalc.test_max_examples)
    save_final_model(lm, run_dir, base["path"] + "/model" if base else cfg.model.build.get("name_or_path"))
    metrics = {
        "status": "completed",
        "run_name": cfg.run_name,
        "strategy": strategy.name,
        "model": lm.name,
        "target": suite.target,
        "seed": cfg.seed,
        **summarize_forgetting(before, after, suite.target),
        "before": before,
        "after": after,
        **lm.parameter_counts(),
        "tokens_seen": stats["tokens_seen"],
        "steps": stats["steps"],
        "mixture": {"configured": rates, "sampled": composition(train)},
        "base": None if base is None else {k: base[k] for k in ("key", "path", "weights_sha256", "cached")},
        "history": periodic.history,
        "weight_movement": weight_movement(start, lm.model),
        # Wall-clock numbers describe the machine, not the experiment: the reproduce check ignores them.
        "timing": {"train_wall_time_s": stats["train_wall_time_s"], "tokens_per_s": stats["tokens_per_s"],
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    metrics["trainable_fraction"] = metrics["trainable_params"] / metrics["total_params"]
    write_json(run_dir / METRICS_FILE, metrics)
    return metrics
