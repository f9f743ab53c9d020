"""Group completed runs by what differs between them (never by seed) and summarise each group.

Seeds are the repetitions a mean and a std are taken over; every other override that varies is part
of the question the sweep asks, so it defines a group.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from forgetlab.config.schema import SelectConfig
from forgetlab.evaluation.selection import best_under_budgets
from forgetlab.report.collect import Run

# Overrides that never define a group: repetitions (seed) and where/how things were written or logged.
IGNORED_KEYS = ("seed", "run_name", "threads")
# diagnostics.* only measure a finished run (intruder counts, the post-hoc repair): they never change it.
IGNORED_PREFIXES = ("paths.", "hydra.", "logger", "trainer.devices", "checkpoint_every_n_steps", "diagnostics.")
# Fields of metrics.json that must never be mixed inside one group, even if no override says so.
IDENTITY_FIELDS = ("strategy", "model", "target")
DEFAULT = "(default)"
# Budgets (mean forgetting points) the report marks the best step under, for runs that recorded none.
STANDARD_BUDGETS = tuple(SelectConfig().budgets)
# Overrides that may tell groups apart but say nothing about the method: left out of a group's display
# label unless two labels would otherwise be the same (the full key stays in Group.key / the CSV).
BOOKKEEPING_KEYS = ("sweep_name", "skip_completed", "optimized_metrics")
# Display names of well-known overrides; "" shows the bare value (`ewc lam=1e3`, not `strategy=ewc ...`).
SHORT_NAMES = {
    "strategy": "",
    "strategy.optim.lr": "lr",
    "strategy.penalty.alpha": "alpha",
    "strategy.penalty.lam": "lam",
    "strategy.params.peft.r": "r",
    "strategy.params.peft.lora_alpha": "lora_alpha",
    "strategy.params.target_modules": "targets",
    "tasks.target": "target",
    "sweep_name": "sweep",
}


@dataclass
class Stat:
    """Mean, sample std (n-1; None for a single value) and how many values went in."""

    mean: float | None
    std: float | None
    n: int


def mean_std(values: list[Any]) -> Stat:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]
    if not vals:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


@dataclass
class Group:
    label: str                      # short display label (display_labels); unique among the groups
    key: dict[str, str]             # the full group key: every varying override, defaults included
    runs: list[Run]
    stats: dict[str, Stat] = field(default_factory=dict)
    task_forgetting: dict[str, Stat] = field(default_factory=dict)
    before: dict[str, Stat] = field(default_factory=dict)   # task -> score before fine-tuning
    after: dict[str, Stat] = field(default_factory=dict)    # task -> score after fine-tuning
    curves: dict[str, list[tuple[int, Stat]]] = field(default_factory=dict)  # forgetting / target vs step
    # budget ("5") -> target score (validation) / step at the best step under that budget
    budget_scores: dict[str, Stat] = field(default_factory=dict)
    budget_steps: dict[str, Stat] = field(default_factory=dict)
    # lm-evaluation-harness "task/metric" -> {"before", "after", "forgetting"} (runs with lm_eval.tasks)
    lm_eval: dict[str, dict[str, Stat]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def overrides(self) -> str:
        """The full group key as `k=v,k=v` (what the label leaves out included)."""
        return full_label(self.key)

    @property
    def strategy(self) -> str:
        return ", ".join(sorted({str(r.get("strategy")) for r in self.runs}))


def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def _identity(run: Run, name: str) -> str:
    value = run.get(name)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def grouping_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value differs between runs, plus any identity field they would mix."""
    keys = sorted({k for r in runs for k in r.params if not _ignored(k)})
    varying = [k for k in keys if len({r.params.get(k, DEFAULT) for r in runs}) > 1]
    buckets: dict[tuple, list[Run]] = {}
    for r in runs:
        buckets.setdefault(tuple(r.params.get(k, DEFAULT) for k in varying), []).append(r)
    for name in IDENTITY_FIELDS:
        if name not in varying and any(len({_identity(r, name) for r in b}) > 1 for b in buckets.values()):
            varying.append(name)
    return varying


def run_key(run: Run, keys: list[str]) -> dict[str, str]:
    return {k: run.params[k] if k in run.params else
            (_identity(run, k) if k in IDENTITY_FIELDS else DEFAULT) for k in keys}


def full_label(key: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in key.items())


def fmt_value(value: str) -> str:
    """Numbers as the shorter of %g and a bare exponent form: 1000.0 -> 1e3, 0.0003 -> 3e-4, 0.01 -> 0.01."""
    try:
        number = float(value)
    except ValueError:
        return value
    if not math.isfinite(number) or "_" in value:
        return value
    general = f"{number:.12g}"
    mantissa, exponent = f"{number:.11e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{int(exponent)}"
    return scientific if len(scientific) < len(general) else general


