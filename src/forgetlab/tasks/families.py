"""Built-in instruction task families, FLAN-style: an instance generator plus several prompt templates.

Each family draws one instance from a seeded `random.Random`: a `key` (the raw input, used to keep
train/validation/test disjoint), the template fields, and the reference answer. The families are picked
so that a ~1M-parameter model learns them on a CPU in minutes and so that they interfere: several read
letters of a word, two count, two classify a sentence, one extracts names.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

Instance = tuple[str, dict[str, str], str]  # (key, template fields, answer)

VOWELS = set("aeiou")
NAMES = [
    "Anna", "Ben", "Cora", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ida", "Jon", "Kim", "Leo", "Mia", "Nils",
    "Olga", "Paul", "Rita", "Sam", "Tara", "Uma", "Vic", "Wes", "Yara", "Zoe",
]
POSITIVE = ["good", "great", "lovely", "superb", "fun", "nice", "happy", "brilliant", "warm", "fine"]
NEGATIVE = ["bad", "awful", "boring", "poor", "sad", "dull", "terrible", "weak", "cold", "ugly"]
SUBJECTS = ["the film", "the meal", "the show", "the book", "our trip", "the hotel", "the game", "the song"]
TOPICS = {
    "sports": ["ball", "goal", "team", "coach", "match", "race"],
    "food": ["soup", "bread", "cake", "rice", "salad", "pasta"],
    "music": ["guitar", "drum", "piano", "choir", "melody", "band"],
    "animals": ["cat", "horse", "tiger", "fox", "whale", "goat"],
}
FILLER = ["today", "a", "the", "new", "big", "old", "small", "near", "with", "my", "one", "very", "at home"]


def _word(rng: random.Random, lo: int = 3, hi: int = 7) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))


def _word_instance(fn: Callable[[str], str]) -> Callable[[random.Random], Instance]:
    def sample(rng: random.Random) -> Instance:
        w = _word(rng)
        return w, {"word": w}, fn(w)

    return sample


def _sentiment(rng: random.Random) -> Instance:
    label = rng.choice(["positive", "negative"])
    words = POSITIVE if label == "positive" else NEGATIVE
    a, b = rng.sample(words, 2)
    text = f"{rng.choice(SUBJECTS)} was {rng.choice(['', 'very ', 'so ', 'quite '])}{a} and {b}"
    return text, {"text": text}, label


def _topic(rng: random.Random) -> Instance:
    label = rng.choice(sorted(TOPICS))
    fill = rng.sample(FILLER, 3)
    fill.insert(rng.randint(0, 3), rng.choice(TOPICS[label]))
    text = " ".join(fill)
    return text, {"text": text}, label


def _names(rng: random.Random) -> Instance:
    people = rng.sample(NAMES, rng.randint(1, 2))
    verb = rng.choice(["met", "called", "saw", "helped", "visited"])
    if len(people) == 1:
        text = f"{rng.choice(['today', 'later', 'then'])} {people[0]} {verb} {rng.choice(['us', 'me', 'them'])}"
    else:
        text = f"{people[0]} {verb} {people[1]} {rng.choice(['today', 'at noon', 'again', 'twice'])}"
    return text, {"text": text}, ", ".join(people)


def _count_names(rng: random.Random) -> Instance:
    key, fields, names = _names(rng)
    return key, fields, str(len(names.split(", ")))


def _addition(rng: random.Random) -> Instance:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"{a}+{b}", {"a": str(a), "b": str(b)}, str(a + b)


@dataclass(frozen=True)
class TaskFamily:
    """How to draw instances of one task, the prompt wordings, and the metric that scores it."""

    name: str
    sample: Callable[[random.Random], Instance]
    templates: tuple[str, ...]
    metric: str
    description: str


FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in [
        TaskFamily("copy", _word_instance(lambda w: w),
                   ("copy: {word}", "repeat the word {word}", "say {word} again"),
                   "exact_match", "repeat a random word"),
        TaskFamily("uppercase", _word_instance(str.upper),
                   ("uppercase: {word}", "write {word} in capitals", "shout {word}"),
                   "exact_match", "write a word in capital letters"),
        TaskFamily("reverse", _word_instance(lambda w: w[::-1]),
                   ("reverse: {word}", "spell {word} backwards", "{word} read from the end is"),
                   "exact_match", "spell a word backwards"),
        TaskFamily("count_vowels", _word_instance(lambda w: str(sum(c in VOWELS for c in w))),
                   ("vowels in {word}?", "how many vowels does {word} have?", "count the vowels: {word}"),
                   "accuracy", "count the vowels of a word"),
        TaskFamily("length", _word_instance(lambda w: str(len(w))),
                   ("length of {word}?", "how many letters in {word}?", "count the letters: {word}"),
                   "accuracy", "count the letters of a word"),
        TaskFamily("last_letter", _word_instance(lambda w: w[-1]),
                   ("last letter of {word}", "{word} ends with which letter?", "final letter: {word}"),
                   "exact_match", "name the last letter of a word"),
        TaskFamily("sentiment", _sentiment,
                   ("sentiment: {text}", "is this review positive or negative? {text}",
                    "{text}. how does the writer feel?"),
                   "accuracy", "lexicon sentiment of a short review"),
        TaskFamily("topic", _topic,
                   ("topic: {text}", "what is this about? {text}", "classify the topic: {text}"),
                   "accuracy", "topic of a sentence with one topic word"),
        TaskFamily("extract_names", _names,
                   ("names in: {text}", "who is mentioned? {text}", "list the people in: {text}"),
                   "exact_match", "list the people named in a sentence"),
        # Three tasks whose answers the default base already writes (a letter, a count), each reading its
        # input in a new way: a continual sequence learns them in a couple of hundred steps.
        TaskFamily("first_letter", _word_instance(lambda w: w[0]),
                   ("first letter of {word}", "{word} starts with which letter?", "initial letter: {word}"),
                   "exact_match", "name the first letter of a word"),
        TaskFamily("count_consonants", _word_instance(lambda w: str(sum(c not in VOWELS for c in w))),
                   ("consonants in {word}?", "how many consonants does {word} have?",
                    "count the consonants: {word}"),
                   "accuracy", "count the consonants of a word"),
        TaskFamily("count_names", _count_names,
                   ("how many names in: {text}", "how many people are mentioned? {text}",
                    "count the people in: {text}"),
                   "accuracy", "count the people named in a sentence"),
        TaskFamily("addition", _addition,
                   ("{a}+{b}=", "add {a} and {b}", "what is {a} plus {b}?"),
                   "exact_match", "add two numbers below 100"),
    ]
}
