"""Small offline mirrors of the hub datasets of the lecture experiment (conf/experiment/flan_t5_dialogsum.yaml),
with their exact column names, feature types and split names, written the ways a local copy of a hub dataset
comes: `datasets`' save_to_disk, parquet files in the hub repo's layout, or JSONL files per split.

What each mirrors (from the hub dataset cards; rows are made up):
- knkarthick/dialogsum: id, dialogue, summary, topic (all strings); train / validation / test. Its test split
  holds each dialogue three times, one row per annotator's summary (ids test_<i>_1..3): assumed from the
  dataset's CSV files (DialogSum's own JSONL has summary1..3 columns instead; `dialogsum_jsonl` writes that
  form). Dialogues are `#Person1#: ...` turns separated by newlines.
- stanfordnlp/sst2: idx (int32), sentence (string), label (ClassLabel [negative, positive]); train /
  validation / test, whose labels are hidden as -1 (GLUE keeps test labels private).
- eriktks/conll2003: id (string), tokens (list of strings), pos_tags / chunk_tags / ner_tags (lists of
  ClassLabel; ner_tags [O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC, B-MISC, I-MISC]); train / validation /
  test.
- Salesforce/wikitext, config wikitext-2-raw-v1: text (string), one row per line, blank lines as "" rows and
  headings as " = Title = "; train / validation / test, stored as <config>/<split>-00000-of-00001.parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

SPLITS = ("train", "validation", "test")
NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
POS_TAGS = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR",
            "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS",
            "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB"]
CHUNK_TAGS = ["O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ", "B-LST",
              "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR", "B-UCP", "I-UCP",
              "B-VP", "I-VP"]

DIALOGSUM_FEATURES = Features({"id": Value("string"), "dialogue": Value("string"), "summary": Value("string"),
                               "topic": Value("string")})
SST2_FEATURES = Features({"idx": Value("int32"), "sentence": Value("string"),
                          "label": ClassLabel(names=["negative", "positive"])})
CONLL_FEATURES = Features({"id": Value("string"), "tokens": Sequence(Value("string")),
                           "pos_tags": Sequence(ClassLabel(names=POS_TAGS)),
                           "chunk_tags": Sequence(ClassLabel(names=CHUNK_TAGS)),
                           "ner_tags": Sequence(ClassLabel(names=NER_TAGS))})
WIKITEXT_FEATURES = Features({"text": Value("string")})
WIKITEXT_CONFIG = "wikitext-2-raw-v1"

NAMES = ["Anna", "Ben", "Carla", "David", "Eva", "Frank", "Grace", "Hugo", "Iris", "Jonas", "Kim", "Leo"]
THINGS = ["tickets", "dinner", "the report", "a taxi", "the exam", "a flat", "the party", "a loan", "the car"]
PLACES = ["Paris", "Berlin", "Madrid", "Oslo", "Rome", "Vienna", "Lisbon", "Prague"]
ORGS = ["Reuters", "Siemens", "UEFA", "Nokia", "Airbus", "Fiat"]
ADJECTIVES = [("good", 1), ("great", 1), ("lovely", 1), ("bad", 0), ("dull", 0), ("awful", 0)]
SPLIT_SIZES = {"train": 40, "validation": 12, "test": 12}


def _dialogue(i: int, split: str) -> tuple[str, str, str]:
    a, b = NAMES[i % len(NAMES)], NAMES[(i + 3) % len(NAMES)]
    thing = THINGS[(i * 5 + len(split)) % len(THINGS)]
    dialogue = (f"#Person1#: Hi {b}, can you help me with {thing}?\n#Person2#: Sure {a}, when?\n"
                f"#Person1#: Tomorrow at {i % 12 + 1}.\n#Person2#: Fine, see you ({split} {i}).")
    return dialogue, f"#Person1# asks #Person2# for help with {thing} tomorrow.", thing


def dialogsum_rows(split: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        dialogue, summary, topic = _dialogue(i, split)
        if split == "test":  # one row per annotator: the same dialogue, three summaries
            for j, alt in enumerate([summary, f"#Person2# will help with {topic}.",
                                     f"They plan {topic} for tomorrow at {i % 12 + 1}."], 1):
                rows.append({"id": f"test_{i}_{j}", "dialogue": dialogue, "summary": alt, "topic": topic})
        else:
            rows.append({"id": f"{split}_{i}", "dialogue": dialogue, "summary": summary, "topic": topic})
    return rows


def sst2_rows(split: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        word, label = ADJECTIVES[i % len(ADJECTIVES)]
        rows.append({"idx": i, "sentence": f"the {split} film number {i} is {word} ",
                     "label": -1 if split == "test" else label})
    return rows


def conll_rows(split: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        person, place, org = NAMES[i % len(NAMES)], PLACES[i % len(PLACES)], ORGS[i % len(ORGS)]
        tokens = [person, "Smith", "of", org, "flew", "to", place, f"{split}-{i}", "."]  # no input in two splits
        ner = ["B-PER", "I-PER", "O", "B-ORG", "O", "O", "B-LOC", "O", "O"]
        pos = ["NNP", "NNP", "IN", "NNP", "VBD", "TO", "NNP", "CD", "."]
        chunk = ["B-NP", "I-NP", "B-PP", "B-NP", "B-VP", "B-PP", "B-NP", "B-NP", "O"]
        rows.append({"id": str(i), "tokens": tokens, "pos_tags": [POS_TAGS.index(t) for t in pos],
                     "chunk_tags": [CHUNK_TAGS.index(t) for t in chunk],
                     "ner_tags": [NER_TAGS.index(t) for t in ner]})
    return rows


def wikitext_rows(split: str, n: int) -> list[dict]:
    rows = [{"text": ""}, {"text": f" = {split.title()} Article = \n"}, {"text": ""}]
    for i in range(n):
        place = PLACES[i % len(PLACES)]
        rows.append({"text": f" {place} is a city with {i + 2} bridges , and the {split} line {i} ends here . \n"})
        rows.append({"text": ""})
    return rows


def _dataset_dict(rows_of, features: Features, sizes: dict[str, int] | None = None) -> DatasetDict:
    sizes = sizes or SPLIT_SIZES
    return DatasetDict({s: Dataset.from_list(rows_of(s, sizes[s]), features=features) for s in SPLITS})


def dialogsum(root: Path) -> Path:
    """knkarthick/dialogsum as a folder written by save_to_disk."""
    path = root / "dialogsum"
    _dataset_dict(dialogsum_rows, DIALOGSUM_FEATURES).save_to_disk(str(path))
    return path


def sst2(root: Path) -> Path:
    """stanfordnlp/sst2 as the hub repo stores it: data/<split>-00000-of-00001.parquet."""
    path = root / "sst2"
    for split, data in _dataset_dict(sst2_rows, SST2_FEATURES).items():
        (path / "data").mkdir(parents=True, exist_ok=True)
        data.to_parquet(str(path / "data" / f"{split}-00000-of-00001.parquet"))
    return path


def conll2003(root: Path) -> Path:
    """eriktks/conll2003 as a folder written by save_to_disk."""
    path = root / "conll2003"
    _dataset_dict(conll_rows, CONLL_FEATURES).save_to_disk(str(path))
    return path


def wikitext(root: Path) -> Path:
    """Salesforce/wikitext as the hub repo stores it: one folder per config of per-split parquet files."""
    path = root / "wikitext"
    (path / WIKITEXT_CONFIG).mkdir(parents=True, exist_ok=True)
    for split, data in _dataset_dict(wikitext_rows, WIKITEXT_FEATURES).items():
        data.to_parquet(str(path / WIKITEXT_CONFIG / f"{split}-00000-of-00001.parquet"))
    return path


def dialogsum_jsonl(root: Path) -> Path:
    """DialogSum's own release: JSONL per split, the test split with summary1..3 on one row."""
    path = root / "dialogsum_jsonl"
    path.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = dialogsum_rows(split, SPLIT_SIZES[split])
        if split == "test":
            merged = []
            for k in range(0, len(rows), 3):
                three = rows[k : k + 3]
                merged.append({"fname": f"test_{k // 3}", "dialogue": three[0]["dialogue"],
                               **{f"summary{j}": r["summary"] for j, r in enumerate(three, 1)},
                               "topic1": three[0]["topic"]})
            rows = merged
        else:
            rows = [{"fname": r["id"], "dialogue": r["dialogue"], "summary": r["summary"], "topic": r["topic"]}
                    for r in rows]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


MIRRORS = {"dialogsum": dialogsum, "sst2": sst2, "conll2003": conll2003, "wikitext": wikitext}


def build_all(root: Path) -> dict[str, Path]:
    """Every mirror under `root`, by the task name the lecture experiment gives it."""
    return {name: build(root) for name, build in MIRRORS.items()}


if __name__ == "__main__":  # python tests/hub_mirrors.py mirrors  -> mirrors/dialogsum, mirrors/sst2, ...
    import sys

    for name, path in build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "mirrors")).items():
        print(f"{name}: {path}")
