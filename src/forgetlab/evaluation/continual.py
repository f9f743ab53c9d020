"""Forgetting over a sequence of fine-tuning stages, from a score matrix (formulas: shared/REFERENCE.md).

R has T+1 rows and one column per evaluated task: row 0 is the starting model, row t the model after
stage t, and `stages[t-1]` lists the tasks trained in stage t. A task listed in no stage is evaluated only:
it keeps its column but enters no per-stage metric. A task trained in several stages counts as learned at
the first of them.

Every metric is oriented so one sign means the same thing for scores and losses: with
`higher_is_better=False` (a per-token loss matrix) the formulas run on -R, so forgetting is the rise of the
loss, a negative BWT is a loss that went up, and the averages stay in the matrix's own units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import fmean

Matrix = Sequence[Sequence[float]]
Stages = Sequence[Sequence[str]]


def validate_matrix(matrix: Matrix, tasks: Sequence[str], stages: Stages) -> list[list[float]]:
    """The matrix as floats, after checking it is (len(stages)+1) x len(tasks), finite, and that every
    stage trains known tasks: a mislabelled column would silently shift every metric."""
    if not stages:
        raise ValueError("a continual sequence needs at least one stage")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task names repeat: {list(tasks)}")
    for t, stage in enumerate(stages, start=1):
        if isinstance(stage, str) or not stage:
            raise ValueError(f"stage {t} must be a non-empty list of task names, got {stage!r}")
        unknown = [name for name in stage if name not in tasks]
        if unknown:
            raise ValueError(f"stage {t} trains tasks with no column in the matrix: {unknown}")
    rows = [[float(v) for v in row] for row in matrix]
    if len(rows) != len(stages) + 1:
        raise ValueError(f"matrix has {len(rows)} rows; expected {len(stages) + 1} (start + one per stage)")
    for r, row in enumerate(rows):
        if len(row) != len(tasks):
            raise ValueError(f"matrix row {r} has {len(row)} values; expected {len(tasks)} (one per task)")
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"matrix row {r} has a non-finite value: {row}")
    return rows


def score_matrix(evaluations: Sequence[Mapping[str, Mapping[str, float]]], tasks: Sequence[str],
                 key: str = "score") -> list[list[float]]:
    """Rows of R from forgetlab's per-evaluation dicts ({task: {"score": ..., "loss": ...}}), one per row;
    `key="loss"` gives the per-token loss matrix."""
    return [[float(evaluation[task][key]) for task in tasks] for evaluation in evaluations]


def stage_names(stages: Stages) -> list[str]:
    """One name per stage: its tasks joined by '+'."""
    return ["+".join(stage) for stage in stages]


def row_labels(stages: Stages) -> list[str]:
    """Labels of the matrix rows: "start", then each stage's name."""
    return ["start", *stage_names(stages)]


def learned_at(stages: Stages) -> dict[str, int]:
    """For each trained task, the (1-based) stage that first trains it."""
    first: dict[str, int] = {}
    for t, stage in enumerate(stages, start=1):
        for name in stage:
            first.setdefault(name, t)
    return first


def _oriented(matrix: Matrix, tasks: Sequence[str], stages: Stages, higher_is_better: bool) -> list[list[float]]:
    sign = 1.0 if higher_is_better else -1.0
    return [[sign * v for v in row] for row in validate_matrix(matrix, tasks, stages)]


def _stage_mean(row: Sequence[float], tasks: Sequence[str], stage: Sequence[str]) -> float:
    return fmean(row[tasks.index(name)] for name in stage)


def final_average_trained(matrix: Matrix, tasks: Sequence[str], stages: Stages) -> float:
    """GEM's ACC (Lopez-Paz & Ranzato 2017): mean of R[T][i] over the trained tasks, each task counted once
    (a stage of two tasks weighs twice a stage of one). In the matrix's units, whatever its direction."""
    rows = validate_matrix(matrix, tasks, stages)
    return fmean(rows[-1][tasks.index(name)] for name in learned_at(stages))


def final_average_all(matrix: Matrix, tasks: Sequence[str], stages: Stages) -> float:
    """Mean of the last row over every evaluated task, trained or not: what the final model keeps overall."""
    return fmean(validate_matrix(matrix, tasks, stages)[-1])


def backward_transfer(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                      higher_is_better: bool = True) -> float | None:
    """BWT (GEM, Lopez-Paz & Ranzato 2017): 1/(T-1) Σ_{i<T} (R[T][i] - R[i][i]), i over stages.

    A stage of several tasks enters as the mean over its tasks, so each stage weighs the same as in GEM.
    Negative = forgetting (for a loss matrix: the loss rose). None when T < 2: no stage has a later one.
    """
    rows = _oriented(matrix, tasks, stages, higher_is_better)
    last = len(stages)
    if last < 2:
        return None
    return fmean(_stage_mean(rows[last], tasks, stages[i - 1]) - _stage_mean(rows[i], tasks, stages[i - 1])
                 for i in range(1, last))


