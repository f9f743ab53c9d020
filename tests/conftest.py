"""Shared test setup: offline hub and W&B, two torch threads, and a tiny experiment run once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

TINY = ["experiment=tiny"]


def compose_config(overrides: list[str], output_dir: Path | None = None, cache_dir: Path | None = None,
                   return_hydra_config: bool = False) -> DictConfig:
    """Compose conf/train.yaml like the CLI does, with the run directory pointed at `output_dir`."""
    with initialize_config_module(config_module="forgetlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=return_hydra_config)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        if cache_dir is not None:
            cfg.paths.cache_dir = str(cache_dir)
    return cfg


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One base-stage cache for the whole session, so the tiny base model is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_run_timed(tmp_path_factory, cache_dir):
    """A complete tiny experiment (tiny T5, 3 base tasks, 20 fine-tuning steps): (run_dir, metrics, the
    seconds `run_experiment` took, measured outside it)."""
    import time

    from forgetlab.run import run_experiment

    run_dir = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_config([*TINY, "trainer.log_every_n_steps=1"], run_dir, cache_dir)
    start = time.perf_counter()  # after composing: the run's timing starts inside run_experiment
    metrics = run_experiment(cfg)
    return run_dir, metrics, time.perf_counter() - start


@pytest.fixture(scope="session")
def tiny_run(tiny_run_timed):
    """The tiny experiment above: (run_dir, metrics)."""
    return tiny_run_timed[:2]
