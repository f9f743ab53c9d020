"""Every scored test example kept: predictions/<step>/<task>.jsonl hold one row per example, and the
aggregate scores of metrics.json are recomputed from those files alone; the cap and gzip are recorded;
the report's "what was forgotten" section reads them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from omegaconf import open_dict

from forgetlab.evaluation.metrics import BUILTIN_METRICS, resolve_metric
from forgetlab.evaluation.predictions import (
    GENERATION_COLUMNS,
    PredictionWriter,
    read_rows,
    read_step,
    run_generation_rows,
)
from forgetlab.evaluation.scoring import TEXT_HEADLINE
from tests.conftest import TINY, compose_config


def _recompute(rows: list[dict], info: dict, metric_spec) -> dict[str, float]:
    """The task's aggregate values computed from the file's predictions and references, as a reader would."""
    if info["name"] == "perplexity":
        loss = sum(r["nll"] for r in rows) / sum(r["tokens"] for r in rows)
        return {TEXT_HEADLINE: 100.0 * math.exp(-loss)}
    return resolve_metric(metric_spec).compute([r["prediction"] for r in rows], [r["references"] for r in rows])


def _check_step(run_dir: Path, metrics: dict, step: str, scores: dict, suffix: str = ".jsonl") -> None:
    for task, result in scores.items():
        rows = read_rows(run_dir / "predictions" / step / f"{task}{suffix}")
        assert [r["index"] for r in rows] == list(range(result["n"]))  # one row per test example, in order
        assert all(r["prompt"] is not None and r["references"] for r in rows)
        info = metrics["metric_info"][task]
        spec = {"name": info["name"], "headline": info["headline"]}
        assert _recompute(rows, info, spec) == pytest.approx(result["metrics"], rel=1e-9, abs=1e-9)
        assert result["loss"] == pytest.approx(sum(r["nll"] for r in rows) / sum(r["tokens"] for r in rows),
                                               rel=1e-5)
        if info["name"] != "perplexity":  # per-example values whose mean is the aggregate (built-in means)
            assert all(r["score"] == r["values"][info["headline"]] for r in rows)


def test_every_eval_task_keeps_every_example_before_and_after(tiny_run):
    run_dir, metrics = tiny_run
    assert set(metrics["before"]) == set(metrics["after"]) == {"copy", "uppercase", "sentiment", "reverse"}
    for step in ("before", "after"):
        _check_step(run_dir, metrics, step, metrics[step])
        # exact match: the aggregate is the mean of the per-example scores stored in the file
        for task, result in metrics[step].items():
            rows = read_rows(run_dir / "predictions" / step / f"{task}.jsonl")
            assert sum(r["score"] for r in rows) / len(rows) == result["score"]
    info = metrics["predictions"]
    assert info["dir"] == "predictions" and (info["before"], info["after"]) == ("before", "after")
    assert info["capped"] is False and info["max_per_task"] is None and info["format"] == "jsonl"
    assert info["kept"] == info["total"] == {s: {t: 32 for t in metrics["before"]} for s in ("before", "after")}


def test_generation_rows_pair_before_and_after_for_wandb(tiny_run):
    run_dir, metrics = tiny_run
    rows = run_generation_rows(run_dir, metrics, limit=5)
    assert len(rows) == 5 * len(metrics["before"]) and all(len(r) == len(GENERATION_COLUMNS) for r in rows)
    before = read_rows(run_dir / "predictions" / "before" / "copy.jsonl")[0]
    after = read_rows(run_dir / "predictions" / "after" / "copy.jsonl")[0]
    assert rows[0] == ["copy", 0, before["prompt"], before["references"][0], before["prediction"],
                       after["prediction"], before["score"], after["score"]]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


WORDS = ["anna", "met", "leo", "in", "paris", "while", "the", "cat", "sat", "on", "a", "mat", "and", "the", "dog",
         "ran", "to", "the", "park"]


def test_rouge_entity_f1_cap_gzip_selected_and_repair_steps(tmp_path, cache_dir):
    """A custom ROUGE task and a CoNLL entity task among the evaluated ones; eval.max_predictions cuts the
    built-in tasks (32 test examples) but not these (6 and 5); gzip on; a budget-selected step and one repair
    lambda write their own folders. Aggregates are recomputed from the uncapped files."""
    from forgetlab.run import run_experiment

    summ = _jsonl(tmp_path / "summ.jsonl", [{"dialogue": f"#A#: {a} {b} {i}. #B#: {c}.",
                                              "summary": f"{a} talks to {c} about {b}."}
                                             for i, (a, b, c) in enumerate(zip(WORDS, WORDS[1:], WORDS[2:]))])
    ner = tmp_path / "ner.conll"
    ner.write_text("\n".join(f"{a.title()}\tB-PER\nsaw\tO\n{b.title()}\tB-LOC\n{i}\tO\n"
                             for i, (a, b) in enumerate(zip(WORDS, WORDS[3:]))))
    cfg = compose_config([*TINY, "strategy.optim.steps=2", "eval.every_n_steps=1", "select.max_forgetting=100",
                          "eval.max_predictions=8", "eval.compress_predictions=true", "diagnostics.spectral=false",
                          "diagnostics.repair_lambdas=[0.5]",
                          "tasks.eval=[copy, uppercase, sentiment, reverse, summ, ner]"], tmp_path / "run", cache_dir)
    with open_dict(cfg):
        cfg.tasks.custom = {"summ": {"source": str(summ), "kind": "summarization",
                                     "sizes": {"train": 4, "validation": 2, "test": 6}},
                            "ner": {"source": str(ner), "kind": "ner",
                                    "sizes": {"train": 4, "validation": 2, "test": 5}}}
    metrics = run_experiment(cfg)
    run_dir = tmp_path / "run"
    assert metrics["metric_info"]["summ"]["name"] == "rouge" and metrics["metric_info"]["ner"]["name"] == "entity_f1"
    custom = {t: metrics[step][t] for step in ("before",) for t in ("summ", "ner")}
    _check_step(run_dir, metrics, "before", custom, ".jsonl.gz")
    _check_step(run_dir, metrics, "after", {t: metrics["after"][t] for t in ("summ", "ner")}, ".jsonl.gz")
    summ_rows = read_rows(run_dir / "predictions" / "after" / "summ.jsonl.gz")
    assert set(summ_rows[0]["values"]) == {"rouge1", "rouge2", "rougeLsum"}
    assert set(read_rows(run_dir / "predictions" / "after" / "ner.jsonl.gz")[0]["values"]) >= {"tp", "n_pred",
                                                                                               "n_gold", "f1"}

    info = metrics["predictions"]
    assert info["capped"] is True and info["max_per_task"] == 8 and info["format"] == "jsonl.gz"
    assert info["total"]["after"] == {"copy": 32, "uppercase": 32, "sentiment": 32, "reverse": 32, "summ": 6, "ner": 5}
    assert info["kept"]["after"] == {"copy": 8, "uppercase": 8, "sentiment": 8, "reverse": 8, "summ": 6, "ner": 5}
    capped = read_rows(run_dir / "predictions" / "before" / "copy.jsonl.gz")
    assert [r["index"] for r in capped] == list(range(8))  # the first N, the same N in every step
    assert not list((run_dir / "predictions").rglob("*.jsonl"))  # everything gzipped

    # the budget-selected checkpoint and the repair lambda: their own folders, the same tasks
    assert metrics["selected"] is not None and set(read_step(run_dir / "predictions" / "selected")) == set(
        metrics["before"])
    assert info["kept"]["selected"] == info["kept"]["after"]
    repair = json.loads((run_dir / "repair.json").read_text())
    lam = run_dir / "predictions" / "repair" / "lambda=0.5"
    assert set(read_step(lam)) == set(metrics["before"])
    assert repair["predictions"]["kept"]["repair/lambda=0.5"]["summ"] == 6
    repaired = read_rows(lam / "summ.jsonl.gz")
    assert _recompute(repaired, {"name": "rouge"}, "rouge") == pytest.approx(repair["results"][0]["after"]["summ"]
                                                                            ["metrics"])


@pytest.mark.parametrize("name", sorted(BUILTIN_METRICS))
def test_builtin_aggregates_are_reduced_from_their_rows(name):
    """Each built-in's aggregate equals its reduce over the per-example rows, and those rows survive JSON."""
    preds = ["person: Anna; location: Paris", "positive", "the cat sat.", "none", "Leo"]
    refs = [["person: Anna"], ["Positive"], ["the cat sat on the mat.", "a cat sat."], ["none"], ["person: Leo"]]
    metric = resolve_metric(name)
    values, rows = metric.compute_examples(preds, refs)
    assert values == metric.compute(preds, refs) and len(rows) == len(preds)
    assert metric.reduce(json.loads(json.dumps(rows))) == values


