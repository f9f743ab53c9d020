"""bf16-mixed training with gradient clipping and the default fused AdamW: Lightning's AMP plugin refuses to clip
for an optimizer that unscales internally, so `trainer=gpu` (bf16-mixed, clip 1.0) failed every step until the
module clipped directly (bf16 keeps no loss scaler). Checked on the CPU, where Lightning also runs bf16-mixed."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate

from forgetlab.config import validate
from forgetlab.training.fit import fit
from forgetlab.training.mixing import build_training_data
from tests.conftest import TINY, compose_config


def test_bf16_mixed_trains_with_clipping_and_fused_adamw(tmp_path):
    cfg = compose_config([*TINY, "strategy.optim.steps=3", "strategy.optim.batch_size=4"], tmp_path)
    config = validate(cfg)
    assert config.strategy.optim.optimizer["fused"] and cfg.trainer.gradient_clip_val == 1.0
    suite = instantiate(cfg.tasks, cache_dir=None, _convert_="all")
    lm = instantiate(cfg.model.build)
    start = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    train, _ = build_training_data(config.strategy.data, suite, 12, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", gradient_clip_val=1.0,
                        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    stats = fit(lm, train, trainer, config.strategy.optim, seed=0)
    assert stats["steps"] == 3
    moved = [n for n, p in lm.model.named_parameters() if not torch.equal(p.detach(), start[n])]
    assert moved and all(torch.isfinite(p).all() for p in lm.model.parameters())
