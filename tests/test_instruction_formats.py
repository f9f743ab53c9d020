"""Standard instruction formats as custom tasks: Alpaca rows in Alpaca's own prompts, chat `messages` rendered by
the model's chat template with the loss on assistant turns only (checked token by token against the template's
generation markers), multi-turn rows that train every assistant turn, and bad rows or template-less models
failing with the file, the line and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgetlab.config import ConfigError, validate
from forgetlab.models.chat import ChatTemplateError
from forgetlab.models.hf import load_pretrained
from forgetlab.models.language_model import IGNORE_INDEX
from forgetlab.models.tiny import build_tiny_gpt
from forgetlab.tasks.external import build_external_task
from forgetlab.tasks.formats import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, check_chat_model
from forgetlab.tasks.loaders import DataFileError
from forgetlab.utils.conversation import read_conversation
from tests.conftest import compose_config
from tests.test_real_path import llama_folder

SIZES = {"train": 2, "validation": 0, "test": 1}
# A ChatML-like template over the test tokenizer's special tokens, with generation markers around what an
# assistant says (transformers' return_assistant_tokens_mask reads them): an independent reference mask.
CHAT = ("{% for m in messages %}{% if m['role'] == 'assistant' %}<|bot|>{% generation %}{{ m['content'] }}<|end|>"
        "{% endgeneration %}{{ '\\n' }}{% else %}<|user|>{{ m['role'] }}: {{ m['content'] }}<|end|>\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|bot|>{% endif %}")
TURNS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat"},
         {"role": "assistant", "content": "sat on a mat"}, {"role": "user", "content": "and the dog"},
         {"role": "assistant", "content": "ran to the park"}]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _chat_rows(n: int = 3) -> list[dict]:
    return [{"messages": [*TURNS[:3], {"role": "user", "content": f"and leo {i}"},
                          {"role": "assistant", "content": f"met anna in paris {i}"}]} for i in range(n)]


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    """A Llama with the template above whose generation config stops at <|end|> too, as chat models' do."""
    folder = llama_folder(tmp_path_factory.mktemp("chat_llama"), positions=128, chat_template=CHAT)
    lm = load_pretrained(str(folder))
    lm.model.generation_config.eos_token_id = [lm.tokenizer.eos_token_id, lm.tokenizer.convert_tokens_to_ids("<|end|>")]
    lm.replace_model(lm.model)
    return lm


# ----------------------------------------------------------------------------- alpaca
def test_alpaca_rows_render_alpaca_prompts_with_and_without_input(tmp_path):
    rows = [{"instruction": "Reverse the word.", "input": "cat", "output": "tac"},
            {"instruction": "Name a colour.", "input": "", "output": "red"},
            {"instruction": "Say hi.", "output": "hi"}]  # no input at all
    task = build_external_task("alp", str(_jsonl(tmp_path / "a.jsonl", rows)), {"train": 3, "validation": 0,
                                                                                   "test": 0}, 0, kind="alpaca")
    by_answer = dict(zip(task.splits["train"]["completion"], task.splits["train"]["prompt"]))
    assert by_answer["tac"] == (
        "Below is an instruction that describes a task, paired with an input that provides further context. Write "
        "a response that appropriately completes the request.\n\n### Instruction:\nReverse the word.\n\n"
        "### Input:\ncat\n\n### Response:")
    assert by_answer["red"] == ALPACA_NO_INPUT.format(instruction="Name a colour.")
    assert by_answer["hi"].endswith("### Instruction:\nSay hi.\n\n### Response:") and "### Input" not in by_answer["hi"]
    assert task.metric == "rouge" and task.kind == "alpaca"
    # a causal model's separator supplies Alpaca's newline before the answer
    lm = load_pretrained(str(llama_folder(tmp_path / "m")))
    text = lm.tokenizer.decode(lm.encode(by_answer["tac"], "tac")["input_ids"])
    assert text.endswith("### Input:\ncat\n\n### Response:\ntac</s>")


