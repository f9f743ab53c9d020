"""Partial fine-tuning (`strategy.params.kind=partial`): the model's own tensors train, some frozen by
`requires_grad=False`, so the optimizer never sees them and they stay bit-identical.

Blocks are found by name on any transformers model: the first `<stack>.<i>.` where the stack's last name is
`block` (T5: encoder.block, decoder.block), `h` (GPT-2), `layers` (Llama family) or `layer` (BERT); each
stack is counted on its own, so `top` with k=2 on T5 trains the top 2 encoder and the top 2 decoder blocks.
Each tensor has a kind, from the module that holds it: matrix (linear layers), bias, norm (layer-norm and
RMS-norm scales), embedding (nn.Embedding tables), other.

Half Fine-Tuning (Hui et al. 2024) freezes, in every block, a random half of its matrices (a frozen
matrix's bias with it): n/2 of n, or for an odd n (Llama's 7) floor or ceil by a coin flip per block, drawn
from the run's seed so the same seed freezes the same half.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.pytorch_utils import Conv1D

from forgetlab.config import ConfigError
from forgetlab.config.schema import BlockChoice, PartialConfig, TensorKind

BLOCK = re.compile(r"^((?:.*?\.)?(?:block|blocks|h|layers|layer))\.(\d+)\.")
KEY = "strategy.params.partial"


@dataclass
class Tensor:
    """One named parameter: its kind, the module holding it, and its block (stack, index) if any."""

    name: str
    kind: TensorKind
    module: str
    block: tuple[str, int] | None


@dataclass
class Selection:
    """What trains: the names of the trainable tensors, and HFT's frozen matrices (by module name)."""

    trainable: list[str]
    frozen: list[str]
    blocks: dict[str, int]
    half_frozen: list[str] = field(default_factory=list)

    def summary(self, model: torch.nn.Module, seed: int) -> dict[str, Any]:
        """The record metrics.json keeps (`params_selection`)."""
        params = dict(model.named_parameters())
        out: dict[str, Any] = {
            "trainable_tensors": len(self.trainable), "frozen_tensors": len(self.frozen),
            "trainable_params": sum(params[n].numel() for n in self.trainable),
            "blocks": self.blocks,
        }
        if self.half_frozen:
            out["half"] = {"seed": seed, "frozen_matrices": self.half_frozen}
        return out


def _kind(module: torch.nn.Module, attr: str, param: torch.Tensor) -> TensorKind:
    if attr.endswith("bias") and param.ndim == 1:
        return TensorKind.bias
    if isinstance(module, torch.nn.Embedding):
        return TensorKind.embedding
    if "norm" in type(module).__name__.lower():
        return TensorKind.norm
    if isinstance(module, (torch.nn.Linear, Conv1D)) or param.ndim == 2:
        return TensorKind.matrix
    return TensorKind.other


def describe_tensors(model: torch.nn.Module) -> list[Tensor]:
    """Every parameter of `model` (tied ones once, by their first name), with kind and block."""
    names = {id(p): n for n, p in model.named_parameters()}
    out, seen = [], set()
    for module_name, module in model.named_modules():
        for attr, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{attr}" if module_name else attr
            if names.get(id(p)) != full or full in seen:
                continue
            seen.add(full)
            m = BLOCK.match(full)
            out.append(Tensor(full, _kind(module, attr, p), module_name, (m.group(1), int(m.group(2))) if m else None))
    return out


def block_counts(tensors: list[Tensor]) -> dict[str, int]:
    """Blocks per stack, e.g. {'encoder.block': 2, 'decoder.block': 2}."""
    counts: dict[str, int] = {}
    for t in tensors:
        if t.block is not None:
            stack, index = t.block
            counts[stack] = max(counts.get(stack, 0), index + 1)
    return counts


def model_summary(tensors: list[Tensor]) -> str:
    """What a user can select from, for error messages."""
    kinds = Counter(t.kind.value for t in tensors)
    blocks = block_counts(tensors)
    example = next((t.name for t in tensors if t.block is not None), tensors[0].name if tensors else "")
    return (f"the model has blocks {blocks or 'none found by name'}, tensor kinds {dict(kinds)} "
            f"(e.g. {example!r})")


