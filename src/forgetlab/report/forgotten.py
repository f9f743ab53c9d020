"""The report's "what was forgotten" section: per group (its lowest-seed run, as the trajectory plots),
the old tasks' examples that were right before fine-tuning and wrong after, read from the run's
predictions files (evaluation/predictions.py), with their count and the most frequent new wrong answers.

An example is right when its own score is full marks (100: exact match, accuracy, a correct label). Where
a task's per-example scores are not all 0 or 100 (ROUGE, char F1, held-out text), "right → wrong" says
little, so the section lists the examples whose score fell most instead, and counts those that fell.
Reads files only (no torch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from forgetlab.evaluation.predictions import (
    GENERATION_COLUMNS,
    GENERATIONS_PER_TASK,
    generation_rows,
    pair_row,
    read_step,
)
from forgetlab.report.aggregate import Group
from forgetlab.report.collect import Run
from forgetlab.report.run_plots import representative
from forgetlab.run_dirs import PREDICTIONS_DIR

FULL_MARKS = 100.0
SHOW = 3            # examples listed per task
TOP_ANSWERS = 5     # most frequent new wrong answers listed per task
MAX_CHARS = 200     # longer texts are cut in the report (the files hold them whole)
EXPLAIN = ("Per group, its lowest-seed run, every old (non-target) task: the test examples that were right "
           "before fine-tuning (full marks) and wrong after, how many there were, and the answers the model "
           "now gives most often on them. For tasks scored by a graded metric (ROUGE, char F1, held-out text) "
           "the examples whose score fell most. From the run's predictions/ files.")


@dataclass
class TaskForgotten:
    """One old task of one run: `mode` is 'right_to_wrong' or 'largest_drops'."""

    task: str
    headline: str
    mode: str
    compared: int                          # examples in both files
    count: int                             # right -> wrong, or examples whose score fell
    examples: list[dict[str, Any]]         # the first SHOW of them (largest drops first for graded tasks)
    new_wrong_answers: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class GroupForgotten:
    group: str
    run: str
    seed: Any
    tasks: list[TaskForgotten]


def prediction_dirs(run: Run) -> tuple[Path, Path] | None:
    """The folders holding the run's before and after rows (metrics.json `predictions`, else the defaults);
    None when the run kept none."""
    info = run.get("predictions")
    if info is None and "predictions" in (run.metrics or {}):
        return None  # eval.predictions=false
    info = info if isinstance(info, dict) else {}  # runs from before predictions were kept: the defaults
    root = run.path / str(info.get("dir") or PREDICTIONS_DIR)
    before, after = root / str(info.get("before") or "before"), root / str(info.get("after") or "after")
    return (before, after) if before.is_dir() and after.is_dir() else None


def _pair(before: dict, after: dict) -> dict[str, Any]:
    return dict(zip(GENERATION_COLUMNS[1:], pair_row(before, after)))


def _score(row: dict) -> float | None:
    value = row.get("score")
    return float(value) if isinstance(value, (int, float)) else None


def compare_task(task: str, before: Sequence[dict], after: Sequence[dict], headline: str = "score",
                 show: int = SHOW, top: int = TOP_ANSWERS) -> TaskForgotten:
    """What `task` lost between two steps' rows, matched by `index`."""
    after_by_index = {r.get("index"): r for r in after}
    pairs = [(b, after_by_index[b.get("index")]) for b in before
             if b.get("index") in after_by_index and _score(b) is not None
             and _score(after_by_index[b.get("index")]) is not None]
    binary = all(_score(r) in (0.0, FULL_MARKS) for pair in pairs for r in pair)
    if binary:
        lost = [(b, a) for b, a in pairs if _score(b) == FULL_MARKS and _score(a) < FULL_MARKS]
        mode = "right_to_wrong"
    else:
        lost = sorted(((b, a) for b, a in pairs if _score(a) < _score(b)), key=lambda p: _score(p[1]) - _score(p[0]))
        mode = "largest_drops"
    answers = Counter(a.get("prediction") for _, a in lost if a.get("prediction") is not None)
    return TaskForgotten(task, headline, mode, len(pairs), len(lost), [_pair(b, a) for b, a in lost[:show]],
                         answers.most_common(top))


