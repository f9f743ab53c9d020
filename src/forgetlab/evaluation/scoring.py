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

Multi-process runs (DDP, FSDP, DeepSpeed) share every scoring: the batches are planned from the data alone,
so they are the same whatever the number of processes; each process scores its share of all the tasks'
batches, rank 0 gathers them (torch.distributed.gather_object) and puts predictions and per-example losses
back in split order, sums the losses batch by batch in the one-process order, and computes each task's
metric (ROUGE, F1, ...) on the whole list. The scores are bit-identical to one process's.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from forgetlab.evaluation.metrics import resolve_metric
from forgetlab.models.language_model import LanguageModel
from forgetlab.tasks.task import InstructionTask
from forgetlab.training.distributed import from_zero, gather_to_zero, rank_and_world
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


@dataclass
class TaskPlan:
    """One task's split as scoring sees it: its examples encoded and cut into batches. Every process of a
    multi-process run makes the same plan (it depends only on the data and settings), so the batches, and
    with them every prediction and loss, are those of one process whoever scores them."""

    task: InstructionTask
    data: Any
    generate: bool
    max_new: int
    prompts: list[str]
    feats: list[dict]
    truncated: int
    batches: list[list[int]]
    costs: list[int]  # per batch: examples x (longest input + generated tokens)


def plan_task(lm: LanguageModel, task: InstructionTask, split: str, batch_size: int, max_examples: int | None,
              max_batch_tokens: int | None) -> TaskPlan:
    data = task.splits[split]
    if max_examples is not None and len(data) > max_examples:
        data = data.select(range(max_examples))
    generate = task.kind != "text"
    max_new = generation_length(lm, task) if generate else 0
    prompts = column(data, "prompt")
    feats = [lm.encode(p, c) for p, c in zip(prompts, column(data, "completion"))]
    truncated = sum(bool(f["truncated"] or (generate and lm.generation_input(p, max_new)[1]))
                    for f, p in zip(feats, prompts))
    # Batches of similar length pad little; predictions are put back in the split's order after. A batch's
    # cost is its examples x (longest input + the tokens generated for it).
    lengths = [max(len(f["input_ids"]), len(f["labels"])) + max_new for f in feats]
    batches = length_batches(lengths, batch_size, max_batch_tokens)
    costs = [len(b) * max(lengths[i] for i in b) for b in batches]
    return TaskPlan(task, data, generate, max_new, prompts, feats, truncated, batches, costs)


def assign_batches(costs: list[int], world: int) -> list[int]:
    """The process that scores each batch: the costliest first, each to the least loaded process so far
    (ties: the lower rank). The same on every process, and all on rank 0 with one."""
    loads, owner = [0] * world, [0] * len(costs)
    for unit in sorted(range(len(costs)), key=lambda u: -costs[u]):
        rank = min(range(world), key=lambda r: loads[r])
        owner[unit] = rank
        loads[rank] += costs[unit]
    return owner


def score_batches(lm: LanguageModel, plans: list[TaskPlan], units: list[tuple[int, int]],
                  advance: Any = None) -> dict[tuple[int, int], tuple]:
    """Score the batches `units` ((plan, batch) pairs, in order) of `plans`: per unit (predictions or None,
    per-example summed losses, per-example label tokens, the batch's loss sum, its token sum)."""
    out: dict[tuple[int, int], tuple] = {}
    was_training = lm.model.training
    lm.model.eval()
    try:
        with inference_context(lm):
            for p, b in units:
                plan = plans[p]
                idx = plan.batches[b]
                texts, s, n = lm.score_batch([plan.feats[i] for i in idx], [plan.prompts[i] for i in idx],
                                             plan.max_new if plan.generate else None)
                out[(p, b)] = (texts, s.tolist(), [int(x) for x in n.tolist()], float(s.sum()), int(n.sum()))
                if advance is not None:
                    advance(1, info=plan.task.name)
    finally:
        lm.model.train(was_training)
    return out


