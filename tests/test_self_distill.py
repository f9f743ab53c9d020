"""Self-distillation of the targets (SDFT): usable rewrites replace the references and the rest fall back,
counted honestly; the rewritten split is cached per starting model and prompt, so a second run of a sweep
reuses it without generating; a model that echoes the reference gives rewrites that pass the check."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetlab.config import ConfigError, validate
from forgetlab.config.schema import SelfDistillCheck, SelfDistillConfig
from forgetlab.evaluation.metrics import resolve_metric
from forgetlab.training import self_distill as sd
from tests.conftest import TINY, compose_config

SHORT = [*TINY, "strategy=sdft", "strategy.optim.steps=3", "eval.every_n_steps=0", "diagnostics.spectral=false"]


def test_usable_rewrites_pass_the_tasks_metric():
    metric = resolve_metric("exact_match")
    assert sd.usable("cba", ["cba"], metric, SelfDistillCheck.match)
    assert not sd.usable("cbx", ["cba"], metric, SelfDistillCheck.match)
    assert not sd.usable("  ", ["cba"], metric, SelfDistillCheck.nonempty)
    assert sd.usable("anything", ["cba"], metric, SelfDistillCheck.nonempty)
    assert sd.render("{prompt} | {reference}", "reverse: abc", "cba") == "reverse: abc | cba"


def test_run_counts_fallbacks_and_a_second_run_reuses_the_cache(tmp_path, cache_dir, monkeypatch):
    from forgetlab.run import run_experiment

    data_cache = tmp_path / "data"
    first = run_experiment(compose_config([*SHORT, f"paths.data_cache_dir={data_cache}"], tmp_path / "a", cache_dir))
    counts = first["sdft"]
    assert counts["total"] == 200 and counts["rewritten"] + counts["fallback"] == 200 and not counts["cached"]
    assert len(list((data_cache / sd.KIND).iterdir())) == 1

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached rewrite must not be generated again")

    monkeypatch.setattr(sd, "rewrite_split", no_generation)
    second = run_experiment(compose_config([*SHORT, f"paths.data_cache_dir={data_cache}", "seed=1"],
                                           tmp_path / "b", cache_dir))
    assert second["sdft"] == {**counts, "cached": True}
    other = compose_config([*SHORT, f"paths.data_cache_dir={data_cache}",
                            "strategy.self_distill.template='{reference} <- {prompt}'"], tmp_path / "c", cache_dir)
    with pytest.raises(AssertionError, match="must not be generated"):  # another prompt is another entry
        run_experiment(other)


def test_echoed_references_are_used_and_counted(tmp_path, cache_dir, monkeypatch):
    """A model whose every rewrite is the reference itself: every row counts as rewritten."""
    from forgetlab.models.language_model import LanguageModel
    from forgetlab.run import run_experiment

    def echo(self: LanguageModel, prompts: list[str], max_new_tokens: int) -> list[str]:
        return [p.split("Reference answer: ")[1].split("\n")[0] for p in prompts]

    monkeypatch.setattr(LanguageModel, "generate", echo)
    metrics = run_experiment(compose_config([*SHORT, "paths.data_cache_dir=null"], Path(tmp_path / "run"), cache_dir))
    assert metrics["sdft"] == {"rewritten": 200, "fallback": 0, "total": 200, "cached": False}


def test_no_starting_model_or_a_sequence_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"strategy.self_distill.enabled=true.*model.base_stage=false"):
        validate(compose_config([*TINY, "strategy=sdft", "model.base_stage=false"], tmp_path / "x"))
    with pytest.raises(ConfigError, match="sequence.stages"):
        validate(compose_config([*TINY, "strategy=sdft", "sequence.stages=[[reverse]]"], tmp_path / "x"))
    assert SelfDistillConfig().enabled is False
