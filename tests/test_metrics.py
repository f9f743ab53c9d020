"""Metrics against values computed by hand: ROUGE (rouge-score), entity F1 (CoNLL convention), macro-F1,
the entity answer parser, and custom metrics plugged in by dotted path."""

from __future__ import annotations

import importlib.metadata
from collections import Counter

import pytest

from forgetlab.evaluation.entities import format_entities, parse_entities, tags_to_entities
from forgetlab.evaluation.metrics import get_metric, metric_versions, resolve_metric


def first_char(predictions, references):
    """A custom metric as a plain function: percent of predictions whose first character matches."""
    hits = sum(p[:1] == r[:1] for p, r in zip(predictions, references))
    return 100.0 * hits / len(references)


def length_stats(predictions, references, scale=1.0):
    return {"chars": scale * sum(map(len, predictions)), "count": float(len(predictions))}


class Overlap:
    """A custom metric as a class with `compute` and `headline`."""

    headline = "overlap"

    def __init__(self, bonus: float = 0.0):
        self.bonus = bonus

    def compute(self, predictions, references):
        return {"overlap": 10.0 + self.bonus, "n": float(len(predictions))}


# ----------------------------------------------------------------------------------------------- ROUGE
def test_rouge_two_sentences_by_hand():
    # prediction tokens (stemmed: cats -> cat): the cat sat | it ran            = 5
    # reference tokens:                          the cat sat on the mat | it ran away = 9
    # rouge1: 5 common -> P 5/5, R 5/9, F = 2*5/(5+9) = 10/14
    # rouge2: pred bigrams the-cat cat-sat sat-it it-ran; common the-cat cat-sat it-ran -> P 3/4 R 3/8 F 1/2
    # rougeLsum: LCS per reference sentence over the union of prediction sentences: 3 + 2 = 5 -> 10/14
    scores = get_metric("rouge").compute(["The cats sat. It ran!"], ["The cat sat on the mat. It ran away."])
    assert scores == pytest.approx({"rouge1": 100 * 10 / 14, "rouge2": 50.0, "rougeLsum": 100 * 10 / 14})


def test_rouge_lsum_reads_sentences_so_their_order_does_not_matter():
    # One LCS over the whole text would be 3 of 6 tokens (50); per sentence every token is matched.
    scores = get_metric("rouge").compute(["It ran away. The cat sat."], ["The cat sat. It ran away."])
    assert scores["rougeLsum"] == pytest.approx(100.0)
    assert scores["rouge1"] == pytest.approx(100.0)
    assert scores["rouge2"] == pytest.approx(100 * 2 * (4 / 5) * (4 / 5) / (8 / 5))  # 4 of 5 bigrams


def test_rouge_takes_the_best_reference_per_example_then_the_mean():
    metric = get_metric("rouge")
    scores = metric.compute(["a b", "c d"], [["x y", "a b"], ["z"]])
    assert scores["rouge1"] == pytest.approx(50.0)  # example 1: 100 (second reference), example 2: 0
    assert metric(["a b"], [["a b"]]) == pytest.approx(100.0)  # the headline, rougeLsum
    assert metric.headline == "rougeLsum"


# ------------------------------------------------------------------------------------------ entities
def test_entity_f1_partial_match_by_hand():
    preds = ["location: Paris; person: Anna; organisation: Leo", "person: Bob", "location: York"]
    refs = ["person: Anna, Leo; location: Paris", "none", "location: New York"]
    # tp: Anna, Paris = 2 (Leo has the wrong type, York the wrong span); predicted 5; gold 4
    p, r = 2 / 5, 2 / 4
    scores = get_metric("entity_f1").compute(preds, refs)
    assert scores == pytest.approx({"precision": 100 * p, "recall": 100 * r, "f1": 100 * 2 * p * r / (p + r)})


def test_entity_f1_all_none_is_perfect_and_repeats_count():
    assert get_metric("entity_f1")(["none", "None."], ["none", "none"]) == 100.0
    # gold has Anna twice; one predicted Anna matches one of them
    assert get_metric("entity_f1").compute(["person: Anna"], ["person: Anna, Anna"])["recall"] == 50.0


def test_parser_tolerates_order_spacing_and_type_case():
    expected = Counter({("person", "Anna"): 1, ("person", "Leo"): 1, ("location", "New York"): 1})
    assert parse_entities("person: Anna, Leo; location: New York") == expected
    assert parse_entities("  Location :  New   York ;person:Leo,Anna; ") == expected
    assert parse_entities("none") == Counter()
    assert parse_entities("") == Counter()
    assert parse_entities("Anna and Leo") == Counter({("", "Anna and Leo"): 1})  # malformed: a false positive


