"""How a chat task's prompt carries a conversation to the model: the standard chat row itself,
`{"messages": [{"role": ..., "content": ...}, ...]}`, as JSON text in the `prompt` column.

A prompt is a string everywhere in forgetlab (datasets columns, caches, scoring, predictions files), and
a conversation can only be rendered once the model is known (its own chat template). Carrying the row in
its standard form keeps both: tasks write it (forgetlab.tasks.formats), the model renders it
(forgetlab.models.chat), and predictions files show the conversation as the data had it. `train_on` is
added only where it is not the default (`last`)."""

from __future__ import annotations

import json
from typing import Any

ROLES = ("system", "user", "assistant")
TRAIN_ON = ("last", "all_assistant", "all")  # loss on: the scored answer | every assistant turn | every token
_PREFIX = '{"messages": ['


def conversation_prompt(messages: list[dict[str, str]], train_on: str = "last") -> str:
    """The prompt text of a conversation (the turns before the scored answer)."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r}; allowed: {list(TRAIN_ON)}")
    row: dict[str, Any] = {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if train_on != "last":
        row["train_on"] = train_on
    return json.dumps(row, ensure_ascii=False)


def read_conversation(prompt: str) -> tuple[list[dict[str, str]], str] | None:
    """(messages, train_on) of a conversation prompt; None for any other prompt."""
    if not prompt.startswith(_PREFIX):
        return None
    try:
        row = json.loads(prompt)
    except json.JSONDecodeError:
        return None
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        return None
    return messages, row.get("train_on", "last")
