"""PNG plots of a report, drawn with matplotlib's Agg canvas directly (no pyplot), so they render on
headless machines and never touch a user's interactive backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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
    """Indices of points (forgetting, gain) that no other point beats: less forgetting and more gain."""
    front = []
    for i, (f, g) in enumerate(points):
        dominated = any(f2 <= f and g2 >= g and (f2 < f or g2 > g) for j, (f2, g2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def plot_learning_forgetting(groups: list[Group], path: Path) -> Path:
    """One dot per run, a big marker per group mean, and the Pareto front of the group means."""
    fig, (ax,) = _figure(7.5, 5.5)
    colors = _strategy_colors(groups)
    seen: set[str] = set()
    for g in groups:
        for r in g.runs:
            strategy = str(r.get("strategy"))
            ax.scatter(r.get("mean_forgetting"), r.get("target_gain"), color=colors[strategy], alpha=0.45, s=22,
                       label=strategy if strategy not in seen else None)
            seen.add(strategy)
    means = []
    for g in groups:
        f, t = g.stats["mean_forgetting"], g.stats["target_gain"]
        if f.mean is None or t.mean is None:
            continue
        color = colors[str(g.runs[0].get("strategy"))]
        ax.errorbar(f.mean, t.mean, xerr=f.std or 0, yerr=t.std or 0, fmt="o", ms=11, color=color,
                    markeredgecolor="black", ecolor=color, capsize=3, zorder=3)
        ax.annotate(g.label, (f.mean, t.mean), textcoords="offset points", xytext=(7, 6), fontsize=8)
        means.append((f.mean, t.mean))
    front = pareto_front(means)
    if front:
        xs, ys = zip(*[means[i] for i in front])
        ax.plot(xs, ys, "--", color="black", lw=1, zorder=2, label="Pareto front (group means)")
    ax.set_xlabel("mean forgetting on other tasks (score points, lower is better)")
    ax.set_ylabel("target gain (score points, higher is better)")
    ax.set_title("Learning vs forgetting (small dots: runs; big markers: group means ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
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
