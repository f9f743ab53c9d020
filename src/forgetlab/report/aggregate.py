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

from forgetlab.report.collect import Run

# Overrides that never define a group: repetitions (seed) and where/how things were written or logged.
IGNORED_KEYS = ("seed", "run_name", "threads")
IGNORED_PREFIXES = ("paths.", "hydra.", "logger", "trainer.devices", "checkpoint_every_n_steps")
# Fields of metrics.json that must never be mixed inside one group, even if no override says so.
IDENTITY_FIELDS = ("strategy", "model", "target")
DEFAULT = "(default)"


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
    label: str
    key: dict[str, str]
    runs: list[Run]
    stats: dict[str, Stat] = field(default_factory=dict)
    task_forgetting: dict[str, Stat] = field(default_factory=dict)
    before: dict[str, Stat] = field(default_factory=dict)   # task -> score before fine-tuning
    after: dict[str, Stat] = field(default_factory=dict)    # task -> score after fine-tuning
    curves: dict[str, list[tuple[int, Stat]]] = field(default_factory=dict)  # forgetting / target vs step

    @property
    def n(self) -> int:
        return len(self.runs)

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


# Table columns: name -> how to read the value from one run.
RUN_VALUES = {
    "target_gain": lambda r: r.get("target_gain"),
    "mean_forgetting": lambda r: r.get("mean_forgetting"),
    "mean_loss_increase": lambda r: r.get("mean_loss_increase"),
    "trainable_pct": _fraction_percent,
    "tokens_per_s": lambda r: (r.get("timing") or {}).get("tokens_per_s"),
    "train_wall_time_s": lambda r: (r.get("timing") or {}).get("train_wall_time_s"),
}


def _targets(run: Run) -> list[str]:
    target = run.get("target")
    return [target] if isinstance(target, str) else [str(t) for t in target or []]


def _score(scores: dict, task: str) -> float | None:
    value = (scores.get(task) or {}).get("score") if isinstance(scores.get(task), dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_curves(run: Run) -> dict[str, dict[int, float]]:
    """Per step: mean over non-target tasks of (first history score - score now), and the target score."""
    history = [h for h in run.get("history") or [] if isinstance(h, dict) and isinstance(h.get("scores"), dict)]
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
    groups = []
    for values in sorted(buckets, key=lambda v: [_natural(x) for x in v]):
        members = buckets[values]
        key = dict(zip(keys, values))
        label = ",".join(f"{k}={v}" for k, v in key.items()) if keys else members[0].get("strategy", "all")
        groups.append(summarize(str(label), key, members))
    return groups


def group_of(groups: list[Group]) -> dict[str, str]:
    """Run path -> group label, for per-run tables."""
    return {str(r.path): g.label for g in groups for r in g.runs}
