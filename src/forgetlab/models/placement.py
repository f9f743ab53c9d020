"""Where scoring runs: on the device the trainer trains on, in the precision it trains in.

Lightning moves the model to the GPU for `fit` and back to the CPU when `fit` ends, and scoring happens
outside `fit` (before, after, budget selection). Without this, a GPU run would score a pretrained
model on the CPU: correct but hours slow on a real checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

from forgetlab.models.language_model import LanguageModel


def trainer_device(trainer_cfg: Any) -> torch.device:
    """The device of `conf/trainer/` (accelerator cpu | gpu | cuda | mps | auto)."""
    accelerator = str(trainer_cfg.get("accelerator", "cpu")).lower()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return torch.device("mps")
    return torch.device("cpu")


def place_for_scoring(lm: LanguageModel, trainer_cfg: Any) -> None:
    """Move the model to the trainer's device; bf16 trainer precision scores under bf16 autocast too."""
    device = trainer_device(trainer_cfg)
    if lm.model.device != device:
        lm.model.to(device)
    bf16 = str(trainer_cfg.get("precision", "32")).startswith("bf16")
    lm.autocast = torch.bfloat16 if bf16 and device.type != "cpu" else None
