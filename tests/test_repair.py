"""forgetlab-repair: lambda = 1 reproduces the run's own after-scores exactly, lambda = 0 removes a planted
intruder dimension and wins back what it broke, the run's own files are never changed, and the best lambda
under a forgetting budget is the one with the highest gain that fits."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from forgetlab.run_dirs import REPAIR_FILE
from forgetlab.strategies.repair import best_lambda, linear_weights, main, repair_run
from forgetlab.strategies.spectral import intruder_dimensions

PLANTED = "encoder.block.0.layer.1.DenseReluDense.wi.weight"  # tall (512 x 128): room for a new direction


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> tuple[Path, dict]:
    """A private copy of the session's tiny full fine-tuning run (repair writes into the run folder)."""
    run_dir, metrics = tiny_run
    return Path(shutil.copytree(run_dir, tmp_path / "run")), metrics


def test_lambda_one_reproduces_the_run_and_leaves_its_files_alone(run_copy, capsys, tmp_path):
    run_dir, metrics = run_copy
    files = hashes(run_dir)
    assert main([str(run_dir), "--lambdas", "1", "0", "--budget", "1000"]) == 0
    new = {k: v for k, v in hashes(run_dir).items() if k not in files}  # repair.json and each lambda's examples
    assert hashes(run_dir) == {**files, **new} and set(new) == {REPAIR_FILE} | {
        f"predictions/repair/lambda={lam}/{t}.jsonl" for lam in (1, 0) for t in metrics["after"]}
    for task in metrics["after"]:  # lambda 1 is the run itself, example by example
        assert (run_dir / f"predictions/repair/lambda=1/{task}.jsonl").read_bytes() == (
            run_dir / f"predictions/after/{task}.jsonl").read_bytes()
    out = json.loads((run_dir / REPAIR_FILE).read_text())
    one, zero = out["results"]
    assert one["lambda"] == 1.0 and zero["lambda"] == 0.0
    assert one["after"] == metrics["after"]  # bit for bit: scores, losses, every metric
    assert one["target_gain"] == metrics["target_gain"] and one["mean_forgetting"] == metrics["mean_forgetting"]
    assert one["matrices_repaired"] == 0 and zero["intruders"] == one["intruders"]
    assert zero["matrices_repaired"] == len(zero["per_matrix"]) == len(one["per_matrix"])
    assert out["best"]["lambda"] in (0.0, 1.0) and out["budget"] == 1000
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lambda=1 ") and lines[1].startswith("lambda=0 ") and "best lambda" in lines[2]

    from forgetlab.report.build import build_report

    report = build_report([run_dir], tmp_path / "report")  # the curve and the best lambda, beside the sweep
    markdown = report.files["markdown"].read_text()
    assert "## Intruder repair" in markdown and "| 0 |" in markdown and "yes (budget 1000)" in markdown
    assert report.plots["repair_curve"].stat().st_size > 0
    assert "Intruder repair" in report.html.read_text()


def test_lambda_zero_removes_a_planted_intruder(run_copy):
    from transformers import AutoModelForSeq2SeqLM

    run_dir, metrics = run_copy
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir / "model")
    w = linear_weights(model)[PLANTED]
    base = AutoModelForSeq2SeqLM.from_pretrained(Path(metrics["base"]["path"]) / "model")
    w0 = linear_weights(base)[PLANTED]
    gen = torch.Generator().manual_seed(0)
    u0 = torch.linalg.svd(w0, full_matrices=False)[0]
    u = torch.randn(w.shape[0], generator=gen)
    u -= u0 @ (u0.T @ u)  # outside W0's column space: no pre-trained direction resembles it
    v = torch.randn(w.shape[1], generator=gen)
    sigma = 30 * float(torch.linalg.matrix_norm(w0, ord=2))
    with torch.no_grad():
        w.add_(sigma * torch.outer(u / u.norm(), v / v.norm()))
    assert intruder_dimensions(w0, w)["indices"][:1] == [0]
    model.save_pretrained(run_dir / "model")

    out = repair_run(run_dir, [1.0, 0.0], budget=None, write=False)
    one, zero = out["results"]
    assert one["per_matrix"].get(PLANTED, 0) >= 1
    # the tiny run's scores sit at 0 (30 base steps teach little), so the loss on the answers is the signal
    broken = one["mean_loss_increase"] - metrics["mean_loss_increase"]
    assert broken > 0.01, "the planted direction should hurt the old tasks"
    assert abs(zero["mean_loss_increase"] - metrics["mean_loss_increase"]) < 0.05 * broken
    assert out["best"] is None and not (run_dir / REPAIR_FILE).exists()


def test_best_lambda_is_the_highest_gain_within_the_budget():
    results = [{"lambda": 1.0, "target_gain": 50.0, "mean_forgetting": 9.0},
               {"lambda": 0.5, "target_gain": 40.0, "mean_forgetting": 4.0},
               {"lambda": 0.25, "target_gain": 40.0, "mean_forgetting": 2.0},
               {"lambda": 0.0, "target_gain": 10.0, "mean_forgetting": 1.0}]
    assert best_lambda(results, 5.0)["lambda"] == 0.5  # equal gain: the larger lambda changes less
    assert best_lambda(results, 10.0)["lambda"] == 1.0
    assert best_lambda(results, 4.0)["lambda"] == 0.5  # a budget met exactly counts
    assert best_lambda(results, 0.5) is None and best_lambda(results, None) is None


def test_not_a_run_fails_with_a_message(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "not the record of a completed run" in capsys.readouterr().err


def assert_same_scores(repaired: dict, after: dict) -> None:
    """The repair scores a LoRA run's merged weights, the run scored the unmerged adapter: predictions and
    scores agree exactly, losses to float rounding (W + BA summed in another order)."""
    assert repaired.keys() == after.keys()
    for task, result in after.items():
        assert repaired[task]["score"] == result["score"], task
        assert repaired[task]["loss"] == pytest.approx(result["loss"], rel=1e-5), task


def test_repair_as_a_step_of_the_run_and_of_a_relaunch(tmp_path, cache_dir):
    """diagnostics.repair_lambdas repairs the finished run in the same job (sweepable); a relaunch of a
    completed job whose repair never finished (killed) does the repair and nothing else."""
    from forgetlab.cli import finish_repair
    from forgetlab.run import run_experiment
    from tests.conftest import TINY, compose_config

    cfg = compose_config([*TINY, "strategy=lora", "strategy.optim.steps=3", "eval.every_n_steps=0",
                          "diagnostics.repair_lambdas=[1,0]", "diagnostics.repair_budget=1000"],
                         tmp_path / "run", cache_dir)
    metrics = run_experiment(cfg)
    out = json.loads((tmp_path / "run" / REPAIR_FILE).read_text())
    assert [r["lambda"] for r in out["results"]] == [1.0, 0.0] and out["budget"] == 1000
    assert_same_scores(out["results"][0]["after"], metrics["after"])  # lambda 1 is the run itself

    (tmp_path / "run" / REPAIR_FILE).unlink()
    metrics_file = (tmp_path / "run" / "metrics.json").read_bytes()
    finish_repair(cfg, tmp_path / "run")
    assert_same_scores(json.loads((tmp_path / "run" / REPAIR_FILE).read_text())["results"][0]["after"],
                       metrics["after"])
    assert (tmp_path / "run" / "metrics.json").read_bytes() == metrics_file
