"""ROUGE-1/2/Lsum with Porter stemming, computed by Google's `rouge-score` package (the reference code
that most summarisation papers report), so our numbers are comparable with theirs."""

from __future__ import annotations

import re

from forgetlab.evaluation.metric import References, as_reference_lists

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line: rougeLsum computes LCS per sentence and reads sentences from newlines."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge(predictions: list[str], references: References) -> dict[str, float]:
    """Mean over examples of the F-measure x100, taking the best reference per example and ROUGE type."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    refs = as_reference_lists(references, len(predictions))
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, options in zip(predictions, refs):
        best = dict.fromkeys(ROUGE_TYPES, 0.0)
        for ref in options:
            scores = scorer.score(split_sentences(ref), split_sentences(pred))
            for t in ROUGE_TYPES:
                best[t] = max(best[t], scores[t].fmeasure)
        for t in ROUGE_TYPES:
            totals[t] += best[t]
    n = max(len(predictions), 1)
    return {t: 100.0 * totals[t] / n for t in ROUGE_TYPES}
