"""PNG plots of forgetting over time: a continual score matrix, each task across stages, and one run's
learning-forgetting trajectory. Drawn on matplotlib's Agg canvas directly (no pyplot), in the style of
report/plots.py, so they render on headless machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from forgetlab.evaluation.continual import Matrix, Stages, learned_at, row_labels, validate_matrix


def _figure(width: float, height: float):
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_continual_matrix(matrix: Matrix, tasks: Sequence[str], stages: Stages, path: str | Path,
                          value_range: tuple[float, float] | None = (0.0, 100.0),
                          label: str = "score (0-100)", title: str = "Scores after each stage") -> Path:
    """Heatmap of R (rows: start then stages; columns: tasks), each value written in its cell and the cells
    of the tasks trained at each stage outlined. `value_range=None` scales to the data (e.g. a loss)."""
    data = np.array(validate_matrix(matrix, tasks, stages), dtype=float)
    labels = row_labels(stages)
    vmin, vmax = value_range if value_range is not None else (float(data.min()), float(data.max()))
    fig, ax = _figure(max(5.0, 2.5 + 0.9 * len(tasks)), max(3.0, 1.2 + 0.45 * len(labels)))
    image = ax.imshow(data, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("evaluated task (red outline: trained in that stage)")
    ax.set_ylabel("after stage")
    ax.set_title(title, fontsize=10)
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(data):
        ax.text(col, row, f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}", ha="center", va="center",
                fontsize=8, color="white" if value < middle else "black")
    for t, stage in enumerate(stages, start=1):
        for name in stage:
            ax.add_patch(Rectangle((tasks.index(name) - 0.5, t - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    return _save(fig, path)


def plot_task_scores_over_stages(matrix: Matrix, tasks: Sequence[str], stages: Stages, path: str | Path,
                                 ylabel: str = "score", title: str = "Each task's score across stages") -> Path:
    """One line per task over the rows of R; a big marker where the task was trained, dashed lines for
    tasks that are only evaluated."""
    data = np.array(validate_matrix(matrix, tasks, stages), dtype=float)
    labels = row_labels(stages)
    trained = learned_at(stages)
    fig, ax = _figure(max(6.0, 2.0 + 1.0 * len(labels)), 4.5)
    cmap = colormaps["tab10" if len(tasks) <= 10 else "tab20"]
    x = np.arange(len(labels))
    for col, name in enumerate(tasks):
        color = cmap(col % cmap.N)
        ax.plot(x, data[:, col], marker="o", ms=4, color=color, ls="-" if name in trained else "--",
                label=name if name in trained else f"{name} (eval only)")
        rows = [t for t, stage in enumerate(stages, start=1) if name in stage]
        ax.scatter(rows, data[rows, col], s=90, marker="o", color=color, edgecolor="black", zorder=3)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("after stage (big markers: the stage that trains the task)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_learning_forgetting_trajectory(points: Sequence[Mapping], path: str | Path,
                                        selected: Mapping | None = None, budget: float | None = None,
                                        title: str = "Learning vs forgetting during training",
                                        budget_points: Mapping[str, Mapping | None] | None = None) -> Path:
    """A run's path through (mean forgetting, target score), one point per evaluated step coloured by step
    (`selection.trajectory` output); the selected checkpoint (`select_under_budget` output) as a star and
    the budget as a dashed vertical line. `budget_points` (`best_under_budgets` output) outlines the best
    step under each budget, labelled with the budgets that choose it."""
    if not points:
        raise ValueError("no trajectory points to plot")
    points = sorted(points, key=lambda p: p["step"])
    steps = np.array([p["step"] for p in points], dtype=float)
    xs = np.array([p["mean_forgetting"] for p in points], dtype=float)
    ys = np.array([p["target_score"] for p in points], dtype=float)
    fig, ax = _figure(7.0, 5.0)
    ax.plot(xs, ys, "-", color="grey", lw=1, zorder=1)
    image = ax.scatter(xs, ys, c=steps, cmap="viridis", s=30, edgecolor="black", lw=0.4, zorder=2)
    for step, x, y in ((steps[0], xs[0], ys[0]), (steps[-1], xs[-1], ys[-1])):
        ax.annotate(f"step {step:g}", (x, y), textcoords="offset points", xytext=(6, 5), fontsize=7.5)
    if budget is not None:
        ax.axvline(budget, ls="--", color="black", lw=1, label=f"budget {budget:g}")
    by_step: dict[int, tuple[Mapping, list[str]]] = {}
    for name, point in (budget_points or {}).items():
        if point is not None:
            by_step.setdefault(point["step"], (point, []))[1].append(name)
    for point, names in by_step.values():
        ax.scatter([point["mean_forgetting"]], [point["target_score"]], marker="s", s=110, facecolor="none",
                   edgecolor="red", lw=1.2, zorder=3)
        ax.annotate("best at forgetting ≤ " + ", ".join(names), (point["mean_forgetting"], point["target_score"]),
                    textcoords="offset points", xytext=(7, -13), fontsize=7.5, color="red")
    if selected is not None:
        ax.scatter([selected["mean_forgetting"]], [selected["target_score"]], marker="*", s=260, color="red",
                   edgecolor="black", zorder=4, label=f"selected: step {selected['step']}")
    ax.set_xlabel("mean forgetting on old tasks (score points, lower is better)")
    ax.set_ylabel("target score (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if budget is not None or selected is not None:
        ax.legend(fontsize=8, loc="best")
    fig.colorbar(image, ax=ax, label="training step")
    return _save(fig, path)
