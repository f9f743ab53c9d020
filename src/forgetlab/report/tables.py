"""Tables of groups and runs as Markdown and CSV: the numbers behind the plots, in a form that diffs and
pastes into a paper or an issue."""

from __future__ import annotations

import csv
from pathlib import Path

from forgetlab.report.aggregate import Group, Stat, group_of
from forgetlab.report.collect import Run
from forgetlab.report.forgotten import GroupForgotten, markdown_section

# (key in Group.stats, column title, decimals)
METRICS = [
    ("target_gain", "target gain", 2),
    ("mean_forgetting", "mean forgetting", 2),
    ("mean_loss_increase", "mean loss increase", 4),
    ("trainable_pct", "trainable %", 2),
    ("tokens_per_s", "tokens/s", 0),
    ("train_wall_time_s", "train wall time (s)", 1),
]
# Columns only some runs have (continual sequences, a forgetting budget): shown when a group has a value.
OPTIONAL_METRICS = [
    ("backward_transfer", "BWT", 2),
    ("forward_transfer", "FWT", 2),
    ("forgetting_chaudhry", "forgetting (continual)", 2),
    ("selected_step", "selected step", 0),
    ("selected_target_gain", "selected: target gain", 2),
    ("selected_mean_forgetting", "selected: mean forgetting", 2),
    ("intruders", "intruder dims", 1),
]
TASK_DECIMALS = 2
BUDGET_EXPLAIN = ("Per budget (mean forgetting on the old tasks, validation, points): the target's validation score "
                  "at the best periodic-evaluation step whose forgetting is within it, mean ± std over the group's "
                  "runs, with the mean step. Runs with `select.max_forgetting` kept that step's checkpoint and scored "
                  "it on the test split: the `selected` columns of the group table. `none within budget`: no "
                  "trained step fits, only the starting point does (step 0, before training).")
NONE_WITHIN_BUDGET = "none within budget"
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


def shown_metrics(groups: list[Group]) -> list[tuple[str, str, int]]:
    """METRICS, then the optional columns some group has a value for."""
    return METRICS + [m for m in OPTIONAL_METRICS if any(g.stats[m[0]].n for g in groups)]


def all_budgets(groups: list[Group]) -> list[str]:
    return sorted({b for g in groups for b in g.budget_scores}, key=float)


def group_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """Headers and display rows, one row per group."""
    tasks, metrics = all_tasks(groups), shown_metrics(groups)
    headers = ["group", "strategy", "n", *[title for _, title, _ in metrics], *[f"forgetting: {t}" for t in tasks]]
    rows = []
    for g in groups:
        row = [g.label, g.strategy, str(g.n)]
        row += [fmt_stat(g.stats[name], dec, g.n) for name, _, dec in metrics]
        row += [fmt_stat(g.task_forgetting[t], TASK_DECIMALS, g.n) if t in g.task_forgetting else "" for t in tasks]
        rows.append(row)
    return headers, rows


def budget_cell(score: Stat | None, step: Stat | None, n_total: int) -> str:
    """'score ± std (step s)'; NONE_WITHIN_BUDGET when every run's best step is its starting point (step 0,
    before any training: it forgets nothing, so it always fits, and its score is not one training reached)."""
    text = fmt_stat(score, 2, n_total) if score else ""
    if not text or step is None or step.mean is None:
        return text
    if step.mean == 0:  # steps are >= 0: a mean of 0 is step 0 in every run
        return NONE_WITHIN_BUDGET
    return f"{text} (step {step.mean:g})"


def budget_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """One row per group with a history: 'score ± std (step s)' per budget."""
    budgets = all_budgets(groups)
    headers = ["group", "n", *[f"forgetting ≤ {b}" for b in budgets]]
    rows = []
    for g in groups:
        if not g.budget_scores:
            continue
        cells = [budget_cell(g.budget_scores.get(b), g.budget_steps.get(b), g.n) for b in budgets]
        rows.append([g.label, str(g.n), *cells])
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


