"""Loaders and task kinds on small files written here: each format reads, each bad file fails with one
exception type whose message names the task, the file, the line and the fields found."""

from __future__ import annotations

import json
import logging
import re

import pytest

from forgetlab.tasks.external import build_external_task
from forgetlab.tasks.loaders import DataFileError, load_table
from forgetlab.tasks.suite import build_suite
from forgetlab.tasks.task import SPLITS

SIZES = {"train": 4, "validation": 1, "test": 1}
QA = {"prompt_template": "q: {question}", "completion_template": "{answer}"}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _qa_rows(n):
    return [{"question": f"what is {i} doubled", "answer": str(2 * i)} for i in range(n)]


def _build(path, **spec):
    return build_external_task(name="mine", source=str(path), sizes=spec.pop("sizes", SIZES), seed=0, **spec)


def _all_rows(task):
    return [r for s in SPLITS for r in task.splits[s]]


# ------------------------------------------------------------------------------------------- formats
def test_jsonl_csv_tsv_and_json_array_read_the_same_rows(tmp_path):
    rows = _qa_rows(3)
    _jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=1))
    (tmp_path / "a.csv").write_text("question,answer\n" + "".join(f'"{r["question"]}",{r["answer"]}\n' for r in rows))
    (tmp_path / "a.tsv").write_text("question\tanswer\n" + "".join(f"{r['question']}\t{r['answer']}\n" for r in rows))
    for name in ("a.jsonl", "a.json", "a.csv", "a.tsv"):
        table = load_table(str(tmp_path / name), "mine")
        assert [r.fields for r in table.rows] == rows, name
    assert [r.where for r in load_table(str(tmp_path / "a.csv"), "mine").rows] == ["line 2", "line 3", "line 4"]
    assert load_table(str(tmp_path / "a.json"), "mine").rows[2].where == "item 2"


def test_conll_reads_sentences_skips_docstart_and_takes_the_last_column(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\n"
        "Anna NNP B-NP B-PER\nvisited VBD B-VP O\nParis NNP B-NP B-LOC\n\n"
        "UN\tB-ORG\nmet\tO\n"
    )
    rows = load_table(str(path), "ner").rows
    assert [(r.where, r.fields) for r in rows] == [
        ("line 3", {"tokens": ["Anna", "visited", "Paris"], "tags": ["B-PER", "O", "B-LOC"]}),
        ("line 7", {"tokens": ["UN", "met"], "tags": ["B-ORG", "O"]}),
    ]


def test_plain_text_by_paragraph_or_by_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first para\nstill first\n\n\nsecond para\n")
    assert [(r.where, r.fields["text"]) for r in load_table(str(path), "t").rows] == [
        ("line 1", "first para\nstill first"), ("line 5", "second para")]
    assert [r.fields["text"] for r in load_table(str(path), "t", text_unit="line").rows] == [
        "first para", "still first", "second para"]


def test_hub_dataset_offline_is_a_clear_error():
    with pytest.raises(DataFileError, match=r"task 'mine': could not load hub dataset 'no-such-org/no-such-set'.*"
                                            r"not available offline") as err:
        load_table("no-such-org/no-such-set", "mine")
    assert isinstance(err.value, FileNotFoundError)  # what the old loader raised


# ------------------------------------------------------------------------------------------ bad files
def _message(path, **spec):
    with pytest.raises(DataFileError) as err:
        _build(path, **spec)
    return str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    assert _message(path, **QA) == f"task 'mine': {path}: line 1: the file is empty"


def test_malformed_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_qa_rows(1)[0]) + "\n\n" + '{"question": "x", "answer": }\n')
    assert _message(path, **QA) == (
        f"task 'mine': {path}: line 3: not valid JSON (Expecting value at column 29): "
        "'{\"question\": \"x\", \"answer\": }'"
    )


def test_missing_field_names_the_template_and_the_fields_found(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*_qa_rows(2), {"question": "no answer here"}])
    assert _message(path, **QA) == (
        f"task 'mine': {path}: line 3: missing field 'answer' (used by template '{{answer}}'); "
        "available fields: ['question']"
    )


def test_missing_field_in_csv_is_also_a_key_error_for_old_callers(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("text,label\nitem 1,odd\n")
    with pytest.raises(KeyError, match=r"line 2: missing field 'txt'.*available fields: \['label', 'text'\]"):
        _build(path, prompt_template="parity: {txt}", completion_template="{label}")


def test_empty_and_null_fields_fail_instead_of_rendering_none(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*_qa_rows(2), {"question": "q", "answer": None}])
    assert _message(path, **QA) == (
        f"task 'mine': {path}: line 3: empty field 'answer' (set `skip_empty: true` to skip such rows); "
        "available fields: ['answer', 'question']"
    )
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("question,answer\nq1,1\nq2,\n")
    assert "line 3: empty field 'answer'" in _message(csv_path, **QA)


