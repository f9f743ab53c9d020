"""The LightningModule that fine-tunes any forgetlab model.

Single-task, multi-task and replay runs differ only in the data they are given; full and PEFT runs only
in which parameters require grad (peft wraps `lm.model` before this module sees it); L2-SP, EWC and
distillation only in the `penalty` added to the loss. So one readable training step serves every strategy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from transformers import get_scheduler

from forgetlab.config.schema import OptimConfig
from forgetlab.models.language_model import LanguageModel
from forgetlab.training.sharded import shard_model

# penalty(model) -> scalar (L2-SP, EWC); one with `needs_logits` is called (lm, batch, logits, targets) with the
# step's own logits instead (distillation, strategies/penalties.py)
Penalty = Callable[..., torch.Tensor]


class InstructionTuner(L.LightningModule):
    def __init__(self, lm: LanguageModel, optim: OptimConfig, penalty: Penalty | None = None,
                 task_names: list[str] | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.model = lm.model  # registered so Lightning moves it and checkpoints it
        self.optim = optim
        self.penalty = penalty
        self.task_names = task_names or []
        self.tokens_seen = 0     # real (non-padding) tokens trained on, over all processes
        self.positions_seen = 0  # tensor positions, padding included: their ratio is the pad fraction
        self.loop_started: float | None = None  # when the training loop began (after any DDP launch)
        # This step's log row until the loggers have it: Lightning writes it after the step's checkpoint, so a
        # kill between the two would lose it; the checkpoint carries it and the resumed run writes it.
        self._pending_row: dict | None = None

    def on_train_start(self) -> None:
        self.loop_started = time.perf_counter()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._pending_row = None  # the previous step's row has reached the loggers

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        task_id = batch.pop("task_id", None)
        distill = getattr(self.penalty, "needs_logits", False)
        if distill:  # the term reads this forward's logits: no second pass of the model being trained
            logits, targets = self.lm.label_logits(batch)
            nll, ntok = self.lm.losses_from_logits(logits, targets, self.lm.target_examples(batch))
        else:
            nll, ntok = self.lm.token_losses(batch)
        # Sums over the global batch (all processes; one all-reduce, a no-op on one device): the loss is the
        # global mean per label token, scaled so that DDP's gradient averaging over `world` processes gives
        # exactly the gradient of one process that trains on the whole batch. Token counts are global too.
        log_now = self._loggers_write_now()  # per-task sums are for the logs alone: only on logging steps
        n_tasks = len(self.task_names) if task_id is not None and log_now else 0
        sums = torch.zeros(4 + 2 * n_tasks, dtype=torch.float64, device=nll.device)
        sums[0], sums[1] = nll.detach().sum(), ntok.sum()
        seq2seq = self.lm.kind == "seq2seq"  # its labels are a second padded tensor
        sums[2] = int(batch["attention_mask"].sum()) + (int((batch["labels"] != -100).sum()) if seq2seq else 0)
        sums[3] = batch["attention_mask"].numel() + (batch["labels"].numel() if seq2seq else 0)
        if n_tasks:
            sums[4:4 + n_tasks].index_add_(0, task_id, nll.detach().double())
            sums[4 + n_tasks:].index_add_(0, task_id, ntok.double())
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        world = self.trainer.world_size
        loss = nll.sum() * world / sums[1].clamp(min=1).to(nll.dtype)
        pen = None
        if self.penalty is not None:
            # L2-SP/EWC: the same on every process, so averaging keeps it as it is
            pen = self.penalty(self.lm, batch, logits, targets) if distill else self.penalty(self.model)
            loss = loss + pen
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step} (lr {self.optim.lr:g}); lower "
                "strategy.optim.lr (or base.lr in the base stage), or check the data"
            )
        self.tokens_seen += int(sums[2])
        self.positions_seen += int(sums[3])
        if log_now:
            logs = {"train/loss": (sums[0] / sums[1].clamp(min=1)).float()}
            if pen is not None:
                logs["train/penalty"] = pen.detach()
            for i in range(n_tasks):
                if sums[4 + n_tasks + i] > 0:
                    logs[f"train/{self.task_names[i]}/loss"] = (sums[4 + i] / sums[4 + n_tasks + i]).float()
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=len(ntok))
            # as Lightning will log it: at this step (optimizer steps done before it), with the epoch
            self._pending_row = {"step": self.global_step, "epoch": self.current_epoch, "logs": logs}
        return loss

    def _loggers_write_now(self) -> bool:
        """Whether Lightning hands this step's logged values to the loggers (every `trainer.log_every_n_steps`
        steps). Only then is `self.log` called: it costs ~1 ms a key, several times the rest of a tiny
        model's per-step overhead, and the loggers get the same values at the same steps. A callback that
        monitors `train/loss` sees it as often (`trainer.log_every_n_steps=1`: every step). Without Lightning's
        (private) signal every step logs."""
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def configure_model(self) -> None:
        """FSDP2 (trainer=fsdp) shards the model here, where Lightning's ModelParallelStrategy asks for it;
        under DeepSpeed a meta-device skeleton is kept first (training/sharded.py). No-op otherwise."""
        shard_model(self.trainer.strategy, self.model)

    def configure_optimizers(self):
        """The optimizer from config (`strategy.optim.optimizer`, a `_partial_` target) over the trainable
        parameters, with a transformers schedule over the run's steps."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = instantiate(self.optim.optimizer)(params, lr=self.optim.lr)
        scheduler = get_scheduler(self.optim.scheduler, optimizer, num_warmup_steps=self.optim.warmup_steps,
                                  num_training_steps=self.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip directly under bf16-mixed: it keeps no loss scaler, so the gradients are already true-scale,
        but Lightning's AMP plugin refuses any optimizer that unscales internally (the default fused AdamW)
        whatever the precision. Every other case (fp16 with its scaler, FSDP, DeepSpeed) goes to Lightning."""
        plugin = self.trainer.precision_plugin
        if (gradient_clip_val and type(plugin) is MixedPrecision and plugin.scaler is None
                and getattr(optimizer, "_step_supports_amp_scaling", False)):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint["positions_seen"] = self.positions_seen
        checkpoint["truncation"] = self.lm.truncation.state_dict()  # counts of the evaluations done so far
        if self._pending_row is not None:
            row = self._pending_row
            values = {k: float(v) for k, v in row["logs"].items()} | {"epoch": row["epoch"]}
            checkpoint["pending_log_row"] = {"step": row["step"], "values": values}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
        self.positions_seen = checkpoint.get("positions_seen", 0)
        self.lm.truncation.load_state_dict(checkpoint.get("truncation", {}))
        row = checkpoint.get("pending_log_row")
        for logger in self.trainer.loggers if row else ():  # the CSV log (utils/csv_logger.py) adds it if missing
            restore = getattr(logger, "restore_row", None)
            if restore is not None:
                restore(row["values"], row["step"])

    @property
    def pad_fraction(self) -> float:
        """Share of the trained tensor positions that were padding (0 with no steps)."""
        return 1.0 - self.tokens_seen / self.positions_seen if self.positions_seen else 0.0
