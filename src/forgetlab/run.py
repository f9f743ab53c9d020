"""One experiment, top to bottom: composed config -> base model -> scores before -> fine-tune -> scores
after -> metrics.json. Tasks, models and strategies never import each other; they meet here."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from forgetlab import __version__
from forgetlab.config import TrainConfig, validate
from forgetlab.evaluation.forgetting import summarize_forgetting
from forgetlab.evaluation.lm_eval_bridge import check_installed, lm_eval_summary, score_lm_eval
from forgetlab.evaluation.predictions import PredictionWriter
from forgetlab.evaluation.score_cache import cached_scores, scoring_key
from forgetlab.evaluation.scoring import (
    describe_metrics,
    score_tasks_examples,
)
from forgetlab.models.language_model import LanguageModel
from forgetlab.models.placement import place_for_scoring
from forgetlab.models.truncation import TruncationLog
from forgetlab.run_dirs import CHECKPOINT_DIR, METRICS_FILE, make_run_dir
from forgetlab.strategies.adapters import apply_params
from forgetlab.strategies.checks import check_strategy
from forgetlab.strategies.interpolate import interpolate_run
from forgetlab.strategies.penalties import build_penalty
from forgetlab.strategies.repair import repair_run
from forgetlab.strategies.saving import save_final_model
from forgetlab.strategies.weight_movement import snapshot_weights, weight_movement
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.base_stage import load_or_train_base
from forgetlab.training.budget_selection import budget_table, score_selected
from forgetlab.training.callbacks import PeriodicEvaluation
from forgetlab.training.checkpoint_files import usable_checkpoint
from forgetlab.training.distributed import barrier, check_trainer, is_global_zero, start_processes
from forgetlab.training.fit import fit
from forgetlab.training.mixing import build_training_data, composition
from forgetlab.training.progress import StepProgress
from forgetlab.training.self_distill import self_distill
from forgetlab.training.sharded import check_engine, gather_whole_model
from forgetlab.utils import sweep
from forgetlab.utils.console import quiet_third_party
from forgetlab.utils.determinism import make_deterministic
from forgetlab.utils.io import write_json
from forgetlab.utils.loggers import build_loggers
from forgetlab.utils.run_record import write_run_record
from forgetlab.utils.timing import PhaseTimer
from forgetlab.utils.wandb_run import WandbSession

log = logging.getLogger(__name__)
METRICS_VERSION = 2  # bump when a metrics.json key changes meaning; README lists the migrations


def instantiate(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising the component's own error (which names the bad key and the
    allowed values) instead of Hydra's wrapper around it."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise


def base_spec(cfg: DictConfig, config: TrainConfig, suite: TaskSuite) -> dict:
    """Everything that determines the base stage's weights: hashed into its cache key."""
    return {
        "forgetlab": __version__,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "base_tasks": list(suite.base),
        "task_fingerprints": {t: suite.tasks[t].fingerprint("train") for t in suite.base},
        "base": OmegaConf.to_container(cfg.base, resolve=True),
        "threads": config.threads,
        "trainer": {k: cfg.trainer.get(k) for k in ("accelerator", "precision", "gradient_clip_val")},
    }


def prepare_base(cfg: DictConfig, config: TrainConfig, lm: LanguageModel, suite: TaskSuite,
                 wandb: WandbSession | None) -> dict | None:
    """Give a built-in model its base abilities (cached); pretrained models start as they are."""
    if not config.model.base_stage:
        return None
    spec = base_spec(cfg, config, suite)

    def make_trainer(max_steps: int, log_dir: Path) -> L.Trainer:
        """The configured Trainer and loggers (local logs beside the cached weights), no checkpoints; one
        device even when fine-tuning uses several, so the base is trained once, before any DDP launch."""
        loggers = build_loggers(cfg.logger, wandb, save_dir=str(log_dir), prefix="base")
        return instantiate(cfg.trainer, max_steps=max_steps, logger=loggers or False,
                           callbacks=[StepProgress("base stage")], enable_checkpointing=False,
                           devices=1, num_nodes=1, strategy="auto")

    return load_or_train_base(lm, suite, spec, config.paths.cache_dir, config.base, make_trainer,
                              eval_batch_size=config.eval.batch_size, may_train=is_global_zero())


def build_callbacks(specs: DictConfig | None, eval_tasks: dict) -> list[L.Callback]:
    """The Lightning callbacks of conf/callbacks/; periodic evaluation is handed the tasks it scores."""
    callbacks = [instantiate(spec) for spec in (specs or {}).values() if spec is not None]
    for callback in callbacks:
        if isinstance(callback, PeriodicEvaluation):
            callback.tasks = eval_tasks
    return callbacks


