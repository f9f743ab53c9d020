"""Every documented example shows learning and forgetting.

Each `forgetlab ...` command in README.md, docs/ and the config headers that trains a built-in model is run
(folded with the commands that compose to the same training config; a sweep runs its first job) and must
raise its target by at least MIN_GAIN points and forget something (mean forgetting > 0 on the tasks it did
not train). A continual sequence must learn each stage's tasks in that stage and forget earlier ones.

The runs start from the default base stage, committed as a cache entry (tests/base_fixture.py), so CI does
not spend twenty minutes training it. They keep the documented models, tasks, learning rates and batches;
to fit CI they train STEP_SHARE of the documented steps (a stage of a sequence likewise) and score
EXAMPLE_TEST_EXAMPLES test examples per task. Measured on the default (docs/continual.md): the slowest of
the default sequence's stages, `first_letter`, gains 8 points at a quarter of its steps and 17 at all of them.
"""

from __future__ import annotations

import pytest

from tests.base_fixture import FIXTURES, MODELS, expected_entry, seed_base_cache
from tests.conftest import compose_config
from tests.documented_examples import classify

MIN_GAIN = 10.0
EXAMPLE_TEST_EXAMPLES = 100
STEP_SHARE = 0.5
# Scoring settings only: what is trained stays as documented.
SCORING = ["eval.every_n_steps=0", f"eval.test_max_examples={EXAMPLE_TEST_EXAMPLES}", "diagnostics.spectral=false"]


def test_the_examples_are_found_and_every_skip_says_why(tmp_path):
    examples, skipped = classify(tmp_path)
    assert len(examples) >= 30, [e.name for e in examples]
    assert any("experiment=continual" in e.overrides for e in examples)
    assert any("model=tiny_gpt" in e.overrides for e in examples)
    assert all(reason for reason in skipped.values())
    assert all(e.sources for e in examples)


@pytest.mark.parametrize("model", MODELS)
def test_the_committed_base_stages_are_the_current_defaults(model, tmp_path):
    """A config change that moves the base key (base settings, model, base tasks' rows) needs new fixtures:
    `python -m tests.base_fixture` trains them (~10 minutes each) and writes them here."""
    entry = expected_entry(model, tmp_path)
    assert (FIXTURES / entry / "base.json").is_file(), (
        f"tests/fixtures/base_cache has no {entry}: regenerate with `python -m tests.base_fixture`")


def _scoring_for(overrides: list[str]) -> list[str]:
    if any(o.startswith("select.") for o in overrides):  # a forgetting budget chooses among periodic evaluations
        return SCORING[1:]
    return SCORING


def _problems(example, metrics: dict) -> list[str]:
    out = []
    continual = metrics.get("continual")
    if isinstance(continual, dict):
        rows, tasks = continual["matrix"], continual["tasks"]
        for t, stage in enumerate(continual["stages"], 1):
            for task in stage:
                gain = rows[t][tasks.index(task)] - rows[0][tasks.index(task)]
                if gain < MIN_GAIN:
                    out.append(f"stage {t} ({task}) gained {gain:.1f} < {MIN_GAIN}")
        if not (continual.get("forgetting_chaudhry") or 0) > 0 and not metrics["mean_forgetting"] > 0:
            out.append("forgot nothing (Chaudhry forgetting and untrained-task forgetting both <= 0)")
        return out
    if metrics["target_gain"] < MIN_GAIN:
        out.append(f"target gain {metrics['target_gain']:.1f} < {MIN_GAIN}")
    if not metrics["mean_forgetting"] > 0:
        out.append(f"mean forgetting {metrics['mean_forgetting']:.1f}: forgets nothing")
    return out


@pytest.mark.slow
def test_every_documented_example_learns_and_forgets(tmp_path_factory, capsys):
    from forgetlab.continual_run import has_sequence, run_continual
    from forgetlab.run import run_experiment

    cache = seed_base_cache(tmp_path_factory.mktemp("examples_cache"))
    examples, _ = classify(tmp_path_factory.mktemp("compose"))
    failures, lines = [], []
    for i, example in enumerate(examples):
        run_dir = tmp_path_factory.mktemp(f"example{i}")
        cfg = compose_config([*example.overrides, *_scoring_for(example.overrides)], run_dir, cache)
        cfg.strategy.optim.steps = max(1, round(cfg.strategy.optim.steps * STEP_SHARE))
        metrics = run_continual(cfg) if has_sequence(cfg) else run_experiment(cfg)
        problems = _problems(example, metrics)
        lines.append(f"{example.name}: gain {metrics['target_gain']:.1f}, forgetting "
                     f"{metrics['mean_forgetting']:.1f}{'  <- ' + '; '.join(problems) if problems else ''}")
        if problems:
            failures.append(f"{example.name} ({example.sources[0]}): {'; '.join(problems)}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not failures, "documented examples that do not show learning/forgetting:\n" + "\n".join(failures)