def test_a_custom_metric_gets_its_value_per_example():
    metric = resolve_metric("tests.test_predictions.longest_answer")
    values, rows = metric.compute_examples(["a", "abc", "ab"], ["x", "y", "z"])
    assert values == {"longest_answer": 3.0} and [r["longest_answer"] for r in rows] == [1.0, 3.0, 2.0]


def longest_answer(predictions, references):
    """A corpus-level custom metric (not a mean): the longest prediction's length."""
    return max(len(p) for p in predictions)


def test_files_are_rewritten_whole_and_disabled_writes_nothing(tmp_path):
    """A resumed run writes the same step again: the file is replaced, never appended to."""
    rows = {"copy": [{"index": i, "score": 100.0} for i in range(5)]}
    writer = PredictionWriter(tmp_path, max_rows=3)
    writer.write("before", rows)
    writer.write("before", rows)
    assert [r["index"] for r in read_rows(tmp_path / "predictions/before/copy.jsonl")] == [0, 1, 2]
    assert writer.summary()["kept"] == {"before": {"copy": 3}} and writer.summary()["capped"] is True
    off = PredictionWriter(tmp_path / "off", enabled=False)
    off.write("before", rows)
    assert off.summary() is None and not (tmp_path / "off").exists()
    again = PredictionWriter(tmp_path, max_rows=3)  # a resumed continual run counts what is on disk
    again.record_existing("before", {"copy": 5})
    assert again.summary()["kept"] == {"before": {"copy": 3}} and again.summary()["total"] == {"before": {"copy": 5}}