def forgetting_chaudhry(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                        higher_is_better: bool = True) -> dict[str, float]:
    """Forgetting (Chaudhry et al. 2018, RWalk): f_i = max_{l<T} R[l][i] - R[T][i], per task learned before
    the last stage. l runs over the rows from the stage that first learned i to T-1, so the reference is
    the best score the task had once learned (scores before learning it would never be "forgotten").
    Positive = forgetting (for a loss: the rise over the lowest past loss). Empty when T = 1."""
    rows = _oriented(matrix, tasks, stages, higher_is_better)
    last = len(stages)
    result = {}
    for name, s in learned_at(stages).items():
        if s < last:
            col = tasks.index(name)
            result[name] = max(rows[row][col] for row in range(s, last)) - rows[last][col]
    return result


def forgetting_avalanche(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                         higher_is_better: bool = True) -> dict[str, float]:
    """Avalanche's forgetting (`avalanche/evaluation/metrics/forgetting_bwt.py`): R[s_i][i] - R[T][i] with
    s_i the stage that first learned i, i.e. the score right after learning, not the best past score.
    Same tasks and sign as `forgetting_chaudhry`; never larger than it. Empty when T = 1."""
    rows = _oriented(matrix, tasks, stages, higher_is_better)
    last = len(stages)
    return {name: rows[s][tasks.index(name)] - rows[last][tasks.index(name)]
            for name, s in learned_at(stages).items() if s < last}


def forward_transfer_per_task(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                              higher_is_better: bool = True) -> dict[str, float]:
    """FWT per trained task first learned at stage s >= 2: R[s-1][i] - R[0][i], i.e. what the earlier stages
    did to the task before it was trained, against the starting (pretrained) model as baseline."""
    rows = _oriented(matrix, tasks, stages, higher_is_better)
    return {name: rows[s - 1][tasks.index(name)] - rows[0][tasks.index(name)]
            for name, s in learned_at(stages).items() if s >= 2}


def forward_transfer(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                     higher_is_better: bool = True) -> float | None:
    """FWT (GEM; Avalanche `forward_transfer.py`): 1/(T-1) Σ_{i>=2} (R[i-1][i] - R[0][i]), i over stages,
    a multi-task stage entering as the mean over its tasks; baseline = starting model. Positive = earlier
    stages helped. None when T < 2."""
    rows = _oriented(matrix, tasks, stages, higher_is_better)
    if len(stages) < 2:
        return None
    return fmean(_stage_mean(rows[i - 1], tasks, stages[i - 1]) - _stage_mean(rows[0], tasks, stages[i - 1])
                 for i in range(2, len(stages) + 1))


def score_after_learning(matrix: Matrix, tasks: Sequence[str], stages: Stages) -> dict[str, float]:
    """R[s_i][i]: each trained task's value right after the stage that first learned it (plasticity)."""
    rows = validate_matrix(matrix, tasks, stages)
    return {name: rows[s][tasks.index(name)] for name, s in learned_at(stages).items()}


def intransigence(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                  single_task_scores: Mapping[str, float] | None,
                  higher_is_better: bool = True) -> dict[str, float] | None:
    """Intransigence (Chaudhry et al. 2018): reference - R[s_i][i], the reference being the task's value when
    fine-tuned alone from the start. Positive = the sequence learned the task worse than training it alone.
    Only tasks with a reference; None without references."""
    if single_task_scores is None:
        return None
    sign = 1.0 if higher_is_better else -1.0
    after = score_after_learning(matrix, tasks, stages)
    return {name: sign * (float(single_task_scores[name]) - value)
            for name, value in after.items() if name in single_task_scores}


def _mean_or_none(values: Mapping[str, float] | None) -> float | None:
    return fmean(values.values()) if values else None


def continual_summary(matrix: Matrix, tasks: Sequence[str], stages: Stages,
                      single_task_scores: Mapping[str, float] | None = None,
                      higher_is_better: bool = True) -> dict:
    """Every metric above as a JSON-ready dict, with the matrix, its row labels and the stage order, so a
    report can redraw the matrix and check each number. Means over an empty set are None."""
    rows = validate_matrix(matrix, tasks, stages)
    tasks, stages = list(tasks), [list(stage) for stage in stages]
    trained = learned_at(stages)
    args = (rows, tasks, stages)
    chaudhry = forgetting_chaudhry(*args, higher_is_better=higher_is_better)
    avalanche = forgetting_avalanche(*args, higher_is_better=higher_is_better)
    stubborn = intransigence(*args, single_task_scores, higher_is_better=higher_is_better)
    return {
        "higher_is_better": higher_is_better,
        "tasks": tasks,
        "stages": stages,
        "row_labels": row_labels(stages),
        "matrix": rows,
        "trained_tasks": list(trained),
        "eval_only_tasks": [name for name in tasks if name not in trained],
        "learned_at": trained,
        "final_average_trained": final_average_trained(*args),
        "final_average_all": final_average_all(*args),
        "backward_transfer": backward_transfer(*args, higher_is_better=higher_is_better),
        "forgetting_chaudhry": _mean_or_none(chaudhry),
        "forgetting_chaudhry_per_task": chaudhry,
        "forgetting_avalanche": _mean_or_none(avalanche),
        "forgetting_avalanche_per_task": avalanche,
        "forward_transfer": forward_transfer(*args, higher_is_better=higher_is_better),
        "forward_transfer_per_task": forward_transfer_per_task(*args, higher_is_better=higher_is_better),
        "score_after_learning": score_after_learning(*args),
        "intransigence": _mean_or_none(stubborn),
        "intransigence_per_task": stubborn,
    }
