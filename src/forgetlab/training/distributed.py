"""Which process of a multi-process (DDP) run this is, and what only the first one does.

With `trainer.strategy=ddp trainer.devices=N`, Lightning's launcher re-executes the whole command once per
extra device when the fine-tuning `trainer.fit` starts (torchrun and SLURM's `srun` start every rank
themselves). Every rank therefore passes through the experiment's set-up; `is_global_zero()` lets the
run keep the parts that training needs on every rank (tasks, model, cached base weights, adapters, penalty,
data) and give the rest to rank 0 alone: scoring, the run record, metrics.json, the final model and W&B.

The rank is read from the variables those launchers set, so it is known before any Trainer exists (the
console app opens W&B before the run starts); the run checks it against the Trainer's own count.
"""

from __future__ import annotations

import logging
import os

import lightning as L

from forgetlab.config import ConfigError

log = logging.getLogger(__name__)

# Set by Lightning's subprocess launcher (LOCAL_RANK, NODE_RANK), torchrun (RANK, LOCAL_RANK, GROUP_RANK)
# and SLURM (SLURM_PROCID: the global rank of a task of `srun`).
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")


def is_global_zero() -> bool:
    """True in the process that scores and writes files: every rank variable that is set says 0."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "0").strip() or "0"
        if value != "0":
            return False
    return True


def process_rank() -> str:
    """This process as a log line names it."""
    ranks = {n: os.environ[n] for n in RANK_VARIABLES if n in os.environ}
    return ", ".join(f"{k}={v}" for k, v in ranks.items()) or "single process"


def check_trainer(trainer: L.Trainer, multirun: bool) -> None:
    """Fail early on multi-process set-ups whose results would be wrong, and check the rank read from the
    environment against the Trainer's.

    - `ddp_spawn` / `ddp_fork` train in child processes and hand back only the weights: the evaluation
      history, token counts and budget selection would be lost. `ddp` (Lightning's subprocess launcher)
      runs the fit in this process, as rank 0.
    - Under `-m` Lightning's launcher would re-run the whole sweep command in each extra process.
    """
    if trainer.world_size <= 1:
        return
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher

    strategy = type(trainer.strategy).__name__
    launcher = trainer.strategy.launcher
    if isinstance(launcher, _MultiProcessingLauncher):
        raise ConfigError(
            f"trainer.strategy: {strategy} with start method {launcher._start_method!r} trains in child "
            "processes and returns only the weights, so forgetlab's evaluation history and token counts would "
            "be lost; allowed: ddp, which runs the fit in this process as rank 0")
    if "FSDP" in strategy or "ModelParallel" in strategy:
        raise ConfigError(
            f"trainer.strategy: {strategy} over {trainer.world_size} processes shards the weights, but forgetlab "
            "scores (before, periodically, after) on rank 0 alone, which needs them whole there; not supported "
            "yet: use trainer.strategy=ddp, or one device")
    launched_here = (isinstance(launcher, _SubprocessScriptLauncher)
                     and not trainer.strategy.cluster_environment.creates_processes_externally)
    if multirun and launched_here:
        raise ConfigError(
            f"trainer.devices={trainer.num_devices} with trainer.strategy={strategy} under -m: Lightning's "
            "launcher would re-run the whole sweep in every extra process. Run a multi-device job as its own "
            "command, or let the cluster start the ranks (hydra/launcher=submitit_slurm with "
            "hydra.launcher.tasks_per_node equal to trainer.devices); see docs/sweeps.md")
    if trainer.is_global_zero != is_global_zero():
        raise RuntimeError(f"rank mismatch: Lightning says global rank {trainer.global_rank}, the environment "
                           f"says {process_rank()}; forgetlab.training.distributed.RANK_VARIABLES is incomplete")


def per_device_batch_size(global_batch: int, world_size: int, key: str = "strategy.optim.batch_size") -> int:
    """The examples each process takes of one optimizer step's `global_batch`; the division must be exact
    so that N processes train on exactly the batches of one."""
    if global_batch % world_size:
        raise ConfigError(f"{key}={global_batch} is the global batch (all devices together) and must divide "
                          f"evenly over the {world_size} processes of trainer.devices x trainer.num_nodes; "
                          f"allowed: a multiple of {world_size}")
    return global_batch // world_size