def _item(key: str, value: str) -> str:
    name = SHORT_NAMES.get(key, key)
    value = value if value == DEFAULT else fmt_value(value)
    return f"{name}={value}" if name else value


def _droppable(key: str, value: str) -> bool:
    return value == DEFAULT or key in BOOKKEEPING_KEYS


def display_labels(keys: list[dict[str, str]]) -> list[str]:
    """Short, unique labels for group keys (all with the same key names, each key distinct).

    `(default)` entries and bookkeeping keys (sweep_name, ...) are left out and well-known names
    shortened (`strategy=ewc,strategy.penalty.lam=1000.0,sweep_name=s` -> `ewc lam=1e3`). Where that makes
    labels collide, the left-out keys whose values tell the colliding groups apart come back (defaults
    before bookkeeping, one key at a time); if the short forms still collide, those groups get their full key.
    """
    names = list(keys[0]) if keys else []
    order = sorted(names, key=lambda k: (k in BOOKKEEPING_KEYS, names.index(k)))
    shown = []
    for key in keys:
        keep = {k for k, v in key.items() if not _droppable(k, v)}
        if not keep:   # never an empty label: show the defaults, then the bookkeeping
            keep = {k for k, v in key.items() if k not in BOOKKEEPING_KEYS} or set(key)
        shown.append(keep)

    def render(i: int) -> str:
        return " ".join(_item(k, v) for k, v in keys[i].items() if k in shown[i])

    labels = [render(i) for i in range(len(keys))]
    for _ in range(len(names) + 1):
        clusters: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            clusters.setdefault(label, []).append(i)
        clashes = [members for members in clusters.values() if len(members) > 1]
        if not clashes:
            break
        for members in clashes:
            restore = next((k for k in order if len({keys[i][k] for i in members}) > 1
                            and not all(k in shown[i] for i in members)), None)
            for i in members:
                if restore is None:
                    labels[i] = full_label(keys[i])
                else:
                    shown[i].add(restore)
                    labels[i] = render(i)
    return labels


def _natural(value: str) -> tuple:
    """Sort '2' before '10' and numbers before words."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, re.sub(r"\d+", lambda m: m.group().zfill(12), value))


def _fraction_percent(run: Run) -> Any:
    frac = run.get("trainable_fraction")
    if frac is None and run.get("trainable_params") and run.get("total_params"):
        frac = run.get("trainable_params") / run.get("total_params")
    return frac * 100 if isinstance(frac, (int, float)) else None


def _section(run: Run, name: str, key: str) -> Any:
    return (run.get(name) or {}).get(key) if isinstance(run.get(name), dict) else None


# Table columns: name -> how to read the value from one run (continual and selected: None where absent).
RUN_VALUES = {
    "target_gain": lambda r: r.get("target_gain"),
    "mean_forgetting": lambda r: r.get("mean_forgetting"),
    "mean_loss_increase": lambda r: r.get("mean_loss_increase"),
    "trainable_pct": _fraction_percent,
    "tokens_per_s": lambda r: (r.get("timing") or {}).get("tokens_per_s"),
    "train_wall_time_s": lambda r: (r.get("timing") or {}).get("train_wall_time_s"),
    "backward_transfer": lambda r: _section(r, "continual", "backward_transfer"),
    "forward_transfer": lambda r: _section(r, "continual", "forward_transfer"),
    "forgetting_chaudhry": lambda r: _section(r, "continual", "forgetting_chaudhry"),
    "selected_step": lambda r: _section(r, "selected", "step"),
    "selected_target_gain": lambda r: (_section(r, "selected", "test_summary") or {}).get("target_gain"),
    "selected_mean_forgetting": lambda r: (_section(r, "selected", "test_summary") or {}).get("mean_forgetting"),
    "intruders": lambda r: ((_section(r, "weight_movement", "spectral") or {}).get("total") or {}).get("intruders"),
}


def lm_eval_values(run: Run, part: str) -> dict[str, float]:
    """A run's lm-eval numbers as "task/metric" -> value; part is before, after or forgetting."""
    section = _section(run, "lm_eval", part) or {}
    if part == "forgetting":
        return {k: v for k, v in section.items() if isinstance(v, (int, float))}
    return {f"{task}/{metric}": v for task, values in section.items() if isinstance(values, dict)
            for metric, v in values.items() if isinstance(v, (int, float))}


def _targets(run: Run) -> list[str]:
    target = run.get("target")
    return [target] if isinstance(target, str) else [str(t) for t in target or []]


