"""Training losses reach the loggers every `trainer.log_every_n_steps` steps, and the training step pays for
Lightning's `self.log` only on those steps."""

from __future__ import annotations

import csv

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger

from forgetlab.config import validate
from forgetlab.training.fit import fit
from forgetlab.training.mixing import build_training_data
from forgetlab.training.module import InstructionTuner
from tests.conftest import TINY, compose_config


def test_losses_are_logged_every_n_steps_and_self_log_runs_only_then(tmp_path, monkeypatch):
    cfg = compose_config(TINY + ["strategy.optim.steps=10", "trainer.log_every_n_steps=5"], tmp_path / "run")
    config = validate(cfg)
    lm = instantiate(cfg.model.build)
    suite = instantiate(cfg.tasks, _convert_="all")
    optim = config.strategy.optim
    train, _ = build_training_data(config.strategy.data, suite, optim.steps * optim.batch_size, seed=0)

    steps_logged = []
    log_dict = InstructionTuner.log_dict

    def counting_log_dict(self, *args, **kwargs):
        steps_logged.append(self.global_step)
        return log_dict(self, *args, **kwargs)

    monkeypatch.setattr(InstructionTuner, "log_dict", counting_log_dict)
    logger = CSVLogger(tmp_path, name="logs", version="")
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=[], enable_checkpointing=False)
    fit(lm, train, trainer, optim, seed=0)

    assert steps_logged == [4, 9]  # the steps Lightning writes out, not all ten
    with open(tmp_path / "logs" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [4, 9]
    assert all(float(r["train/loss"]) > 0 and float(r[f"train/{suite.target}/loss"]) > 0 for r in rows)