def _row(index: int, prompt: str, reference: str, prediction: str) -> dict:
    score = 100.0 if prediction == reference else 0.0
    return {"index": index, "key": prompt, "prompt": prompt, "references": [reference], "prediction": prediction,
            "score": score, "values": {"exact_match": score}, "nll": 1.0, "tokens": 2}


def test_the_report_shows_what_went_from_right_to_wrong(tiny_run, tmp_path):
    """A run whose copy task (old) had 3 of 4 right before and 1 after: the report lists the 2 lost ones, and
    "zz" as the most frequent new wrong answer; the target task is not listed."""
    from forgetlab.report.build import build_report

    source, _ = tiny_run
    run = tmp_path / "runs" / "r0"
    run.mkdir(parents=True)
    shutil.copy(source / "metrics.json", run / "metrics.json")
    before = [_row(0, "Copy: abc", "abc", "abc"), _row(1, "Copy: dog", "dog", "dog"),
              _row(2, "Copy: owl", "owl", "owl"), _row(3, "Copy: emu", "emu", "x")]
    after = [_row(0, "Copy: abc", "abc", "zz"), _row(1, "Copy: dog", "dog", "dog"),
             _row(2, "Copy: owl", "owl", "zz"), _row(3, "Copy: emu", "emu", "emu")]
    for step, rows in (("before", before), ("after", after)):
        (run / "predictions" / step).mkdir(parents=True)
        _jsonl(run / "predictions" / step / "copy.jsonl", rows)
        _jsonl(run / "predictions" / step / "reverse.jsonl", rows)  # the target: never "forgotten"
    report = build_report([tmp_path / "runs"], tmp_path / "report")
    [section] = report.forgotten
    [copy] = section.tasks
    assert (copy.task, copy.mode, copy.count, copy.compared) == ("copy", "right_to_wrong", 2, 4)
    assert [e["index"] for e in copy.examples] == [0, 2] and copy.new_wrong_answers == [("zz", 2)]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## What was forgotten" in md and "**copy**: 2 of 4 examples right before and wrong after" in md
    assert "| 2 | Copy: owl | owl | owl | zz | 100.0 → 0.0 |" in md and "“zz” (2)" in md
    assert "**reverse**" not in md
    html = (tmp_path / "report" / "report.html").read_text()
    assert "What was forgotten" in html and "Copy: owl" in html


def test_graded_scores_list_the_largest_drops():
    from forgetlab.report.forgotten import compare_task

    before = [{"index": i, "prompt": str(i), "references": ["r"], "prediction": "p", "score": s}
              for i, s in enumerate([80.0, 50.0, 10.0])]
    after = [{**r, "prediction": "q", "score": s} for r, s in zip(before, [20.0, 45.0, 30.0])]
    result = compare_task("summ", before, after, "rougeLsum")
    assert result.mode == "largest_drops" and result.count == 2 and [e["index"] for e in result.examples] == [0, 1]


def test_a_continual_run_keeps_every_stage_and_a_rerun_neither_loses_nor_repeats_rows(tmp_path, cache_dir):
    """predictions/stage_00 (the start) and stage_01; the same command again finds the sequence complete,
    scores nothing, and reports the rows already on disk, with the files unchanged."""
    from forgetlab.continual_run import run_continual

    overrides = ["experiment=tiny", "sequence=tiny", "sequence.stages=[[reverse]]", "strategy.optim.steps=2",
                 "eval.every_n_steps=0", "eval.test_max_examples=8", "diagnostics.spectral=false"]
    first = run_continual(compose_config(overrides, tmp_path, cache_dir))
    info = first["predictions"]
    assert (info["before"], info["after"]) == ("stage_00", "stage_01")
    files = {p: p.read_bytes() for p in sorted((tmp_path / "predictions").rglob("*.jsonl"))}
    assert {p.parent.name for p in files} == {"stage_00", "stage_01"}
    for step in ("stage_00", "stage_01"):
        rows = read_step(tmp_path / "predictions" / step)
        assert set(rows) == set(first["before"]) and all(len(r) == 8 for r in rows.values())
    assert read_step(tmp_path / "predictions" / "stage_01")["reverse"][0]["score"] is not None
    again = run_continual(compose_config(overrides, tmp_path, cache_dir))
    assert again["timing"]["stages_trained_now"] == 0
    assert again["predictions"]["kept"] == info["kept"] and again["predictions"]["total"] == info["total"]
    assert {p: p.read_bytes() for p in sorted((tmp_path / "predictions").rglob("*.jsonl"))} == files
