"""A continual sequence, top to bottom (`forgetlab experiment=continual`): starting model -> scores (row 0)
-> stage 1 -> scores (row 1) -> ... -> stage T -> scores (row T) -> metrics.json.

Every evaluation task is scored on its test split before stage 1 and after each stage, giving the
(T+1) x N matrices R of headline scores and of per-token losses; metrics.json holds both with the stage
order and the metrics of `forgetlab.evaluation.continual` (BWT, FWT, Chaudhry and Avalanche forgetting,
final averages) under `continual` and `continual_loss`, beside the single-step view of the whole
sequence (`before` = row 0, `after` = row T, the trained tasks as `target`, forgetting on the others).

The pieces are run.py's (base stage, callbacks, loggers, `fit`, scoring); what differs is the loop over
stages and what the strategy carries between them (strategies/carry.py, training/stage_data.py). Each
stage ends with its weights, carried state and scores on disk (training/stage_store.py): a killed sequence
started again with the same command skips the finished stages and resumes the one in progress from its
Lightning checkpoint, ending with the uninterrupted run's matrix.

Under DDP (`trainer.strategy=ddp trainer.devices=N`) every process runs the loop: the other ranks start after
the base stage, each stage trains over all of them, every scoring is shared (evaluation/scoring.py), the
carried state is computed alike on every rank, and rank 0 alone writes the stage files and metrics.json.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf, open_dict

from forgetlab.config import ConfigError, TrainConfig, validate
from forgetlab.evaluation.continual import continual_summary, learned_at, score_matrix, stage_names
from forgetlab.evaluation.forgetting import summarize_forgetting
from forgetlab.evaluation.predictions import PredictionWriter
from forgetlab.evaluation.scoring import describe_metrics, score_tasks_examples
from forgetlab.models.language_model import LanguageModel
from forgetlab.models.placement import place_for_scoring
from forgetlab.run import METRICS_VERSION, build_callbacks, instantiate, prepare_base
from forgetlab.run_dirs import CHECKPOINT_DIR, METRICS_FILE, make_run_dir
from forgetlab.strategies.adapters import check_params
from forgetlab.strategies.carry import Carry
from forgetlab.strategies.weight_movement import snapshot_weights, weight_movement
from forgetlab.tasks.families import FAMILIES
from forgetlab.tasks.suite import TaskSuite
from forgetlab.training.callbacks import PeriodicEvaluation
from forgetlab.training.checkpoint_files import usable_checkpoint
from forgetlab.training.distributed import barrier, check_trainer, from_zero, is_global_zero, start_processes
from forgetlab.training.fit import fit
from forgetlab.training.mixing import composition
from forgetlab.training.stage_data import MEMORY, earlier_tasks, stage_rates, stage_training_data
from forgetlab.training.stage_store import StageStore
from forgetlab.utils import sweep
from forgetlab.utils.console import quiet_third_party
from forgetlab.utils.determinism import make_deterministic
from forgetlab.utils.io import stable_hash, write_json
from forgetlab.utils.loggers import build_loggers
from forgetlab.utils.run_record import write_run_record
from forgetlab.utils.wandb_run import WandbSession

log = logging.getLogger(__name__)
# The settings that decide a stage's result: stages written under others are never reused.
FINGERPRINT_KEYS = ("seed", "threads", "deterministic", "strategy", "sequence", "tasks", "model", "base", "trainer")


def has_sequence(cfg: DictConfig) -> bool:
    """True when `sequence.stages` names at least one stage: the CLI then runs a continual sequence."""
    return bool(OmegaConf.select(cfg, "sequence.stages", default=None))


def stage_seed(seed: int, t: int) -> int:
    """The seed of stage t (data order, new adapter, Fisher sample): distinct per stage and per run seed."""
    return seed * 1000 + t


def sequence_stages(config: TrainConfig, allowed: list[str]) -> list[list[str]]:
    stages = [list(stage) for stage in config.sequence.stages]
    for t, stage in enumerate(stages, start=1):
        if not stage:
            raise ConfigError(f"sequence.stages: stage {t} is empty; every stage trains one or more tasks")
        unknown = [name for name in stage if name not in allowed]
        if unknown:
            raise ConfigError(f"sequence.stages: stage {t} names unknown tasks {unknown}; allowed values: {allowed}")
    return stages


def build_sequence_suite(cfg: DictConfig, config: TrainConfig, stages: list[list[str]]) -> TaskSuite:
    """Every task of the sequence: tasks.base, the stages' tasks, tasks.eval (default: base + stages)."""
    trained = list(dict.fromkeys(n for stage in stages for n in stage))
    evaluated = list(config.tasks.eval or dict.fromkeys([*config.tasks.base, *trained]))
    unscored = [n for n in trained if n not in evaluated]
    if unscored:
        raise ConfigError(f"tasks.eval={evaluated} leaves out tasks the sequence trains: {unscored}; every trained "
                          "task needs its column in the score matrix (or set tasks.eval=null)")
    return instantiate(cfg.tasks, _convert_="all", target=stages[0][0], eval=evaluated)


