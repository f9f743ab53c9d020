"""Accuracy and macro-F1 over class labels: macro-F1 weighs every label equally, so a model that forgets a
rare class shows it even when accuracy barely moves."""

from __future__ import annotations

from forgetlab.evaluation.metric import ExampleRows, References, as_reference_lists


def _label(text: str) -> str:
    return " ".join(text.split()).lower()


def macro_f1_examples(predictions: list[str], references: References) -> ExampleRows:
    """Per example: the predicted and reference labels (normalised; what macro-F1 counts) and whether they
    agree, x100, under both value names."""
    gold = [_label(r[0]) for r in as_reference_lists(references, len(predictions))]
    rows = []
    for p, g in zip(predictions, gold):
        right = 100.0 * (_label(p) == g)
        rows.append({"macro_f1": right, "accuracy": right, "label": _label(p), "gold": g})
    return rows


def macro_f1_reduce(rows: ExampleRows) -> dict[str, float]:
    """{'macro_f1', 'accuracy'} x100 from the examples' labels.

    The labels averaged over are those that occur in the references (the first reference of each example).
    A prediction that is no label at all counts as a miss for the true class; it does not add a class of
    its own with F1 0 (scikit-learn's default would), which would make the score depend on how many
    different wrong strings a model produces.
    """
    gold = [r["gold"] for r in rows]
    pred = [r["label"] for r in rows]
    labels = sorted(set(gold))
    f1s = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(pred, gold))
        n_pred = sum(p == label for p in pred)
        n_gold = sum(g == label for g in gold)
        f1s.append(2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0)
    n = max(len(gold), 1)
    return {
        "macro_f1": 100.0 * sum(f1s) / len(f1s) if f1s else 0.0,
        "accuracy": 100.0 * sum(p == g for p, g in zip(pred, gold)) / n,
    }


def macro_f1(predictions: list[str], references: References) -> dict[str, float]:
    """{'macro_f1', 'accuracy'} x100; labels compared case- and whitespace-insensitively (macro_f1_reduce)."""
    return macro_f1_reduce(macro_f1_examples(predictions, references))