def test_alpaca_fields_are_remapped(tmp_path):
    rows = [{"q": "Add one.", "ctx": "2", "a": "3"}, {"q": "Add two.", "ctx": "", "a": "4"}]
    task = build_external_task("alp", str(_jsonl(tmp_path / "a.jsonl", rows)), {"train": 2, "validation": 0, "test": 0},
                               0, kind="alpaca", fields={"instruction": "q", "input": "ctx", "output": "a"})
    prompts = dict(zip(task.splits["train"]["completion"], task.splits["train"]["prompt"]))
    assert prompts["3"] == ALPACA_WITH_INPUT.format(instruction="Add one.", input="2")
    assert prompts["4"] == ALPACA_NO_INPUT.format(instruction="Add two.")


# ----------------------------------------------------------------------------- chat rendering and masks
def test_chat_prompt_is_the_conversation_before_its_last_answer(tmp_path):
    task = build_external_task("chat", str(_jsonl(tmp_path / "c.jsonl", _chat_rows())), SIZES, 0, kind="chat")
    row = task.splits["train"][0]
    messages, train_on = read_conversation(row["prompt"])
    assert train_on == "last" and [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert row["completion"].startswith("met anna in paris") and task.metric == "rouge"
    assert task.origin.endswith("c.jsonl: line 1")


def test_scored_answer_is_the_template_rendering_and_generation_starts_after_the_generation_prompt(chat_lm):
    tok = chat_lm.tokenizer
    prompt = json.dumps({"messages": TURNS[:4]})
    enc = chat_lm.encode(prompt, "ran to the park")
    expected = tok.apply_chat_template(TURNS, tokenize=False)
    assert tok.decode(enc["input_ids"]) == "<s>" + expected[: expected.rindex("<|end|>") + len("<|end|>")]
    answer = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(answer) == "ran to the park<|end|>"  # up to the turn's own stop token, not the newline
    ids, cut = chat_lm.generation_input(prompt, 4)
    assert not cut and tok.decode(ids) == "<s>" + tok.apply_chat_template(TURNS[:4], tokenize=False,
                                                                          add_generation_prompt=True)
    assert enc["input_ids"][: len(ids)] == ids  # the prompt is tokenised as generation sees it


@pytest.mark.parametrize("train_on", ["last", "all_assistant"])
def test_assistant_only_labels_match_the_templates_generation_markers_token_by_token(chat_lm, train_on):
    tok = chat_lm.tokenizer
    prompt = json.dumps({"messages": TURNS[:4], **({"train_on": train_on} if train_on != "last" else {})})
    enc = chat_lm.encode(prompt, TURNS[4]["content"], train=True)
    ref = tok.apply_chat_template(TURNS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ref_ids, ref_mask = [tok.bos_token_id, *ref["input_ids"]], [0, *ref["assistant_masks"]]
    n = len(enc["input_ids"])  # ours ends at the last turn's stop token; the reference renders its newline too
    assert enc["input_ids"] == ref_ids[:n] and ref_ids[n:] == tok("\n", add_special_tokens=False)["input_ids"]
    last_start = max(i for i in range(n) if ref_mask[i] and not ref_mask[i - 1])
    for i, (token, label) in enumerate(zip(enc["input_ids"], enc["labels"])):
        trained = ref_mask[i] == 1 and (train_on == "all_assistant" or i >= last_start)
        assert (label == token) if trained else (label == IGNORE_INDEX), (i, tok.decode([token]), label)
    trained_text = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX])
    if train_on == "all_assistant":
        assert trained_text == "sat on a mat<|end|>ran to the park<|end|>"
    else:
        assert trained_text == "ran to the park<|end|>"
    # scoring never trains earlier turns: the scored answer alone
    scored = chat_lm.encode(prompt, TURNS[4]["content"])
    assert tok.decode([t for t, lab in zip(scored["input_ids"], scored["labels"]) if lab != IGNORE_INDEX]) == \
        "ran to the park<|end|>"


def test_multi_turn_rows_train_every_assistant_turn_through_the_task(chat_lm, tmp_path):
    task = build_external_task("chat", str(_jsonl(tmp_path / "c.jsonl", _chat_rows())), SIZES, 0, kind="chat",
                               train_on="all_assistant")
    encoded = chat_lm.encode_batch(task.splits["train"][:2])
    for ids, labels in zip(encoded["input_ids"], encoded["labels"]):
        text = chat_lm.tokenizer.decode([t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX])
        assert text.startswith("sat on a mat<|end|>met anna in paris") and text.endswith("<|end|>")
    # "all" trains every token after BOS (no mask)
    every = chat_lm.encode(json.dumps({"messages": TURNS[:4], "train_on": "all"}), TURNS[4]["content"], train=True)
    assert every["labels"][1:] == every["input_ids"][1:]


