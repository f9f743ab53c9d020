"""Custom tasks are typed (CustomTaskConfig): `tasks.custom.<name>.<key>=...` composes without `+`, for a new
name too; a misspelt key, an unknown kind, a key the kind never reads or a missing template fails before any
model loads, naming the key and what is allowed; build_suite still receives plain dicts."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forgetlab.config import ConfigError, validate
from forgetlab.config.schema import CustomTaskConfig, TaskKind
from forgetlab.tasks import kinds
from forgetlab.tasks.external import build_external_task
from forgetlab.tasks.suite import task_spec
from tests.conftest import compose_config

LOCAL = ["experiment=local_llama", "model.build.name_or_path=/models/llama", "tasks.custom.my_task.source=train.jsonl",
         "tasks.custom.held_out.source=held_out.txt"]


def _validated(overrides, tmp_path):
    return validate(compose_config(overrides, output_dir=tmp_path))


def test_every_loader_argument_is_a_typed_key_with_help_and_kinds_agree():
    params = set(inspect.signature(build_external_task).parameters) - {"name"}
    keys = {f.name for f in dataclasses.fields(CustomTaskConfig)}
    assert params == keys, (params ^ keys)
    assert all(f.metadata.get("help") for f in dataclasses.fields(CustomTaskConfig))
    assert [k.value for k in TaskKind] == list(kinds.KINDS)
    assert set(kinds.KIND_KEYS) == set(kinds.KINDS)
    assert set().union(*kinds.KIND_KEYS.values()) <= keys


def test_a_key_of_an_existing_task_composes_without_plus(tmp_path):
    typed = _validated([*LOCAL, "tasks.custom.my_task.kind=summarization", "~tasks.custom.my_task.prompt_template",
                        "~tasks.custom.my_task.completion_template", "tasks.custom.my_task.skip_empty=true"], tmp_path)
    task = typed.tasks.custom["my_task"]
    assert task.kind is TaskKind.summarization and task.skip_empty and task.source == "train.jsonl"
    assert task.prompt_template is None and typed.tasks.custom["held_out"].kind is TaskKind.text


def test_a_new_task_name_composes_without_plus(tmp_path):
    typed = _validated([*LOCAL, "tasks.custom.stories.source=stories.txt", "tasks.custom.stories.kind=text",
                        "tasks.base=[held_out,stories]"], tmp_path)
    assert typed.tasks.custom["stories"].kind is TaskKind.text and typed.tasks.base == ["held_out", "stories"]
    # the plus form keeps working for those who learnt it
    typed = _validated([*LOCAL, "+tasks.custom.stories.source=stories.txt", "+tasks.custom.stories.kind=text"],
                       tmp_path)
    assert typed.tasks.custom["stories"].source == "stories.txt"


@pytest.mark.parametrize("overrides,needles", [
    (["tasks.custom.my_task.kidn=summarization"],
     ["tasks.custom.my_task.kidn", "did you mean 'kind'", "allowed keys", "prompt_template", "label_names"]),
    (["tasks.custom.my_task.kind=poem"], ["tasks.custom.my_task.kind", "'poem'", "summarization", "classification"]),
    (["tasks.custom.my_task.kind=summarization"],
     ["prompt_template", "kind=summarization", "~tasks.custom.my_task.prompt_template",
      "~tasks.custom.my_task.completion_template", "kind instruction"]),
    (["tasks.custom.held_out.label_names=[negative,positive]"], ["label_names", "kind=text", "kind classification"]),
    (["tasks.custom.other.source=x.jsonl"], ["tasks.custom.other", "kind=instruction needs prompt_template"]),
    (["tasks.custom.other.kind=text"], ["tasks.custom.other.source is not set"]),
    (["tasks.custom.ents.source=train.conll", "tasks.custom.ents.kind=ner", "tasks.custom.ents.tag_column=0"],
     ["tasks.custom.ents.tag_column=0", "token column"]),
    (["tasks.custom.ents.source=train.txt", "tasks.custom.ents.kind=ner", "tasks.custom.ents.fields={tags: ner_tags}"],
     ["tasks.custom.ents.fields", "tokens and tags"]),
    (["tasks.custom.sst.source=sst.tsv", "tasks.custom.sst.kind=classification",
      "tasks.custom.sst.label_names=[good,good]"], ["tasks.custom.sst.label_names", "twice"]),
    (["tasks.custom.sst.source=sst.tsv", "tasks.custom.sst.kind=classification", "tasks.custom.sst.sizes={tset: 5}"],
     ["tasks.custom.sst.sizes", "'tset'", "validation"]),
    (["tasks.custom.held_out.splits={train: train, tset: test}"], ["tasks.custom.held_out.splits", "'tset'",
                                                                   "allowed roles"]),
    (["tasks.custom.held_out.split=test", "tasks.custom.held_out.splits={test: test}"], ["split='test'", "splits"]),
    (["tasks.custom.held_out.splits={test: test}", "~tasks.custom.held_out.source"], ["source is not set"]),
])
def test_bad_custom_tasks_fail_before_any_model_loads(overrides, needles, tmp_path, monkeypatch):
    from forgetlab import run

    def no_model(*args, **kwargs):
        raise AssertionError("validation must fail before anything is built")

    monkeypatch.setattr(run, "instantiate", no_model)
    cfg = compose_config([*LOCAL, *overrides], output_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        run.run_experiment(cfg)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_build_suite_receives_plain_dicts_without_unset_keys(tmp_path):
    cfg = compose_config(["experiment=flan_t5_dialogsum"], output_dir=tmp_path)
    tasks = instantiate(cfg.tasks, _convert_="all", _partial_=True)  # the call run.py makes, before building
    custom = tasks.keywords["custom"]
    assert type(custom["dialogsum"]) is dict and custom["dialogsum"]["kind"] == "summarization"
    assert "prompt_template" not in custom["dialogsum"]  # what was not written stays out: the loader's defaults
    typed = OmegaConf.to_object(OmegaConf.structured(CustomTaskConfig(source="a.jsonl", kind=TaskKind.text)))
    assert task_spec(dataclasses.asdict(typed)) == {"source": "a.jsonl", "kind": "text", "shrink": False,
                                                    "skip_empty": False}
