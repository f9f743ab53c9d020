"""One self-contained HTML page (tables + plots embedded as base64), so a report can be mailed, attached
to an issue or opened from a laptop without the PNGs beside it."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from forgetlab.report.aggregate import Group
from forgetlab.report.collect import Run
from forgetlab.report.forgotten import GroupForgotten, html_section
from forgetlab.report.tables import (
    BUDGET_EXPLAIN,
    EXPLAIN,
    LM_EVAL_EXPLAIN,
    REPAIR_EXPLAIN,
    all_budgets,
    all_lm_eval,
    budget_table,
    failed_table,
    group_table,
    lm_eval_table,
    run_table,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85em; background: #f6f6f6; padding: 0.1em 0.3em; word-break: break-all; }
tr.failed td { background: #fff3f3; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
"""


def _table(headers: list[str], rows: list[list[str]], code_columns: tuple[str, ...] = (),
           row_class: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for h, value in zip(headers, row):
            if h in code_columns and value:
                cells.append(f"<td><code>{escape(value)}</code></td>")
            else:
                numeric = value[:1].isdigit() or value[:1] == "-" and value[1:2].isdigit()
                cells.append(f"<td{' class=num' if numeric else ''}>{escape(value)}</td>")
        body.append(f"<tr{f' class={row_class}' if row_class else ''}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_html(path: Path, groups: list[Group], runs: list[Run], plots: dict[str, Path],
               sources: list[str], repair: tuple[list[str], list[list[str]]] | None = None,
               sections: list[tuple[str, str, tuple[list[str], list[list[str]]]]] = (),
               forgotten: list[GroupForgotten] | None = None) -> Path:
    done = sum(r.ok for r in runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>forgetlab report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>forgetlab report</h1>",
        f"<p>Runs found: {len(runs)} ({done} completed, {len(runs) - done} failed or incomplete) under: "
        + ", ".join(f"<code>{escape(s)}</code>" for s in sources) + "</p>",
        f"<p>{escape(EXPLAIN)}</p>",
        "<h2>Groups</h2>",
        _table(*group_table(groups)) if groups else "<p><em>No completed runs.</em></p>",
    ]
    if all_budgets(groups):
        parts += ["<h2>Best step under forgetting budgets</h2>", f"<p>{escape(BUDGET_EXPLAIN)}</p>",
                  _table(*budget_table(groups))]
    if all_lm_eval(groups):
        parts += ["<h2>lm-evaluation-harness</h2>", f"<p>{escape(LM_EVAL_EXPLAIN)}</p>", _table(*lm_eval_table(groups))]
    parts += html_section(forgotten or [], _table)  # report/forgotten.py
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, png in plots.items():
            parts.append(f'<h3>{escape(name.replace("_", " "))}</h3>'
                         f'<img alt="{escape(name)}" src="{embed_png(png)}">')
    parts += [
        "<h2>Runs</h2>",
        "<p>Each run with the command that reproduces it.</p>",
        _table(*run_table(runs, groups), code_columns=("command",)) if done else
        "<p><em>No completed runs.</em></p>",
        "<h2>Failed / incomplete runs</h2>",
        "<p>Listed apart and never averaged into the tables above.</p>",
        _table(*failed_table(runs), code_columns=("command",), row_class="failed") if done < len(runs) else
        "<p><em>None.</em></p>",
    ]
    if repair:
        parts += ["<h2>Intruder repair</h2>", f"<p>{escape(REPAIR_EXPLAIN)}</p>", _table(*repair)]
    for title, explain, table in sections:
        parts += [f"<h2>{escape(title)}</h2>", f"<p>{escape(explain)}</p>", _table(*table)]
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
