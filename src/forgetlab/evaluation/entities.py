"""Entity recognition scored the CoNLL way (as `seqeval` does): an entity counts only if its type and its
exact text match. The model answers in text, so entities travel in a small answer format:

    "person: Anna, Leo; location: Paris"      ("none" when the sentence has no entity)

Types are separated by ";", names of one type by ","; order, spacing and the case of the type do not
matter when parsing; names are compared exactly (after collapsing runs of whitespace). A name that itself
contains "," or ";" cannot be written in this format.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from forgetlab.evaluation.metric import ExampleRows, References, as_reference_lists

Entity = tuple[str, str]  # (type, text)

# CoNLL-2003 tag types and the words the answers use for them.
CONLL_TYPES: Mapping[str, str] = MappingProxyType(
    {"PER": "person", "LOC": "location", "ORG": "organisation", "MISC": "miscellaneous"}
)
NONE = "none"
UNTYPED = ""  # the type given to an answer part without "type:"; it never matches a reference entity
_TAG = re.compile(r"^(O|[BIES]-.+)$")


def _squash(text: str) -> str:
    return " ".join(text.split())


def is_valid_tag(tag: str) -> bool:
    """'O' or a prefixed tag such as 'B-PER', 'I-LOC' (IOB1, IOB2 and IOBES all qualify)."""
    return bool(_TAG.match(tag))


def tags_to_entities(tokens: Sequence[str], tags: Sequence[str], names: Mapping[str, str] | None = None) -> list[Entity]:
    """Entities of one tagged sentence, in order, with seqeval's chunking (a chunk starts at B-, at S-, at
    I- after O, or where the type changes); `names` renames tag types (PER -> person), others are lowercased."""
    from seqeval.metrics.sequence_labeling import get_entities

    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    names = CONLL_TYPES if names is None else names
    return [
        (names.get(kind, kind.lower()), " ".join(tokens[start : end + 1]))
        for kind, start, end in get_entities(list(tags))
    ]


def format_entities(entities: Sequence[Entity], type_order: Sequence[str] = tuple(CONLL_TYPES.values())) -> str:
    """The answer text for a list of entities: types in `type_order` (others after, sorted), names in
    their original order, repeats kept."""
    if not entities:
        return NONE
    groups: dict[str, list[str]] = {}
    for kind, text in entities:
        groups.setdefault(kind, []).append(_squash(text))
    order = [t for t in type_order if t in groups] + sorted(t for t in groups if t not in type_order)
    return "; ".join(f"{t}: {', '.join(groups[t])}" for t in order)


def parse_entities(answer: str) -> Counter[Entity]:
    """The multiset of (type, name) in an answer; a part without "type:" becomes an untyped entity, so a
    malformed answer costs precision instead of being ignored."""
    found: Counter[Entity] = Counter()
    text = answer.strip()
    if not text or text.lower().rstrip(".") == NONE:
        return found
    for part in re.split(r"[;\n]", text):
        if not part.strip():
            continue
        if ":" not in part:
            found[(UNTYPED, _squash(part))] += 1
            continue
        kind, names = part.split(":", 1)
        kind = _squash(kind).lower()
        for name in names.split(","):
            name = _squash(name)
            if name and name.lower() != NONE:
                found[(kind, name)] += 1
    return found


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    """Precision/recall/F1 x100 from counts; all 100 when neither side holds an entity."""
    if n_pred == 0 and n_gold == 0:
        return {"precision": 100.0, "recall": 100.0, "f1": 100.0}
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": 100.0 * precision, "recall": 100.0 * recall, "f1": 100.0 * f1}


def entity_f1_examples(predictions: list[str], references: References) -> ExampleRows:
    """Per example: its matched, predicted and reference entity counts (what the micro average sums) and its
    own precision/recall/F1 (first reference per example)."""
    rows = []
    for pred, refs in zip(predictions, as_reference_lists(references, len(predictions))):
        p, g = parse_entities(pred), parse_entities(refs[0])
        counts = {"tp": sum((p & g).values()), "n_pred": sum(p.values()), "n_gold": sum(g.values())}
        rows.append({**_prf(counts["tp"], counts["n_pred"], counts["n_gold"]), **counts})
    return rows


def entity_f1_reduce(rows: ExampleRows) -> dict[str, float]:
    """Micro precision/recall/F1 x100 from the examples' summed counts."""
    return _prf(*(sum(int(r[k]) for r in rows) for k in ("tp", "n_pred", "n_gold")))


def entity_f1(predictions: list[str], references: References) -> dict[str, float]:
    """Micro precision/recall/F1 x100 over all entities of all examples (first reference per example).

    When neither the references nor the predictions hold any entity, all three are 100: every "none"
    was right. seqeval would report 0 there, which would read as total forgetting.
    """
    return entity_f1_reduce(entity_f1_examples(predictions, references))
