"""PNG plots of a report, drawn with matplotlib's Agg canvas directly (no pyplot), so they render on
headless machines and never touch a user's interactive backend."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from forgetlab.pareto import MAXIMIZE, MINIMIZE, front_indices
from forgetlab.report.aggregate import Group
from forgetlab.report.tables import all_tasks

PLOT_FILES = {
    "learning_forgetting": "learning_forgetting.png",
    "task_forgetting": "task_forgetting.png",
    "scores_heatmap": "scores_heatmap.png",
    "forgetting_over_steps": "forgetting_over_steps.png",
}


def _figure(width: float, height: float, ncols: int = 1):
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _strategy_colors(groups: list[Group]) -> dict[str, tuple]:
    names = sorted({str(r.get("strategy")) for g in groups for r in g.runs})
    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _group_colors(groups: list[Group]) -> list[tuple]:
    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(len(groups))]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points (forgetting, gain) that no other point beats, sorted by forgetting."""
    return sorted(front_indices(points, [MINIMIZE, MAXIMIZE]), key=lambda i: points[i])


# Where a marker's number may sit (points from the marker centre): upper right first.
NUMBER_OFFSETS = ((6, 5), (6, -12), (-13, 5), (-13, -12), (0, 9), (0, -16))


def _clearance(centre: tuple[float, float], others: list[tuple[float, float]], size: tuple[float, float]) -> float:
    """Distance (pt) from a number's centre to the nearest other marker or number; very negative off the axes."""
    (cx, cy), (width, height) = centre, size
    inside = 0 <= cx <= width and 0 <= cy <= height
    return min((math.hypot(cx - ox, cy - oy) for ox, oy in others), default=1e9) - (0 if inside else 1e6)


