"""The data cache: generated tasks and tokenised training data are built once and loaded by later runs."""

from __future__ import annotations

import pytest
from datasets import Dataset

import forgetlab.tasks.task as task_module
from forgetlab.tasks.suite import build_suite
from forgetlab.training.datamodule import InstructionDataModule
from forgetlab.utils.columns import column
from forgetlab.utils.dataset_cache import cached_dataset

SUITE = {"target": "reverse", "base": ["copy", "sentiment"], "sizes": {"train": 40, "validation": 4, "test": 8},
         "seed": 7}


def test_an_entry_is_built_once_then_loaded(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return Dataset.from_dict({"x": [1, 2, 3]})

    first = cached_dataset(tmp_path, "demo", {"k": 1}, build)
    second = cached_dataset(tmp_path, "demo", {"k": 1}, build)
    other = cached_dataset(tmp_path, "demo", {"k": 2}, build)
    assert column(first, "x") == column(second, "x") == column(other, "x") == [1, 2, 3]
    assert len(calls) == 2  # once per key


def test_a_half_written_entry_is_rebuilt_and_an_unwritable_cache_only_costs_speed(tmp_path, caplog):
    entry_parent = tmp_path / "demo"
    cached_dataset(tmp_path, "demo", {"k": 1}, lambda: Dataset.from_dict({"x": [1]}))
    (entry := next(entry_parent.iterdir())).joinpath(".complete").unlink()  # as if killed mid-write
    rebuilt = cached_dataset(tmp_path, "demo", {"k": 1}, lambda: Dataset.from_dict({"x": [2]}))
    assert column(rebuilt, "x") == [2] and entry.joinpath(".complete").is_file()

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    data = cached_dataset(blocked, "demo", {"k": 1}, lambda: Dataset.from_dict({"x": [3]}))
    assert column(data, "x") == [3] and "could not cache" in caplog.text


def test_generated_tasks_are_loaded_from_the_cache_with_the_same_rows(tmp_path, monkeypatch):
    fresh = build_suite(**SUITE, cache_dir=str(tmp_path))
    monkeypatch.setattr(task_module, "_generate_splits", lambda *a: pytest.fail("must load from the cache"))
    cached = build_suite(**SUITE, cache_dir=str(tmp_path))
    assert cached.fingerprints() == fresh.fingerprints()
    assert cached.tasks["reverse"].max_answer_chars == fresh.tasks["reverse"].max_answer_chars
    monkeypatch.undo()
    assert build_suite(**SUITE).fingerprints() == fresh.fingerprints()  # same rows as without a cache


def test_tokenised_training_data_is_cached_by_content_and_encoding(tmp_path):
    from forgetlab.models.tiny import build_tiny_t5

    lm = build_tiny_t5(d_model=16, d_ff=32, num_heads=2, d_kv=8, num_layers=1, num_decoder_layers=1)
    suite = build_suite(**SUITE)
    train = suite.tasks["reverse"].splits["train"]

    def module(encode, data=train, key=None):
        dm = InstructionDataModule(data, encode, lm.collate, 8, seed=0, cache_dir=tmp_path,
                                   encoding_key=key or lm.encoding_key())
        dm.setup()
        return dm.train_data

    first = module(lm.encode_batch)
    again = module(lambda b: pytest.fail("must load the tokenised data from the cache"))
    assert first[:] == again[:]
    calls = []

    def counting(batch):
        calls.append(1)
        return lm.encode_batch(batch)

    module(counting, data=train.select(range(10)))  # other rows: tokenised again
    module(counting, key={**lm.encoding_key(), "max_length": 7})  # other encoding: tokenised again
    assert len(calls) == 2


def test_tokenising_never_pickles_the_model_to_name_the_result(monkeypatch):
    """datasets names a `map` result by hashing its function unless given a fingerprint; `encode_batch` is a
    method of the LanguageModel, so that hash pickled every weight (~0.5 s a run). The name comes from the
    rows and the encoding instead, and differs when either does."""
    import datasets.arrow_dataset

    from forgetlab.models.tiny import build_tiny_t5

    lm = build_tiny_t5(d_model=16, d_ff=32, num_heads=2, d_kv=8, num_layers=1, num_decoder_layers=1)
    train = build_suite(**SUITE).tasks["reverse"].splits["train"]
    monkeypatch.setattr(datasets.arrow_dataset, "update_fingerprint",
                        lambda *a, **k: pytest.fail("map must not hash encode_batch (and the model with it)"))

    def fingerprint(data, key):
        dm = InstructionDataModule(data, lm.encode_batch, lm.collate, 8, seed=0, encoding_key=key)
        dm.setup()
        return dm.train_data._fingerprint

    key = lm.encoding_key()
    first = fingerprint(train, key)
    assert fingerprint(train, key) == first
    assert fingerprint(train.select(range(10)), key) != first
    assert fingerprint(train, {**key, "max_length": 7}) != first
