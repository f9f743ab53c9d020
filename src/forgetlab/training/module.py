"""The LightningModule that fine-tunes any forgetlab model.

Single-task, multi-task and replay runs differ only in the data they are given; full and PEFT runs only
in which parameters require grad (peft wraps `lm.model` before this module sees it); L2-SP and EWC only
in the `penalty` callable added to the loss. So one readable training step serves every strategy.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from hydra.utils import instantiate
from transformers import get_scheduler

from forgetlab.config.schema import OptimConfig
from forgetlab.models.language_model import LanguageModel

Penalty = Callable[[torch.nn.Module], torch.Tensor]


class InstructionTuner(L.LightningModule):
    def __init__(self, lm: LanguageModel, optim: OptimConfig, penalty: Penalty | None = None,
                 task_names: list[str] | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.model = lm.model  # registered so Lightning moves it and checkpoints it
        self.optim = optim
        self.penalty = penalty
        self.task_names = task_names or []
        self.tokens_seen = 0     # real (non-padding) tokens trained on
        self.positions_seen = 0  # tensor positions, padding included: their ratio is the pad fraction

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        task_id = batch.pop("task_id", None)
        nll, ntok = self.lm.token_losses(batch)
        loss = nll.sum() / ntok.sum().clamp(min=1)
        logs = {"train/loss": loss.detach()}
        if self.penalty is not None:
            pen = self.penalty(self.model)
            logs["train/penalty"] = pen.detach()
            loss = loss + pen
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step} (lr {self.optim.lr:g}); lower "
                "strategy.optim.lr (or base.lr in the base stage), or check the data"
            )
        if task_id is not None and self.task_names:
            for i in task_id.unique().tolist():
                sel = task_id == i
                logs[f"train/{self.task_names[i]}/loss"] = (nll[sel].sum() / ntok[sel].sum().clamp(min=1)).detach()
        self.tokens_seen += int(batch["attention_mask"].sum()) + (
            int((batch["labels"] != -100).sum()) if self.lm.kind == "seq2seq" else 0
        )
        self.positions_seen += batch["attention_mask"].numel() + (
            batch["labels"].numel() if self.lm.kind == "seq2seq" else 0
        )
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=len(ntok))
        return loss

    def configure_optimizers(self):
        """The optimizer from config (`strategy.optim.optimizer`, a `_partial_` target) over the trainable
        parameters, with a transformers schedule over the run's steps."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = instantiate(self.optim.optimizer)(params, lr=self.optim.lr)
        scheduler = get_scheduler(self.optim.scheduler, optimizer, num_warmup_steps=self.optim.warmup_steps,
                                  num_training_steps=self.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint["positions_seen"] = self.positions_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
        self.positions_seen = checkpoint.get("positions_seen", 0)

    @property
    def pad_fraction(self) -> float:
        """Share of the trained tensor positions that were padding (0 with no steps)."""
        return 1.0 - self.tokens_seen / self.positions_seen if self.positions_seen else 0.0