def fingerprint(cfg: DictConfig) -> str:
    return stable_hash({k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig)
                        else cfg[k] for k in FINGERPRINT_KEYS if k in cfg})


def stage_config(cfg: DictConfig, stage_dir: Path) -> DictConfig:
    """The run's config with paths.output_dir at the stage's folder: its checkpoints and logs go there."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.paths.output_dir = str(stage_dir)
    return out


def stage_step(t: int) -> str:
    """The predictions folder of the scores after stage t (t = 0: the starting model)."""
    return f"stage_{t:02d}"


def train_stage(cfg: DictConfig, config: TrainConfig, lm: LanguageModel, suite: TaskSuite, carry: Carry,
                store: StageStore, t: int, stages: list[list[str]], wandb: WandbSession | None,
                predictions: PredictionWriter | None = None) -> dict[str, Any]:
    """Fine-tune stage t, score every task after it (its examples to `predictions`), and save the stage;
    returns its record."""
    stage, seed = stages[t - 1], stage_seed(config.seed, t)
    make_deterministic(seed, config.threads, config.deterministic)
    penalty = carry.begin_stage(lm)
    optim = config.strategy.optim
    earlier = earlier_tasks(config.sequence, suite, stages, t)
    rates = stage_rates(config.strategy.data, config.sequence, suite, stage, earlier)
    train = stage_training_data(rates, suite, carry.memory, optim.steps * optim.batch_size, seed)

    scfg = stage_config(cfg, store.dir(t))
    eval_tasks = suite.eval_tasks()
    callbacks = build_callbacks(scfg.callbacks, eval_tasks)
    rank0 = is_global_zero()
    # use_distributed_sampler=False: the data module's sampler shards each global batch itself
    trainer: L.Trainer = instantiate(
        scfg.trainer, callbacks=callbacks, use_distributed_sampler=False,
        logger=(rank0 and build_loggers(scfg.logger, wandb, prefix=f"stage{t}")) or False)
    checkpoints = next((Path(c.dirpath) for c in callbacks if isinstance(c, ModelCheckpoint) and c.dirpath),
                       store.dir(t) / CHECKPOINT_DIR)
    resume = usable_checkpoint(checkpoints / "last.ckpt")
    log.info("stage %d/%d: %s (%d steps)%s", t, len(stages), "+".join(stage), optim.steps,
             ", resuming from its checkpoint" if resume else "")
    stats = fit(lm, train, trainer, optim, seed, penalty=penalty, ckpt_path=str(resume) if resume else None,
                data_cache_dir=config.paths.data_cache_dir)
    counts = lm.parameter_counts()  # before a merge turns the adapter back into plain weights
    carry.end_stage(lm, stage, train, seed)
    evalc = config.eval
    place_for_scoring(lm, cfg.trainer)  # Lightning hands the model back on the CPU
    scores, rows = score_tasks_examples(lm, eval_tasks, "test", evalc.batch_size, evalc.test_max_examples,
                                        evalc.max_batch_tokens)  # every rank its share; rank 0 the rows
    if predictions is not None:  # before the stage counts as complete: a finished stage has its file
        predictions.write(stage_step(t), rows)
    periodic = next((c for c in callbacks if isinstance(c, PeriodicEvaluation)), None)
    record = {
        "stage": t,
        "tasks": stage,
        "scores": scores,
        "earlier_tasks": earlier,
        "mixture": {"configured": {("replay_memory" if k == MEMORY else k): v for k, v in rates.items()},
                    "sampled": composition(train)},
        "replay_memory": None if carry.memory is None else {"size": len(carry.memory), "seen": carry.memory.seen,
                                                            "tasks": carry.memory.composition()},
        "penalty": None if penalty is None else type(penalty).__name__,
        **counts,
        "tokens_seen": stats["tokens_seen"],
        "steps": stats["steps"],
        "timing": {k: stats[k] for k in ("train_wall_time_s", "tokens_per_s")},
        "history": periodic.history if periodic is not None else [],
    }
    if rank0:
        carry.save(store, t, lm)
        store.finish(t, record)  # last: from here on the stage is complete
        (checkpoints / "last.ckpt").unlink(missing_ok=True)  # the stage's weights.pt supersede it
    barrier()  # no rank starts the next stage (or reads this one's files) before they are written
    return record


def predictions_summary(predictions: PredictionWriter, store: StageStore, last: int) -> dict | None:
    """metrics.json `predictions` of a sequence: row 0 is `before`, stage `last` is `after`; stages an
    earlier attempt finished are counted from their files."""
    for t in range(last + 1):
        record = store.scores(t)
        if record is not None:
            predictions.record_existing(stage_step(t), {k: v["n"] for k, v in record["scores"].items()})
    return predictions.summary(before=stage_step(0), after=stage_step(last))


def joined_history(records: list[dict]) -> list[dict]:
    """The stages' periodic evaluations on one step axis (steps counted from the start of stage 1)."""
    history, offset = [], 0
    for record in records:
        for entry in record["history"]:
            step = offset + int(entry["step"])
            if not history or history[-1]["step"] != step:
                history.append({**entry, "step": step, "stage": record["stage"]})
        offset += int(record["steps"])
    return history


