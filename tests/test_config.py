"""Every config composes, and bad overrides fail before training with the allowed values named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf

from forgetlab.config import ConfigError, validate
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["model", "tasks", "strategy", "trainer", "logger", "base", "paths", "experiment"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_config_composes_and_validates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if option == "hf":
        overrides.append("model.build.name_or_path=some/model")
    if option == "custom_jsonl":
        overrides.append("tasks.custom.my_task.source=data.jsonl")
    cfg = compose_config(overrides, output_dir=tmp_path)
    typed = validate(cfg)
    # every value resolves (no dangling interpolation)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if group == "strategy":
        assert typed["strategy"].name == option
    if group == "model":
        assert resolved["model"]["name"] == option
    assert resolved["paths"]["output_dir"] == str(tmp_path)


def test_every_config_file_names_its_command():
    for path in CONF.rglob("*.yaml"):
        header = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line)
        assert any("forgetlab" in line for line in header), (
            f"{path} must start with a comment showing the command that runs it")


def test_unknown_model_lists_allowed_values(tmp_path):
    with pytest.raises(HydraException) as err:
        compose_config(["model=gpt9"], output_dir=tmp_path)
    assert "tiny_t5" in str(err.value) and "tiny_gpt" in str(err.value)


def test_unknown_task_lists_allowed_values_before_training(tmp_path, cache_dir):
    from forgetlab.run import run_experiment

    cfg = compose_config(["experiment=tiny", "tasks.target=juggling"], tmp_path, cache_dir)
    with pytest.raises(ValueError) as err:
        run_experiment(cfg)
    msg = str(err.value)
    assert "tasks.target" in msg and "'juggling'" in msg and "reverse" in msg and "copy" in msg
    assert not (tmp_path / "checkpoints").exists(), "must fail before any training"


@pytest.mark.parametrize(
    "override,needle",
    [
        ("strategy.data.kind=bogus", "strategy.data.kind: Invalid value 'bogus', expected one of [single, multitask"),
        ("+strategy.optim.lrr=1", "strategy.optim.lrr"),
        ("strategy.optim.scheduler=wobbly", "allowed values"),
        ("strategy=replay strategy.data.replay_fraction=1.5", "replay_fraction"),
    ],
)
def test_bad_strategy_values_name_the_key(override, needle, tmp_path):
    cfg = compose_config(override.split(), output_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert needle in str(err.value)
