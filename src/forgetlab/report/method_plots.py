"""Figures that compare *methods* rather than groups: a method is a group with its learning rate left out
(`lora r=32 targets=all-linear`), so its groups at several learning rates trace one learning-forgetting
curve. Two plots: each method's frontier (group means joined in lr order, the method's Pareto front
drawn over them), and intruder dimensions against forgetting, one dot per run (Shuttleworth et al. 2025
relate the two). Both are drawn only when the sweep has what they need."""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps

from forgetlab.report.aggregate import Group, display_labels
from forgetlab.report.plots import _figure, _save, pareto_front

LR_KEY = "strategy.optim.lr"
PLOT_FILES = {"method_frontiers": "method_frontiers.png", "intruders_forgetting": "intruders_forgetting.png"}


def methods(groups: list[Group]) -> dict[str, list[Group]]:
    """Method label -> its groups in ascending learning rate; labels as the report shortens group keys."""
    keys = [{k: v for k, v in g.key.items() if k != LR_KEY} for g in groups]
    by_key: dict[tuple, list[Group]] = {}
    for key, group in zip(keys, groups):
        by_key.setdefault(tuple(key.items()), []).append(group)
    labels = display_labels([dict(k) for k in by_key]) if by_key and any(by_key) else ["all runs"] * len(by_key)

    def lr(g: Group) -> float:
        try:
            return float(g.key.get(LR_KEY, "nan"))
        except ValueError:
            return float("nan")

    return {label: sorted(members, key=lr) for label, members in zip(labels, by_key.values())}


def run_intruders(run) -> int | None:
    """Total intruder dimensions over every linear layer of a run (metrics.json weight_movement.spectral)."""
    spectral = (run.get("weight_movement") or {}).get("spectral") or {}
    total = (spectral.get("total") or {}).get("intruders")
    return total if isinstance(total, int) else None


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def plot_method_frontiers(groups: list[Group], path: Path) -> Path | None:
    """Each method's groups (means ± std over seeds) joined in lr order; its Pareto front as a thick line."""
    by_method = methods(groups)
    if not any(len(members) > 1 for members in by_method.values()):
        return None  # no method was run at several learning rates: nothing to trace
    fig, (ax,) = _figure(8.5, 6.0)
    colors = _colors(list(by_method))
    for label, members in by_method.items():
        pts = [(g.stats["mean_forgetting"], g.stats["target_gain"], g) for g in members]
        pts = [(f, t, g) for f, t, g in pts if f.mean is not None and t.mean is not None]
        if not pts:
            continue
        color = colors[label]
        ax.plot([f.mean for f, _, _ in pts], [t.mean for _, t, _ in pts], ":", color=color, lw=1)
        for f, t, g in pts:
            ax.errorbar(f.mean, t.mean, xerr=f.std or 0, yerr=t.std or 0, fmt="o", ms=6, color=color,
                        ecolor=color, alpha=0.8, capsize=2)
        front = pareto_front([(f.mean, t.mean) for f, t, _ in pts])
        ax.plot([pts[i][0].mean for i in front], [pts[i][1].mean for i in front], "-", color=color, lw=2.2,
                label=f"{label} ({len(pts)} lr)")
    ax.set_xlabel("mean forgetting on other tasks (score points, lower is better)")
    ax.set_ylabel("target gain (score points, higher is better)")
    ax.set_title("Each method's learning-forgetting frontier over its learning rates\n"
                 "(dots: means ± std over seeds, dotted: lr order, solid: the method's Pareto front)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize=7.5, frameon=False)
    return _save(fig, path)


def plot_intruders_forgetting(groups: list[Group], path: Path) -> Path | None:
    """One dot per run: its intruder dimensions (all linear layers) against its mean forgetting."""
    by_method = methods(groups)
    points = {label: [(run_intruders(r), r.get("mean_forgetting")) for g in members for r in g.runs]
              for label, members in by_method.items()}
    points = {label: [(x, y) for x, y in pts if x is not None and isinstance(y, (int, float))]
              for label, pts in points.items()}
    if not any(points.values()):
        return None  # runs without spectral diagnostics (diagnostics.spectral=false or older metrics.json)
    fig, (ax,) = _figure(8.5, 5.5)
    colors = _colors(list(by_method))
    for label, pts in points.items():
        if pts:
            ax.scatter(*zip(*pts), s=22, alpha=0.75, color=colors[label], label=label)
    ax.set_xlabel("intruder dimensions, summed over linear layers (top-k singular vectors, cos < eps)")
    ax.set_ylabel("mean forgetting on other tasks (points)")
    ax.set_title("Intruder dimensions vs forgetting (one dot per run)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize=7.5, frameon=False)
    return _save(fig, path)


def write_method_plots(groups: list[Group], out: Path) -> dict[str, Path]:
    """name -> PNG of the method plots that apply to these groups."""
    made = {"method_frontiers": plot_method_frontiers(groups, out / PLOT_FILES["method_frontiers"]),
            "intruders_forgetting": plot_intruders_forgetting(groups, out / PLOT_FILES["intruders_forgetting"])}
    return {name: path for name, path in made.items() if path is not None}