LM_EVAL_EXPLAIN = ("lm-evaluation-harness tasks (lm_eval.tasks) scored on the model before and after fine-tuning, "
                   "in the harness's own units: before → after, and forgetting = before - after (mean ± std).")


def all_lm_eval(groups: list[Group]) -> list[str]:
    return sorted({k for g in groups for k in g.lm_eval})


def lm_eval_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """One row per group with lm-eval results: 'before → after (forgetting)' per task/metric."""
    keys = all_lm_eval(groups)
    rows = []
    for g in groups:
        if not g.lm_eval:
            continue
        cells = []
        for k in keys:
            s = g.lm_eval.get(k)
            cells.append("" if s is None else f"{fmt_stat(s['before'], 3)} → {fmt_stat(s['after'], 3)} "
                                              f"({fmt_stat(s['forgetting'], 3)})")
        rows.append([g.label, str(g.n), *cells])
    return ["group", "n", *keys], rows


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
                   sources: list[str], repair: tuple[list[str], list[list[str]]] | None = None,
                   sections: list[tuple[str, str, tuple[list[str], list[list[str]]]]] = (),
                   forgotten: list[GroupForgotten] | None = None) -> Path:
    """`sections`: more (title, explanation, table) after the repair's, e.g. weight interpolation."""
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
        *(["## Best step under forgetting budgets", "", BUDGET_EXPLAIN, "", markdown_table(*budget_table(groups)), ""]
          if all_budgets(groups) else []),
        *(["## lm-evaluation-harness", "", LM_EVAL_EXPLAIN, "", markdown_table(*lm_eval_table(groups)), ""]
          if all_lm_eval(groups) else []),
        *markdown_section(forgotten or [], markdown_table),  # report/forgotten.py
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
    for title, explain, table in sections:
        parts += [f"## {title}", "", explain, "", markdown_table(*table), ""]
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{name}]({p.name})\n" for name, p in plots.items()]
    path.write_text("\n".join(parts))
    return path


def write_csv(path: Path, groups: list[Group]) -> Path:
    """One row per group; every statistic as its own mean and std column, so it loads without parsing."""
    fixed = ("group", "group_overrides", "strategy", "n")   # a key of the same name is in group_overrides
    keys = sorted({k for g in groups for k in g.key} - set(fixed))
    tasks, metrics, budgets = all_tasks(groups), shown_metrics(groups), all_budgets(groups)
    lm_eval = all_lm_eval(groups)
    headers = [*fixed[:2], *keys, *fixed[2:]]
    for name, _, _ in metrics:
        headers += [f"{name}_mean", f"{name}_std"]
    for t in tasks:
        headers += [f"forgetting_{t}_mean", f"forgetting_{t}_std"]
    for b in budgets:
        headers += [f"budget_{b}_target_mean", f"budget_{b}_target_std", f"budget_{b}_step_mean", f"budget_{b}_step_std"]
    for k in lm_eval:
        headers += [f"lm_eval_{k}_{part}_{s}" for part in ("before", "after", "forgetting") for s in ("mean", "std")]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        for g in groups:
            none = Stat(None, None, 0)
            stats = [g.stats[name] for name, _, _ in metrics] + [g.task_forgetting.get(t, none) for t in tasks]
            stats += [s for b in budgets for s in (g.budget_scores.get(b, none), g.budget_steps.get(b, none))]
            stats += [(g.lm_eval.get(k) or {}).get(part, none) for k in lm_eval for part in ("before", "after",
                                                                                             "forgetting")]
            row = [g.label, g.overrides, *[g.key.get(k, "") for k in keys], g.strategy, g.n]
            for s in stats:
                row += ["" if s.mean is None else repr(s.mean), "" if s.std is None else repr(s.std)]
            writer.writerow(row)
    return path
