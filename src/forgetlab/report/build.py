"""The whole report in one call: collect runs, group them, write tables, plots and the HTML page."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forgetlab.report import interpolation
from forgetlab.report.aggregate import Group, group_runs
from forgetlab.report.collect import Run, collect_runs
from forgetlab.report.forgotten import GroupForgotten, forgotten_sections
from forgetlab.report.html import write_html
from forgetlab.report.method_plots import write_method_plots
from forgetlab.report.plots import write_plots
from forgetlab.report.repair import PLOT_FILE as REPAIR_PLOT
from forgetlab.report.repair import load_repairs, plot_repair, repair_table
from forgetlab.report.run_plots import write_run_plots
from forgetlab.report.tables import write_csv, write_markdown
from forgetlab.run_dirs import shown


@dataclass
class Report:
    out: Path
    runs: list[Run]
    groups: list[Group]
    files: dict[str, Path] = field(default_factory=dict)   # markdown, csv, html and every plot
    forgotten: list[GroupForgotten] = field(default_factory=list)   # "what was forgotten", per group

    @property
    def html(self) -> Path:
        return self.files["html"]

    @property
    def plots(self) -> dict[str, Path]:
        return {k: v for k, v in self.files.items() if k not in ("markdown", "csv", "html")}

    @property
    def problems(self) -> list[Run]:
        return [r for r in self.runs if not r.ok]


def default_out(paths: list[str | Path]) -> Path:
    return Path(paths[0]) / "report"


def build_report(paths: list[str | Path], out: str | Path | None = None) -> Report:
    """Read every run below `paths` and write report.md, report.csv, report.html and PNGs into `out`."""
    out = Path(out) if out is not None else default_out(paths)
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(paths, exclude=[out])
    groups = group_runs(runs)
    plots = {**write_plots(groups, out), **write_method_plots(groups, out), **write_run_plots(groups, out)}
    repairs = load_repairs(runs)  # forgetlab-repair results, where runs have them
    repair = repair_table(repairs) if repairs else None
    if repairs:
        labels = {str(r.path): g.label for g in groups for r in g.runs}
        plots["repair_curve"] = plot_repair(repairs, out / REPAIR_PLOT, labels)
    sections = []
    interpolations = interpolation.load_interpolations(runs)  # forgetlab-interpolate / diagnostics.interpolate
    if interpolations:
        labels = {str(r.path): g.label for g in groups for r in g.runs}
        plots["interpolation_curve"] = interpolation.plot_interpolation(interpolations, out / interpolation.PLOT_FILE,
                                                                        labels)
        sections.append((interpolation.TITLE, interpolation.EXPLAIN, interpolation.interpolation_table(interpolations)))
    sources = [shown(p) for p in paths]  # relative to the working directory when below it
    forgotten = forgotten_sections(groups)  # from the runs' predictions files, where they have them
    files = {
        "markdown": write_markdown(out / "report.md", groups, runs, plots, sources, repair, sections,
                                   forgotten=forgotten),
        "csv": write_csv(out / "report.csv", groups),
        "html": write_html(out / "report.html", groups, runs, plots, sources, repair, sections,
                           forgotten=forgotten),
        **plots,
    }
    return Report(out=out, runs=runs, groups=groups, files=files, forgotten=forgotten)