def _check_patterns(key: str, patterns: list[str], tensors: list[Tensor]) -> None:
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(t.name, pattern) for t in tensors):
            raise ConfigError(f"{KEY}.{key}: pattern {pattern!r} matches no parameter name; {model_summary(tensors)}")


def select_tensors(config: PartialConfig, model: torch.nn.Module, seed: int) -> Selection:
    """The tensors that train under `config`; a ConfigError naming the key when the choice cannot be met."""
    tensors = describe_tensors(model)
    blocks = block_counts(tensors)
    chosen = list(tensors)
    if config.blocks != BlockChoice.all:
        if config.k is None:
            raise ConfigError(f"{KEY}.blocks={config.blocks.value} needs {KEY}.k (blocks per stack); "
                              f"{model_summary(tensors)}")
        if not blocks:
            raise ConfigError(f"{KEY}.blocks={config.blocks.value}: no blocks found by name (*.block.<i>., "
                              f"*.h.<i>., *.layers.<i>., *.layer.<i>.); select by {KEY}.include instead; "
                              f"{model_summary(tensors)}")
        if config.k > min(blocks.values()):
            raise ConfigError(f"{KEY}.k={config.k} is more blocks than the model has: {blocks}; allowed: "
                              f"1..{min(blocks.values())}")

        def keep(t: Tensor) -> bool:
            if t.block is None:
                return True
            stack, index = t.block
            return index >= blocks[stack] - config.k if config.blocks == BlockChoice.top else index < config.k

        chosen = [t for t in chosen if keep(t)]
    if config.kinds:
        chosen = [t for t in chosen if t.kind in config.kinds]
    if config.freeze_embeddings:
        chosen = [t for t in chosen if t.kind != TensorKind.embedding]
    _check_patterns("include", config.include, tensors)
    _check_patterns("exclude", config.exclude, tensors)
    if config.include:
        chosen = [t for t in chosen if any(fnmatch.fnmatchcase(t.name, p) for p in config.include)]
    chosen = [t for t in chosen if not any(fnmatch.fnmatchcase(t.name, p) for p in config.exclude)]
    half_frozen = _half(chosen, seed) if config.half else []
    frozen_modules = set(half_frozen)
    chosen = [t for t in chosen if t.module not in frozen_modules]
    if not chosen:
        raise ConfigError(f"{KEY}: {_describe(config)} selects no parameter to train; {model_summary(tensors)}"
                          + ("; kinds=[bias] (BitFit) on a model without biases: try kinds=[bias,norm] "
                             "(its norm scales)" if config.kinds == [TensorKind.bias] else ""))
    names = {t.name for t in chosen}
    return Selection([t.name for t in tensors if t.name in names], [t.name for t in tensors if t.name not in names],
                     blocks, half_frozen)


def _half(tensors: list[Tensor], seed: int) -> list[str]:
    """HFT: per block, the modules of a random half of its matrices (seeded, in model order)."""
    rng = random.Random(seed)
    by_block: dict[tuple[str, int], list[str]] = {}
    for t in tensors:
        if t.block is not None and t.kind == TensorKind.matrix:
            by_block.setdefault(t.block, []).append(t.module)
    frozen = []
    for modules in by_block.values():  # model order
        n = len(modules) // 2 + (rng.randint(0, 1) if len(modules) % 2 else 0)
        chosen = set(rng.sample(modules, n))
        frozen += [m for m in modules if m in chosen]
    return frozen


def _describe(config: PartialConfig) -> str:
    parts = [f"blocks={config.blocks.value}" + (f", k={config.k}" if config.k else "")]
    if config.kinds:
        parts.append(f"kinds={[k.value for k in config.kinds]}")
    if config.freeze_embeddings:
        parts.append("freeze_embeddings=true")
    if config.include:
        parts.append(f"include={config.include}")
    if config.exclude:
        parts.append(f"exclude={config.exclude}")
    if config.half:
        parts.append("half=true")
    return ", ".join(parts)


def freeze_all_but(model: torch.nn.Module, selection: Selection) -> None:
    """requires_grad=True exactly for the selection's trainable tensors."""
    trainable = set(selection.trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
