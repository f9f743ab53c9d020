"""The report's method view: a method is a group without its learning rate, so its groups at several lrs
make one frontier; intruder counts are plotted against forgetting per run. Known fixture numbers in,
known methods, orders and files out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from forgetlab.report import build_report
from forgetlab.report.aggregate import group_runs
from forgetlab.report.collect import collect_runs
from forgetlab.report.method_plots import PLOT_FILES, methods, run_intruders

TEMPLATE = Path(__file__).parent / "fixtures" / "report" / "sweep_a" / "strategy=full,seed=0" / "metrics.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(root: Path, overrides: list[str], gain: float, forgetting: float, intruders: int | None) -> None:
    run = root / ",".join(overrides)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = json.loads(TEMPLATE.read_text())
    metrics.update(target_gain=gain, mean_forgetting=forgetting,
                   strategy=next(o.split("=")[1] for o in overrides if o.startswith("strategy=")))
    if intruders is not None:
        metrics["weight_movement"] = {"spectral": {"total": {"intruders": intruders, "matrices": 4}}}
    (run / "metrics.json").write_text(json.dumps(metrics))


def sweep(tmp_path: Path, intruders: bool = True) -> Path:
    """full at two lrs, lora r 8 at three, lora r 32 at one; two seeds each."""
    root = tmp_path / "sweep"
    plan = [("full", None, "1e-5", 20, 10), ("full", None, "1e-4", 60, 50),
            ("lora", "8", "1e-3", 50, 70), ("lora", "8", "1e-4", 10, 20), ("lora", "8", "3e-4", 30, 40),
            ("lora", "32", "3e-4", 45, 45)]
    for strategy, rank, lr, gain, forgetting in plan:
        for seed in (0, 1):
            overrides = [f"strategy={strategy}", f"strategy.optim.lr={lr}", f"seed={seed}"]
            if rank:
                overrides.append(f"strategy.params.peft.r={rank}")
            write_run(root, overrides, gain + seed, forgetting + seed,
                      (3 if strategy == "lora" else 0) + seed if intruders else None)
    return root


def test_methods_leave_out_the_lr_and_sort_by_it(tmp_path):
    found = methods(group_runs(collect_runs([sweep(tmp_path)])))
    assert list(found) == ["full", "lora r=8", "lora r=32"]
    assert [g.key["strategy.optim.lr"] for g in found["lora r=8"]] == ["1e-4", "3e-4", "1e-3"]
    assert [g.stats["target_gain"].mean for g in found["lora r=8"]] == [10.5, 30.5, 50.5]
    assert [g.n for g in found["full"]] == [2, 2]


def test_report_draws_frontiers_and_intruders(tmp_path):
    report = build_report([sweep(tmp_path)], tmp_path / "out")
    for name, filename in PLOT_FILES.items():
        path = report.files[name]
        assert path.name == filename and path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 1000
    runs = collect_runs([tmp_path / "sweep"])
    assert sorted(run_intruders(r) for r in runs if r.get("strategy") == "full") == [0, 0, 1, 1]


def test_no_method_plots_without_lr_grid_or_spectral(tmp_path):
    root = sweep(tmp_path, intruders=False)
    for run in list(root.iterdir()):
        if "lr=1e-4" not in run.name:
            shutil.rmtree(run)   # one lr per method left: no curve to trace
    report = build_report([root], tmp_path / "out")
    assert not set(PLOT_FILES) & set(report.files)


def test_repair_curves_average_seeds_per_group_and_add_the_run_itself(tmp_path):
    from forgetlab.report.collect import Run
    from forgetlab.report.repair import plot_repair, repair_series

    def repaired(name: str, gain: float, forgetting: float) -> tuple[Run, dict]:
        run = Run(path=tmp_path / name, display=name, status="completed")
        return run, {"run": {"target_gain": gain, "mean_forgetting": forgetting},
                     "results": [{"lambda": 0.0, "target_gain": gain - 10, "mean_forgetting": forgetting - 20}]}

    repairs = [repaired("a0", 40, 80), repaired("a1", 44, 84), repaired("b0", 70, 70)]
    labels = {str(tmp_path / "a0"): "lora", str(tmp_path / "a1"): "lora"}
    series = repair_series(repairs, labels)
    assert series == {"lora": {0.0: (32.0, 62.0), 1.0: (42.0, 82.0)}, "b0": {0.0: (60.0, 50.0), 1.0: (70.0, 70.0)}}
    path = plot_repair(repairs, tmp_path / "repair.png", labels)
    assert path.read_bytes().startswith(PNG_MAGIC)
