"""The benchmark scripts still run: each is executed on a toy size (their numbers are not asserted here)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_benchmark_runs_on_cpu_and_computes_mfu_from_its_own_numbers(tmp_path, monkeypatch):
    out = tmp_path / "gpu.json"
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--device", "cpu", "--d-model", "32", "--layers", "1",
                                      "--steps", "4", "--batch", "8", "--max-eval-examples", "4",
                                      "--peak-tflops", "1", "--out", str(out)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/bench_gpu.py` has its folder on sys.path
    runpy.run_path(str(BENCHMARKS / "bench_gpu.py"), run_name="__main__")
    result = json.loads(out.read_text())
    assert result["steps"] == 4 and result["batch"] == 8 and result["device"] == "cpu"
    assert result["step_time_ms"] > 0 and result["trained_tokens_per_s"] > 0
    assert 0 <= result["pad_fraction"] < 1
    assert result["padded_tokens_per_s"] == pytest.approx(result["trained_tokens_per_s"] / (1 - result["pad_fraction"]))
    assert result["mfu"] == pytest.approx(6 * result["parameters"] * result["padded_tokens_per_s"] / 1e12)
    assert result["eval_examples"] == 4 * 6 and result["eval_examples_per_s"] > 0  # 6 evaluation tasks


def test_gpu_benchmark_with_lora_counts_only_trainable_weight_gradients_in_mfu(tmp_path, monkeypatch):
    out = tmp_path / "gpu_lora.json"
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--device", "cpu", "--d-model", "32", "--layers", "1",
                                      "--steps", "4", "--batch", "8", "--max-eval-examples", "2",
                                      "--strategy", "lora", "--peak-tflops", "1", "--out", str(out)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    runpy.run_path(str(BENCHMARKS / "bench_gpu.py"), run_name="__main__")
    result = json.loads(out.read_text())
    assert result["strategy"] == "lora" and 0 < result["trainable_parameters"] < result["parameters"] / 2
    flops_per_token = 4 * result["parameters"] + 2 * result["trainable_parameters"]
    assert result["mfu"] == pytest.approx(flops_per_token * result["padded_tokens_per_s"] / 1e12)
