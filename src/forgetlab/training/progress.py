"""A progress bar over optimizer steps (conf/callbacks/default.yaml), with the latest training loss."""

from __future__ import annotations

import lightning as L

from forgetlab.utils.console import progress


class StepProgress(L.Callback):
    """Shows `description  ━━━━  120/200  loss 0.731` while training, on a terminal only."""

    def __init__(self, description: str = "fine-tuning") -> None:
        self.description = description
        self._bar = None
        self._advance = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._bar = progress(self.description, trainer.max_steps)
        self._advance = self._bar.__enter__()
        self._advance(trainer.global_step)  # a resumed run starts part-way

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._advance is not None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            self._advance(1, info=f"loss {float(loss):.3f}" if loss is not None else "")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        self._bar = self._advance = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()
