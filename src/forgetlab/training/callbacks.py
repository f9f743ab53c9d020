"""Evaluation during training: every task's validation score and loss every N steps, so a report can
draw forgetting over steps and not only before/after."""

from __future__ import annotations

import time

import lightning as L

from forgetlab.evaluation.scoring import score_tasks
from forgetlab.tasks.task import InstructionTask
from forgetlab.training.sharded import scoring_model


class PeriodicEvaluation(L.Callback):
    """Built from conf/callbacks/ (`every_n_steps` = eval.every_n_steps; 0 = off); the run hands it the
    tasks to score (`tasks`) before training starts."""

    def __init__(self, every_n_steps: int, max_examples: int | None = None, batch_size: int = 256,
                 tasks: dict[str, InstructionTask] | None = None, max_batch_tokens: int | None = None) -> None:
        self.tasks, self.every = tasks or {}, every_n_steps
        self.max_examples, self.batch_size, self.max_batch_tokens = max_examples, batch_size, max_batch_tokens
        self.history: list[dict] = []
        self.seconds = 0.0  # spent evaluating in this process (the run's timing splits it off training)

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if self.history and self.history[-1]["step"] == step:
            return
        # Every rank gets here at the same steps (Lightning runs callback hooks on all of them) and scores
        # its share; all get the scores, so the history (and a budget choice made from it) is the same on each.
        start = time.perf_counter()
        with scoring_model(pl_module.lm):  # whole weights under FSDP / ZeRO-3 (training/sharded.py)
            scores = score_tasks(pl_module.lm, self.tasks, "validation", self.batch_size, self.max_examples,
                                 self.max_batch_tokens)
        self.seconds += time.perf_counter() - start
        self.history.append({"step": step, "scores": scores})
        flat = {f"val/{t}/{k}": v[k] for t, v in scores.items() for k in ("score", "loss")}
        for logger in trainer.loggers:  # rank 0's alone: the others are built without loggers
            logger.log_metrics(flat, step=step)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.every > 0 and not self.history:  # a resumed run has its history (and step) from the checkpoint
            self._evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every > 0 and trainer.global_step % self.every == 0:
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.every > 0:
            self._evaluate(trainer, pl_module)

    @property
    def state_key(self) -> str:
        # One fixed key, so a resumed run finds the history whatever subclass or arguments wrote it.
        return "PeriodicEvaluation"

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
