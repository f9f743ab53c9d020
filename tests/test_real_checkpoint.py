"""A real pretrained checkpoint through forgetlab's real path: llama2.c's stories260K (vendored in
forgetlab/assets, 1 MB) loads through `model=hf`, writes its story about Lily, starts prompts with BOS
(`add_bos: auto`, though its tokenizer does not add BOS itself), knows story text from other text, and
forgets its own stories when fine-tuned on a task it does not know (full fine-tuning and LoRA)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from forgetlab.assets import asset_path, available_assets
from forgetlab.assets.make_stories260k_data import color_task
from forgetlab.models.language_model import IGNORE_INDEX
from tests.conftest import compose_config

IN_DOMAIN = "Tom and his mom went to the park. They saw a big dog."
OUT_OF_DOMAIN = "The quarterly revenue of the corporation exceeded analyst expectations."


@pytest.fixture(scope="module")
def stories_lm(tmp_path_factory):
    """stories260K as `forgetlab model=hf model.build.name_or_path=${asset:stories260K}` builds it."""
    cfg = compose_config(["model=hf", "model.build.name_or_path=${asset:stories260K}"],
                         tmp_path_factory.mktemp("cfg"))
    torch.manual_seed(0)
    return instantiate(cfg.model.build)


def text_loss(lm, texts: list[str], with_eos: bool = True) -> float:
    """Mean per-token loss of held-out `texts` as forgetlab encodes them (BOS, text, EOS); `with_eos=False`
    leaves out the final EOS (llama2.c separated its training stories by BOS and never saw EOS)."""
    features = [lm.encode("", t) for t in texts]
    if not with_eos:
        for f in features:
            f["labels"] = [*f["labels"][:-1], IGNORE_INDEX]
    batch = lm.collate(features)
    with torch.no_grad():
        nll, n = lm.token_losses(batch)
    return float(nll.sum() / n.sum())


# ----------------------------------------------------------------------------- the vendored files
def test_vendored_checkpoint_keeps_its_licence_provenance_and_weights():
    files = {p.name for p in Path(asset_path("stories260K")).iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "LICENSE", "PROVENANCE.txt"} <= files
    assert Path(asset_path("stories260K/LICENSE")).read_text().startswith("MIT License")
    provenance = Path(asset_path("stories260K/PROVENANCE.txt")).read_text()
    digest = hashlib.sha256(Path(asset_path("stories260K/model.safetensors")).read_bytes()).hexdigest()
    assert digest.startswith("407a7c581bdd6697") and digest[:16] in provenance  # the weights PROVENANCE describes


def test_asset_resolver_names_shipped_files_and_rejects_unknown_ones(tmp_path):
    cfg = compose_config(["model=hf", "model.build.name_or_path=${asset:stories260K}"], tmp_path)
    assert cfg.model.build.name_or_path == asset_path("stories260K") and Path(asset_path("stories260K")).is_dir()
    assert "stories260K" in available_assets()
    bad = compose_config(["model=hf", "model.build.name_or_path=${asset:stories999K}"], tmp_path)
    with pytest.raises(Exception, match=r"no such asset .*available: \[.*'stories260K'"):
        OmegaConf.to_container(bad.model, resolve=True)
    with pytest.raises(ValueError, match="no such asset"):
        asset_path("../config")  # nothing outside the assets folder


# ----------------------------------------------------------------------------- what it knows
def test_loads_through_model_hf_and_continues_once_upon_a_time_with_lily(stories_lm):
    lm = stories_lm
    assert lm.kind == "causal" and lm.max_length == 512  # config.max_position_embeddings
    assert lm.parameter_counts()["total_params"] == 260_032  # as PROVENANCE.txt says
    (story,) = lm.generate(["Once upon a time"], 24)  # the prompt, the separator "\n", then greedy tokens
    assert story.startswith("One day, a little girl named Lily went to the park with her mom."), story


def test_add_bos_auto_starts_inputs_with_bos_although_the_tokenizer_does_not(stories_lm, tmp_path):
    lm = stories_lm
    bos = lm.tokenizer.bos_token_id
    assert lm.tokenizer("Once upon a time")["input_ids"][0] != bos  # the tokenizer alone: no BOS
    assert lm.add_bos and lm.encode("Once upon a time", "there")["input_ids"][0] == bos
    assert lm.generation_input("Once upon a time", 8)[0][0] == bos
    cfg = compose_config(["model=hf", "model.build.name_or_path=${asset:stories260K}", "model.build.add_bos=false"],
                         tmp_path)
    without = instantiate(cfg.model.build)
    assert not without.add_bos and without.encode("Once upon a time", "there")["input_ids"][0] != bos
    # trained with BOS first: text costs more without it (1.32 vs 1.12; the separator stands in for BOS)
    assert text_loss(without, [IN_DOMAIN], with_eos=False) > text_loss(lm, [IN_DOMAIN], with_eos=False) + 0.1


def test_story_text_scores_far_better_than_other_text(stories_lm):
    lm = stories_lm
    inside, outside = text_loss(lm, [IN_DOMAIN], with_eos=False), text_loss(lm, [OUT_OF_DOMAIN], with_eos=False)
    assert inside < 1.3 and outside > 3.5, (inside, outside)  # PROVENANCE.txt: 1.13 and 3.95
    assert text_loss(lm, [IN_DOMAIN]) < text_loss(lm, [OUT_OF_DOMAIN])  # as forgetlab scores it, EOS included


def test_its_own_stories_are_what_it_knows_best(stories_lm):
    stories = Path(asset_path("stories260K_stories.txt")).read_text().split("\n\n")
    assert len(stories) >= 200 and all(s.strip() for s in stories)
    own = text_loss(stories_lm, [s.strip() for s in stories[:16]], with_eos=False)
    assert own < text_loss(stories_lm, [IN_DOMAIN], with_eos=False)


# ----------------------------------------------------------------------------- the data made from it
def test_task_file_is_what_its_generator_writes_and_the_model_does_not_know_it():
    rows = [json.loads(line) for line in Path(asset_path("stories260K_task.jsonl")).read_text().splitlines()]
    assert rows == color_task()[: len(rows)] and len(rows) >= 1000
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert all(r["completion"] in r["prompt"].split(". ")[0].split() for r in rows)  # the answer is in the prompt


# ----------------------------------------------------------------------------- forgetting
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_fine_tuning_learns_the_task_and_forgets_stories(strategy, tmp_path):
    from forgetlab.run import run_experiment

    cfg = compose_config(["experiment=stories260k", f"strategy={strategy}", "strategy.optim.steps=60",
                          "eval.every_n_steps=0", "diagnostics.spectral=false", "checkpoint_every_n_steps=1000",
                          "tasks.sizes={train: 400, validation: 8, test: 40}"], tmp_path / "run",
                         tmp_path / "cache")
    with open_dict(cfg):
        cfg.tasks.custom.stories.sizes = {"train": 16, "validation": 4, "test": 24}
    run_experiment(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    before, after = metrics["before"], metrics["after"]
    assert after["colors"]["loss"] < before["colors"]["loss"] / 2  # the target is learnt (loss 8.5 -> ~1)
    if strategy == "full":  # answers exactly; LoRA (q, v) writes the right colour but cannot learn to stop:
        assert after["colors"]["score"] >= before["colors"]["score"] + 10  # llama2.c never trained EOS
    else:
        rows = [json.loads(line) for line in (tmp_path / "run/predictions/after/colors.jsonl").open()]
        right = sum(r["prediction"].split()[0].startswith(r["references"][0]) for r in rows if r["prediction"])
        assert right >= len(rows) / 2, rows[:3]
    assert metrics["loss_increase"]["stories"] > 0 and after["stories"]["score"] < before["stories"]["score"]
