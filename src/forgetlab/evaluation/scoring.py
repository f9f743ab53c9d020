"""Score a model on tasks from its real outputs: greedy generation for the task metric, and the mean
per-token loss on the reference answers (a smooth signal where exact match jumps from 100 to 0)."""

from __future__ import annotations

import torch

from forgetlab.evaluation.metrics import get_metric
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.task import InstructionTask


def score_task(
    lm: LanguageModel,
    task: InstructionTask,
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
) -> dict[str, float]:
    """Return {'score', 'loss', 'n'} for one split; the model's train/eval mode is restored after."""
    data = task.splits[split]
    if max_examples is not None and len(data) > max_examples:
        data = data.select(range(max_examples))
    metric = get_metric(task.metric)
    max_new = len(lm.tokenizer(" " * task.max_answer_chars, add_special_tokens=False)["input_ids"]) + 1
    was_training = lm.model.training
    lm.model.eval()
    preds: list[str] = []
    loss_sum, tok_sum = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                rows = data[start : start + batch_size]
                preds += lm.generate(rows["prompt"], max_new_tokens=max_new)
                feats = [lm.encode(p, c) for p, c in zip(rows["prompt"], rows["completion"])]
                batch = {k: v.to(lm.model.device) for k, v in lm.collate(feats).items()}
                s, n = lm.token_losses(batch)
                loss_sum += float(s.sum())
                tok_sum += int(n.sum())
    finally:
        lm.model.train(was_training)
    return {
        "score": metric(preds, list(data["completion"])),
        "loss": loss_sum / max(tok_sum, 1),
        "n": len(data),
    }


def score_tasks(
    lm: LanguageModel,
    tasks: dict[str, InstructionTask],
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
) -> dict[str, dict[str, float]]:
    return {name: score_task(lm, t, split, batch_size, max_examples) for name, t in tasks.items()}
