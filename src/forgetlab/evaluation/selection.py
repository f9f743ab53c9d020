"""Choosing a checkpoint under a forgetting budget, from a run's periodic evaluation history.

`history` is what forgetlab's PeriodicEvaluation records: a list of {"step": int, "scores": {task: {"score":
float, "loss": float, ...}}}, the first entry (step 0) taken before any training. Forgetting at a step is the
mean over old tasks of (score at the first entry - score at that step), in score points, as in the report's
forgetting-over-steps curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import fmean

History = Sequence[Mapping]

# Slack on the budget, so a step whose forgetting equals the budget is not lost to float round-off.
BUDGET_TOLERANCE = 1e-9


def _as_list(tasks: str | Sequence[str]) -> list[str]:
    return [tasks] if isinstance(tasks, str) else list(tasks)


def _score(entry: Mapping, task: str) -> float:
    try:
        return float(entry["scores"][task]["score"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"history entry at step {entry.get('step')} has no score for task {task!r}") from err


def _tasks(history: History, targets: str | Sequence[str],
           old_tasks: Sequence[str] | None) -> tuple[list[str], list[str]]:
    if not history:
        raise ValueError("empty history: the run recorded no periodic evaluation")
    targets = _as_list(targets)
    if not targets:
        raise ValueError("no target task given")
    olds = [t for t in history[0]["scores"] if t not in targets] if old_tasks is None else list(old_tasks)
    if not olds:
        raise ValueError("no old tasks to measure forgetting on")
    overlap = sorted(set(olds) & set(targets))
    if overlap:
        raise ValueError(f"tasks are both target and old: {overlap}")
    return targets, olds


def trajectory(history: History, targets: str | Sequence[str],
               old_tasks: Sequence[str] | None = None) -> list[dict]:
    """Per history entry: step, mean target score, and mean forgetting of the old tasks against the first
    entry. Old tasks default to every task of the first entry that is not a target."""
    targets, olds = _tasks(history, targets, old_tasks)
    first = {t: _score(history[0], t) for t in olds}
    return [{"step": int(entry["step"]),
             "target_score": fmean(_score(entry, t) for t in targets),
             "mean_forgetting": fmean(first[t] - _score(entry, t) for t in olds)}
            for entry in history]


def select_under_budget(history: History, targets: str | Sequence[str], max_forgetting: float,
                        old_tasks: Sequence[str] | None = None) -> dict | None:
    """The step with the best target score among those whose mean forgetting is <= max_forgetting; ties go
    to the earliest step (less training, same target). The first entry forgets exactly 0, so any budget >= 0
    finds a step; a negative budget asks for old tasks to have improved and may find none (None). Steps with
    a non-finite score never qualify."""
    if not math.isfinite(max_forgetting):
        raise ValueError(f"max_forgetting must be finite, got {max_forgetting}")
    targets, olds = _tasks(history, targets, old_tasks)
    points = trajectory(history, targets, olds)
    best: tuple[dict, Mapping] | None = None
    for point, entry in sorted(zip(points, history), key=lambda pair: pair[0]["step"]):
        if not (math.isfinite(point["target_score"]) and math.isfinite(point["mean_forgetting"])):
            continue
        if point["mean_forgetting"] > max_forgetting + BUDGET_TOLERANCE:
            continue
        if best is None or point["target_score"] > best[0]["target_score"]:
            best = (point, entry)
    if best is None:
        return None
    point, entry = best
    first = history[0]
    return {
        **point,
        "budget": float(max_forgetting),
        "targets": targets,
        "old_tasks": olds,
        "scores": {task: _score(entry, task) for task in entry["scores"]},
        "forgetting": {task: _score(first, task) - _score(entry, task) for task in olds},
    }


def best_under_budgets(history: History, targets: str | Sequence[str],
                       budgets: Sequence[float] = (1, 2, 5, 10),
                       old_tasks: Sequence[str] | None = None) -> dict[str, dict | None]:
    """`select_under_budget` for each budget, keyed by the budget as text ("1", "2.5") for JSON and tables."""
    return {f"{float(b):g}": select_under_budget(history, targets, b, old_tasks) for b in budgets}