def old_tasks(run: Run) -> list[str]:
    target = run.get("target")
    targets = {target} if isinstance(target, str) else set(target or [])
    return [t for t in (run.get("before") or {}) if t not in targets]


def run_forgotten(run: Run, show: int = SHOW, top: int = TOP_ANSWERS) -> list[TaskForgotten] | None:
    """Every old task of `run` compared before -> after; None when the run has no predictions files."""
    dirs = prediction_dirs(run)
    if dirs is None:
        return None
    before, after = read_step(dirs[0]), read_step(dirs[1])
    headlines = {t: (s or {}).get("headline", "score") for t, s in (run.get("after") or {}).items()}
    return [compare_task(t, before[t], after[t], headlines.get(t, "score"), show, top)
            for t in old_tasks(run) if t in before and t in after]


def forgotten_sections(groups: list[Group]) -> list[GroupForgotten]:
    """One section per group whose representative run kept predictions."""
    out = []
    for group in groups:
        run = representative(group)
        tasks = run_forgotten(run)
        if tasks:
            out.append(GroupForgotten(group.label, run.display, run.get("seed"), tasks))
    return out


def _cut(text: Any) -> str:
    text = "" if text is None else " ".join(str(text).split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else ""


EXAMPLE_HEADERS = ["#", "prompt", "reference", "before", "after", "score before → after"]


def example_rows(task: TaskForgotten) -> list[list[str]]:
    return [[str(e["index"]), _cut(e["prompt"]), _cut(e["reference"]), _cut(e["before"]), _cut(e["after"]),
             f"{_fmt(e['score_before'])} → {_fmt(e['score_after'])}"] for e in task.examples]


def task_summary(task: TaskForgotten) -> str:
    if task.mode == "right_to_wrong":
        text = (f"{task.count} of {task.compared} examples right before and wrong after ({task.headline})")
    else:
        text = f"{task.count} of {task.compared} examples scored lower after ({task.headline}); largest drops"
    return text + (":" if task.examples else ".")


def answers_line(task: TaskForgotten) -> str:
    return ", ".join(f"“{_cut(a)}” ({n})" for a, n in task.new_wrong_answers)


def markdown_section(sections: list[GroupForgotten], table) -> list[str]:
    """Lines of the markdown section; `table(headers, rows)` renders a table (tables.markdown_table)."""
    if not sections:
        return []
    lines = ["## What was forgotten", "", EXPLAIN, ""]
    for s in sections:
        lines += [f"### {s.group} (seed {s.seed}, `{s.run}`)", ""]
        for t in s.tasks:
            lines += [f"**{t.task}**: {task_summary(t)}", ""]
            if t.examples:
                lines += [table(EXAMPLE_HEADERS, example_rows(t)), ""]
            if t.new_wrong_answers:
                lines += [f"Most frequent new wrong answers: {answers_line(t)}", ""]
    return lines


def html_section(sections: list[GroupForgotten], table) -> list[str]:
    """HTML parts of the section; `table(headers, rows)` renders a table (html._table)."""
    if not sections:
        return []
    parts = ["<h2>What was forgotten</h2>", f"<p>{escape(EXPLAIN)}</p>"]
    for s in sections:
        parts.append(f"<h3>{escape(s.group)} (seed {escape(str(s.seed))}, <code>{escape(s.run)}</code>)</h3>")
        for t in s.tasks:
            parts.append(f"<p><strong>{escape(t.task)}</strong>: {escape(task_summary(t))}</p>")
            if t.examples:
                parts.append(table(EXAMPLE_HEADERS, example_rows(t)))
            if t.new_wrong_answers:
                parts.append(f"<p>Most frequent new wrong answers: {escape(answers_line(t))}</p>")
    return parts


def generation_tables(groups: list[Group], limit: int | None = GENERATIONS_PER_TASK) -> dict[str, tuple[list, list]]:
    """W&B table name -> (columns, rows) of every group's representative run's before/after generations."""
    tables = {}
    for i, group in enumerate(groups, start=1):
        dirs = prediction_dirs(representative(group))
        if dirs is not None:
            tables[f"generations_{i:02d}"] = (GENERATION_COLUMNS, generation_rows(*dirs, limit=limit))
    return tables
