"""The report's view of `forgetlab-interpolate` (and `diagnostics.interpolate`): for every run with an
interpolation.json, its curve theta0 + alpha (theta - theta0) drawn on the learning-forgetting axes (target
gain against mean forgetting, seeds averaged per group), and a table of the best alpha under each forgetting
budget. Reads files only (no torch)."""

from __future__ import annotations

import statistics
from pathlib import Path

from forgetlab.report.collect import Run
from forgetlab.report.plots import _figure, _save
from forgetlab.run_dirs import INTERPOLATION_FILE, read_json_or_none

PLOT_FILE = "interpolation_curve.png"
TITLE = "Weight interpolation"
EXPLAIN = ("forgetlab-interpolate RUN_DIR (or diagnostics.interpolate in the run): every task rescored at "
           "theta0 + alpha (theta - theta0), 0 = the starting model, 1 = the run as trained (peft runs: the "
           "adapter's contribution scaled by alpha); the best alpha is the one with the highest target gain whose "
           "mean forgetting fits the budget. Continual runs: the last stage's curve, against stage 0.")
HEADERS = ["run", "strategy", "method", "budget", "best alpha", "target gain", "mean forgetting"]


def load_interpolations(runs: list[Run]) -> list[tuple[Run, dict]]:
    """(run, interpolation.json) for every completed run that has a readable one."""
    found = [(r, read_json_or_none(r.path / INTERPOLATION_FILE)) for r in runs if r.ok]
    return [(r, data) for r, data in found if isinstance(data, dict) and data.get("results")]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def interpolation_table(interpolations: list[tuple[Run, dict]]) -> tuple[list[str], list[list[str]]]:
    """One row per run and budget: the best alpha (or `none`: no alpha fits) with its gain and forgetting."""
    rows = []
    for run, data in interpolations:
        for b in data.get("best_under_budgets") or []:
            alpha = b.get("alpha")
            rows.append([run.display, str(data.get("strategy", "")), str(data.get("method", "")),
                         f"{b['budget']:g}", "none" if alpha is None else f"{alpha:g}", _num(b.get("target_gain")),
                         _num(b.get("mean_forgetting"))])
    return HEADERS, rows


def interpolation_series(interpolations: list[tuple[Run, dict]], labels: dict[str, str] | None = None
                         ) -> dict[str, dict[float, tuple[float, float]]]:
    """label -> alpha -> mean (mean forgetting, target gain) over the label's runs (`labels`: run path -> its
    report group, so seeds are averaged; else the run's own folder)."""
    points: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for run, data in interpolations:
        label = (labels or {}).get(str(run.path), run.display)
        for r in data["results"]:
            points.setdefault(label, {}).setdefault(float(r["alpha"]), []).append(
                (r["mean_forgetting"], r["target_gain"]))
    return {label: {a: (statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts))
                    for a, pts in sorted(by_alpha.items())} for label, by_alpha in points.items()}


def plot_interpolation(interpolations: list[tuple[Run, dict]], path: Path,
                       labels: dict[str, str] | None = None) -> Path:
    """Each group's interpolation curve on the learning-forgetting axes, alpha written at its ends; the run
    as trained (alpha 1) is the filled square."""
    from matplotlib import colormaps

    series = interpolation_series(interpolations, labels)
    fig, (ax,) = _figure(9.0, 6.0)
    cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
    for i, (label, curve) in enumerate(series.items()):
        color = cmap(i % cmap.N)
        alphas = list(curve)
        xs, ys = [curve[a][0] for a in alphas], [curve[a][1] for a in alphas]
        ax.plot(xs, ys, marker="o", ms=3, color=color, label=label)
        for a in (alphas[0], alphas[-1]):
            ax.annotate(f"{a:g}", curve[a], textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
        if 1.0 in curve:
            ax.plot(*curve[1.0], marker="s", ms=7, color=color)
    ax.set_xlabel("mean forgetting (points, lower is better)")
    ax.set_ylabel("target gain (points)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{TITLE}: theta0 + alpha (theta - theta0), mean over seeds (square: alpha 1, the run)",
                 fontsize=10)
    if series:
        ax.legend(fontsize=7, frameon=False, loc="best")
    return _save(fig, path)
