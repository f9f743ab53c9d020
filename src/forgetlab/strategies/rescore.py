"""Rescore a finished run under weight edits: the one mechanism behind `forgetlab-repair` (intruder singular
values scaled by lambda, strategies/repair.py) and `forgetlab-interpolate` (theta0 + alpha (theta - theta0),
strategies/interpolate.py).

An edit (`WeightEdit`) says which model it edits (`load`: put it into the run's LanguageModel) and how one
value changes it in place (`apply`). Everything else is the same for every edit and lives here: rebuilding
the run from its files (model, tokenizer and tasks from run_record.json, seeded and threaded as the run
was, so the unedited model reproduces the run's own scores bit for bit), scoring every evaluation task on
the test split once per value (`FinishedRun.score`, the only place a rescoring scores), measuring gain and
forgetting against metrics.json's `before`, and the best value under forgetting budgets.

Per-example predictions hook into `FinishedRun.score`: its `step` names the scoring ("repair/lambda=0.5",
"interpolation/alpha=0.25", "interpolation/stage_2/alpha=0.5"), the folder under predictions/ its rows
belong in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forgetlab.config.schema import DiagnosticsConfig
from forgetlab.evaluation.forgetting import summarize_forgetting
from forgetlab.evaluation.predictions import PredictionWriter
from forgetlab.evaluation.scoring import score_tasks_examples
from forgetlab.models.language_model import LanguageModel
from forgetlab.run_dirs import METRICS_FILE, RECORD_FILE, completed_metrics
from forgetlab.tasks.suite import TaskSuite
from forgetlab.utils.determinism import make_deterministic
from forgetlab.utils.io import read_json


@dataclass
class FinishedRun:
    """A completed run rebuilt from its files: its metrics, resolved config, a LanguageModel with the
    run's tokenizer and settings (its `model` is what an edit loads into it) and its task suite."""

    run_dir: Path
    metrics: dict
    config: dict
    lm: LanguageModel
    suite: TaskSuite
    built: torch.nn.Module  # the model `model.build` made: the starting model itself for a pretrained one
    # where `score` writes its per-example rows (predictions/<step>/); None: it writes none
    predictions: PredictionWriter | None = None

    @classmethod
    def load(cls, run_dir: str | Path) -> FinishedRun:
        run_dir = Path(run_dir)
        metrics = completed_metrics(run_dir)
        if metrics is None:
            raise ValueError(f"{run_dir / METRICS_FILE} is not the record of a completed run")
        record = read_json(run_dir / RECORD_FILE)
        config = record.get("config") or {}
        if "model" not in config or "tasks" not in config:
            raise ValueError(f"{run_dir / RECORD_FILE} holds no resolved model/tasks config")
        cfg = OmegaConf.create(config)
        make_deterministic(cfg.get("seed", 0), cfg.get("threads", 0), cfg.get("deterministic", True))
        lm: LanguageModel = instantiate(cfg.model.build)  # tokenizer, kind and lengths exactly as the run had them
        # the tasks the run scored (a continual run's stages included), so every rescoring scores the same
        suite: TaskSuite = instantiate(cfg.tasks, _convert_="all", eval=list(metrics["before"]))
        return cls(run_dir, metrics, config, lm, suite, lm.model)

    @property
    def diagnostics(self) -> DiagnosticsConfig:
        return DiagnosticsConfig(**(self.config.get("diagnostics") or {}))

    def reseed(self, seed: int | None = None) -> None:
        """The run's seeding (or `seed`'s), as before anything random the run did (an adapter's init)."""
        cfg = self.config
        make_deterministic(cfg.get("seed", 0) if seed is None else seed, cfg.get("threads", 0),
                           cfg.get("deterministic", True))

    def starting_source(self) -> str | None:
        """Where the starting model lives: the base-stage checkpoint of a built-in model; None = the recorded
        `model.build` (its `name_or_path`), as the run loaded it."""
        base = self.metrics.get("base")
        return str(Path(base["path"]) / "model") if base and base.get("path") else None

    def starting_model(self, fresh: bool = False) -> torch.nn.Module:
        """theta0, the model the run started from. `fresh`: a new copy even for a pretrained model (whose
        starting model is otherwise `built` itself), for an edit that changes it."""
        source = self.starting_source()
        if source is None:
            if not fresh:
                return self.built
            import copy

            return copy.deepcopy(self.built)
        if not Path(source).is_dir():
            raise FileNotFoundError(f"the base model this run started from is gone: {source} "
                                    "(base-stage cache cleared?)")
        return type(self.built).from_pretrained(source)

    def score(self, step: str) -> dict[str, dict[str, Any]]:
        """Every evaluation task scored on the test split as the run scored its after-scores. `step` names
        this scoring (where its per-example predictions belong)."""
        evalc = self.config.get("eval") or {}
        scores, rows = score_tasks_examples(self.lm, self.suite.eval_tasks(), "test", evalc.get("batch_size", 256),
                                            evalc.get("test_max_examples"), evalc.get("max_batch_tokens"))
        if self.predictions is not None:
            self.predictions.write(step, rows)
        return scores

    def headline(self) -> dict[str, Any]:
        """What every rescoring file starts with: which run, its target and its own gain and forgetting."""
        m = self.metrics
        return {"run_name": m.get("run_name"), "strategy": m.get("strategy"), "target": m["target"],
                "run": {k: m[k] for k in ("target_gain", "mean_forgetting")}}


class WeightEdit(Protocol):
    """One way of editing a finished run's weights, swept over values."""

    key: str  # the swept value's name in the results ("lambda", "alpha")
    step: str  # the scoring's name prefix ("repair", "interpolation")

    def load(self, run: FinishedRun) -> None:
        """Put the model this edit changes into `run.lm` (and keep what `apply` needs)."""

    def apply(self, run: FinishedRun, value: float) -> dict[str, Any]:
        """Edit `run.lm.model` in place for `value` (from the unedited weights, whatever came before);
        return what the result for this value should record besides its scores."""


def rescore(run: FinishedRun, edit: WeightEdit, values: Sequence[float], before: dict, target: str | list[str],
            step: str | None = None) -> list[dict[str, Any]]:
    """One result per value: the edit applied, every task rescored, gain and forgetting against `before`."""
    edit.load(run)
    results = []
    for value in values:
        value = float(value)
        info = edit.apply(run, value)
        after = run.score(f"{step or edit.step}/{edit.key}={value:g}")
        results.append({edit.key: value, **summarize_forgetting(before, after, target), "after": after, **info})
    return results


def best_within(results: Sequence[dict], key: str, budget: float | None) -> dict | None:
    """The result with the highest target gain whose mean forgetting is within `budget` (ties: the larger
    value, the one closer to the run as trained); None when none fits or there is no budget."""
    if budget is None:
        return None
    fits = [r for r in results if r["mean_forgetting"] <= budget + 1e-9]
    return max(fits, key=lambda r: (r["target_gain"], r[key]), default=None)


def best_under_budgets(results: Sequence[dict], key: str, budgets: Sequence[float]) -> list[dict[str, Any]]:
    """For each budget: the best value (`best_within`) with its gain and forgetting, or None values."""
    table = []
    for budget in budgets:
        best = best_within(results, key, float(budget))
        table.append({"budget": float(budget), **({k: best[k] for k in (key, "target_gain", "mean_forgetting")}
                                                   if best else {key: None, "target_gain": None,
                                                                 "mean_forgetting": None})})
    return table