def test_format_then_parse_round_trips():
    entities = [("location", "Paris"), ("person", "Anna"), ("person", "Leo")]
    text = format_entities(entities)
    assert text == "person: Anna, Leo; location: Paris"
    assert parse_entities(text) == Counter(entities)
    assert format_entities([]) == "none"


def test_tags_to_entities_follows_conll_chunking():
    tokens = ["Anna", "Smith", "visited", "New", "York", "and", "Paris"]
    assert tags_to_entities(tokens, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-LOC"]) == [
        ("person", "Anna Smith"), ("location", "New York"), ("location", "Paris")]
    # IOB1 (CoNLL-2003): I- opens a chunk after O; B- only separates two adjacent chunks of one type
    assert tags_to_entities(["Bonn", "Paris", "UN"], ["I-LOC", "B-LOC", "I-ORG"]) == [
        ("location", "Bonn"), ("location", "Paris"), ("organisation", "UN")]
    # a type change inside a run of I- tags ends the chunk
    assert tags_to_entities(["a", "b"], ["B-PER", "I-LOC"]) == [("person", "a"), ("location", "b")]


# ------------------------------------------------------------------------------------ classification
def test_macro_f1_by_hand():
    # pos: tp 2, predicted 2, gold 3 -> F1 = 2*2/(2+3) = 0.8; neg: tp 1, predicted 2, gold 1 -> 2/3
    scores = get_metric("macro_f1").compute(["pos", "neg", "pos", "neg"], ["pos", "pos", "pos", "neg"])
    assert scores == pytest.approx({"macro_f1": 100 * (0.8 + 2 / 3) / 2, "accuracy": 75.0})


def test_macro_f1_ignores_case_and_does_not_add_a_class_for_a_non_label():
    scores = get_metric("macro_f1").compute(["maybe", " NEG "], ["pos", "neg"])
    assert scores == pytest.approx({"macro_f1": 50.0, "accuracy": 50.0})  # pos F1 0, neg F1 1


# ------------------------------------------------------------------------------- registry and plugins
def test_old_callers_get_a_float_and_old_metrics_keep_their_values():
    assert get_metric("exact_match")(["abc", " ab ", "x"], ["abc", "ab", "y"]) == pytest.approx(200 / 3)
    assert get_metric("accuracy")(["Positive"], ["positive"]) == 100.0
    assert get_metric("char_f1")(["ab"], ["abcd"]) == pytest.approx(100 * 2 * 0.5 / 1.5)
    assert get_metric("exact_match")(["b"], [["a", "b"]]) == 100.0  # any reference may match
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'; allowed: \['accuracy', 'char_f1'"):
        get_metric("bleu")


def test_headline_can_be_chosen_from_the_registry():
    metric = resolve_metric({"name": "rouge", "headline": "rouge1"})
    assert metric.headline == "rouge1"
    assert metric(["a b c"], ["a b d"]) == pytest.approx(100 * 2 / 3)


def test_custom_metric_by_dotted_path():
    fn = resolve_metric("tests.test_metrics.first_char")
    assert fn.compute(["apple", "pear"], ["avocado", "fig"]) == {"first_char": 50.0}
    assert fn.describe() == {"name": "tests.test_metrics.first_char", "headline": "first_char", "libraries": {}}
    stats = resolve_metric({"_target_": "tests.test_metrics.length_stats", "headline": "chars", "scale": 2.0})
    assert stats.compute(["ab", "c"], ["x", "y"]) == {"chars": 6.0, "count": 2.0}
    cls = resolve_metric({"_target_": "tests.test_metrics.Overlap", "bonus": 5.0})
    assert cls.headline == "overlap" and cls(["a"], ["b"]) == 15.0


def test_custom_metric_errors_are_clear():
    with pytest.raises(ValueError, match="cannot import metric 'tests.test_metrics.nope'"):
        resolve_metric("tests.test_metrics.nope")
    bad = resolve_metric({"_target_": "tests.test_metrics.length_stats", "headline": "mean"})
    with pytest.raises(ValueError, match=r"returned \['chars', 'count'\] but its headline is 'mean'"):
        bad(["a"], ["b"])


def test_versions_name_the_library_that_computed_the_metric():
    assert metric_versions("rouge") == {"rouge-score": importlib.metadata.version("rouge-score")}
    assert set(metric_versions("entity_f1")) == {"forgetlab"}