def _score(scores: dict, task: str) -> float | None:
    value = (scores.get(task) or {}).get("score") if isinstance(scores.get(task), dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _history(run: Run) -> list[dict]:
    return [h for h in run.get("history") or [] if isinstance(h, dict) and isinstance(h.get("scores"), dict)]


def run_budgets(run: Run) -> dict[str, dict | None]:
    """Budget -> best step under it (`selection.select_under_budget` output): as the run recorded it, else
    computed from its history under the standard budgets (runs made before runs recorded it)."""
    recorded = run.get("best_under_budgets")
    if isinstance(recorded, dict):
        return recorded
    history = _history(run)
    if len(history) < 2:
        return {}
    try:
        return best_under_budgets(history, _targets(run), STANDARD_BUDGETS)
    except ValueError:   # a history without the target or without old tasks: nothing to choose from
        return {}


def run_curves(run: Run) -> dict[str, dict[int, float]]:
    """Per step: mean over non-target tasks of (first history score - score now), and the target score."""
    history = _history(run)
    if not history:
        return {"forgetting": {}, "target": {}}
    first = history[0]["scores"]
    targets = _targets(run)
    others = [t for t in (run.get("forgetting") or first) if t not in targets]
    forgetting: dict[int, float] = {}
    target: dict[int, float] = {}
    for entry in history:
        step, scores = int(entry.get("step", 0)), entry["scores"]
        pairs = [(_score(first, t), _score(scores, t)) for t in others]
        drops = [a - b for a, b in pairs if a is not None and b is not None]
        if drops:
            forgetting[step] = statistics.fmean(drops)
        tscores = [s for s in (_score(scores, t) for t in targets) if s is not None]
        if tscores:
            target[step] = statistics.fmean(tscores)
    return {"forgetting": forgetting, "target": target}


def _curve_stats(per_run: list[dict[int, float]]) -> list[tuple[int, Stat]]:
    steps = sorted({s for c in per_run for s in c})
    return [(s, mean_std([c[s] for c in per_run if s in c])) for s in steps]


def _scores(run: Run, which: str) -> dict[str, float | None]:
    return {t: (v or {}).get("score") if isinstance(v, dict) else None for t, v in (run.get(which) or {}).items()}


def summarize(label: str, key: dict[str, str], runs: list[Run]) -> Group:
    group = Group(label=label, key=key, runs=runs)
    group.stats = {name: mean_std([get(r) for r in runs]) for name, get in RUN_VALUES.items()}
    tasks = sorted({t for r in runs for t in r.get("forgetting") or {}})
    group.task_forgetting = {t: mean_std([(r.get("forgetting") or {}).get(t) for r in runs]) for t in tasks}
    for which in ("before", "after"):
        per_run = [_scores(r, which) for r in runs]
        all_tasks = sorted({t for s in per_run for t in s})
        setattr(group, which, {t: mean_std([s.get(t) for s in per_run]) for t in all_tasks})
    curves = [run_curves(r) for r in runs]
    group.curves = {name: _curve_stats([c[name] for c in curves]) for name in ("forgetting", "target")}
    chosen = [run_budgets(r) for r in runs]
    budgets = sorted({b for c in chosen for b in c}, key=_natural)
    group.budget_scores = {b: mean_std([(c.get(b) or {}).get("target_score") for c in chosen]) for b in budgets}
    group.budget_steps = {b: mean_std([(c.get(b) or {}).get("step") for c in chosen]) for b in budgets}
    parts = {part: [lm_eval_values(r, part) for r in runs] for part in ("before", "after", "forgetting")}
    keys = sorted({k for values in parts["forgetting"] for k in values})
    group.lm_eval = {k: {part: mean_std([v.get(k) for v in parts[part]]) for part in parts} for k in keys}
    return group


def group_runs(runs: list[Run]) -> list[Group]:
    """Completed runs only, grouped by the varying overrides; failed runs never enter a mean."""
    done = [r for r in runs if r.ok]
    if not done:
        return []
    keys = grouping_keys(done)
    buckets: dict[tuple, list[Run]] = {}
    for r in done:
        buckets.setdefault(tuple(run_key(r, keys).values()), []).append(r)
    ordered = sorted(buckets, key=lambda v: [_natural(x) for x in v])
    group_keys = [dict(zip(keys, values)) for values in ordered]
    labels = display_labels(group_keys) if keys else [str(buckets[ordered[0]][0].get("strategy", "all"))]
    return [summarize(label, key, buckets[values]) for label, key, values in zip(labels, group_keys, ordered)]


def group_of(groups: list[Group]) -> dict[str, str]:
    """Run path -> group label, for per-run tables."""
    return {str(r.path): g.label for g in groups for r in g.runs}