def _number_offsets(ax, points: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """For each point, the first offset whose number lands clear of every other marker and placed number
    (12 pt), else the clearest one; never one off the axes when another fits."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    width, height = ax.get_figure().get_size_inches() * 72 * np.array([0.85, 0.7])   # axes size, roughly (pt)
    pts = [((x - x0) / (x1 - x0 or 1) * width, (y - y0) / (y1 - y0 or 1) * height) for x, y in points]
    placed: list[tuple[float, float]] = []
    chosen = []
    for i, (px, py) in enumerate(pts):
        others = [p for j, p in enumerate(pts) if j != i] + placed
        centres = [(px + dx + 3, py + dy + 3) for dx, dy in NUMBER_OFFSETS]
        scores = [(min(_clearance(c, others, (width, height)), 12), -k) for k, c in enumerate(centres)]
        best = max(range(len(NUMBER_OFFSETS)), key=lambda k: scores[k])
        chosen.append(NUMBER_OFFSETS[best])
        placed.append(centres[best])
    return chosen


def plot_learning_forgetting(groups: list[Group], path: Path) -> Path:
    """One dot per run, a big numbered marker per group mean, and the Pareto front of the group means.

    Group labels do not fit beside the markers (they overlap and run off the canvas), so each mean carries
    its number and a key beneath the axes names the group behind each number.
    """
    means = [(g, g.stats["mean_forgetting"], g.stats["target_gain"]) for g in groups]
    means = [(g, f, t) for g, f, t in means if f.mean is not None and t.mean is not None]
    # the key beneath the axes: two columns as wide as the figure hold the long labels of a big sweep
    ncols = 1 if len(means) <= 4 else 2
    rows = math.ceil(len(means) / ncols)
    fig, (ax,) = _figure(7.5 if ncols == 1 else 11.0, 5.0 + 0.22 * rows)
    colors = _strategy_colors(groups)
    seen: set[str] = set()
    for g in groups:
        for r in g.runs:
            strategy = str(r.get("strategy"))
            ax.scatter(r.get("mean_forgetting"), r.get("target_gain"), color=colors[strategy], alpha=0.45, s=22,
                       label=strategy if strategy not in seen else None)
            seen.add(strategy)
    handles, names = [], []
    for g, f, t in means:
        color = colors[str(g.runs[0].get("strategy"))]
        ax.errorbar(f.mean, t.mean, xerr=f.std or 0, yerr=t.std or 0, fmt="o", ms=10, color=color,
                    markeredgecolor="black", ecolor=color, capsize=3, zorder=3)
    offsets = _number_offsets(ax, [(f.mean, t.mean) for _, f, t in means])
    for number, ((g, f, t), offset) in enumerate(zip(means, offsets), start=1):
        color = colors[str(g.runs[0].get("strategy"))]
        ax.annotate(str(number), (f.mean, t.mean), textcoords="offset points", xytext=offset, fontsize=7.5,
                    fontweight="bold", zorder=4, annotation_clip=True, clip_on=True,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        handles.append(Line2D([], [], ls="", marker="o", ms=6, color=color, markeredgecolor="black"))
        names.append(f"{number}  {g.label}" + (f"  (n={g.n})" if g.n > 1 else ""))
    front = pareto_front([(f.mean, t.mean) for _, f, t in means])
    if front:
        xs, ys = zip(*[(means[i][1].mean, means[i][2].mean) for i in front])
        ax.plot(xs, ys, "--", color="black", lw=1, zorder=2, label="Pareto front (group means)")
    ax.set_xlabel("mean forgetting on other tasks (score points, lower is better)")
    ax.set_ylabel("target gain (score points, higher is better)")
    ax.set_title("Learning vs forgetting (small dots: runs; numbered markers: group means ± std)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=ncols, fontsize=7.5, title="groups",
                   title_fontsize=8, frameon=False, handletextpad=0.3, columnspacing=1.5, alignment="left")
    return _save(fig, path)


def plot_task_forgetting(groups: list[Group], path: Path) -> Path:
    """Grouped bars: for each non-target task, one bar per group (mean ± std forgetting)."""
    tasks = all_tasks(groups)
    fig, (ax,) = _figure(max(6.0, 1.2 + 0.45 * len(tasks) * max(1, len(groups))), 4.8)
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(tasks))
    for i, (g, color) in enumerate(zip(groups, _group_colors(groups))):
        stats = [g.task_forgetting.get(t) for t in tasks]
        heights = [s.mean if s and s.mean is not None else 0.0 for s in stats]
        errs = [s.std if s and s.std is not None else 0.0 for s in stats]
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, heights, width, yerr=errs, capsize=2, color=color,
               label=f"{g.label} (n={g.n})")
    ax.set_xticks(x, tasks)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("forgetting (score before - after)")
    ax.set_title("Forgetting per task")
    ax.grid(axis="y", alpha=0.3)
    if groups:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_scores_heatmap(groups: list[Group], path: Path) -> Path:
    """Scores of every task (rows) for every group (columns), before and after fine-tuning."""
    tasks = sorted({t for g in groups for t in (*g.before, *g.after)})
    labels = [g.label for g in groups]
    fig, axes = _figure(max(7.0, 2.5 + 1.6 * len(groups)), max(3.0, 1.2 + 0.45 * len(tasks)), ncols=2)
    for ax, which in zip(axes, ("before", "after")):
        data = np.array([[getattr(g, which).get(t).mean if getattr(g, which).get(t) and
                          getattr(g, which).get(t).mean is not None else np.nan for g in groups] for t in tasks],
                        dtype=float).reshape(len(tasks), len(groups))
        image = ax.imshow(data, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks)
        ax.set_title(f"score {which} fine-tuning")
        for (row, col), value in np.ndenumerate(data):
            if not np.isnan(value):
                ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 60 else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="score (0-100)")
    return _save(fig, path)


def plot_forgetting_over_steps(groups: list[Group], path: Path) -> Path:
    """From the periodic evaluations: mean forgetting of non-target tasks and the target score, by step."""
    fig, axes = _figure(11, 4.5, ncols=2)
    drawn = False
    for g, color in zip(groups, _group_colors(groups)):
        for ax, name in zip(axes, ("forgetting", "target")):
            curve = [(s, st) for s, st in g.curves.get(name, []) if st.mean is not None]
            if not curve:
                continue
            steps = np.array([s for s, _ in curve], dtype=float)
            mean = np.array([st.mean for _, st in curve])
            std = np.array([st.std or 0.0 for _, st in curve])
            ax.plot(steps, mean, marker="o", ms=3, color=color, label=f"{g.label} (n={g.n})")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
            drawn = True
    axes[0].set_title("Forgetting during training (mean over non-target tasks)")
    axes[0].set_ylabel("first evaluation score - score at step")
    axes[0].axhline(0, color="black", lw=0.8)
    axes[1].set_title("Target task score during training")
    axes[1].set_ylabel("target score (validation)")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
    if not drawn:
        for ax in axes:
            ax.text(0.5, 0.5, "no history in metrics.json", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def write_plots(groups: list[Group], out: Path) -> dict[str, Path]:
    """Every plot of the report, name -> PNG path. Nothing to draw without completed runs."""
    if not groups:
        return {}
    makers = {
        "learning_forgetting": plot_learning_forgetting,
        "task_forgetting": plot_task_forgetting,
        "scores_heatmap": plot_scores_heatmap,
        "forgetting_over_steps": plot_forgetting_over_steps,
    }
    return {name: make(groups, out / PLOT_FILES[name]) for name, make in makers.items()}
