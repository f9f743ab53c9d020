"""Score a model on tasks from its real outputs: greedy generation for the task metric, and the mean
per-token loss on the reference answers (a smooth signal where exact match jumps from 100 to 0).

Held-out text tasks (`task.kind == "text"`) are not generated: their only signal is the loss on the text.
Their `score` is 100 * exp(-loss) = 100 / perplexity, the geometric-mean probability the model gives each
token, in percent. It lies in [0, 100] and higher is better like every other score, so
"forgetting = score before - score after" keeps its sign and scale, and code that expects a number in
`score` keeps working; `loss` and `perplexity` are recorded next to it.
"""

from __future__ import annotations

import math
from typing import Any

from forgetlab.evaluation.metrics import resolve_metric
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.task import InstructionTask
from forgetlab.utils.columns import column
from forgetlab.utils.console import progress

TEXT_HEADLINE = "inverse_perplexity"


def _references(data) -> list:
    """Several references per example where the task keeps them, else the completion."""
    return column(data, "references" if "references" in data.column_names else "completion")


def text_score(loss: float) -> float:
    """The score of a held-out text task: 100 / perplexity."""
    return 100.0 * math.exp(-loss)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # capped: a diverged model must not crash the report with OverflowError


def score_task(
    lm: LanguageModel,
    task: InstructionTask,
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
) -> dict[str, Any]:
    """Return {'score', 'loss', 'n', 'headline', 'metrics'} for one split ('perplexity' too for text tasks);
    `metrics` holds every value the task's metric computed, `score` is the headline one. The model's
    train/eval mode is restored after."""
    data = task.splits[split]
    if max_examples is not None and len(data) > max_examples:
        data = data.select(range(max_examples))
    generate = task.kind != "text"
    metric = resolve_metric(task.metric) if generate else None
    max_new = len(lm.tokenizer(" " * task.max_answer_chars, add_special_tokens=False)["input_ids"]) + 1
    prompts = column(data, "prompt")
    feats = [lm.encode(p, c) for p, c in zip(prompts, column(data, "completion"))]
    # Batches of similar length pad little; predictions are put back in the split's order after.
    order = sorted(range(len(feats)), key=lambda i: (len(feats[i]["input_ids"]), len(feats[i]["labels"])))
    was_training = lm.model.training
    lm.model.eval()
    preds: list[str | None] = [None] * len(feats)
    loss_sum, tok_sum = 0.0, 0
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            texts, s, n = lm.score_batch([feats[i] for i in idx], [prompts[i] for i in idx],
                                         max_new if generate else None)
            for i, text in zip(idx, texts or []):
                preds[i] = text
            loss_sum += float(s.sum())
            tok_sum += int(n.sum())
    finally:
        lm.model.train(was_training)
    loss = loss_sum / max(tok_sum, 1)
    if not generate:
        return {"score": text_score(loss), "loss": loss, "n": len(data), "headline": TEXT_HEADLINE,
                "perplexity": perplexity(loss), "metrics": {TEXT_HEADLINE: text_score(loss)}}
    values = metric.compute(preds, _references(data))
    return {"score": values[metric.headline], "loss": loss, "n": len(data), "headline": metric.headline,
            "metrics": values}


def score_tasks(
    lm: LanguageModel,
    tasks: dict[str, InstructionTask],
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Every task's scores on `split`, with a progress bar over the tasks on a terminal."""
    scores = {}
    with progress(f"scoring {split}", total=len(tasks)) as advance:
        for name, task in tasks.items():
            scores[name] = score_task(lm, task, split, batch_size, max_examples)
            advance(1, info=name)
    return scores


def describe_metrics(tasks: dict[str, InstructionTask]) -> dict[str, dict[str, Any]]:
    """Per task: which metric scored it, its headline and the library versions that computed it, plus the
    rows its loader skipped on purpose; meant for metrics.json."""
    out = {}
    for name, task in tasks.items():
        if task.kind == "text":
            info = {"name": "perplexity", "headline": TEXT_HEADLINE, "libraries": {}}
        else:
            info = resolve_metric(task.metric).describe()
        out[name] = {**info, "kind": task.kind, "skipped_rows": task.skipped_rows}
    return out
