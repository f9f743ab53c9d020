"""forgetlab: measure how much a language model forgets when it is fine-tuned."""

__version__ = "0.1.0"
