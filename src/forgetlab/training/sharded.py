"""Sharded training engines (`trainer=fsdp`: FSDP2 through Lightning's ModelParallelStrategy; `trainer=
deepspeed_zero2|deepspeed_zero3`): everything forgetlab needs around them, in one place.

Under FSDP2 and ZeRO-3 no process holds the whole weights while training, but scoring (greedy generation,
independently on each process), saving, export, weight movement and the post-hoc repair all need them
whole. They get them here, one tensor at a time (`full_parameters`: FSDP2's `DTensor.full_tensor()`, ZeRO-3's
`GatheredParameters` of one parameter), copied straight into a plain model built from a meta-device
skeleton taken before sharding (`skeleton`): at no point does a process hold more than that one whole copy
plus its shards. ZeRO-2 and DDP keep whole weights on every process and pass through unchanged.

- `shard_model(strategy, lm)`: FSDP2's `fully_shard` on every transformer block, then on the whole model
  (LoRA and full fine-tuning alike: FSDP2 shards parameter by parameter, frozen ones too); called from
  the LightningModule's `configure_model`, which ModelParallelStrategy requires.
- `scoring_model(lm)`: during training (periodic evaluation, budget selection), `lm.model` is a whole plain
  copy for the duration of the scoring, freed after.
- `gather_whole_model(lm)`: after training, `lm.model` becomes the whole plain model for good; every step
  after `fit` (scoring, saving, export, diagnostics, repair) then works as on one process.
- `check_engine(...)`: combinations that cannot work fail before any model loads, naming the key.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import torch

from forgetlab.config import ConfigError

log = logging.getLogger(__name__)
SKELETON = "_forgetlab_skeleton"  # attribute of the sharded model: its meta-device twin
SHARDED_ENGINES = {"ModelParallelStrategy": "fsdp", "DeepSpeedStrategy": "deepspeed"}


def engine_of(strategy: Any) -> str | None:
    """'fsdp', 'deepspeed' or None (DDP, one device) for a Lightning strategy or its config `_target_`."""
    name = strategy.rsplit(".", 1)[-1] if isinstance(strategy, str) else type(strategy).__name__
    return SHARDED_ENGINES.get(name)


def skeleton(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every parameter and buffer on the meta device (no memory): the structure
    (peft wrappers and tied weights included) a whole copy is later materialised into."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = torch.nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(
            t, torch.nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks (the classes transformers names in `_no_split_modules`, e.g. T5Block,
    GPT2Block, LlamaDecoderLayer): the units FSDP gathers one at a time."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:  # a model transformers does not describe: every ModuleList's entries
        blocks = [m for lst in model.modules() if isinstance(lst, torch.nn.ModuleList) for m in lst]
    return blocks


def shard_model(strategy: Any, model: torch.nn.Module) -> None:
    """FSDP2 on `model` in place when `strategy` is Lightning's ModelParallelStrategy (no-op otherwise, and
    on a model already sharded: a resumed fit calls this again). The skeleton is kept on the model."""
    if engine_of(strategy) == "deepspeed" and getattr(model, SKELETON, None) is None:
        object.__setattr__(model, SKELETON, skeleton(model))  # before ZeRO-3 partitions it
        return
    if engine_of(strategy) != "fsdp" or getattr(model, SKELETON, None) is not None:
        return
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    object.__setattr__(model, SKELETON, skeleton(model))
    # every process one shard (pure FSDP: no tensor parallelism), whatever sizes Lightning's mesh was given
    mesh = init_device_mesh(strategy.root_device.type, (strategy.world_size,))
    blocks = transformer_blocks(model)
    for block in blocks:  # precision: the trainer's (bf16-mixed autocasts around FSDP's fp32 weights)
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    log.info("FSDP2: %d blocks and the model sharded over %d processes", len(blocks), mesh.size())


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether some parameter of `model` is not whole in this process (FSDP2 DTensor, ZeRO-3 partition)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters())


@contextlib.contextmanager
def whole(param: torch.Tensor) -> Iterator[torch.Tensor]:
    """`param` whole for the duration (a collective: every process must ask for the same one)."""
    from torch.distributed.tensor import DTensor

    if isinstance(param, DTensor):
        yield param.full_tensor()
    elif hasattr(param, "ds_id"):  # DeepSpeed ZeRO-3 partitioned parameter
        import deepspeed

        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            yield param.data
    else:
        yield param.detach()


def full_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, whole tensor) for every parameter (tied ones once), one at a time, in the same order on every
    process; a yielded tensor is only valid until the next one is asked for."""
    for name, param in model.named_parameters():
        with whole(param) as tensor:
            yield name, tensor


