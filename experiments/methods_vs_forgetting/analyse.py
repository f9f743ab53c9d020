"""The study's question in numbers: which methods forget less than full fine-tuning *at the same gain*?

Reads the runs below the given sweep folders (forgetlab's report API), groups them by strategy preset and
learning rate, and places every group on full fine-tuning's learning-forgetting curve (its group means joined
in order of gain, from the starting model at gain 0 and forgetting 0: forgetlab.report.excess). Excess = the group's mean forgetting minus full fine-tuning's at
that gain, with the spread of the same number per seed; a method *beats* the curve at an lr where the excess
is negative by more than that spread, and is *within noise* where the spread covers zero. Interpolation
(interpolation.json of the full and LoRA runs) is placed on the same curve, alpha by alpha. The real
checkpoint's sweeps (--stories) get the same treatment against full fine-tuning's runs there.

    python experiments/methods_vs_forgetting/analyse.py outputs/sweeps/methods_* \
        --stories outputs/sweeps/stories_methods_* --out experiments/methods_vs_forgetting/analysis.md \
        --plot experiments/methods_vs_forgetting/methods_vs_full.png
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from forgetlab.report import excess
from forgetlab.report.collect import Run, collect_runs
from forgetlab.run_dirs import INTERPOLATION_FILE, read_json_or_none

LR_KEY = "strategy.optim.lr"
LOSS_NOTE = ("Task and held-out story loss (nats per token; exact match needs the answer *and* its end of sequence, "
             "which llama2.c never trained, so the task loss shows learning the headline misses):")
REFERENCE = "full"


def lr_of(run: Run) -> float:
    return float(run.params.get(LR_KEY, "nan"))


NOT_METHOD = {LR_KEY, "seed", "experiment", "strategy", "sweep_name", "diagnostics.interpolate"}


def short(value: str) -> str:
    try:
        return f"{float(value):g}"
    except ValueError:
        return value


def method_label(run: Run) -> str:
    """The strategy preset, with any other setting its sweep changed (`ewc lam=1e4`)."""
    extra = [f"{k.rsplit('.', 1)[-1]}={short(v)}" for k, v in sorted(run.params.items()) if k not in NOT_METHOD]
    return " ".join([run.get("strategy"), *extra])


def by_method_lr(runs: list[Run]) -> dict[tuple[str, float], list[Run]]:
    """(method label, lr) -> its completed runs (one per seed)."""
    groups: dict[tuple[str, float], list[Run]] = defaultdict(list)
    for run in runs:
        if run.ok:
            groups[(method_label(run), lr_of(run))].append(run)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0] != REFERENCE, kv[0][0], kv[0][1])))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pm(values: list[float], digits: int = 1) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def point(runs: list[Run], gain_of, forgetting_of) -> tuple[list[float], list[float]]:
    return [gain_of(r) for r in runs], [forgetting_of(r) for r in runs]


def placed(curve, gains: list[float], forgettings: list[float]) -> tuple[float | None, float | None, int]:
    """(excess of the mean point, std of the per-seed excesses, seeds inside the reference's range)."""
    mean_excess = excess.excess_forgetting(curve, statistics.fmean(gains), statistics.fmean(forgettings))
    per_seed = [e for g, f in zip(gains, forgettings) if (e := excess.excess_forgetting(curve, g, f)) is not None]
    return mean_excess, (statistics.stdev(per_seed) if len(per_seed) > 1 else None), len(per_seed)


def verdict(mean_excess: float | None, spread: float | None) -> str:
    if mean_excess is None:
        return "outside full's range"
    if spread is None:
        return "beats" if mean_excess < 0 else "worse"
    if abs(mean_excess) <= spread:
        return "within noise"
    return "**beats**" if mean_excess < 0 else "worse"


def extra(runs: list[Run]) -> str:
    """What a method reports about itself: SDFT's rewrites, the trainable share of the weights."""
    sdft = [r.get("sdft") for r in runs if r.get("sdft")]
    parts = []
    if sdft:
        parts.append(f"rewritten {sum(s['rewritten'] for s in sdft)}/{sum(s['total'] for s in sdft)}")
    frac = [r.get("trainable_fraction") for r in runs if r.get("trainable_fraction") is not None]
    if frac:
        share = statistics.fmean(frac)
        parts.append("trains all weights" if share > 0.995 else f"trains {100 * share:.2g}%")
    return ", ".join(parts)


def method_table(groups, curve, gain_of, forgetting_of) -> tuple[list[str], dict[str, list[tuple]]]:
    """Markdown rows, one per (method, lr), and per method its (lr, excess, spread, verdict)."""
    header = ("| method | lr | seeds | gain | forgetting | full FT at that gain | excess (± per-seed std) | verdict | "
              "full FT at that lr: gain / forgetting | notes |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    per_method: dict[str, list[tuple]] = defaultdict(list)
    same_lr = {lr: runs for (m, lr), runs in groups.items() if m == REFERENCE}
    for (method, lr), runs in groups.items():
        gains, forgettings = point(runs, gain_of, forgetting_of)
        ref = excess.forgetting_at_gain(curve, statistics.fmean(gains))
        mean_excess, spread, inside = placed(curve, gains, forgettings)
        v = ("reference" if method == REFERENCE else "no gain" if statistics.fmean(gains) < 1
             else verdict(mean_excess, spread))
        full_gains, full_forgettings = point(same_lr.get(lr, []), gain_of, forgetting_of)
        at_lr = (f"{statistics.fmean(full_gains):.1f} / {statistics.fmean(full_forgettings):.1f}"
                 if full_gains and method != REFERENCE else "")
        per_method[method].append((lr, mean_excess, spread, v))
        spread_txt = "" if spread is None else f" ± {spread:.1f}" + ("" if inside == len(runs) else f" ({inside} seeds)")
        placed_txt = "—" if method == REFERENCE else f"{fmt(mean_excess)}{spread_txt if mean_excess is not None else ''}"
        lines.append(f"| {method} | {lr:g} | {len(runs)} | {pm(gains)} | {pm(forgettings)} | {fmt(ref)} | "
                     f"{placed_txt} | {v} | {at_lr} | {extra(runs)} |")
    return lines, per_method


def interpolation_rows(groups, curve) -> list[str]:
    """Every full / LoRA group's interpolation curve, alpha by alpha (seed means), placed on full's curve."""
    lines = ["| run | lr | alpha | gain | forgetting | full FT at that gain | excess |", "|---|---|---|---|---|---|---|"]
    for (method, lr), runs in groups.items():
        files = [read_json_or_none(r.path / INTERPOLATION_FILE) for r in runs]
        files = [f for f in files if isinstance(f, dict) and f.get("results")]
        if not files:
            continue
        alphas = sorted({float(r["alpha"]) for f in files for r in f["results"]})
        for alpha in alphas:
            rows = [r for f in files for r in f["results"] if float(r["alpha"]) == alpha]
            gain = statistics.fmean(r["target_gain"] for r in rows)
            forgetting = statistics.fmean(r["mean_forgetting"] for r in rows)
            ref = excess.forgetting_at_gain(curve, gain)
            lines.append(f"| {method} | {lr:g} | {alpha:g} | {gain:.1f} | {forgetting:.1f} | {fmt(ref)} | "
                         f"{fmt(None if ref is None else forgetting - ref)} |")
    return lines


def summary(per_method: dict[str, list[tuple]]) -> list[str]:
    """One line per method: its best excess over the learning rates placed on the curve."""
    lines = [("| method | best excess (lr) | lrs that beat full's curve | within noise | worse | outside range | "
             "no gain |"), "|---|---|---|---|---|---|---|"]
    for method, points in per_method.items():
        if method == REFERENCE:
            continue
        inside = [p for p in points if p[1] is not None and p[3] != "no gain"]
        best = min(inside, key=lambda p: p[1]) if inside else None
        count = {k: ", ".join(f"{p[0]:g}" for p in points if p[3].strip("*") == k) or "-"
                 for k in ("beats", "within noise", "worse", "outside full's range", "no gain")}
        best_txt = "n/a" if best is None else f"{best[1]:+.1f} ({best[0]:g})"
        cells = [method, best_txt, *count.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def reference(groups, gain_of, forgetting_of) -> list[tuple[float, float]]:
    """Full fine-tuning's curve: its group means per lr, and the starting model (gain 0, forgetting 0), which
    is full fine-tuning's lr -> 0 end, so points below its lowest lr are placed too."""
    means = [(statistics.fmean(map(gain_of, runs)), statistics.fmean(map(forgetting_of, runs)))
             for (m, _), runs in groups.items() if m == REFERENCE]
    return excess.reference_curve([(0.0, 0.0), *means])


def story_forgetting(base_task: str):
    """Forgetting on the held-out story text: the drop of its score (100 / perplexity) and its loss increase."""
    return (lambda r: r.get("forgetting")[base_task]), (lambda r: r.get("loss_increase")[base_task])


def plot(groups, path: Path) -> None:
    """Every method's group means on the learning-forgetting axes, full fine-tuning's curve and the
    interpolation curves of full fine-tuning and LoRA (dashed, one per lr)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    methods = sorted({m for m, _ in groups}, key=lambda m: (m != REFERENCE, m))
    cmap = plt.get_cmap("tab20")
    for i, method in enumerate(methods):
        pts = [(statistics.fmean(r.get("mean_forgetting") for r in runs),
                statistics.fmean(r.get("target_gain") for r in runs)) for (m, _), runs in groups.items() if m == method]
        style = ({"color": "black", "lw": 2.5, "marker": "s"} if method == REFERENCE
                 else {"color": cmap(i), "lw": 1, "marker": "o"})
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=method, **style)
        for (m, lr), runs in groups.items():
            if m != method:
                continue
            files = [f for r in runs if isinstance(f := read_json_or_none(r.path / INTERPOLATION_FILE), dict)]
            by_alpha = defaultdict(list)
            for f in files:
                for row in f.get("results", []):
                    by_alpha[float(row["alpha"])].append((row["mean_forgetting"], row["target_gain"]))
            if by_alpha:
                curve = [tuple(map(statistics.fmean, zip(*by_alpha[a]))) for a in sorted(by_alpha)]
                ax.plot([c[0] for c in curve], [c[1] for c in curve], "--", color=style["color"], lw=0.9, alpha=0.6)
    ax.set_xlabel("mean forgetting on the base tasks (points, lower is better)")
    ax.set_ylabel("target gain (points, higher is better)")
    ax.set_title("Methods against full fine-tuning (means over 3 seeds, one marker per lr);\n"
                 "dashed: weight interpolation alpha 0..1 of the full and LoRA runs", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="the built-in default's sweep folders")
    parser.add_argument("--stories", nargs="*", type=Path, default=[], help="the stories260K sweep folders")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here (markdown)")
    parser.add_argument("--plot", type=Path, default=None, help="draw the default's methods here (png)")
    args = parser.parse_args()

    groups = by_method_lr(collect_runs(args.sweeps))
    if not any(m == REFERENCE for m, _ in groups):
        raise SystemExit(f"no {REFERENCE!r} runs under {', '.join(map(str, args.sweeps))}")
    gain, forgetting = (lambda r: r.get("target_gain")), (lambda r: r.get("mean_forgetting"))
    curve = reference(groups, gain, forgetting)
    table, per_method = method_table(groups, curve, gain, forgetting)
    out = ["## Built-in default: every method against full fine-tuning's curve", "",
           f"Full fine-tuning's curve spans gains {curve[0][0]:.1f}–{curve[-1][0]:.1f}.", "",
           *summary(per_method), "", *table, "", "## Weight interpolation (alpha 0 = the starting model)", "",
           *interpolation_rows(groups, curve)]
    if args.stories:
        s_groups = by_method_lr(collect_runs(args.stories))
        first = next(iter(s_groups.values()))[0]
        base_task = next(iter(first.get("forgetting")))
        s_forgetting, s_loss = story_forgetting(base_task)
        s_curve = reference(s_groups, gain, s_forgetting)
        s_table, s_per_method = method_table(s_groups, s_curve, gain, s_forgetting)
        target = first.get("target")
        loss_lines = [f"| method | lr | `{target}` loss before | after | story loss before | after | increase |",
                      "|---|---|---|---|---|---|---|"]
        for (method, lr), runs in s_groups.items():
            losses = [pm([r.get(when)[task]["loss"] for r in runs], 2)
                      for task in (target, base_task) for when in ("before", "after")]
            loss_lines.append(f"| {method} | {lr:g} | {' | '.join(losses)} | {pm(list(map(s_loss, runs)), 2)} |")
        out += ["", f"## stories260K: forgetting = drop of the held-out `{base_task}` score (100 / perplexity)", "",
                *summary(s_per_method), "", *s_table, "", LOSS_NOTE, "", *loss_lines,
                "", "Interpolation on stories260K:", "", *interpolation_rows(s_groups, s_curve)]
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.plot:
        plot(groups, args.plot)


if __name__ == "__main__":
    main()