def test_eos_ends_the_answer_when_the_templates_turn_has_no_stop_token(tmp_path):
    lm = load_pretrained(str(llama_folder(tmp_path, chat_template=CHAT)))  # generation stops at </s> only
    enc = lm.encode(json.dumps({"messages": TURNS[:4]}), "ran to the park")
    answer = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    assert lm.tokenizer.decode(answer) == "ran to the park<|end|>\n</s>"


def test_a_chat_task_trains_and_scores_on_a_chat_model(chat_lm, tmp_path):
    from forgetlab.evaluation.scoring import score_task

    task = build_external_task("chat", str(_jsonl(tmp_path / "c.jsonl", _chat_rows())), SIZES, 0, kind="chat")
    train = task.splits["train"]
    batch = chat_lm.collate([chat_lm.encode(p, c, train=True) for p, c in zip(train["prompt"], train["completion"])])
    nll, ntok = chat_lm.token_losses(batch)
    assert torch.isfinite(nll).all() and (ntok > 0).all()
    result = score_task(chat_lm, task, "test", max_examples=1)
    assert set(result) >= {"score", "loss"} and result["headline"] == "rougeLsum"


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("messages,needle", [
    ([{"role": "user", "content": "hi"}], "no assistant turn"),
    ([{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}], "unknown role 'bot'"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "?"}],
     "goes on after its last assistant turn"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}], "last assistant turn"),
    ("not json", "not a JSON list"),
])
def test_bad_chat_rows_fail_naming_file_line_and_problem(messages, needle, tmp_path):
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            {"messages": messages}]
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataFileError, match=needle) as err:
        build_external_task("chat", str(path), SIZES, 0, kind="chat")
    assert f"{path}: line 2" in str(err.value)


def test_chat_rows_without_messages_fail_with_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"conversation": []}])
    with pytest.raises(DataFileError, match=r"c.jsonl: line 1: missing field 'messages'"):
        build_external_task("chat", str(path), SIZES, 0, kind="chat")


def test_chat_field_names_and_train_on_are_checked_before_any_model_loads(tmp_path):
    base = ["experiment=local_llama", "model.build.name_or_path=/models/llama", "tasks.custom.my_task.kind=chat",
            "tasks.custom.my_task.source=c.jsonl", "~tasks.custom.my_task.prompt_template",
            "~tasks.custom.my_task.completion_template", "tasks.custom.held_out.source=h.txt"]
    typed = validate(compose_config([*base, "tasks.custom.my_task.train_on=all_assistant",
                                     "tasks.custom.my_task.fields={messages: conversation}"], tmp_path))
    assert typed.tasks.custom["my_task"].train_on.value == "all_assistant"
    with pytest.raises(ConfigError, match=r"fields: \['conversations_x'\] is not a field of kind=chat; it reads "
                                          r"\['messages'\]"):
        validate(compose_config([*base, "tasks.custom.my_task.fields={conversations_x: c}"], tmp_path))
    with pytest.raises(ConfigError, match="train_on"):
        validate(compose_config([*base, "tasks.custom.my_task.train_on=every"], tmp_path))
    with pytest.raises(ConfigError, match="train_on does not apply to kind=alpaca"):
        validate(compose_config([*base, "tasks.custom.my_task.kind=alpaca", "tasks.custom.my_task.train_on=last"],
                                tmp_path))


def test_a_model_without_a_chat_template_fails_naming_the_file_and_line(tmp_path):
    task = build_external_task("chat", str(_jsonl(tmp_path / "c.jsonl", _chat_rows())), SIZES, 0, kind="chat")
    tiny = build_tiny_gpt(n_embd=32, n_layer=1, n_head=2)
    with pytest.raises(ValueError, match=r"task 'chat': .*c.jsonl: line 1: kind chat .* has no chat template"):
        check_chat_model({"chat": task}, tiny.tokenizer, tiny.kind, tiny.name)
    with pytest.raises(ChatTemplateError, match="no chat template"):  # and encoding never renders it otherwise
        tiny.encode(task.splits["test"][0]["prompt"], "x")
