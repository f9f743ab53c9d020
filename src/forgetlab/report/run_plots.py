"""Figures of single runs, one run per group (its lowest seed) so a sweep of many seeds stays a few files:
the learning-forgetting trajectory over training steps with the kept or best-under-budget steps marked,
and for continual sequences the score matrix and each task's score across stages."""

from __future__ import annotations

import logging
from pathlib import Path

from forgetlab.evaluation.selection import trajectory
from forgetlab.report.aggregate import Group, run_budgets
from forgetlab.report.collect import Run
from forgetlab.report.trajectory_plots import (
    plot_continual_matrix,
    plot_learning_forgetting_trajectory,
    plot_task_scores_over_stages,
)

log = logging.getLogger(__name__)


def representative(group: Group) -> Run:
    """The group's run with the lowest seed: the same one on every rebuild of the report."""
    return min(group.runs, key=lambda r: (r.get("seed") if isinstance(r.get("seed"), int) else 0, r.display))


def _name(group: Group, run: Run) -> str:
    return f"{group.label} (seed {run.get('seed')})"


def trajectory_plot(group: Group, run: Run, path: Path) -> Path | None:
    """Target score vs mean forgetting over the run's periodic evaluations; None without two of them."""
    history = [h for h in run.get("history") or [] if isinstance(h, dict) and isinstance(h.get("scores"), dict)]
    target = run.get("target")
    if len(history) < 2 or not target:
        return None
    try:
        points = trajectory(history, target)
    except ValueError as err:   # no old tasks, or the target missing from the history
        log.warning("no trajectory for %s: %s", run.display, err)
        return None
    chosen = run.get("selected") if isinstance(run.get("selected"), dict) else None
    selected = None if chosen is None else {"step": chosen["step"], "target_score": chosen["validation_target_score"],
                                            "mean_forgetting": chosen["validation_mean_forgetting"]}
    return plot_learning_forgetting_trajectory(
        points, path, selected=selected, budget=None if chosen is None else chosen["budget"],
        budget_points=None if chosen is not None else run_budgets(run),
        title=f"Learning vs forgetting during training: {_name(group, run)}")


def continual_plots(group: Group, run: Run, matrix_path: Path, stages_path: Path) -> dict[str, Path]:
    """The score matrix as a heatmap and each task across stages, from metrics.json `continual`."""
    section = run.get("continual")
    if not isinstance(section, dict) or not section.get("matrix"):
        return {}
    args = (section["matrix"], section["tasks"], section["stages"])
    scores = section.get("higher_is_better", True)
    try:
        return {
            f"continual matrix: {_name(group, run)}": plot_continual_matrix(
                *args, matrix_path, value_range=(0.0, 100.0) if scores else None,
                label="score (0-100)" if scores else "loss", title=f"After each stage: {_name(group, run)}"),
            f"continual stages: {_name(group, run)}": plot_task_scores_over_stages(
                *args, stages_path, ylabel="score" if scores else "loss",
                title=f"Each task across stages: {_name(group, run)}"),
        }
    except ValueError as err:   # a malformed matrix: the report still renders, without this figure
        log.warning("no continual plots for %s: %s", run.display, err)
        return {}


def write_run_plots(groups: list[Group], out: Path) -> dict[str, Path]:
    """name -> PNG for every group's representative run; files are numbered by group (trajectory_01.png)."""
    plots: dict[str, Path] = {}
    for i, group in enumerate(groups, start=1):
        run = representative(group)
        path = trajectory_plot(group, run, out / f"trajectory_{i:02d}.png")
        if path is not None:
            plots[f"trajectory: {_name(group, run)}"] = path
        plots.update(continual_plots(group, run, out / f"continual_matrix_{i:02d}.png",
                                     out / f"continual_stages_{i:02d}.png"))
    return plots