def test_csv_row_with_a_wrong_number_of_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer\nq1,1\nq2,2,extra\n")
    assert _message(path, **QA) == (
        f"task 'mine': {path}: line 3: 3 values but the header has 2 columns ['question', 'answer']"
    )


def test_non_utf8_bytes_name_the_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = (json.dumps(_qa_rows(1)[0]) + "\n").encode()
    path.write_bytes(first + '{"question": "caf\u00e9", "answer": "1"}\n'.encode("latin-1"))
    offset = len(first) + len('{"question": "caf')
    assert _message(path, **QA) == (
        f"task 'mine': {path}: line 2: byte 0xe9 at byte offset {offset} is not valid UTF-8; save the file as UTF-8"
    )


def test_bad_conll_lines(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text("Anna B-PER\nvisited\n")
    assert _message(path, kind="ner") == f"task 'mine': {path}: line 2: expected 'token<TAB>tag', found 'visited'"
    path.write_text("Anna B-PER\nvisited VERB\n")
    assert _message(path, kind="ner") == (
        f"task 'mine': {path}: line 2: tag 'VERB' is not 'O' or B-/I-/E-/S-<type>")


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_rows_give_the_size_error_not_a_missing_column(tmp_path, n):
    path = _jsonl(tmp_path / "tiny.jsonl", _qa_rows(n))
    assert _message(path, **QA) == (
        f"task 'mine': {path}: too small: asked for train=4, validation=1, test=1 (6 distinct inputs) but only "
        f"{n} are available; lower tasks.sizes or set `shrink: true` on the task to scale the splits down"
    )
    assert "too small even to shrink" in _message(path, shrink=True, **QA)


def test_shrink_scales_splits_and_warns_with_the_sizes(tmp_path, caplog):
    path = _jsonl(tmp_path / "d.jsonl", _qa_rows(12))
    with caplog.at_level(logging.WARNING):
        task = _build(path, sizes={"train": 40, "validation": 10, "test": 10}, shrink=True, **QA)
    assert [len(task.splits[s]) for s in SPLITS] == [8, 2, 2]
    assert re.search(r"task 'mine': .*d.jsonl has 12 distinct inputs, fewer than the 60 asked "
                     r"\(train=40, validation=10, test=10\); shrunk to train=8, validation=2, test=2", caplog.text)


def test_skipped_rows_are_counted(tmp_path):
    rows = _qa_rows(6)
    rows[1]["answer"] = ""
    rows[4]["answer"] = "   "
    path = _jsonl(tmp_path / "d.jsonl", rows)
    task = _build(path, sizes={"train": 2, "validation": 1, "test": 1}, skip_empty=True, **QA)
    assert task.skipped_rows == 2
    assert sorted(r["completion"] for r in _all_rows(task)) == ["0", "10", "4", "6"]


# ------------------------------------------------------------------------------------------ task kinds
def test_summarization_keeps_every_reference(tmp_path):
    rows = [{"dialogue": f"#A#: hi {i}\n#B#: bye", "summary1": f"A greets {i}.", "summary2": f"They part {i}."}
            for i in range(6)]
    path = _jsonl(tmp_path / "dialogsum.jsonl", rows)
    task = _build(path, kind="summarization", fields={"summary": ["summary1", "summary2"]})
    row = task.splits["test"][0]
    i = row["key"].split()[2]
    assert row["references"] == [f"A greets {i}.", f"They part {i}."] and row["completion"] == f"A greets {i}."
    assert row["key"] in row["prompt"] and task.metric == "rouge" and task.kind == "summarization"
    assert len(task.templates) == 3


def test_ner_from_conll_answers_in_the_parseable_format(tmp_path):
    path = tmp_path / "ner.conll"
    sentences = [f"Anna\tB-PER\nSmith\tI-PER\nsaw\tO\nNew\tB-LOC\nYork\tI-LOC\nin\tO\n{1990 + i}\tO\n" for i in range(5)]
    sentences.append("nothing\tO\nhere\tO\n")
    path.write_text("\n".join(sentences))
    task = _build(path, kind="ner", sizes={"train": 4, "validation": 1, "test": 1})
    answers = {r["key"]: r["completion"] for r in _all_rows(task)}
    assert answers["Anna Smith saw New York in 1990"] == "person: Anna Smith; location: New York"
    assert answers["nothing here"] == "none"
    assert task.metric == "entity_f1"
    assert all("Anna Smith saw" in r["prompt"] or "nothing here" in r["prompt"] for r in _all_rows(task))


def test_classification_maps_labels_to_names(tmp_path):
    path = tmp_path / "sst2.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"film {i} was ok\t{i % 2}\n" for i in range(6)))
    task = _build(path, kind="classification", label_names={0: "negative", 1: "positive"},
                  templates=["{sentence} ({options_or})"])
    assert {r["key"]: r["completion"] for r in _all_rows(task)}["film 3 was ok"] == "positive"
    assert all(r["prompt"].endswith("(negative or positive)") for r in _all_rows(task))
    assert task.metric == "macro_f1"
    path.write_text("sentence\tlabel\nfine\t0\nodd\t7\n")
    assert _message(path, kind="classification", label_names={0: "negative", 1: "positive"}) == (
        f"task 'mine': {path}: line 3: label '7' is not in label_names ['0', '1']; "
        "available fields: ['label', 'sentence']")


def test_held_out_text_has_no_prompt(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text("\n\n".join(f"Paragraph number {i}." for i in range(6)))
    task = _build(path, kind="text")
    row = task.splits["train"][0]
    assert task.kind == "text" and row["prompt"] == "" and row["completion"].startswith("Paragraph number")


def test_suite_builds_custom_kinds_from_a_spec(tmp_path):
    path = _jsonl(tmp_path / "text.jsonl", [{"body": f"doc {i}"} for i in range(6)])
    custom = {"held_out": {"source": str(path), "kind": "text", "fields": {"text": "body"}}}
    suite = build_suite("copy", [], SIZES, 0, eval=["copy", "held_out"], custom=custom)
    assert suite.tasks["held_out"].kind == "text"
    assert suite.skipped_rows() == {"copy": 0, "held_out": 0}


def test_rows_repeating_a_dialogue_become_one_example_with_all_references(tmp_path):
    rows = [{"dialogue": f"d{i}", "summary": f"s{i}"} for i in range(6)] + [{"dialogue": "d0", "summary": "t0"}]
    task = _build(_jsonl(tmp_path / "d.jsonl", rows), kind="summarization")
    refs = {r["key"]: r["references"] for r in _all_rows(task)}
    assert len(refs) == 6 and refs["d0"] == ["s0", "t0"]


def test_conll_named_txt_is_read_as_conll_for_ner(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(f"Leo{i} B-PER\nran O\n" for i in range(6)))
    task = _build(path, kind="ner")
    assert {r["completion"] for r in _all_rows(task)} == {f"person: Leo{i}" for i in range(6)}


def test_hub_dataset_class_names_label_classes_and_tags(monkeypatch):
    import datasets

    features = datasets.Features({
        "sentence": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["negative", "positive"]),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
    })
    data = datasets.Dataset.from_dict({
        "sentence": [f"Leo Ray {i} smiled" for i in range(6)], "label": [1, 0, 1, 0, 1, 0],
        "tokens": [["Leo", "Ray", str(i)] for i in range(6)], "ner_tags": [[1, 2, 0]] * 6,
    }, features=features)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or data)
    cls = build_external_task(name="sst", source="org/sst", sizes=SIZES, seed=0, kind="classification")
    assert {r["key"]: r["completion"] for r in _all_rows(cls)}["Leo Ray 0 smiled"] == "positive"
    ner = build_external_task(name="ner", source="org/ner", sizes=SIZES, seed=0, kind="ner",
                              fields={"tags": "ner_tags"}, split="validation")
    assert {r["completion"] for r in _all_rows(ner)} == {"person: Leo Ray"}
    assert calls[-1] == (("org/ner", None), {"split": "validation"})


def test_custom_task_specs_as_written_in_yaml_survive_hydra_instantiate(tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    (tmp_path / "sst.tsv").write_text("sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(6)))
    yaml = f"""
    _target_: forgetlab.tasks.suite.build_suite
    target: sst
    base: []
    sizes: {{train: 4, validation: 1, test: 1}}
    seed: 0
    custom:
      sst:
        source: {tmp_path / "sst.tsv"}
        kind: classification
        label_names: {{0: negative, 1: positive}}
        metric: {{name: macro_f1, headline: accuracy}}
      sst_custom:
        source: {tmp_path / "sst.tsv"}
        kind: classification
        label_names: [negative, positive]
        metric: {{_target_: tests.test_metrics.Overlap, bonus: 1.0}}
    eval: [sst, sst_custom]
    """
    suite = instantiate(OmegaConf.create(yaml), _convert_="all")
    from forgetlab.evaluation.metrics import resolve_metric

    assert resolve_metric(suite.tasks["sst"].metric).headline == "accuracy"
    assert resolve_metric(suite.tasks["sst_custom"].metric)(["a"], ["b"]) == 11.0
    assert {r["completion"] for r in _all_rows(suite.tasks["sst"])} == {"negative", "positive"}