def post_hoc_rescoring(run_dir: Path, config: TrainConfig) -> None:
    """The rescoring steps that rebuild the finished run from its files (repair.json, interpolation.json);
    every process of a multi-process run takes part (each scores its share), once rank 0 wrote the files."""
    if config.diagnostics.repair_lambdas:  # the post-hoc repair as a step of the run (repair.json beside it)
        repair_run(run_dir, config.diagnostics.repair_lambdas, config.diagnostics.repair_budget)
    if config.diagnostics.interpolate:  # theta0 + alpha (theta - theta0) rescored (interpolation.json beside it)
        interpolate_run(run_dir, config.diagnostics.interpolate, config.select.budgets,
                        config.diagnostics.extrapolate)


def run_experiment(cfg: DictConfig, wandb: WandbSession | None = None,
                   startup_s: float | None = None) -> dict[str, Any] | None:
    """Run one experiment described by `cfg` and return (and write) its metrics. `startup_s`: seconds the
    process spent before this call (interpreter, imports, composition), recorded as the start-up phase.

    Under DDP / FSDP / DeepSpeed every process runs this: the others start right after the base stage, every
    scoring is shared between all of them (evaluation/scoring.py), and only rank 0 writes files and returns
    the metrics; the others return None (forgetlab.training.distributed).
    """
    timer = PhaseTimer()
    if startup_s is not None:
        timer.add("startup", startup_s)
    timer.enter("data")  # tasks and model
    rank0 = is_global_zero()
    config = validate(cfg)  # typed; a bad key or an out-of-range value fails here, before any model loads
    check_engine(cfg.trainer, config.strategy)  # FSDP / DeepSpeed with what they cannot run: fails here too
    quiet_third_party(config.verbose)
    run_dir = make_run_dir(config.paths.output_dir)
    make_deterministic(config.seed, config.threads, config.deterministic)
    check_installed(config.lm_eval)  # an lm-eval task without lm-eval installed fails before any model loads

    suite: TaskSuite = instantiate(cfg.tasks, cache_dir=config.paths.data_cache_dir, _convert_="all")
    lm: LanguageModel = instantiate(cfg.model.build)
    strategy, evalc = config.strategy, config.eval
    check_strategy(strategy, lm, suite)  # bad target modules etc. fail here, before any training
    timer.enter("base_stage")  # loaded from the cache in a fraction of a second, or trained (minutes)
    base = prepare_base(cfg, config, lm, suite, wandb)
    timer.enter("data")
    # A fresh count for this run: the base stage's own cuts (absent when it comes from the cache) are not its.
    lm.truncation = TruncationLog()
    lm.scored_per_process.clear()  # likewise its count of scored examples per process
    eval_tasks = suite.eval_tasks()
    if rank0:
        write_run_record(run_dir, cfg, suite, base)
    callbacks = build_callbacks(cfg.callbacks, eval_tasks)
    # use_distributed_sampler=False: the data module's sampler shards each global batch itself
    trainer: L.Trainer = instantiate(cfg.trainer, logger=(rank0 and build_loggers(cfg.logger, wandb)) or False,
                                     callbacks=callbacks, use_distributed_sampler=False)
    check_trainer(trainer, sweep.is_multirun())
    # The other processes start here (after the base stage, which they load from the cache), so the scores
    # before training are shared between them too.
    if trainer.world_size > 1:
        timer.enter("process_start")  # the others' interpreter, imports and model load, and the group's join
    start_processes(trainer)

    # Reseed: what follows must not depend on whether the base stage was trained now or loaded from cache.
    make_deterministic(config.seed, config.threads, config.deterministic)
    timer.enter("scoring_before")
    before, before_cached, lm_eval_before = {}, False, None
    predictions = PredictionWriter.from_eval(run_dir, evalc)  # predictions/<step>/<task>.jsonl
    # the base's scores are the same for every job of a sweep: cached by the weights' hash
    place_for_scoring(lm, cfg.trainer)
    key = None if base is None else scoring_key(
        base["weights_sha256"], eval_tasks, "test",
        {"batch_size": evalc.batch_size, "max_examples": evalc.test_max_examples, "threads": config.threads,
         "max_batch_tokens": evalc.max_batch_tokens,
         "encoding": lm.encoding_key(), "max_new_tokens": lm.max_new_tokens,
         "trainer": {k: cfg.trainer.get(k) for k in ("accelerator", "precision")}})
    before, before_rows, before_cached = cached_scores(  # every process; rank 0 reads and writes the cache
        config.paths.data_cache_dir, key,
        lambda: score_tasks_examples(lm, eval_tasks, "test", evalc.batch_size, evalc.test_max_examples,
                                     evalc.max_batch_tokens))
    if rank0:
        predictions.write("before", before_rows)
        lm_eval_before = score_lm_eval(lm, config.lm_eval) if config.lm_eval.tasks else None
    timer.enter("training")
    start = snapshot_weights(lm.model) if rank0 else None
    # SDFT: the starting model rewrites the target's training answers (cached per starting model and prompt)
    sdft = self_distill(strategy.self_distill, lm, suite, base["weights_sha256"] if base else None,
                        config.paths.data_cache_dir, evalc.batch_size)
    params_selection = apply_params(strategy.params, lm, config.seed)  # peft wraps lm.model / partial freezes
    penalty = build_penalty(strategy.penalty, lm, suite, config.seed)  # L2-SP/EWC anchor here

    optim = strategy.optim
    train, rates = build_training_data(strategy.data, suite, optim.steps * optim.batch_size, config.seed)
    checkpoints = next((Path(c.dirpath) for c in callbacks if isinstance(c, ModelCheckpoint) and c.dirpath),
                       run_dir / CHECKPOINT_DIR)
    resume = usable_checkpoint(checkpoints / "last.ckpt")  # a corrupt one is set aside with a warning
    stats = fit(lm, train, trainer, optim, config.seed, penalty=penalty,
                ckpt_path=str(resume) if resume else None, data_cache_dir=config.paths.data_cache_dir)
    periodic = next((c for c in callbacks if isinstance(c, PeriodicEvaluation)), None)
    if periodic is not None:
        timer.split_off("periodic_evaluation", "training", periodic.seconds)

    timer.enter("scoring_after")
    gather_whole_model(lm)  # FSDP / ZeRO-3: the whole weights, tensor by tensor, on every process
    place_for_scoring(lm, cfg.trainer)  # Lightning hands the model back on the CPU
    after, after_rows = score_tasks_examples(lm, eval_tasks, "test", evalc.batch_size, evalc.test_max_examples,
                                             evalc.max_batch_tokens)
    predictions.write("after", after_rows)
    lm_eval = lm_eval_summary(lm_eval_before, score_lm_eval(lm, config.lm_eval)) if lm_eval_before else None
    selected = score_selected(lm, callbacks, eval_tasks, evalc, before, suite.target,  # None without a budget
                              predictions)
    if not rank0:  # the others join the post-hoc rescoring once rank 0 has written the run's files
        barrier()
        post_hoc_rescoring(run_dir, config)
        return None
    timer.enter("diagnostics")
    movement = weight_movement(start, lm.model, config.diagnostics)  # incl. intruder dimensions (SVDs)
    timer.enter("saving")  # until metrics.json is written: its own write is all that is left out
    save_final_model(lm, run_dir, base["path"] + "/model" if base else cfg.model.build.get("name_or_path"))
    metrics = {
        "status": "completed",
        "metrics_version": METRICS_VERSION,
        "run_name": config.run_name,
        "strategy": strategy.name,
        "model": lm.name,
        "target": suite.target,
        "seed": config.seed,
        **summarize_forgetting(before, after, suite.target),
        "before": before,
        "before_cached": before_cached,  # the same base scored by an earlier job (evaluation/score_cache.py)
        "after": after,
        **lm.parameter_counts(),
        "tokens_seen": stats["tokens_seen"],
        "pad_fraction": stats["pad_fraction"],  # share of trained tensor positions that were padding
        "steps": stats["steps"],
        "batch": stats["batch"],  # global batch, its per-process share, processes (world size)
        "mixture": {"configured": rates, "sampled": composition(train)},
        "sdft": sdft,  # self-distillation: target answers rewritten / kept as the reference (null when off)
        "metric_info": describe_metrics(eval_tasks),  # which metric (and library version) scored each task
        "skipped_rows": suite.skipped_rows(),  # rows dropped on purpose by a task's loader (e.g. skip_empty)
        "overlap": suite.overlap(),  # validation/test inputs also in train (counted, kept); where splits came from
        "truncated": lm.truncation.summary(lm.max_length),  # examples cut to fit the model, by task and split
        "lm_eval": lm_eval,  # lm-evaluation-harness tasks before/after (lm_eval.tasks), null when off
        "base": None if base is None else {k: base[k] for k in ("key", "path", "weights_sha256", "cached")},
        "history": periodic.history if periodic is not None else [],
        "selected": selected,
        "best_under_budgets": budget_table(periodic.history if periodic else [], suite.target,
                                           config.select.budgets),
        "weight_movement": movement,
        "predictions": predictions.summary(),  # what predictions/ holds, and whether eval.max_predictions cut
        "params_selection": params_selection,  # params.kind=partial: what trained (HFT: the frozen half)
    }
    metrics["trainable_fraction"] = metrics["trainable_params"] / metrics["total_params"]
    timer.enter(None)
    # Wall-clock numbers describe the machine, not the experiment: the reproduce check ignores them.
    metrics["timing"] = {**timer.summary(), "train_wall_time_s": stats["train_wall_time_s"],
                         "tokens_per_s": stats["tokens_per_s"], "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                         # examples each process scored (all scorings of the run): shared when all are > 0
                         "scored_examples_per_process": list(lm.scored_per_process)}
    write_json(run_dir / METRICS_FILE, metrics)
    barrier()  # the post-hoc steps rebuild the run from the files written above, on every process
    post_hoc_rescoring(run_dir, config)
    return metrics
