"""Weight interpolation theta0 + alpha (theta - theta0): alpha = 0 reproduces the starting model's scores and
alpha = 1 the run's own, bit for bit, for full fine-tuning (torch.lerp), LoRA (its contribution scaled) and
IA3 (its vectors from their initial ones) and for each stage of a continual sequence; the adapter's initial
values are rebuilt as the run built them (prompt tuning at lr 0 stays at alpha = 0's values); alphas
outside [0, 1] are refused unless extrapolation is deliberate; the report draws the curves and tabulates the
best alpha per budget."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from forgetlab.config import ConfigError, validate
from forgetlab.run_dirs import INTERPOLATION_FILE
from forgetlab.strategies.interpolate import interpolate_run, main
from tests.conftest import TINY, compose_config

SHORT = [*TINY, "strategy.optim.steps=3", "eval.every_n_steps=0", "diagnostics.spectral=false"]


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_run_ends_reproduce_start_and_run_exactly(tiny_run, tmp_path, capsys):
    source, metrics = tiny_run
    run_dir = Path(shutil.copytree(source, tmp_path / "run"))
    files = hashes(run_dir)
    assert main([str(run_dir), "--alphas", "0", "0.5", "1", "--budgets", "0", "1000"]) == 0
    assert hashes(run_dir) == {**files, INTERPOLATION_FILE: hashes(run_dir)[INTERPOLATION_FILE]}
    out = json.loads((run_dir / INTERPOLATION_FILE).read_text())
    zero, half, one = out["results"]
    assert out["method"] == "weights" and [r["alpha"] for r in out["results"]] == [0.0, 0.5, 1.0]
    assert zero["after"] == metrics["before"]  # bit for bit: scores, losses, every metric
    assert one["after"] == metrics["after"]
    assert zero["target_gain"] == 0 and zero["mean_forgetting"] == 0
    assert (one["target_gain"], one["mean_forgetting"]) == (metrics["target_gain"], metrics["mean_forgetting"])
    assert half["after"] != one["after"] and half["after"] != zero["after"]
    by_budget = {b["budget"]: b for b in out["best_under_budgets"]}
    assert by_budget[0.0]["alpha"] is not None and by_budget[0.0]["mean_forgetting"] <= 0
    best = max(out["results"], key=lambda r: (r["target_gain"], r["alpha"]))
    assert by_budget[1000.0]["alpha"] == best["alpha"]
    assert "alpha=0 " in capsys.readouterr().out

    from forgetlab.report.build import build_report

    report = build_report([run_dir], tmp_path / "report")
    markdown = report.files["markdown"].read_text()
    assert "## Weight interpolation" in markdown and "| 1000 |" in markdown
    assert report.plots["interpolation_curve"].stat().st_size > 0
    assert "Weight interpolation" in report.html.read_text()


@pytest.mark.parametrize("strategy", ["lora", "ia3"])
def test_peft_run_as_a_step_of_the_run_and_of_a_relaunch(strategy, tmp_path, cache_dir):
    """diagnostics.interpolate in the run: LoRA scales its contribution, IA3 interpolates its vectors from
    ones; both ends exact. A relaunch of a job whose interpolation never finished does it and nothing else."""
    from forgetlab.cli import finish_repair
    from forgetlab.run import run_experiment

    cfg = compose_config([*SHORT, f"strategy={strategy}", "diagnostics.interpolate=[0,0.5,1]"],
                         tmp_path / "run", cache_dir)
    metrics = run_experiment(cfg)
    out = json.loads((tmp_path / "run" / INTERPOLATION_FILE).read_text())
    assert out["method"] == {"lora": "lora_scale", "ia3": "adapter_from_init"}[strategy]
    assert out["results"][0]["after"] == metrics["before"] and out["results"][2]["after"] == metrics["after"]
    assert out["results"][1]["after"] != metrics["after"]

    (tmp_path / "run" / INTERPOLATION_FILE).unlink()
    metrics_file = (tmp_path / "run" / "metrics.json").read_bytes()
    finish_repair(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / INTERPOLATION_FILE).read_text())["results"] == out["results"]
    assert (tmp_path / "run" / "metrics.json").read_bytes() == metrics_file


def test_prompt_tuning_initial_tokens_are_rebuilt_as_the_run_built_them(tmp_path, cache_dir):
    """At lr 0 the trained virtual tokens are the initial ones: alpha = 0 (the rebuilt init) must score as the
    run itself, which it only does if the init is drawn exactly as the run drew it."""
    from forgetlab.run import run_experiment

    metrics = run_experiment(compose_config([*SHORT, "strategy=prompt_tuning", "strategy.optim.lr=0"],
                                            tmp_path / "run", cache_dir))
    out = interpolate_run(tmp_path / "run", [0.0, 1.0], write=False)
    assert out["method"] == "adapter_from_init"
    assert out["results"][0]["after"] == out["results"][1]["after"] == metrics["after"]


def test_continual_stages_against_stage_zero(tmp_path, cache_dir):
    from forgetlab.continual_run import run_continual

    cfg = compose_config([*SHORT, "sequence.stages=[[reverse],[length]]", "diagnostics.interpolate=[0,1]"],
                         tmp_path / "run", cache_dir)
    metrics = run_continual(cfg)
    out = json.loads((tmp_path / "run" / INTERPOLATION_FILE).read_text())
    assert [s["stage"] for s in out["stages"]] == [1, 2] and out["stages"][1]["target"] == ["reverse", "length"]
    for stage, record in zip(out["stages"], metrics["stages"]):
        zero, one = stage["results"]
        assert zero["after"] == metrics["before"] and one["after"] == record["scores"]
    assert out["results"] == out["stages"][-1]["results"]
    assert out["results"][1]["mean_forgetting"] == metrics["mean_forgetting"]


def test_alphas_outside_zero_one_need_the_extrapolate_flag(tmp_path, tiny_run, capsys):
    with pytest.raises(ConfigError, match=r"diagnostics.interpolate.*\[1\.5\].*diagnostics.extrapolate=true"):
        validate(compose_config([*TINY, "diagnostics.interpolate=[0,1.5]"], tmp_path / "x"))
    validate(compose_config([*TINY, "diagnostics.interpolate=[0,1.5]", "diagnostics.extrapolate=true"],
                            tmp_path / "x"))
    run_dir, _ = tiny_run
    assert main([str(run_dir), "--alphas", "-0.5", "1"]) == 1
    assert "--extrapolate" in capsys.readouterr().err
    assert not (run_dir / INTERPOLATION_FILE).exists()


def test_not_a_run_fails_with_a_message(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "not the record of a completed run" in capsys.readouterr().err
