"""The report's view of `forgetlab-repair`: for every run with a repair.json, gain and forgetting per lambda
(the intruder singular values scaled by lambda) as a table and one plot, and the best lambda under the
forgetting budget the repair was run with. Reads files only (no torch)."""

from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from forgetlab.report.collect import Run
from forgetlab.run_dirs import REPAIR_FILE, read_json_or_none

PLOT_FILE = "repair_curve.png"
MAX_LINES = 12  # more groups than this: only those the repair changed are drawn
HEADERS = ["run", "strategy", "lambda", "target gain", "mean forgetting", "intruders", "best within budget"]


def load_repairs(runs: list[Run]) -> list[tuple[Run, dict]]:
    """(run, repair.json) for every completed run that has a readable one."""
    found = [(r, read_json_or_none(r.path / REPAIR_FILE)) for r in runs if r.ok]
    return [(r, rep) for r, rep in found if isinstance(rep, dict) and rep.get("results")]


def repair_table(repairs: list[tuple[Run, dict]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for run, rep in repairs:
        best = (rep.get("best") or {}).get("lambda")
        for r in rep["results"]:
            mark = f"yes (budget {rep.get('budget'):g})" if best is not None and r["lambda"] == best else ""
            rows.append([run.display, str(rep.get("strategy", "")), f"{r['lambda']:g}", f"{r['target_gain']:.2f}",
                         f"{r['mean_forgetting']:.2f}", str(r.get("intruders", "")), mark])
    return HEADERS, rows


def repair_series(repairs: list[tuple[Run, dict]], labels: dict[str, str] | None = None
                  ) -> dict[str, dict[float, tuple[float, float]]]:
    """label -> lambda -> mean (target gain, mean forgetting) over the label's runs. A run is labelled by its
    report group (`labels`: run path -> group label), so seeds are averaged, else by its own folder; lambda 1
    (the run as trained) comes from the run's own numbers when the repair did not score it."""
    points: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for run, rep in repairs:
        label = (labels or {}).get(str(run.path), run.display)
        per_lambda = {float(r["lambda"]): (r["target_gain"], r["mean_forgetting"]) for r in rep["results"]}
        if 1.0 not in per_lambda and isinstance(rep.get("run"), dict):
            per_lambda[1.0] = (rep["run"]["target_gain"], rep["run"]["mean_forgetting"])
        for lam, point in per_lambda.items():
            points.setdefault(label, {}).setdefault(lam, []).append(point)
    return {label: {lam: (statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts))
                    for lam, pts in sorted(by_lam.items())} for label, by_lam in points.items()}


def plot_repair(repairs: list[tuple[Run, dict]], path: Path, labels: dict[str, str] | None = None) -> Path:
    """Target gain and mean forgetting against lambda, one line per group (seeds averaged) or run. With many,
    only those the repair changed by at least a point are drawn; the title says how many were left out."""
    series = repair_series(repairs, labels)

    def change(curve: dict[float, tuple[float, float]]) -> float:
        ref = curve.get(1.0) or next(iter(curve.values()))
        return max(max(abs(g - ref[0]), abs(f - ref[1])) for g, f in curve.values())

    shown = series if len(series) <= MAX_LINES else {k: v for k, v in series.items() if change(v) >= 1.0}
    fig = Figure(figsize=(13 if len(shown) > 6 else 11, 4.5 + 0.12 * max(len(shown) - 12, 0)), dpi=110,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    cmap = colormaps["tab10" if len(shown) <= 10 else "tab20"]
    for i, (label, curve) in enumerate(shown.items()):
        lams = list(curve)
        for ax, j in zip(axes, (0, 1)):
            ax.plot(lams, [curve[lam][j] for lam in lams], marker="o", ms=3, color=cmap(i % cmap.N), label=label)
    axes[0].set_ylabel("target gain (points)")
    axes[1].set_ylabel("mean forgetting (points)")
    for ax in axes:
        ax.set_xlabel("lambda (scale of the intruder singular values; 1 = as trained)")
        ax.grid(alpha=0.3)
    if shown:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=7, frameon=False)
    left_out = len(series) - len(shown)
    fig.suptitle("Intruder repair, mean over seeds (best lambda per run: the table)"
                 + (f"; {left_out} groups the repair changed by < 1 point not drawn" if left_out else ""),
                 fontsize=10)
    fig.savefig(path, format="png")
    return path
