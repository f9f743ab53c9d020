"""ROUGE-1/2/Lsum with Porter stemming, computed by Google's `rouge-score` package (the reference code
that most summarisation papers report), so our numbers are comparable with theirs."""

from __future__ import annotations

import re

from forgetlab.evaluation.metric import ExampleRows, References, as_reference_lists, mean_rows

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line: rougeLsum computes LCS per sentence and reads sentences from newlines."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge_examples(predictions: list[str], references: References) -> ExampleRows:
    """Per example: the F-measure x100 of each ROUGE type against its best reference for that type."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    rows = []
    for pred, options in zip(predictions, as_reference_lists(references, len(predictions))):
        best = dict.fromkeys(ROUGE_TYPES, 0.0)
        for ref in options:
            scores = scorer.score(split_sentences(ref), split_sentences(pred))
            for t in ROUGE_TYPES:
                best[t] = max(best[t], scores[t].fmeasure)
        rows.append({t: 100.0 * best[t] for t in ROUGE_TYPES})
    return rows


def rouge(predictions: list[str], references: References) -> dict[str, float]:
    """Mean over examples of the F-measure x100, taking the best reference per example and ROUGE type."""
    return mean_rows(rouge_examples(predictions, references)) or dict.fromkeys(ROUGE_TYPES, 0.0)
