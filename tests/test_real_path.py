"""The real-model path offline: `model=hf` on folders saved here (the built-in T5 and GPT-2, a tiny Llama with
a BPE tokenizer that adds BOS), a summarisation target from JSONL, a held-out text task that replay draws on,
and what a pretrained checkpoint needs: BOS, chat template, limits read from the model, truncation counted,
generation length from the references, presets that compose, and early errors naming what to set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import open_dict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from forgetlab.config import ConfigError, validate
from forgetlab.models.hf import load_pretrained
from forgetlab.models.language_model import IGNORE_INDEX
from forgetlab.models.tiny import build_tiny_gpt, build_tiny_t5
from forgetlab.strategies.adapters import default_target_modules, resolve_target_modules
from tests.conftest import compose_config

SMALL = {"seq2seq": lambda: build_tiny_t5(d_model=32, d_ff=64, num_heads=2, d_kv=16, num_layers=1,
                                          num_decoder_layers=1),
         "causal": lambda: build_tiny_gpt(n_embd=32, n_layer=1, n_head=2)}
WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "anna", "met", "leo", "in", "paris", "and", "the", "dog", "ran", "to", "the", "park"]
CHAT = "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|bot|>{% endif %}"


def _save(lm, path: Path) -> Path:
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def llama_folder(path: Path, positions: int = 64, chat_template: str | None = None) -> Path:
    """A 1-layer Llama with a byte-level BPE tokenizer trained here, whose post-processor adds BOS."""
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator([" ".join(WORDS)] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<|user|>", "<|end|>", "<|bot|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  additional_special_tokens=["<|user|>", "<|end|>", "<|bot|>"])
    if chat_template:
        tok.chat_template = chat_template
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=positions,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_hf_run_on_a_saved_folder_scores_rouge_and_perplexity_and_counts_truncation(kind, tmp_path):
    from forgetlab.run import run_experiment

    folder = _save(SMALL[kind](), tmp_path / "model")
    long = " ".join(WORDS * 3)  # ~240 characters: more than max_length=96 character tokens
    dialogues = [{"dialogue": f"#A#: hi {w} {i}. #B#: bye {i}." + f" {long}",
                  "summary": f"A greets B about {w}."} for i, w in enumerate(WORDS)]
    summ = _jsonl(tmp_path / "dialogsum.jsonl", dialogues)
    text = tmp_path / "held_out.txt"
    text.write_text("\n\n".join(f"{a} {b} walked to the {c} today." for a, b, c in zip(WORDS, WORDS[1:], WORDS[2:])))
    overrides = ["experiment=tiny", "model=hf", f"model.build.name_or_path={folder}", "model.build.max_length=96",
                 "strategy=replay", "strategy.data.replay_fraction=0.5", "strategy.optim.steps=3",
                 "strategy.optim.batch_size=4", "eval.every_n_steps=0", "diagnostics.spectral=false",
                 "tasks.target=dialogsum", "tasks.base=[held_out]", "tasks.sizes={train: 8, validation: 2, test: 6}"]
    if kind == "causal":
        overrides.append("model.build.separator='<sep>'")  # the character tokenizer has no newline
    cfg = compose_config(overrides, tmp_path / "run")
    with open_dict(cfg):
        cfg.tasks.custom = {"dialogsum": {"source": str(summ), "kind": "summarization"},
                            "held_out": {"source": str(text), "kind": "text"}}
    metrics = run_experiment(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["model"] == "model"
    for when in ("before", "after"):
        summ_scores, held = on_disk[when]["dialogsum"], on_disk[when]["held_out"]
        assert set(summ_scores["metrics"]) == {"rouge1", "rouge2", "rougeLsum"} and summ_scores["headline"] == "rougeLsum"
        assert held["perplexity"] > 1 and held["headline"] == "inverse_perplexity"
    assert on_disk["loss_increase"]["held_out"] == pytest.approx(
        on_disk["after"]["held_out"]["loss"] - on_disk["before"]["held_out"]["loss"])
    assert set(on_disk["mixture"]["sampled"]) == {"dialogsum", "held_out"}  # replay drew on the held-out text
    assert on_disk["metric_info"]["dialogsum"]["name"] == "rouge"
    assert on_disk["metric_info"]["held_out"]["name"] == "perplexity"
    cut = on_disk["truncated"]
    assert cut["max_length"] == 96
    assert cut["tasks"]["dialogsum"]["train"] > 0 and cut["tasks"]["dialogsum"]["test"] > 0
    assert cut["tasks"]["held_out"] == {"test": 0, "train": 0}
    assert on_disk["after"]["dialogsum"]["truncated"] == cut["tasks"]["dialogsum"]["test"]
    assert metrics["truncated"] == cut


# ----------------------------------------------------------------------------- BOS, chat template, limits
def test_llama_prompts_start_with_bos_as_its_tokenizer_does(tmp_path):
    lm = load_pretrained(str(llama_folder(tmp_path)))
    bos, eos = lm.tokenizer.bos_token_id, lm.tokenizer.eos_token_id
    assert lm.add_bos and lm.max_length == 64  # from the tokenizer's behaviour and config.max_position_embeddings
    enc = lm.encode("the cat sat", "on a mat")
    assert enc["input_ids"][0] == bos and enc["input_ids"].count(bos) == 1 and enc["input_ids"][-1] == eos
    n_answer = len(lm.tokenizer("on a mat", add_special_tokens=False)["input_ids"]) + 1
    assert enc["labels"][:-n_answer] == [IGNORE_INDEX] * (len(enc["labels"]) - n_answer)
    text = lm.encode("", "the dog ran")  # held-out text: BOS, the text, EOS; no separator
    assert lm.tokenizer.decode(text["input_ids"]) == "<s>the dog ran</s>" and text["labels"][0] == IGNORE_INDEX
    assert lm.generation_input("the cat", 4)[0][0] == bos
    assert load_pretrained(str(llama_folder(tmp_path / "b")), add_bos=False).encode("a", "b")["input_ids"][0] != bos


def test_chat_template_wraps_prompts_but_not_held_out_text(tmp_path):
    lm = load_pretrained(str(llama_folder(tmp_path, chat_template=CHAT)), chat_template=True)
    enc = lm.encode("the cat sat", "on a mat")
    assert lm.tokenizer.decode(enc["input_ids"]) == "<s><|user|>the cat sat<|end|><|bot|>on a mat</s>"
    assert lm.tokenizer.decode(lm.encode("", "the dog")["input_ids"]) == "<s>the dog</s>"
    plain = llama_folder(tmp_path / "plain")
    with pytest.raises(ValueError, match="model.build.chat_template"):
        load_pretrained(str(plain), chat_template=True)


def test_max_length_comes_from_the_model_and_cannot_exceed_it(tmp_path):
    gpt = _save(SMALL["causal"](), tmp_path / "gpt")
    t5 = _save(SMALL["seq2seq"](), tmp_path / "t5")
    assert load_pretrained(str(gpt), separator="<sep>").max_length == 128  # config.n_positions
    assert load_pretrained(str(t5)).max_length == 128  # T5 has no position table: the tokenizer's limit
    assert load_pretrained(str(t5), max_length=1000).max_length == 1000  # relative positions: any length
    with pytest.raises(ValueError, match=r"model.build.max_length=200 exceeds the 128 positions .*n_positions"):
        load_pretrained(str(gpt), max_length=200)


def test_truncation_keeps_the_answer_and_the_end_of_the_prompt(tmp_path):
    lm = load_pretrained(str(llama_folder(tmp_path, positions=16)))
    prompt = " ".join(WORDS)
    enc = lm.encode(prompt, "the mat")
    answer = lm.tokenizer("the mat", add_special_tokens=False)["input_ids"] + [lm.tokenizer.eos_token_id]
    assert enc["truncated"] and len(enc["input_ids"]) == 16
    assert enc["input_ids"][0] == lm.tokenizer.bos_token_id and enc["input_ids"][-len(answer):] == answer
    assert enc["input_ids"][-len(answer) - 1] == lm._sep_ids[-1]  # the prompt's end (separator) stays
    ids, cut = lm.generation_input(prompt, max_new_tokens=6)
    assert cut and len(ids) == 16 - 6  # room left for the generated tokens
    assert not lm.encode("the cat", "sat")["truncated"]


def test_generation_length_follows_the_references_in_tokens_and_is_capped(tmp_path):
    lm = load_pretrained(str(llama_folder(tmp_path)), max_new_tokens=12)
    refs = ["the cat", "the cat sat on a mat"]
    longest = len(lm.tokenizer(refs[1], add_special_tokens=False)["input_ids"])
    assert lm.generation_length(refs) == min(12, longest + 5)
    assert lm.generation_length([" ".join(WORDS * 4)]) == 12


def test_gradient_checkpointing_is_a_switch(tmp_path):
    folder = llama_folder(tmp_path)
    assert load_pretrained(str(folder), gradient_checkpointing=True).model.is_gradient_checkpointing
    assert not load_pretrained(str(folder)).model.is_gradient_checkpointing


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2", "t5"])
def test_lora_defaults_of_each_preset_architecture_match_real_modules(model_type, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from forgetlab.config.schema import ParamsConfig, ParamsKind
    from forgetlab.models.language_model import LanguageModel

    attention = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "num_key_value_heads": 2}
    sizes = {"llama": attention, "qwen2": attention, "gpt2": {"n_embd": 32, "n_layer": 1, "n_head": 2},
             "t5": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16}}[model_type]
    config = AutoConfig.for_model(model_type, vocab_size=64, **sizes)
    auto = AutoModelForSeq2SeqLM if model_type == "t5" else AutoModelForCausalLM
    tok = SMALL["seq2seq"]().tokenizer
    lm = LanguageModel(auto.from_config(config), tok, "seq2seq" if model_type == "t5" else "causal")
    targets = resolve_target_modules(ParamsConfig(kind=ParamsKind.lora), lm)
    assert targets == default_target_modules("lora", model_type) and len(targets) == (2 if model_type == "gpt2" else 4)


# ----------------------------------------------------------------------------- presets and early errors
@pytest.mark.parametrize("preset,checkpoint,chat", [
    ("flan_t5_small", "google/flan-t5-small", False), ("flan_t5_base", "google/flan-t5-base", False),
    ("gpt2", "openai-community/gpt2", False), ("smollm", "HuggingFaceTB/SmolLM2-135M-Instruct", True),
])
def test_presets_name_their_checkpoint(preset, checkpoint, chat, tmp_path):
    typed = validate(compose_config([f"model={preset}"], tmp_path))
    build = typed.model.build
    assert typed.model.name == preset and not typed.model.base_stage
    assert build["name_or_path"] == checkpoint and build["chat_template"] is chat and build["max_length"] is None


def test_local_llama_without_its_paths_fails_naming_each(tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(["experiment=local_llama"], tmp_path))
    for key in ("model.build.name_or_path", "tasks.custom.my_task.source", "tasks.custom.held_out.source"):
        assert key in str(err.value)


@pytest.mark.parametrize("strategy", ["replay", "multitask", "ewc"])
def test_strategies_that_need_old_abilities_fail_before_loading_when_tasks_base_is_empty(strategy, tmp_path,
                                                                                         monkeypatch):
    from forgetlab import run

    monkeypatch.setattr(run, "instantiate", lambda *a, **k: pytest.fail("must fail before anything is built"))
    cfg = compose_config(["model=hf", "model.build.name_or_path=/models/x", f"strategy={strategy}",
                          "tasks.base=[]", "tasks.target=copy"], tmp_path)
    with pytest.raises(ConfigError) as err:
        run.run_experiment(cfg)
    msg = str(err.value)
    assert "tasks.base is empty" in msg and "kind: text" in msg and "tasks.base=[held_out]" in msg
