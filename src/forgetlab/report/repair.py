"""The report's view of `forgetlab-repair`: for every run with a repair.json, gain and forgetting per lambda
(the intruder singular values scaled by lambda) as a table and one plot, and the best lambda under the
forgetting budget the repair was run with. Reads files only (no torch)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from forgetlab.report.collect import Run
from forgetlab.run_dirs import REPAIR_FILE, read_json_or_none

PLOT_FILE = "repair_curve.png"
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


def plot_repair(repairs: list[tuple[Run, dict]], path: Path) -> Path:
    """Target gain and mean forgetting against lambda, one line per run; the best lambda circled."""
    fig = Figure(figsize=(11, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for run, rep in repairs:
        points = sorted(rep["results"], key=lambda r: r["lambda"])
        lams = [r["lambda"] for r in points]
        best = (rep.get("best") or {}).get("lambda")
        for ax, key in zip(axes, ("target_gain", "mean_forgetting")):
            line, = ax.plot(lams, [r[key] for r in points], marker="o", ms=3, label=run.display)
            if best is not None:
                ax.scatter([best], [next(r[key] for r in points if r["lambda"] == best)], s=90,
                           facecolors="none", edgecolors=line.get_color(), zorder=3)
    axes[0].set_ylabel("target gain (points)")
    axes[1].set_ylabel("mean forgetting (points)")
    for ax in axes:
        ax.set_xlabel("lambda (scale of the intruder singular values; 1 = the run as trained)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Intruder repair: circled = best lambda within the forgetting budget", fontsize=10)
    fig.savefig(path, format="png")
    return path
