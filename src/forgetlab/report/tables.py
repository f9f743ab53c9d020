"""Tables of groups and runs as Markdown and CSV: the numbers behind the plots, in a form that diffs and
pastes into a paper or an issue."""

from __future__ import annotations

import csv
from pathlib import Path

from forgetlab.report.aggregate import Group, Stat, group_of
from forgetlab.report.collect import Run

# (key in Group.stats, column title, decimals)
METRICS = [
    ("target_gain", "target gain", 2),
    ("mean_forgetting", "mean forgetting", 2),
    ("mean_loss_increase", "mean loss increase", 4),
    ("trainable_pct", "trainable %", 2),
    ("tokens_per_s", "tokens/s", 0),
    ("train_wall_time_s", "train wall time (s)", 1),
]
TASK_DECIMALS = 2
EXPLAIN = ("Values are mean ± sample std (n-1) over the runs of a group; a group differs from the others in the "
           "overrides named in its label (seeds are averaged; overrides at their default and the sweep name are named "
           "only where needed to tell groups apart; report.csv has every override). Forgetting = score before - "
           "score after (points, 0-100) on non-target tasks; target gain = after - before on the target task.")


def fmt_number(value: float | None, decimals: int = 2) -> str:
    return "" if value is None else f"{value:,.{decimals}f}".replace(",", "")


def fmt_stat(stat: Stat, decimals: int = 2, n_total: int | None = None) -> str:
    """'mean ± std', just 'mean' for one value, '' for none; '(n=k)' when some runs lacked the value."""
    if stat.mean is None:
        return ""
    text = fmt_number(stat.mean, decimals)
    if stat.std is not None:
        text += f" ± {fmt_number(stat.std, decimals)}"
    if n_total is not None and stat.n < n_total:
        text += f" (n={stat.n})"
    return text


def all_tasks(groups: list[Group]) -> list[str]:
    return sorted({t for g in groups for t in g.task_forgetting})


def group_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """Headers and display rows, one row per group."""
    tasks = all_tasks(groups)
    headers = ["group", "strategy", "n", *[title for _, title, _ in METRICS], *[f"forgetting: {t}" for t in tasks]]
    rows = []
    for g in groups:
        row = [g.label, g.strategy, str(g.n)]
        row += [fmt_stat(g.stats[name], dec, g.n) for name, _, dec in METRICS]
        row += [fmt_stat(g.task_forgetting[t], TASK_DECIMALS, g.n) if t in g.task_forgetting else "" for t in tasks]
        rows.append(row)
    return headers, rows


def run_table(runs: list[Run], groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """One row per completed run, with the command that reproduces it."""
    label = group_of(groups)
    headers = ["run", "group", "seed", "target gain", "mean forgetting", "command", "command from"]
    rows = [[r.display, label.get(str(r.path), ""), str(r.get("seed", "")),
             fmt_number(r.get("target_gain")), fmt_number(r.get("mean_forgetting")), r.command, r.command_source]
            for r in runs if r.ok]
    return headers, rows


def failed_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    headers = ["run", "status", "reason", "command"]
    return headers, [[r.display, r.status, r.reason, r.command] for r in runs if not r.ok]


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


REPAIR_EXPLAIN = ("forgetlab-repair RUN_DIR: every linear weight's intruder singular values scaled by lambda "
                  "(1 = the run as trained, 0 = removed), every task rescored; forgetting against the run's own "
                  "before-scores.")


def write_markdown(path: Path, groups: list[Group], runs: list[Run], plots: dict[str, Path],
                   sources: list[str], repair: tuple[list[str], list[list[str]]] | None = None) -> Path:
    done = sum(r.ok for r in runs)
    parts = [
        "# forgetlab report",
        "",
        f"Runs found: {len(runs)} ({done} completed, {len(runs) - done} failed or incomplete) under: "
        + ", ".join(f"`{s}`" for s in sources),
        "",
        EXPLAIN,
        "",
        "## Groups",
        "",
        markdown_table(*group_table(groups)) if groups else "_No completed runs._",
        "",
        "## Runs",
        "",
        markdown_table(*run_table(runs, groups)) if done else "_No completed runs._",
        "",
        "## Failed / incomplete runs",
        "",
        markdown_table(*failed_table(runs)) if done < len(runs) else "_None._",
        "",
    ]
    if repair:
        parts += ["## Intruder repair", "", REPAIR_EXPLAIN, "", markdown_table(*repair), ""]
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{name}]({p.name})\n" for name, p in plots.items()]
    path.write_text("\n".join(parts))
    return path


def write_csv(path: Path, groups: list[Group]) -> Path:
    """One row per group; every statistic as its own mean and std column, so it loads without parsing."""
    fixed = ("group", "group_overrides", "strategy", "n")   # a key of the same name is in group_overrides
    keys = sorted({k for g in groups for k in g.key} - set(fixed))
    tasks = all_tasks(groups)
    headers = [*fixed[:2], *keys, *fixed[2:]]
    for name, _, _ in METRICS:
        headers += [f"{name}_mean", f"{name}_std"]
    for t in tasks:
        headers += [f"forgetting_{t}_mean", f"forgetting_{t}_std"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        for g in groups:
            stats = [g.stats[name] for name, _, _ in METRICS] + [g.task_forgetting.get(t, Stat(None, None, 0))
                                                                  for t in tasks]
            row = [g.label, g.overrides, *[g.key.get(k, "") for k in keys], g.strategy, g.n]
            for s in stats:
                row += ["" if s.mean is None else repr(s.mean), "" if s.std is None else repr(s.std)]
            writer.writerow(row)
    return path
