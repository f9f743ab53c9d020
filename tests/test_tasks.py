"""Built-in tasks: enough families and wordings, deterministic, splits disjoint; user files load too."""

from __future__ import annotations

import csv
import json

import pytest

from forgetlab.evaluation.metrics import accuracy, char_f1, exact_match
from forgetlab.tasks.families import FAMILIES
from forgetlab.tasks.suite import build_suite
from forgetlab.tasks.task import SPLITS, build_builtin_task

SIZES = {"train": 300, "validation": 40, "test": 60}


def test_at_least_eight_families_with_three_templates_and_a_metric():
    assert len(FAMILIES) >= 8
    for fam in FAMILIES.values():
        assert len(fam.templates) >= 3, fam.name
        assert fam.metric in {"exact_match", "accuracy", "char_f1"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_splits_are_disjoint_and_sized(name):
    task = build_builtin_task(name, SIZES, seed=7)
    keys = {s: set(task.splits[s]["key"]) for s in SPLITS}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert {s: len(task.splits[s]) for s in SPLITS} == SIZES
    prompts = set(task.splits["test"]["prompt"])
    assert not prompts & set(task.splits["train"]["prompt"])
    assert len(set(task.splits["train"]["template"])) == len(task.templates)


def test_generation_is_deterministic_and_seed_dependent():
    a = build_builtin_task("reverse", SIZES, seed=1)
    b = build_builtin_task("reverse", SIZES, seed=1)
    c = build_builtin_task("reverse", SIZES, seed=2)
    assert a.splits["train"]["prompt"] == b.splits["train"]["prompt"]
    assert a.fingerprint("test") == b.fingerprint("test") != c.fingerprint("test")


def test_answers_are_correct_for_known_families():
    rows = build_builtin_task("reverse", SIZES, seed=0).splits["test"]
    for key, completion in zip(rows["key"], rows["completion"]):
        assert completion == key[::-1]
    rows = build_builtin_task("addition", SIZES, seed=0).splits["test"]
    for key, completion in zip(rows["key"], rows["completion"]):
        a, b = key.split("+")
        assert int(completion) == int(a) + int(b)


def test_metrics_on_known_values():
    assert exact_match(["abc", " ab ", "x"], ["abc", "ab", "y"]) == pytest.approx(200 / 3)
    assert accuracy(["Positive", "negative"], ["positive", "positive"]) == 50.0
    assert char_f1(["ab"], ["abcd"]) == pytest.approx(100 * 2 * 1.0 * 0.5 / 1.5)


def _write_jsonl(path, n=40):
    with open(path, "w") as f:
        f.writelines(json.dumps({"question": f"what is {i} doubled", "answer": str(2 * i)}) + "\n" for i in range(n))


def test_user_jsonl_file_becomes_a_task(tmp_path):
    path = tmp_path / "double.jsonl"
    _write_jsonl(path)
    custom = {"double": {"source": str(path), "prompt_template": "q: {question}", "completion_template": "{answer}",
                         "extra_templates": ["{question}?"], "metric": "exact_match"}}
    suite = build_suite("double", ["copy"], {"train": 30, "validation": 5, "test": 5}, 0, custom=custom)
    task = suite.tasks["double"]
    assert sum(len(task.splits[s]) for s in SPLITS) == 40
    assert not set(task.splits["train"]["key"]) & set(task.splits["test"]["key"])
    row = task.splits["test"][0]
    assert row["prompt"].startswith(("q: what is", "what is")) and row["completion"].isdigit()
    assert suite.eval == ["copy", "double"]


def test_user_csv_file_and_bad_field(tmp_path):
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(20):
            w.writerow([f"item {i}", "even" if i % 2 == 0 else "odd"])
    ok = {"parity": {"source": str(path), "prompt_template": "parity: {text}", "completion_template": "{label}",
                     "metric": "accuracy"}}
    suite = build_suite("parity", [], {"train": 10, "validation": 5, "test": 5}, 0, custom=ok)
    assert set(suite.tasks["parity"].splits["train"]["completion"]) <= {"even", "odd"}
    bad = {"parity": {**ok["parity"], "prompt_template": "parity: {txt}"}}
    with pytest.raises(KeyError, match="txt.*available fields: \\['label', 'text'\\]"):
        build_suite("parity", [], {"train": 10, "validation": 5, "test": 5}, 0, custom=bad)


def test_missing_dataset_file_is_a_clear_error(tmp_path):
    custom = {"mine": {"source": str(tmp_path / "nope.jsonl"), "prompt_template": "{a}", "completion_template": "{b}"}}
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        build_suite("mine", [], SIZES, 0, custom=custom)


def test_unknown_task_names_are_listed():
    with pytest.raises(ValueError, match=r"tasks.base: unknown task 'juggle'; allowed values: \['addition'"):
        build_suite("reverse", ["copy", "juggle"], SIZES, 0)
