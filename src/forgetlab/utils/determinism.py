"""Make a CPU run bit-identical when repeated: one seed everywhere, deterministic kernels, and a fixed
thread count (a probe here: 2 threads twice gave identical numbers, 1 vs 2 threads did not)."""

from __future__ import annotations

import os

import lightning as L
import torch


def make_deterministic(seed: int, threads: int, deterministic: bool = True) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads > 0:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    L.seed_everything(seed, workers=True, verbose=False)
