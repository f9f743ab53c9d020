"""Console entry point: `forgetlab-report PATH... [--out DIR] [--wandb]`."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from forgetlab.report.aggregate import Group
from forgetlab.report.build import Report, build_report, default_out
from forgetlab.report.tables import fmt_stat


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="forgetlab-report",
        description="Compare forgetting across runs: reads every metrics.json below PATH (run dirs, sweep dirs,\n"
                    "whole output trees), groups runs by the overrides that vary (seeds are averaged) and\n"
                    "writes report.md, report.csv, PNG plots and a self-contained report.html.",
        epilog="Examples:\n  forgetlab-report outputs/sweeps/2024-05-01_10-00-00\n"
               "  forgetlab-report outputs/sweeps/A outputs/sweeps/B outputs/runs --out reports/ab --wandb\n"
               "Failed or incomplete runs are listed apart and never averaged. "
               "Exit status 1 when no run completed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run directories or folders holding runs")
    parser.add_argument("--out", default=None, help="output folder (default: <first PATH>/report)")
    parser.add_argument("--wandb", action="store_true", help="also log the tables, plots and each group's "
                                                              "generations before/after (a W&B Table) to W&B")
    return parser.parse_args(argv)


def groups_table(groups: list[Group]) -> Table:
    """A short terminal view: the full table is in report.md/html."""
    table = Table(title="groups: mean ± std over runs")
    table.add_column("group", no_wrap=True)
    for name in ("n", "target gain", "forgetting", "loss increase"):
        table.add_column(name, justify="right", no_wrap=True)
    for g in groups:
        table.add_row(g.label, str(g.n), fmt_stat(g.stats["target_gain"], 1), fmt_stat(g.stats["mean_forgetting"], 1),
                      fmt_stat(g.stats["mean_loss_increase"], 3))
    return table


def print_summary(report: Report, console: Console) -> None:
    if report.problems:
        console.print(f"[bold yellow]Failed / incomplete runs ({len(report.problems)}), not averaged:[/]")
        for run in report.problems:
            console.print(f"  {run.display}: {run.reason}", markup=False, highlight=False, soft_wrap=True)
    if report.groups:
        console.print(groups_table(report.groups))
    else:
        console.print("[bold red]No completed runs: the report lists only problems.[/]")
    console.print(f"Report: {report.html.resolve()}", markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    out = args.out or default_out(args.paths)
    report = build_report(args.paths, out)
    if not report.runs:
        console.print(f"[bold red]No runs found under: {', '.join(args.paths)}[/]")
    if args.wandb:
        from forgetlab.report.forgotten import generation_tables
        from forgetlab.report.wandb_log import log_report

        if log_report(report.out, report.files["csv"], report.plots, tables=generation_tables(report.groups)):
            console.print("Logged the report to W&B.")
    print_summary(report, console)
    return 0 if report.groups else 1


if __name__ == "__main__":
    sys.exit(main())
