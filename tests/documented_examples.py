"""The documented commands that train a built-in model, and how the examples test runs each.

`runnable_examples()` reads every `forgetlab ...` command in README.md, docs/*.md and the config files'
headers (the same extraction as tests/test_config.py), keeps those that train a built-in model on this
machine, expands a sweep to its first job, and folds commands that compose to the same training config into
one example. Commands it cannot run here are listed by `not_run_here()` with the reason and the test that
covers their path instead.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.test_config import documented_commands, first_of_each_sweep

# A command with any of these needs what this machine does not have; the reason names what covers it.
NOT_HERE = {
    "/models/": "a model folder of the reader's (tests/test_real_checkpoint.py runs a real one)",
    "/path/": "a model folder of the reader's",
    "some/model": "a model folder of the reader's",
    "Qwen/": "a hub model",
    "data/": "a data file of the reader's (tests/test_loaders.py, tests/test_hub_mirrors.py)",
    "model=hf": "a model folder of the reader's",
    "model=flan_t5": "a hub model (experiment=flan_t5_dialogsum runs on mirrors in tests/test_hub_mirrors.py)",
    "model=gpt2": "a hub model",
    "model=smollm": "a hub model",
    "model=llama_local": "a model folder of the reader's",
    "experiment=local_llama": "a model folder of the reader's",
    "experiment=flan_t5_dialogsum": "hub data (run on mirrors in tests/test_hub_mirrors.py)",
    "experiment=stories260k": "its own sweep (tests/test_real_checkpoint.py)",
    "trainer=gpu": "a GPU",
    "trainer=fsdp": "GPUs",
    "trainer.devices": "several processes (tests/test_ddp.py)",
    "hparams_search": "an Optuna search: its trials vary (tests/test_sweeps.py)",
    "slurm": "a SLURM cluster",
    "submitit": "a submitit launcher (tests/test_scale_out.py)",
    "lm_eval": "the optional lm-evaluation-harness (tests/test_lm_eval_bridge.py)",
    "experiment=continual_study": "a study: its README holds the measured numbers",
    "experiment=adapters_vs_forgetting": "a study: its README holds the measured numbers",
}
# Smoke-test configurations, documented as such: they run in seconds and claim no learning.
SMOKE = {"experiment=tiny": "a seconds-long smoke check (its header says so)"}
# Settings that change where things go or what is printed, never what is trained.
NOT_TRAINING = ("paths.", "logger", "callbacks.progress", "sweep_name", "hydra", "threads", "seed")
DOC_SOURCES = ("README.md", "docs/", "conf/")


@dataclass
class Example:
    overrides: list[str]
    sources: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(self.overrides) or "(default)"


def _overrides(args: str) -> list[str] | None:
    words = shlex.split(args)
    if any(w.startswith("--") for w in words):  # --cfg job, --help: nothing trains
        return None
    overrides = [w for w in words if w not in ("-m", "--multirun") and ("=" in w or w.startswith("~"))]
    return first_of_each_sweep(overrides)


def _first_job(overrides: list[str], cfg) -> list[str]:
    """An experiment's own sweep (hydra.sweeper.params) expanded to its first job, as `-m` would run it."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    if not params:
        return overrides
    given = {o.split("=", 1)[0] for o in overrides}
    swept = [f"{k}={v}" for k, v in OmegaConf.to_container(params, resolve=False).items() if k not in given]
    return [*overrides, *first_of_each_sweep(swept)]


def training_key(overrides: list[str], tmp_path) -> str:
    """What decides learning: the composed model, tasks, base, strategy and sequence."""
    cfg = compose_config(overrides, output_dir=tmp_path)
    keep = {k: cfg[k] for k in ("model", "tasks", "base", "strategy", "sequence") if k in cfg}
    return OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep), resolve=False)))


def classify(tmp_path) -> tuple[list[Example], dict[str, str]]:
    """(examples to run, {command: why it is not run here})."""
    examples: dict[str, Example] = {}
    skipped: dict[str, str] = {}
    for source, args in documented_commands():
        if not source.startswith(DOC_SOURCES):
            continue  # experiments/ hold studies: their READMEs keep the measured numbers
        overrides = _overrides(args)
        if overrides is None:
            continue
        reason = next((why for needle, why in {**NOT_HERE, **SMOKE}.items() if needle in args), None)
        if reason is not None:
            skipped[args] = reason
            continue
        cfg = compose_config(overrides, output_dir=tmp_path, return_hydra_config=True)
        overrides = [o for o in _first_job(overrides, cfg) if not o.startswith(NOT_TRAINING)]
        key = training_key(overrides, tmp_path)
        example = examples.setdefault(key, Example(overrides))
        example.sources.append(f"{source}: forgetlab {args}")
    return list(examples.values()), skipped
