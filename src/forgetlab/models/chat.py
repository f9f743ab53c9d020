"""A conversation rendered by the model's own chat template, cut at turn boundaries so the loss can fall on
assistant turns only.

The mask is built turn by turn (as TRL does for templates without generation markers): the text before
each assistant turn is the template's rendering of the earlier turns with the generation prompt, the
turn itself is what rendering one more turn adds. Every piece is tokenised on its own, so the prompt of the
scored answer is tokenised exactly as generation sees it. A template that rewrites earlier turns when a
later one is added (so no piece is a prefix of the next) is refused rather than masked wrongly."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError


class ChatTemplateError(ValueError):
    """The model cannot render a conversation: no chat template, or one that fails on these turns."""


def render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool, model: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(f"model {model!r} has no chat template (its tokenizer sets none), so it cannot "
                                "render chat `messages`; use a model that has one, or a task kind without a "
                                "template (alpaca, instruction)")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except TemplateError as err:
        raise ChatTemplateError(f"the chat template of {model!r} cannot render this conversation "
                                f"({[m['role'] for m in messages]}): {err}") from None


def chat_pieces(tokenizer: Any, context: list[dict[str, str]], answer: str | None,
                model: str) -> list[tuple[str, bool]]:
    """(text, is_assistant_turn) pieces whose concatenation is the template's rendering of `context` with
    the generation prompt, followed (when `answer` is given) by the scored assistant turn as one last
    assistant piece."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    turns = [*context, {"role": "assistant", "content": answer}] if answer is not None else list(context)
    for i, message in enumerate(turns):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, turns[:i], True, model)
        after = render(tokenizer, turns[: i + 1], False, model)
        _check_prefix(done, before, model)
        _check_prefix(before, after, model)
        pieces += [(before[len(done):], False), (after[len(before):], True)]
        done = after
    if answer is None:
        final = render(tokenizer, turns, True, model)
        _check_prefix(done, final, model)
        pieces.append((final[len(done):], False))
    return [(text, assistant) for text, assistant in pieces if text]


def _check_prefix(shorter: str, longer: str, model: str) -> None:
    if not longer.startswith(shorter):
        raise ChatTemplateError(
            f"the chat template of {model!r} changes earlier turns when a later one is added (e.g. it drops "
            "reasoning from past assistant turns), so assistant turns cannot be cut out one by one; train on "
            "the last turn of single-turn rows, or use another template")