def materialize(meta: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`meta`'s parameters and buffers allocated (uninitialised) on `device`, in place; a tensor shared by
    several modules (tied embeddings) stays one tensor, which `Module.to_empty` would split."""
    made: dict[int, torch.Tensor] = {}
    for module in meta.modules():
        for table in (module._parameters, module._buffers):
            for key, t in list(table.items()):
                if t is None:
                    continue
                if id(t) not in made:
                    empty = torch.empty_like(t, device=device)
                    made[id(t)] = torch.nn.Parameter(empty, t.requires_grad) if isinstance(
                        t, torch.nn.Parameter) else empty
                table[key] = made[id(t)]
    return meta


def whole_copy(model: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    """A plain (unsharded) model with `model`'s current weights, filled tensor by tensor from its skeleton;
    on every process (each gets the whole weights)."""
    meta = getattr(model, SKELETON, None)
    if meta is None:
        raise RuntimeError("a sharded model without its skeleton: shard it through training/sharded.py")
    first = next(model.parameters())
    device = device or (first.to_local().device if hasattr(first, "to_local") else first.device)
    plain = materialize(copy.deepcopy(meta), device)
    params, buffers = dict(plain.named_parameters()), dict(plain.named_buffers())
    with torch.no_grad():
        for name, tensor in full_parameters(model):
            params[name].copy_(tensor)
        for name, buf in model.named_buffers():
            if name in buffers:
                buffers[name].copy_(buf.to_local() if hasattr(buf, "to_local") else buf)
    plain.train(model.training)
    return plain


@contextlib.contextmanager
def scoring_model(lm: Any) -> Iterator[None]:
    """`lm.model` whole and plain for the duration (no-op for a model that is whole already); the copy is
    freed on exit and the sharded model put back. Every process must enter it together."""
    if not is_sharded(lm.model):
        yield
        return
    sharded = lm.model
    lm.model = whole_copy(sharded)
    try:
        yield
    finally:
        lm.model = sharded


def gather_whole_model(lm: Any) -> bool:
    """After training: replace a sharded `lm.model` by its whole plain copy for good (every process);
    True if it was sharded."""
    if not is_sharded(lm.model):
        return False
    lm.replace_model(whole_copy(lm.model))
    return True


def engine_key(trainer_cfg: Any) -> str | None:
    """The sharded engine `conf/trainer/` chooses ('fsdp', 'deepspeed') or None, from `trainer.strategy`."""
    strategy = trainer_cfg.get("strategy") if hasattr(trainer_cfg, "get") else None
    target = strategy.get("_target_") if hasattr(strategy, "get") else strategy
    if isinstance(target, str) and target.lower().startswith("deepspeed"):
        return "deepspeed"  # Lightning's own names: deepspeed_stage_2, deepspeed_stage_3, ...
    return engine_of(target) if isinstance(target, str) else None


def check_engine(trainer_cfg: Any, strategy: Any) -> None:
    """Combinations a sharded engine cannot run, refused before any model loads; each error names the key,
    its value and what is allowed. `strategy`: the validated `StrategyConfig`."""
    engine = engine_key(trainer_cfg)
    if engine is None:
        return
    accelerator = str(trainer_cfg.get("accelerator", "cpu")).lower()
    if engine == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ConfigError("trainer.strategy=DeepSpeedStrategy (trainer=deepspeed_zero2/deepspeed_zero3) needs "
                              "DeepSpeed, which is not installed: pip install 'forgetlab[deepspeed]' (CUDA GPUs "
                              "only); allowed without it: trainer=fsdp, trainer.strategy=ddp") from None
        if accelerator not in ("gpu", "cuda") or not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator} with DeepSpeed: it runs on CUDA GPUs only, and "
                              f"{'none is present' if accelerator in ('gpu', 'cuda') else 'none is chosen'}; "
                              "allowed here: trainer=fsdp (CPU too) or trainer.strategy=ddp")
        return
    kind = str(getattr(strategy.params.kind, "value", strategy.params.kind))
    if kind in ("ia3", "prompt_tuning"):
        raise ConfigError(f"strategy.params.kind={kind} with trainer=fsdp: forgetlab shards LoRA adapters and "
                          "whole models with FSDP, not this peft method; allowed: strategy.params.kind=all, lora "
                          "or partial, or trainer.strategy=ddp / trainer=deepspeed_zero2 for this method")
    penalty = str(getattr(strategy.penalty.kind, "value", strategy.penalty.kind))
    if penalty in ("l2sp", "ewc"):
        raise ConfigError(f"strategy.penalty.kind={penalty} with trainer=fsdp: its anchor term reads every "
                          "weight whole at every step, which FSDP splits between the processes; allowed: "
                          "strategy.penalty.kind=none or lwf, or trainer.strategy=ddp / trainer=deepspeed_zero2")
    optimizer = strategy.optim.optimizer
    target = str(optimizer.get("_target_", "")) if hasattr(optimizer, "get") else ""
    if target.endswith(".MoFO"):
        raise ConfigError(f"strategy.optim.optimizer._target_={target} with trainer=fsdp: MoFO keeps the top "
                          "momentum fraction of each whole tensor, which FSDP splits; allowed: torch.optim.AdamW, "
                          "or trainer.strategy=ddp for MoFO")
