"""forgetlab-report: known numbers in hand-written fixtures give known tables; broken runs are listed apart;
plots and the HTML page are written; a real tiny run renders."""

from __future__ import annotations

import csv
import json
import math
import shutil
import warnings
from pathlib import Path

import pytest

from forgetlab.evaluation.selection import best_under_budgets
from forgetlab.report import build_report
from forgetlab.report.aggregate import display_labels, fmt_value, group_runs, mean_std, run_curves
from forgetlab.report.cli import main
from forgetlab.report.collect import collect_runs
from forgetlab.report.plots import PLOT_FILES, pareto_front
from forgetlab.report.wandb_log import log_report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
SQRT2 = math.sqrt(2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tree(tmp_path) -> Path:
    """A writable copy of the fixture runs: two sweeps and one single run."""
    dest = tmp_path / "outputs"
    shutil.copytree(FIXTURES, dest)
    return dest


@pytest.fixture
def report(tree, tmp_path):
    return build_report([tree / "sweep_a", tree / "sweep_b", tree / "runs"], tmp_path / "out")


def by_label(report):
    return {g.label: g for g in report.groups}


def test_mean_std_is_sample_std():
    assert mean_std([10.0, 30.0]).std == pytest.approx(10 * SQRT2)
    one = mean_std([5.0])
    assert (one.mean, one.std, one.n) == (5.0, None, 1)
    assert mean_std([None, "x"]).n == 0


def test_groups_by_varying_override_across_sweeps(report):
    groups = by_label(report)
    assert list(groups) == ["full", "lora", "replay"]
    full, lora, replay = groups["full"], groups["lora"], groups["replay"]
    assert full.key == {"strategy": "full"} and full.overrides == "strategy=full"
    assert (full.n, lora.n, replay.n) == (2, 2, 1)

    assert full.stats["mean_forgetting"].mean == pytest.approx(30.0)
    assert full.stats["mean_forgetting"].std == pytest.approx(14.142135623730951)
    assert full.stats["target_gain"].mean == pytest.approx(55.0)
    assert full.stats["target_gain"].std == pytest.approx(5 * SQRT2)
    assert full.stats["mean_loss_increase"].mean == pytest.approx(0.3)
    assert full.stats["mean_loss_increase"].std == pytest.approx(0.1 * SQRT2)
    assert full.task_forgetting["copy"].mean == pytest.approx(20.0)
    assert full.task_forgetting["uppercase"].mean == pytest.approx(40.0)
    assert full.task_forgetting["uppercase"].std == pytest.approx(10 * SQRT2)
    assert full.stats["trainable_pct"].mean == pytest.approx(100.0)
    assert full.stats["tokens_per_s"].mean == pytest.approx(2000.0)
    assert full.stats["train_wall_time_s"].mean == pytest.approx(15.0)

    # lora: seed 0 from sweep_a and seed 1 from sweep_b (the failed seed 1 in sweep_a is not averaged in)
    assert lora.stats["mean_forgetting"].mean == pytest.approx(4.5)
    assert lora.stats["mean_forgetting"].std == pytest.approx(1.5 * SQRT2)
    assert lora.stats["target_gain"].mean == pytest.approx(42.0)
    assert lora.stats["trainable_pct"].mean == pytest.approx(5.0)
    assert {r.display for r in lora.runs} == {"sweep_a/strategy=lora,seed=0", "sweep_b/strategy=lora,seed=1"}

    assert replay.stats["mean_forgetting"].mean == pytest.approx(2.0)
    assert replay.stats["mean_forgetting"].std is None          # one run: no std
    assert replay.stats["target_gain"].mean == pytest.approx(30.0)

    assert full.before["copy"].mean == pytest.approx(95.0)
    assert full.after["copy"].mean == pytest.approx(75.0)
    assert full.after["reverse"].mean == pytest.approx(55.0)


def test_csv_and_markdown_hold_the_numbers(report):
    with open(report.files["csv"], newline="") as f:
        rows = {row["group"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"full", "lora", "replay"}
    full = rows["full"]
    assert full["group_overrides"] == "strategy=full"
    assert full["strategy"] == "full" and full["n"] == "2"
    assert float(full["mean_forgetting_mean"]) == pytest.approx(30.0)
    assert float(full["mean_forgetting_std"]) == pytest.approx(14.142135623730951)
    assert float(full["forgetting_copy_mean"]) == pytest.approx(20.0)
    assert float(full["target_gain_std"]) == pytest.approx(5 * SQRT2)
    assert rows["replay"]["mean_forgetting_std"] == ""
    assert rows["replay"]["n"] == "1"

    md = report.files["markdown"].read_text()
    assert "| full | full | 2 | 55.00 ± 7.07 | 30.00 ± 14.14 |" in md
    assert "| replay | replay | 1 | 30.00 | 2.00 |" in md
    assert "## Failed / incomplete runs" in md


def test_broken_runs_are_listed_apart_and_never_averaged(report):
    problems = {r.display: r for r in report.problems}
    assert {d: r.status for d, r in problems.items()} == {
        "sweep_a/strategy=lora,seed=1": "failed",
        "sweep_a/strategy=replay,seed=0": "missing",
        "sweep_b/strategy=replay,seed=1": "corrupted",
        "sweep_b/strategy=replay,seed=2": "partial",
        "sweep_b/orphan_run": "missing",
    }
    assert "lora rank must be positive" in problems["sweep_a/strategy=lora,seed=1"].reason
    assert "missing metrics.json" in problems["sweep_a/strategy=replay,seed=0"].reason
    assert "mean_forgetting" in problems["sweep_b/strategy=replay,seed=2"].reason
    averaged = {r.display for g in report.groups for r in g.runs}
    assert not averaged & set(problems)
    for text in (report.files["markdown"].read_text(), report.files["html"].read_text()):
        section = text.split("Failed / incomplete runs", 1)[1]
        for display in problems:
            assert display in section


def test_plots_and_self_contained_html(report):
    for name, filename in PLOT_FILES.items():
        path = report.files[name]
        assert path.name == filename and path.parent == report.out
        assert path.stat().st_size > 1000 and path.read_bytes().startswith(PNG_MAGIC)
    # one trajectory per group with a history (its lowest seed), none for runs without one
    assert [k for k in report.plots if k not in PLOT_FILES] == [
        "trajectory: full (seed 0)", "trajectory: lora (seed 0)", "trajectory: replay (seed 0)"]
    assert report.plots["trajectory: lora (seed 0)"].name == "trajectory_02.png"
    page = report.files["html"].read_text()
    assert page.count('src="data:image/png;base64,') == len(report.plots)
    assert "<table>" in page and "<td>full</td>" in page and "30.00 ± 14.14" in page
    # reproduce commands: recorded by the run, else rebuilt from .hydra/overrides.yaml
    assert "forgetlab strategy=replay seed=0 logger=csv" in page
    assert "forgetlab strategy=full seed=1" in page


def test_history_curves():
    runs = {r.display: r for r in collect_runs([FIXTURES / "sweep_a"])}
    curves = run_curves(runs["sweep_a/strategy=full,seed=0"])
    assert curves["forgetting"] == {0: 0.0, 10: 10.0, 20: 20.0}
    assert curves["target"] == {0: 0.0, 10: 25.0, 20: 50.0}
    full = next(g for g in group_runs(list(runs.values())) if g.label == "full")
    assert [(s, st.mean) for s, st in full.curves["forgetting"]] == [(0, 0.0), (10, 15.0), (20, 30.0)]
    assert full.curves["forgetting"][-1][1].std == pytest.approx(10 * SQRT2)


def test_groups_by_strategy_when_overrides_do_not_vary(tmp_path):
    """Runs without .hydra (or with identical overrides) still never mix strategies; seeds alone -> one group."""
    for name in ("strategy=full,seed=0", "strategy=full,seed=1", "strategy=lora,seed=0"):
        (tmp_path / name).mkdir()
        shutil.copy(FIXTURES / "sweep_a" / name / "metrics.json", tmp_path / name / "metrics.json")
    groups = group_runs(collect_runs([tmp_path]))
    assert [(g.label, g.n) for g in groups] == [("full", 2), ("lora", 1)]
    seeds_only = group_runs([r for r in collect_runs([tmp_path]) if r.get("strategy") == "full"])
    assert [(g.label, g.n) for g in seeds_only] == [("full", 2)]
    assert seeds_only[0].stats["mean_forgetting"].mean == pytest.approx(30.0)


def test_display_labels_drop_defaults_and_bookkeeping_while_unique():
    d = "(default)"

    def key(strategy, lr=d, lam=d, sweep="s"):
        return {"strategy": strategy, "strategy.optim.lr": lr, "strategy.penalty.lam": lam, "sweep_name": sweep}

    keys = [key("ewc", lam="1000.0", sweep="study_ewc"), key("ewc", lam="100000.0", sweep="study_ewc"),
            key("full", lr="1e-05", sweep="study_lr"), key("full", lr="0.0003", sweep="study_lr"),
            key("full", sweep="study_seeds"), key("lora", lr="0.01", sweep="study_lr")]
    assert display_labels(keys) == ["ewc lam=1e3", "ewc lam=1e5", "full lr=1e-5", "full lr=3e-4", "full",
                                    "lora lr=0.01"]
    # Two groups that differ only in the sweep they came from keep the sweep name, and only they do.
    keys = [key("full", sweep="a"), key("full", sweep="b"), key("lora", sweep="a")]
    assert display_labels(keys) == ["full sweep=a", "full sweep=b", "lora"]
    # A label is never empty: the defaults (then the sweep name) come back.
    only_lr = [{"strategy.optim.lr": "1e-4", "sweep_name": "a"}, {"strategy.optim.lr": d, "sweep_name": "a"}]
    assert display_labels(only_lr) == ["lr=1e-4", "lr=(default)"]
    assert display_labels([{"sweep_name": "a"}, {"sweep_name": "b"}]) == ["sweep=a", "sweep=b"]
    # Values that read the same once shortened (1e-4 and 0.0001) fall back to the full key.
    same = [{"strategy.optim.lr": "1e-4"}, {"strategy.optim.lr": "0.0001"}, {"strategy.optim.lr": "0.01"}]
    assert display_labels(same) == ["strategy.optim.lr=1e-4", "strategy.optim.lr=0.0001", "lr=0.01"]


def test_fmt_value_is_compact():
    assert [fmt_value(v) for v in ("1000.0", "10000", "0.0003", "1e-05", "0.01", "0.1", "10", "16", "ewc", "nan")] \
        == ["1e3", "1e4", "3e-4", "1e-5", "0.01", "0.1", "10", "16", "ewc", "nan"]


def test_short_labels_and_full_key_in_csv(tree, tmp_path):
    """Sweeps that differ in sweep_name and in defaulted overrides: short labels, full key in the CSV."""
    for run_dir in (tree / "sweep_a").glob("strategy=full,seed=*"):
        (run_dir / ".hydra" / "overrides.yaml").write_text(
            f"- strategy=full\n- seed={run_dir.name[-1]}\n- strategy.optim.lr=0.0001\n- sweep_name=lr\n")
    report = build_report([tree / "sweep_a", tree / "sweep_b", tree / "runs"], tmp_path / "out")
    assert [g.label for g in report.groups] == ["full lr=1e-4", "lora", "replay"]
    with open(report.files["csv"], newline="") as f:
        rows = {row["group"]: row for row in csv.DictReader(f)}
    assert rows["full lr=1e-4"]["group_overrides"] == "strategy=full,strategy.optim.lr=0.0001,sweep_name=lr"
    assert rows["lora"]["group_overrides"] == "strategy=lora,strategy.optim.lr=(default),sweep_name=(default)"
    assert rows["lora"]["strategy.optim.lr"] == "(default)" and rows["lora"]["strategy"] == "lora"


def test_pareto_front():
    points = [(10.0, 50.0), (5.0, 40.0), (20.0, 45.0), (30.0, 60.0)]
    assert pareto_front(points) == [1, 0, 3]


def test_cli_prints_summary_and_uses_default_out(tree, capsys):
    assert main([str(tree / "sweep_a"), str(tree / "sweep_b")]) == 0
    printed = capsys.readouterr().out
    out = tree / "sweep_a" / "report"
    assert str((out / "report.html").resolve()) in printed.replace("\n", "")
    assert "│ full " in printed and "lora rank must be positive" in printed
    # a second run does not take its own report folder for a run
    assert main([str(tree / "sweep_a")]) == 0
    assert "report" not in {r.display.split("/")[-1] for r in collect_runs([tree / "sweep_a"], [])}


def test_cli_with_no_completed_runs(tree, tmp_path, capsys):
    assert main([str(tree / "sweep_b" / "orphan_run"), "--out", str(tmp_path / "o")]) == 1
    assert "missing metrics.json" in (tmp_path / "o" / "report.md").read_text()
    assert "missing metrics.json" in capsys.readouterr().out


def test_wandb_never_breaks_the_report(report, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.warns(UserWarning, match="disabled"):
        assert log_report(report.out, report.files["csv"], report.plots) is False
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.warns(UserWarning, match="no network"):
        assert log_report(report.out, report.files["csv"], report.plots) is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([str(report.out.parent / "outputs" / "runs"), "--out", str(report.out), "--wandb"]) == 0


def test_real_tiny_run_renders(tiny_run, cache_dir, tmp_path):
    run_dir, metrics = tiny_run
    # Its parent also holds the base-stage cache (and other tests' folders): none of that is a broken run.
    report = build_report([run_dir.parent], tmp_path / "real_report")
    ours = [r for r in report.runs if r.path == run_dir.resolve()]
    assert len(ours) == 1 and ours[0].ok
    assert any(ours[0] in g.runs for g in report.groups)
    assert not [r for r in report.problems if Path(cache_dir).resolve() in r.path.parents]
    for name in PLOT_FILES:
        assert report.files[name].stat().st_size > 1000
    page = report.files["html"].read_text()
    assert page.count("data:image/png;base64,") == len(report.plots) and ours[0].display in page
    assert any(name.startswith("trajectory: ") for name in report.plots)

    # The run alone: the table is its own numbers.
    alone = build_report([run_dir], tmp_path / "alone")
    (group,) = alone.groups
    assert group.n == 1 and not alone.problems
    assert group.stats["mean_forgetting"].mean == pytest.approx(metrics["mean_forgetting"])
    assert group.stats["target_gain"].mean == pytest.approx(metrics["target_gain"])
    assert group.stats["trainable_pct"].mean == pytest.approx(100 * metrics["trainable_fraction"])
    assert set(group.task_forgetting) == set(metrics["forgetting"])
    assert [s for s, _ in group.curves["forgetting"]] == [h["step"] for h in metrics["history"]]
    assert ours[0].command.startswith("forgetlab")


def test_budgets_and_continual_sections(tree, tmp_path):
    """over_time/: two continual runs (hand-made 4x4 score matrices) and two runs with a history, one of them
    with a forgetting budget (select.max_forgetting=5, budgets [2, 5]) and one from before budgets existed."""
    report = build_report([tree / "over_time"], tmp_path / "out")
    groups = by_label(report)
    replay, sequential = groups["replay"], groups["sequential"]

    # BWT: seed 0 ((50-80) + (70-90))/2 = -25, seed 1 -20; FWT ((25-20) + (40-30))/2 = 7.5 in both;
    # forgetting (Chaudhry): seed 0 (30 + 20)/2 = 25, seed 1 20.
    assert sequential.stats["backward_transfer"].mean == pytest.approx(-22.5)
    assert sequential.stats["backward_transfer"].std == pytest.approx(2.5 * SQRT2)
    assert (sequential.stats["forward_transfer"].mean, sequential.stats["forward_transfer"].std) == (7.5, 0.0)
    assert sequential.stats["forgetting_chaudhry"].mean == pytest.approx(22.5)
    assert replay.stats["backward_transfer"].n == 0

    # Best step under budgets: seed 0 recorded [2, 5] (target 40 at step 10, 60 at step 20); seed 1 (target
    # 10 points higher) is computed from its history under the standard budgets 1, 2, 5, 10.
    assert {b: (s.mean, s.n) for b, s in replay.budget_scores.items()} == {
        "1": (50.0, 1), "2": (45.0, 2), "5": (65.0, 2), "10": (70.0, 1)}
    assert replay.budget_scores["5"].std == pytest.approx(5 * SQRT2)
    assert {b: s.mean for b, s in replay.budget_steps.items()} == {"1": 10, "2": 10, "5": 20, "10": 20}
    assert (replay.stats["selected_step"].mean, replay.stats["selected_step"].n) == (20, 1)
    assert replay.stats["selected_target_gain"].mean == pytest.approx(55.0)
    assert replay.stats["selected_mean_forgetting"].mean == pytest.approx(2.5)

    md = report.files["markdown"].read_text()
    assert "| BWT | FWT | forgetting (continual) | selected step | selected: target gain |" in md
    assert "| -22.50 ± 3.54 | 7.50 ± 0.00 | 22.50 ± 3.54 |" in md
    budgets = md.split("## Best step under forgetting budgets", 1)[1].split("## Runs", 1)[0]
    assert "| group | n | forgetting ≤ 1 | forgetting ≤ 2 | forgetting ≤ 5 | forgetting ≤ 10 |" in budgets
    assert "| replay | 2 | 50.00 (n=1) (step 10) | 45.00 ± 7.07 (step 10) | 65.00 ± 7.07 (step 20) | " \
           "70.00 (n=1) (step 20) |" in budgets
    assert "| sequential |" not in budgets   # no history, no row
    with open(report.files["csv"], newline="") as f:
        rows = {row["group"]: row for row in csv.DictReader(f)}
    assert float(rows["sequential"]["backward_transfer_mean"]) == pytest.approx(-22.5)
    assert float(rows["replay"]["budget_5_target_mean"]) == pytest.approx(65.0)
    assert float(rows["replay"]["budget_5_step_mean"]) == 20.0 and rows["sequential"]["budget_5_step_mean"] == ""

    assert list(report.plots)[len(PLOT_FILES):] == [
        "trajectory: replay (seed 0)", "continual matrix: sequential (seed 0)",
        "continual stages: sequential (seed 0)"]
    for path in report.plots.values():
        assert path.stat().st_size > 1000 and path.read_bytes().startswith(PNG_MAGIC)
    page = report.files["html"].read_text()
    assert page.count('src="data:image/png;base64,') == len(report.plots)
    assert "Best step under forgetting budgets" in page and "65.00 ± 7.07 (step 20)" in page


def test_a_budget_only_the_starting_point_fits_reads_none_within_budget(tree, tmp_path):
    """over_time/ replay runs: every trained step forgets at least 1 point, so under a budget of 0.5 only step
    0 (before training: forgetting 0, the target's starting score) fits. That is no step within the budget."""
    for seed in (0, 1):
        path = tree / "over_time" / f"strategy=replay,seed={seed}" / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics["best_under_budgets"] = best_under_budgets(metrics["history"], "t", [0.5, 2])
        assert metrics["best_under_budgets"]["0.5"]["step"] == 0  # what the run records stays as it was
        path.write_text(json.dumps(metrics))
    report = build_report([tree / "over_time"], tmp_path / "out")
    md = report.files["markdown"].read_text()
    budgets = md.split("## Best step under forgetting budgets", 1)[1].split("## Runs", 1)[0]
    assert "| group | n | forgetting ≤ 0.5 | forgetting ≤ 2 |" in budgets
    assert "| replay | 2 | none within budget | 45.00 ± 7.07 (step 10) |" in budgets
    assert "15.00 ± 7.07" not in budgets   # the targets' starting scores (10, 20) are no result of training
    page = report.files["html"].read_text()
    assert "<td>none within budget</td>" in page and "15.00 ± 7.07" not in page


def test_plain_runs_get_no_optional_columns(report):
    md = report.files["markdown"].read_text()
    assert "BWT" not in md and "selected step" not in md
    # their histories still give the best step under the standard budgets: full seed 0 forgets 10 by step 10
    assert set(by_label(report)["full"].budget_scores) == {"1", "2", "5", "10"}
    assert "## Best step under forgetting budgets" in md


def test_lm_eval_and_intruder_columns(tmp_path):
    """lm-eval results (metrics.json lm_eval) become a table and CSV columns; intruder counts a column."""
    import json

    template = json.loads((FIXTURES / "sweep_a" / "strategy=full,seed=0" / "metrics.json").read_text())
    for seed, (before, after, intruders) in enumerate([(0.6, 0.5, 2), (0.6, 0.4, 4)]):
        run = tmp_path / "sweep" / f"seed={seed}"
        run.mkdir(parents=True)
        metrics = {**template, "seed": seed,
                   "lm_eval": {"version": "0.4.0", "before": {"local_qa": {"acc": before}},
                               "after": {"local_qa": {"acc": after}}, "forgetting": {"local_qa/acc": before - after}},
                   "weight_movement": {"spectral": {"total": {"intruders": intruders}}}}
        (run / "metrics.json").write_text(json.dumps(metrics))
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    (group,) = report.groups
    assert group.lm_eval["local_qa/acc"]["forgetting"].mean == pytest.approx(0.15)
    assert group.stats["intruders"].mean == 3.0
    md = report.files["markdown"].read_text()
    assert "## lm-evaluation-harness" in md and "| full | 2 | 0.600 ± 0.000 → 0.450 ± 0.071 (0.150 ± 0.071) |" in md
    assert "intruder dims" in md and "lm-evaluation-harness" in report.files["html"].read_text()
    with open(report.files["csv"], newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["lm_eval_local_qa/acc_forgetting_mean"]) == pytest.approx(0.15)
    assert float(row["intruders_mean"]) == 3.0
