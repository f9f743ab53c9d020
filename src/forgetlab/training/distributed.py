"""Which process of a multi-process (DDP, FSDP, DeepSpeed) run this is, what only the first one does, and
the few collectives the run needs outside Lightning's training loop.

With `trainer.strategy=ddp trainer.devices=N`, Lightning's launcher re-executes the whole command once per
extra device (torchrun and SLURM's `srun` start every rank themselves). `start_processes` makes that happen
right after the base stage, before the scores before training, and joins the process group, so every rank
scores its share of every scoring (evaluation/scoring.py gathers the results to rank 0 in split order).
Every rank passes through the experiment's set-up; `is_global_zero()` gives rank 0 alone what writes files:
the run record, metrics.json, predictions, the final model and W&B.

The rank is read from the variables those launchers set, so it is known before any Trainer exists (the
console app opens W&B before the run starts); the run checks it against the Trainer's own count.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
import torch

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
    - FSDP1 (`FSDPStrategy`): its flat parameters are not what training/sharded.py gathers; FSDP2 is.
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
    if strategy == "FSDPStrategy":  # FSDP1's flat parameters: training/sharded.py gathers FSDP2's
        raise ConfigError(
            f"trainer.strategy: {strategy} (FSDP1) over {trainer.world_size} processes is not supported; allowed: "
            "trainer=fsdp (FSDP2 through Lightning's ModelParallelStrategy), trainer=deepspeed_zero2 / "
            "deepspeed_zero3, or trainer.strategy=ddp")
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


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes) of the joined process group; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_to_zero(obj: Any) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0 (None on the others); [obj] with one process."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] | None = [None] * world if rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def from_zero(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (what the others pass is ignored); `obj` itself with one process."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (rank 0 wrote a file the others read next); no-op alone."""
    if rank_and_world()[1] > 1:
        torch.distributed.barrier()


def start_processes(trainer: L.Trainer) -> None:
    """Start the other ranks now and join the process group, instead of at `trainer.fit`: the scoring
    before training is then shared too. Lightning's launcher starts the children (re-running this command)
    unless a cluster (torchrun, srun) started them; `trainer.fit` later finds them started and the group
    joined, and goes on as usual. No-op with one process."""
    if trainer.world_size <= 1:
        return
    strategy = trainer.strategy
    if strategy.launcher is not None:
        strategy.launcher.launch(lambda: None, trainer=trainer)  # also watches the children, as fit would
    if torch.distributed.is_initialized():
        return
    strategy.set_world_ranks()
    backend = strategy._get_process_group_backend()  # what Lightning's own set-up would choose
    if backend == "nccl":
        torch.cuda.set_device(strategy.root_device)
    env = strategy.cluster_environment
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.main_address, str(env.main_port)
    torch.distributed.init_process_group(backend, rank=strategy.global_rank, world_size=strategy.world_size,
                                         timeout=getattr(strategy, "_timeout", None))
    log.info("process group joined: rank %d of %d (%s)", strategy.global_rank, strategy.world_size, backend)
