"""The instruction-data formats the field shares (TRL, axolotl, LLaMA-Factory take both):

alpaca  rows {instruction, input (optional, may be empty), output}, rendered with Stanford Alpaca's two
        prompts (with and without input); the answer is `output`.
chat    rows {"messages": [{"role": "system" | "user" | "assistant", "content": ...}, ...]}; the last
        assistant turn is the scored answer, the turns before it the prompt. The model's own chat template
        renders them (forgetlab.models.chat), so the prompt column carries the conversation as a standard
        chat row (forgetlab.utils.conversation); `train_on` says which turns training puts the loss on.

Both read their canonical field names through `fields:` ({instruction: question, output: answer};
{messages: conversations}). Bad rows fail naming the file, the line and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from forgetlab.tasks.assemble import Example
from forgetlab.tasks.loaders import Row, Table, require
from forgetlab.utils.conversation import ROLES, TRAIN_ON, conversation_prompt

# Stanford Alpaca's prompts (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT) without the final newline:
# a causal model's separator ("\n" by default) puts it back between "### Response:" and the answer.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
# The task's one template: the prompt is rendered per row (with or without input) before assembly.
RENDERED = "{prompt}"


def _col(fields: Mapping[str, Any] | None, name: str) -> Any:
    return (fields or {}).get(name, name)


def _blank(value: Any) -> bool:
    return value is None or not str(value).strip()


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    """The Alpaca prompt of one row: the with-input wording only when the input is not empty."""
    if input_text.strip():
        return ALPACA_WITH_INPUT.format(instruction=instruction.strip(), input=input_text.strip())
    return ALPACA_NO_INPUT.format(instruction=instruction.strip())


def alpaca_examples(table: Table, fields: Mapping[str, Any] | None, skip_empty: bool) -> tuple[list[Example], int]:
    """(examples, skipped rows) of Alpaca rows; `input` may be missing or empty, the others may not."""
    instruction_col, input_col, output_col = (_col(fields, n) for n in ("instruction", "input", "output"))
    examples, skipped = [], 0
    for row in table.rows:
        require(table, row, [instruction_col, output_col], "kind alpaca")
        empty = [c for c in (instruction_col, output_col) if _blank(row.fields[c])]
        if empty:
            if not skip_empty:
                raise table.error(row, f"empty field {empty[0]!r} (set `skip_empty: true` to skip such rows)")
            skipped += 1
            continue
        extra = row.fields.get(input_col)
        prompt = alpaca_prompt(str(row.fields[instruction_col]), "" if extra is None else str(extra))
        examples.append(Example(prompt, {"prompt": prompt}, str(row.fields[output_col]).strip()))
    return examples, skipped


def chat_examples(table: Table, fields: Mapping[str, Any] | None, train_on: str,
                  skip_empty: bool) -> tuple[list[Example], int]:
    """(examples, skipped rows) of chat rows: the prompt is the conversation before its last assistant turn
    (with `train_on` when it is not `last`), the answer that turn's content."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"task {table.task!r}: train_on={train_on!r}; allowed: {list(TRAIN_ON)}")
    col = _col(fields, "messages")
    examples, skipped = [], 0
    for row in table.rows:
        require(table, row, [col], "kind chat")
        messages = _messages(table, row, col)
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise table.error(row, f"no assistant turn in {col!r} (roles {[m['role'] for m in messages]}): the "
                                   "last assistant turn is the answer a chat row trains and scores")
        if last != len(messages) - 1:
            raise table.error(row, f"{col!r} goes on after its last assistant turn (message {last} of "
                                   f"{len(messages)}, then {[m['role'] for m in messages[last + 1:]]}): the last "
                                   "assistant turn is the scored answer; end the conversation there")
        if _blank(messages[last]["content"]):
            if not skip_empty:
                raise table.error(row, f"the last assistant turn of {col!r} is empty (set `skip_empty: true` to "
                                       "skip such rows)")
            skipped += 1
            continue
        context = messages[:last]
        key = json.dumps(context, ensure_ascii=False)  # a conversation's turns identify it (splits never share one)
        examples.append(Example(key, {"prompt": conversation_prompt(context, train_on)}, messages[last]["content"]))
    return examples, skipped


def _messages(table: Table, row: Row, col: str) -> list[dict[str, str]]:
    """The row's turns as {role, content} dicts; a JSON string (a CSV cell) is read as JSON."""
    value = row.fields[col]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise table.error(row, f"field {col!r} is text that is not a JSON list of messages ({err.msg})") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise table.error(row, f"field {col!r} must be a non-empty list of {{role, content}} messages, found "
                               f"{type(value).__name__}")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise table.error(row, f"message {i} of {col!r} is not a {{role, content}} object: {message!r:.80}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise table.error(row, f"message {i} of {col!r} has unknown role {role!r}; allowed roles: {list(ROLES)}")
        if not isinstance(content, str):
            raise table.error(row, f"message {i} of {col!r}: content must be text, found {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


# The canonical field names each format reads (a task's `fields:` maps them to the source's columns).
FIELDS: Mapping[str, tuple[str, ...]] = {"alpaca": ("instruction", "input", "output"), "chat": ("messages",)}


def check_chat_model(tasks: Mapping[str, Any], tokenizer: Any, model_kind: str, model: str) -> None:
    """Chat tasks need a decoder-only model with a chat template: fail before anything is scored or trained,
    naming the task, its file and first row, and what to change."""
    for name, task in tasks.items():
        if getattr(task, "kind", None) != "chat":
            continue
        problem = (f"model {model!r} has no chat template (its tokenizer sets none)"
                   if model_kind == "causal" else f"model {model!r} is {model_kind}, not decoder-only")
        if model_kind != "causal" or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"task {name!r}: {task.origin or task.description}: kind chat renders each conversation with the "
                f"model's own chat template, but {problem}; use a chat model (model=hf model.build.name_or_path="
                f"...) or a kind that needs no template (tasks.custom.{name}.kind=alpaca or instruction)")
