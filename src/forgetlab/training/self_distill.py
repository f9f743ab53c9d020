"""Self-distillation of the targets (SDFT, Yang et al. ACL 2024): before fine-tuning, the starting model
rewrites each training answer of the target task in its own words, prompted with the task's prompt and the
reference answer (`strategy.self_distill.template`, with {prompt} and {reference}), and fine-tuning trains on
the rewrites, which sit closer to what the model already produces.

A rewrite is used only when it is usable: not empty, and (check=match) scored by the task's own metric
against the reference at least as well as the reference itself scores (full marks; for exact-match tasks:
the same answer). Otherwise the row keeps its reference, and the fallback is counted: metrics.json
`sdft: {rewritten, fallback, total, cached}` says how much of the training set the method actually changed.
A model that cannot follow the rewrite prompt (the built-in tiny models were never taught one) falls back on
nearly every row, and the count says so.

The rewritten training split is cached beside the tokenised data (`paths.data_cache_dir`/sdft/), keyed by
the starting model's weights hash, the template and check, the generation settings and the task's training
rows, so every job of a sweep after the first loads it instead of generating again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from forgetlab.config.schema import SelfDistillCheck, SelfDistillConfig
from forgetlab.evaluation.metrics import resolve_metric
from forgetlab.evaluation.scoring import inference_context
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.suite import TaskSuite
from forgetlab.tasks.task import InstructionTask
from forgetlab.utils.columns import column
from forgetlab.utils.dataset_cache import cached_dataset
from forgetlab.utils.io import stable_hash

log = logging.getLogger(__name__)
KIND = "sdft"  # the cache folder under paths.data_cache_dir
USED = "_sdft_rewritten"  # a column of the cached split: whether the row holds a rewrite (dropped before training)


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the model's state dict, in name order: the identity of the starting model
    (a built-in model's base stage records it already)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def render(template: str, prompt: str, reference: str) -> str:
    return template.replace("{prompt}", prompt).replace("{reference}", reference)


def usable(rewrite: str, references: list[str], metric: Any, check: SelfDistillCheck) -> bool:
    """Not empty, and with check=match scored against the references as well as a reference itself."""
    if not rewrite.strip():
        return False
    if check == SelfDistillCheck.nonempty:
        return True
    full = metric.compute([references[0]], [references])[metric.headline]
    return metric.compute([rewrite], [references])[metric.headline] >= full


def rewrite_split(lm: LanguageModel, task: InstructionTask, sd: SelfDistillConfig, batch_size: int) -> Dataset:
    """The task's train split with each usable rewrite in `completion` and USED saying which rows have one."""
    train = task.splits["train"]
    prompts, completions = column(train, "prompt"), column(train, "completion")
    refs = column(train, "references") if "references" in train.column_names else [[c] for c in completions]
    max_new = sd.max_new_tokens or lm.generation_length(completions)
    metric = resolve_metric(task.metric)
    rewrites: list[str] = []
    was_training = lm.model.training
    lm.model.eval()
    try:
        with inference_context(lm):
            for i in range(0, len(prompts), batch_size):
                batch = [render(sd.template, p, c) for p, c in zip(prompts[i:i + batch_size],
                                                                    completions[i:i + batch_size])]
                rewrites += lm.generate(batch, max_new)
    finally:
        lm.model.train(was_training)
    used = [usable(r, list(ref), metric, sd.check) for r, ref in zip(rewrites, refs)]
    new = [r if u else c for r, c, u in zip(rewrites, completions, used)]
    return train.remove_columns("completion").add_column("completion", new).add_column(USED, used)


def self_distill(sd: SelfDistillConfig, lm: LanguageModel, suite: TaskSuite, weights_sha256: str | None,
                 cache_dir: str | None, batch_size: int) -> dict[str, Any] | None:
    """Replace the target task's training split in `suite` by the starting model's usable rewrites (in place,
    before any adapter wraps `lm.model`); returns metrics.json's `sdft` counts, or None when off."""
    if not sd.enabled:
        return None
    task = suite.tasks[suite.target]
    key = {"weights": weights_sha256 or weights_hash(lm.model), "template": sd.template, "check": sd.check.value,
           "max_new_tokens": sd.max_new_tokens, "task": task.name, "train": task.fingerprint("train"),
           "generation": {"kind": lm.kind, "max_length": lm.max_length, "add_bos": lm.add_bos,
                          "chat_template": lm.chat_template, "separator": lm.separator}}
    cached = cache_dir is not None and (Path(cache_dir) / KIND / stable_hash(key) / ".complete").is_file()
    data = cached_dataset(cache_dir, KIND, key, lambda: rewrite_split(lm, task, sd, batch_size))
    used = column(data, USED)
    suite.tasks[suite.target] = dataclasses.replace(task, splits={**task.splits, "train": data.remove_columns(USED)},
                                                    _fingerprints={})
    counts = {"rewritten": sum(used), "fallback": len(used) - sum(used), "total": len(used), "cached": cached}
    log.info("self-distillation: %d of %d %s training answers rewritten by the starting model, %d kept the "
             "reference%s", counts["rewritten"], counts["total"], task.name, counts["fallback"],
             " (cached)" if cached else "")
    return counts
