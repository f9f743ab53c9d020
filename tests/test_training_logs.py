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


def test_a_row_lost_between_a_checkpoint_and_the_loggers_comes_back_on_resume(tmp_path):
    """Lightning hands a step's row to the loggers after that step's checkpoint: a run killed between the two
    resumes with the row restored from the checkpoint, and its log equals the uninterrupted run's."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from forgetlab.utils.csv_logger import ResumableCSVLogger

    class KilledAfterSaving(ModelCheckpoint):
        def on_train_batch_end(self, trainer, *args, **kwargs):
            super().on_train_batch_end(trainer, *args, **kwargs)
            if trainer.global_step == 3:
                raise KeyboardInterrupt  # after the step-3 checkpoint, before the step's row is logged

    cfg = compose_config(TINY + ["strategy.optim.steps=6", "trainer.log_every_n_steps=1"], tmp_path / "run")
    config = validate(cfg)
    optim = config.strategy.optim
    suite = instantiate(cfg.tasks, _convert_="all")
    train, _ = build_training_data(config.strategy.data, suite, optim.steps * optim.batch_size, seed=0)

    def run(folder, checkpoint, ckpt_path=None):
        logger = ResumableCSVLogger(folder, name="logs", version="", flush_logs_every_n_steps=1)
        trainer = instantiate(cfg.trainer, logger=logger, callbacks=[checkpoint])
        fit(instantiate(cfg.model.build), train, trainer, optim, seed=0, ckpt_path=ckpt_path)
        with open(folder / "logs" / "metrics.csv", newline="") as f:
            return [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)]

    expected = run(tmp_path / "whole", ModelCheckpoint(tmp_path / "whole" / "ckpt", save_last=True,
                                                       every_n_train_steps=3))
    killed = tmp_path / "killed"
    try:
        run(killed, KilledAfterSaving(killed / "ckpt", save_last=True, every_n_train_steps=3))
    except (KeyboardInterrupt, SystemExit):
        pass
    assert (killed / "ckpt" / "last.ckpt").exists()
    with open(killed / "logs" / "metrics.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["0", "1"]  # step 2's row never reached the file
    got = run(killed, ModelCheckpoint(killed / "ckpt", save_last=True, every_n_train_steps=3),
              ckpt_path=str(killed / "ckpt" / "last.ckpt"))
    assert [r["step"] for r in expected] == ["0", "1", "2", "3", "4", "5"]
    assert got == expected
