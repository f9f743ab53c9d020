"""Score a model on tasks from its real outputs: greedy generation for the task metric, and the mean
per-token loss on the reference answers (a smooth signal where exact match jumps from 100 to 0).

Held-out text tasks (`task.kind == "text"`) are not generated: their only signal is the loss on the text.
Their `score` is 100 * exp(-loss) = 100 / perplexity, the geometric-mean probability the model gives each
token, in percent. It lies in [0, 100] and higher is better like every other score, so
"forgetting = score before - score after" keeps its sign and scale, and code that expects a number in
`score` keeps working; `loss` and `perplexity` are recorded next to it.

A task's generation length is its longest reference in the model's tokens plus a margin, capped by the
model's `max_new_tokens`; examples cut to fit the model's `max_length` are counted in `truncated` (and
reported once per task and split by the model's `TruncationLog`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

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


def generation_length(lm: LanguageModel, task: InstructionTask) -> int:
    """New tokens to generate for `task` (every split's references; computed once per model and task)."""
    cache = lm.__dict__.setdefault("_generation_lengths", {})
    if task.name not in cache:
        refs: list[str] = []
        for data in task.splits.values():
            refs += [r for rs in _references(data) for r in (rs if isinstance(rs, list) else [rs])]
        cache[task.name] = lm.generation_length(refs)
    return cache[task.name]


def inference_context(lm: LanguageModel):
    """No gradients, and the training precision (bf16 autocast on GPU) when the model has one."""
    device = lm.model.device
    if lm.autocast is None or device.type == "cpu":
        return torch.no_grad()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(torch.autocast(device.type, dtype=lm.autocast))
    return stack


def length_batches(lengths: list[int], batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Indices in ascending length, cut into batches of at most `batch_size` examples whose padded size
    (examples x longest length) stays within `max_tokens`, so long inputs are scored a few at a time and
    short ones many at a time. An example longer than the budget is a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        fits = last is not None and len(last) < batch_size and (
            max_tokens is None or (len(last) + 1) * lengths[i] <= max_tokens)  # ascending: i is the longest
        if fits:
            last.append(i)
        else:
            batches.append([i])
    return batches


def score_task_examples(
    lm: LanguageModel,
    task: InstructionTask,
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
    max_batch_tokens: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`score_task`'s result and one row per scored example, in the split's order: `index`, `key` (the
    raw input, where the task keeps one), `prompt`, `references`, `prediction` (None for text tasks),
    `score` (the example's headline value), `values` (everything the metric computed for it: the
    aggregate is computed from these), `nll` (summed loss on its answer tokens) and `tokens` (their count;
    the task's `loss` is sum(nll) / sum(tokens)). The rows come from the same pass as the scores."""
    data = task.splits[split]
    if max_examples is not None and len(data) > max_examples:
        data = data.select(range(max_examples))
    generate = task.kind != "text"
    metric = resolve_metric(task.metric) if generate else None
    max_new = generation_length(lm, task) if generate else 0
    prompts = column(data, "prompt")
    feats = [lm.encode(p, c) for p, c in zip(prompts, column(data, "completion"))]
    truncated = sum(bool(f["truncated"] or (generate and lm.generation_input(p, max_new)[1]))
                    for f, p in zip(feats, prompts))
    # Batches of similar length pad little; predictions are put back in the split's order after. A batch's
    # cost is its examples x (longest input + the tokens generated for it).
    lengths = [max(len(f["input_ids"]), len(f["labels"])) + max_new for f in feats]
    was_training = lm.model.training
    lm.model.eval()
    preds: list[str | None] = [None] * len(feats)
    nlls, ntoks = [0.0] * len(feats), [0] * len(feats)
    loss_sum, tok_sum = 0.0, 0
    try:
        with inference_context(lm):
            for idx in length_batches(lengths, batch_size, max_batch_tokens):
                texts, s, n = lm.score_batch([feats[i] for i in idx], [prompts[i] for i in idx],
                                             max_new if generate else None)
                for i, text in zip(idx, texts or []):
                    preds[i] = text
                for i, nll, ntok in zip(idx, s.tolist(), n.tolist()):
                    nlls[i], ntoks[i] = nll, int(ntok)
                loss_sum += float(s.sum())
                tok_sum += int(n.sum())
    finally:
        lm.model.train(was_training)
    loss = loss_sum / max(tok_sum, 1)
    lm.truncation.record(task.name, split, truncated, len(data), lm.max_length)
    references = _references(data)
    if not generate:
        result = {"score": text_score(loss), "loss": loss, "n": len(data), "headline": TEXT_HEADLINE,
                  "perplexity": perplexity(loss), "metrics": {TEXT_HEADLINE: text_score(loss)},
                  "truncated": truncated}
        values = [{TEXT_HEADLINE: text_score(nll / max(ntok, 1))} for nll, ntok in zip(nlls, ntoks)]
        headline = TEXT_HEADLINE
    else:
        aggregate, values = metric.compute_examples(preds, references)
        headline = metric.headline
        result = {"score": aggregate[headline], "loss": loss, "n": len(data), "headline": headline,
                  "metrics": aggregate, "truncated": truncated}
    keys = column(data, "key") if "key" in data.column_names else [None] * len(data)
    rows = [{"index": i, "key": keys[i], "prompt": prompts[i],
             "references": refs if isinstance(refs, list) else [refs], "prediction": preds[i],
             "score": values[i].get(headline), "values": values[i], "nll": nlls[i], "tokens": ntoks[i]}
            for i, refs in enumerate(references)]
    return result, rows


def score_task(
    lm: LanguageModel,
    task: InstructionTask,
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
    max_batch_tokens: int | None = None,
) -> dict[str, Any]:
    """Return {'score', 'loss', 'n', 'headline', 'metrics'} for one split ('perplexity' too for text tasks);
    `metrics` holds every value the task's metric computed, `score` is the headline one. The model's
    train/eval mode is restored after."""
    return score_task_examples(lm, task, split, batch_size, max_examples, max_batch_tokens)[0]


def score_tasks_examples(
    lm: LanguageModel,
    tasks: dict[str, InstructionTask],
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
    max_batch_tokens: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(every task's scores on `split`, every task's per-example rows: `score_task_examples`), with a
    progress bar over the tasks on a terminal."""
    scores, rows = {}, {}
    with progress(f"scoring {split}", total=len(tasks)) as advance:
        for name, task in tasks.items():
            scores[name], rows[name] = score_task_examples(lm, task, split, batch_size, max_examples,
                                                           max_batch_tokens)
            advance(1, info=name)
    return scores, rows


def score_tasks(
    lm: LanguageModel,
    tasks: dict[str, InstructionTask],
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
    max_batch_tokens: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Every task's scores on `split` (`score_tasks_examples` without the rows)."""
    return score_tasks_examples(lm, tasks, split, batch_size, max_examples, max_batch_tokens)[0]


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
