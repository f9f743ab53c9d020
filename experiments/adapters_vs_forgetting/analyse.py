"""The study's one question in numbers: at the same target gain, how much more does each method forget than
full fine-tuning, and does the intruder repair close the gap?

Reads the runs below the given sweep folders (forgetlab's report API), takes each method's group means over
seeds at every learning rate, and compares each with full fine-tuning's learning-forgetting curve (its
group means joined in order of gain, linearly interpolated; "n/a" outside the gains full fine-tuning
reached). The same is done for the repaired points of every run with a repair.json (lambda 0.5 and 0).

    python experiments/adapters_vs_forgetting/analyse.py outputs/sweeps/adapters_* \
        --out experiments/adapters_vs_forgetting/analysis.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from forgetlab.report import excess
from forgetlab.report.aggregate import group_runs
from forgetlab.report.collect import collect_runs
from forgetlab.report.method_plots import methods, run_intruders
from forgetlab.run_dirs import REPAIR_FILE, read_json_or_none


def reference_curve(groups) -> list[tuple[float, float]]:
    """(gain, forgetting) of the reference method's group means, in ascending gain."""
    return excess.reference_curve((g.stats["target_gain"].mean, g.stats["mean_forgetting"].mean) for g in groups)


def lowest_similarity(run) -> float | None:
    """Mean over the run's linear layers of the lowest |cos| between one of the fine-tuned matrix's top-k
    singular vectors and all of the pre-trained matrix's (1 = no new direction; < eps = an intruder): the
    continuous measure behind the intruder count."""
    per_matrix = ((run.get("weight_movement") or {}).get("spectral") or {}).get("per_matrix") or {}
    lows = [min(m["top_k_similarity"]) for m in per_matrix.values() if m.get("top_k_similarity")]
    return statistics.fmean(lows) if lows else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def repaired(group, lam: float) -> tuple[float, float] | None:
    """Mean (gain, forgetting) over the group's runs at repair lambda `lam`; None without repairs."""
    points = []
    for run in group.runs:
        rep = read_json_or_none(run.path / REPAIR_FILE) or {}
        hit = next((r for r in rep.get("results", []) if r["lambda"] == lam), None)
        if hit is not None:
            points.append((hit["target_gain"], hit["mean_forgetting"]))
    if not points:
        return None
    return statistics.fmean(p[0] for p in points), statistics.fmean(p[1] for p in points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--reference", default="full", help="method label of the reference curve")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args()
    by_method = methods(group_runs(collect_runs(args.sweeps)))
    if args.reference not in by_method:
        raise SystemExit(f"no method {args.reference!r} among: {', '.join(by_method)}")
    curve = reference_curve(by_method[args.reference])
    header = ["method", "lr", "n", "gain", "forgetting", "full FT at that gain", "excess", "intruders", "lowest |cos|",
              "λ=0.5: gain / forgetting / excess", "λ=0: gain / forgetting / excess"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, groups in by_method.items():
        for g in groups:
            gain, forgetting = g.stats["target_gain"].mean, g.stats["mean_forgetting"].mean
            ref = excess.forgetting_at_gain(curve, gain)
            intruders = [run_intruders(r) for r in g.runs if run_intruders(r) is not None]
            lows = [x for x in map(lowest_similarity, g.runs) if x is not None]
            cells = [label, g.key.get("strategy.optim.lr", "?"), str(g.n),
                     f"{gain:.1f} ± {g.stats['target_gain'].std or 0:.1f}",
                     f"{forgetting:.1f} ± {g.stats['mean_forgetting'].std or 0:.1f}", fmt(ref),
                     fmt(None if ref is None else forgetting - ref),
                     fmt(statistics.fmean(intruders) if intruders else None),
                     fmt(statistics.fmean(lows) if lows else None, 2)]
            for lam in (0.5, 0.0):
                point = repaired(g, lam)
                if point is None:
                    cells.append("")
                    continue
                ref_l = excess.forgetting_at_gain(curve, point[0])
                cells.append(f"{point[0]:.1f} / {point[1]:.1f} / {fmt(None if ref_l is None else point[1] - ref_l)}")
            lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