def assemble(lm: LanguageModel, plan: TaskPlan, p: int, results: dict[tuple[int, int], tuple]
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One task's scores and per-example rows from the results of all its batches, taken in batch order:
    the same sums in the same order as one process scoring them all."""
    data, n = plan.data, len(plan.feats)
    preds: list[str | None] = [None] * n
    nlls, ntoks = [0.0] * n, [0] * n
    loss_sum, tok_sum = 0.0, 0
    for b, idx in enumerate(plan.batches):
        texts, s, t, batch_loss, batch_toks = results[(p, b)]
        for i, text in zip(idx, texts or []):
            preds[i] = text
        for i, nll, ntok in zip(idx, s, t):
            nlls[i], ntoks[i] = nll, ntok
        loss_sum += batch_loss
        tok_sum += batch_toks
    loss = loss_sum / max(tok_sum, 1)
    truncated = plan.truncated
    references = _references(data)
    if not plan.generate:
        result = {"score": text_score(loss), "loss": loss, "n": len(data), "headline": TEXT_HEADLINE,
                  "perplexity": perplexity(loss), "metrics": {TEXT_HEADLINE: text_score(loss)},
                  "truncated": truncated}
        values = [{TEXT_HEADLINE: text_score(nll / max(ntok, 1))} for nll, ntok in zip(nlls, ntoks)]
        headline = TEXT_HEADLINE
    else:
        metric = resolve_metric(plan.task.metric)
        aggregate, values = metric.compute_examples(preds, references)
        headline = metric.headline
        result = {"score": aggregate[headline], "loss": loss, "n": len(data), "headline": headline,
                  "metrics": aggregate, "truncated": truncated}
    keys = column(data, "key") if "key" in data.column_names else [None] * len(data)
    rows = [{"index": i, "key": keys[i], "prompt": plan.prompts[i],
             "references": refs if isinstance(refs, list) else [refs], "prediction": preds[i],
             "score": values[i].get(headline), "values": values[i], "nll": nlls[i], "tokens": ntoks[i]}
            for i, refs in enumerate(references)]
    return result, rows


def _count(lm: LanguageModel, counts: list[int]) -> None:
    """Add one scoring's examples per rank to `lm.scored_per_process` (metrics.json timing)."""
    tally = lm.scored_per_process
    tally.extend([0] * (len(counts) - len(tally)))
    for rank, c in enumerate(counts):
        tally[rank] += c


def score_tasks_examples(
    lm: LanguageModel,
    tasks: dict[str, InstructionTask],
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
    max_batch_tokens: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(every task's scores on `split`, every task's per-example rows: `score_task_examples`), with a
    progress bar over the batches on a terminal.

    In a multi-process run (a joined process group) every process must call this at the same point: each
    scores its share of all the tasks' batches (`assign_batches`), rank 0 gathers them and computes every
    task's metric on the whole list, exactly as one process would; every rank gets the scores, rank 0
    alone the rows (the others get {})."""
    rank, world = rank_and_world()
    names = list(tasks)
    plans = [plan_task(lm, tasks[name], split, batch_size, max_examples, max_batch_tokens) for name in names]
    units = [(p, b) for p, plan in enumerate(plans) for b in range(len(plan.batches))]
    owner = assign_batches([plans[p].costs[b] for p, b in units], world)
    mine = [u for u, r in zip(units, owner) if r == rank]
    with progress(f"scoring {split}", total=len(mine)) as advance:  # this process's batches
        results = score_batches(lm, plans, mine, advance)
    for plan in plans:
        lm.truncation.record(plan.task.name, split, plan.truncated, len(plan.data), lm.max_length)
    gathered = gather_to_zero((results, sum(len(plans[p].batches[b]) for p, b in mine)))
    scores: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    if gathered is not None:
        merged = {k: v for part, _ in gathered for k, v in part.items()}
        for p, name in enumerate(names):
            scores[name], rows[name] = assemble(lm, plans[p], p, merged)
        _count(lm, [n for _, n in gathered])
    return from_zero(scores), rows


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
    the task's `loss` is sum(nll) / sum(tokens)). The rows come from the same pass as the scores. Shared
    between processes as `score_tasks_examples` says (rows: [] on the other ranks)."""
    scores, rows = score_tasks_examples(lm, {task.name: task}, split, batch_size, max_examples, max_batch_tokens)
    return scores[task.name], rows.get(task.name, [])


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