def multi_process_trainer(cfg: DictConfig) -> L.Trainer | None:
    """The trainer that starts the other processes of a DDP sequence (None with one process); checked before
    any model loads. Only DDP runs a sequence over several processes: its stages save and carry whole weights."""
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], use_distributed_sampler=False)
    if trainer.world_size <= 1:
        return None
    if not isinstance(trainer.strategy, DDPStrategy):
        raise ConfigError(f"trainer.strategy={type(trainer.strategy).__name__} over {trainer.world_size} processes "
                          "cannot run a continual sequence (its stages save and carry whole weights); allowed: "
                          "trainer.strategy=ddp, or trainer.devices=1")
    check_trainer(trainer, sweep.is_multirun())
    return trainer


def run_continual(cfg: DictConfig, wandb: WandbSession | None = None) -> dict[str, Any] | None:
    """Run the sequence `sequence.stages` described by `cfg`; return (and write) its metrics. Under DDP every
    process runs this and only rank 0 writes files and returns the metrics; the others return None."""
    started = time.perf_counter()
    config = validate(cfg)
    quiet_third_party(config.verbose)
    run_dir = make_run_dir(config.paths.output_dir)
    make_deterministic(config.seed, config.threads, config.deterministic)
    stages = sequence_stages(config, sorted(FAMILIES) + sorted(config.tasks.custom))
    launcher = multi_process_trainer(cfg)
    suite = build_sequence_suite(cfg, config, stages)
    lm: LanguageModel = instantiate(cfg.model.build)
    check_params(config.strategy.params, lm)  # bad target modules / a partial choice fail before any training
    base = prepare_base(cfg, config, lm, suite, wandb)
    rank0 = is_global_zero()
    eval_tasks, evalc = suite.eval_tasks(), config.eval
    if rank0:
        write_run_record(run_dir, cfg, suite, base)
    store = StageStore(run_dir, fingerprint(cfg))
    predictions = PredictionWriter.from_eval(run_dir, evalc)  # predictions/stage_<t>/<task>.jsonl
    if launcher is not None:  # the other ranks start here, after the base stage (they load it from the cache)
        start_processes(launcher)

    make_deterministic(config.seed, config.threads, config.deterministic)
    place_for_scoring(lm, cfg.trainer)
    start_record = from_zero(store.scores(0) if rank0 else None)  # every rank takes rank 0's view of the files
    if start_record is None:
        start_scores, start_rows = score_tasks_examples(lm, eval_tasks, "test", evalc.batch_size,
                                                        evalc.test_max_examples, evalc.max_batch_tokens)
        predictions.write(stage_step(0), start_rows)  # rows on rank 0 only
        start_record = {"stage": 0, "tasks": [], "scores": start_scores}
        if rank0:
            store.finish(0, start_record)
        barrier()
    start = snapshot_weights(lm.model) if rank0 else None
    carry = Carry(config, suite)
    make_deterministic(config.seed, config.threads, config.deterministic)
    carry.prepare(lm)
    done = from_zero(store.completed_prefix(len(stages), carry.files) if rank0 else None)
    if done:
        log.info("stages 1-%d already complete in %s: resuming at stage %d", done, store.root, done + 1)
        carry.load(store, done, lm)
    else:
        carry.initial(lm, config.seed)
    records = [store.scores(t) for t in range(1, done + 1)]
    for t in range(done + 1, len(stages) + 1):
        records.append(train_stage(cfg, config, lm, suite, carry, store, t, stages, wandb, predictions))
    if not rank0:  # the others join the interpolation's rescoring once rank 0 has written metrics.json
        barrier()
        if config.diagnostics.interpolate:
            interpolate_stages(run_dir, config)
        return None

    tasks = list(eval_tasks)
    rows = [start_record["scores"], *(r["scores"] for r in records)]
    trained = list(learned_at(stages))
    before, after = rows[0], rows[-1]
    metrics = {
        "status": "completed",
        "metrics_version": METRICS_VERSION,
        "run_name": config.run_name,
        "strategy": config.strategy.name,
        "model": lm.name,
        "target": trained,
        "seed": config.seed,
        **summarize_forgetting(before, after, trained),
        "before": before,
        "after": after,
        "trainable_params": records[-1]["trainable_params"],
        "total_params": records[-1]["total_params"],
        "trainable_fraction": records[-1]["trainable_params"] / records[-1]["total_params"],
        "tokens_seen": sum(r["tokens_seen"] for r in records),
        "steps": sum(r["steps"] for r in records),
        "sequence": {**OmegaConf.to_container(cfg.sequence, resolve=True, enum_to_str=True),
                     "stage_names": stage_names(stages)},
        "continual": continual_summary(score_matrix(rows, tasks, "score"), tasks, stages),
        "continual_loss": continual_summary(score_matrix(rows, tasks, "loss"), tasks, stages,
                                            higher_is_better=False),
        "stages": [{k: v for k, v in r.items() if k not in ("history", "fingerprint", "timing")} for r in records],
        "metric_info": describe_metrics(eval_tasks),
        "skipped_rows": suite.skipped_rows(),
        "base": None if base is None else {k: base[k] for k in ("key", "path", "weights_sha256", "cached")},
        "history": joined_history(records),
        "weight_movement": weight_movement(start, lm.model, config.diagnostics),
        # predictions/stage_<t>/: stages finished by an earlier, interrupted attempt wrote theirs then
        "predictions": predictions_summary(predictions, store, len(stages)),
        # Wall-clock numbers describe the machine, not the experiment: the reproduce check ignores them.
        "timing": {"train_wall_time_s": sum(r["timing"]["train_wall_time_s"] for r in records),
                   "stages": [r["timing"] for r in records],
                   "stages_trained_now": len(stages) - done,
                   "wall_time_s": time.perf_counter() - started,
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    write_json(run_dir / METRICS_FILE, metrics)
    barrier()
    if config.diagnostics.interpolate:
        interpolate_stages(run_dir, config)
    return metrics


def interpolate_stages(run_dir: Path, config: TrainConfig) -> None:
    """Every stage's curve against stage 0 (interpolation.json beside metrics.json); every rank takes part."""
    from forgetlab.strategies.interpolate import interpolate_run

    interpolate_run(run_dir, config.diagnostics.interpolate, config.select.budgets, config.diagnostics.extrapolate)
