"""A damaged checkpoint must not stop a preempted run from ever finishing: it is moved aside with a warning
and the run resumes from the newest checkpoint that loads, or from the start."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from forgetlab.training.checkpoint_files import checkpoint_error, usable_checkpoint
from forgetlab.training.sampler import RngStateCheckpoint


@pytest.fixture(scope="module")
def real_checkpoints(tmp_path_factory) -> Path:
    """Lightning's own files: step 2, step 4 and last.ckpt (= step 4), with optimizer and callback states."""
    out = tmp_path_factory.mktemp("ckpts")
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=4, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[RngStateCheckpoint(),
                                   ModelCheckpoint(dirpath=out, save_last=True, save_top_k=-1,
                                                   every_n_train_steps=2)])
    trainer.fit(BoringModel())
    assert {p.name for p in out.glob("*.ckpt")} == {"epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"}
    return out


@pytest.fixture
def ckpt_dir(tmp_path, real_checkpoints) -> Path:
    """A private copy, step 2 older than step 4 older than last."""
    out = tmp_path / "checkpoints"
    shutil.copytree(real_checkpoints, out)
    for age, name in enumerate(["last.ckpt", "epoch=0-step=4.ckpt", "epoch=0-step=2.ckpt"]):
        os.utime(out / name, ns=(1_000_000_000_000 - age * 10**9,) * 2)
    return out


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def set_aside_files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}.corrupt-*"))


def test_lightning_checkpoints_load_with_weights_only(real_checkpoints):
    ckpt = torch.load(real_checkpoints / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and "RngStateCheckpoint" in ckpt["callbacks"]
    assert checkpoint_error(real_checkpoints / "last.ckpt") is None


def test_a_good_checkpoint_is_used_as_it_is(ckpt_dir):
    assert usable_checkpoint(ckpt_dir / "last.ckpt") == ckpt_dir / "last.ckpt"
    assert not list(ckpt_dir.glob("*.corrupt-*"))


def test_a_truncated_checkpoint_is_moved_aside_for_the_previous_good_one(ckpt_dir):
    last = ckpt_dir / "last.ckpt"
    truncate(last)
    with pytest.warns(RuntimeWarning, match=re.escape(str(last)) + r".*truncated"):
        assert usable_checkpoint(last) == ckpt_dir / "epoch=0-step=4.ckpt"
    assert not last.exists()
    assert len(set_aside_files(ckpt_dir, "last.ckpt")) == 1


def test_damaged_candidates_are_skipped_newest_first(ckpt_dir):
    last, step4 = ckpt_dir / "last.ckpt", ckpt_dir / "epoch=0-step=4.ckpt"
    truncate(last)
    step4.write_bytes(b"\x00garbage" * 100)
    with pytest.warns(RuntimeWarning) as caught:
        assert usable_checkpoint(last) == ckpt_dir / "epoch=0-step=2.ckpt"
    messages = [str(w.message) for w in caught]
    assert [str(last) in m for m in messages] == [True, False]
    assert [str(step4) in m for m in messages] == [False, True]
    assert len(list(ckpt_dir.glob("*.corrupt-*"))) == 2


def test_a_garbage_file_alone_means_start_from_scratch(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_text("this is not a checkpoint\n")
    with pytest.warns(RuntimeWarning, match=re.escape(str(bad))):
        assert usable_checkpoint(bad) is None
    assert not bad.exists() and len(set_aside_files(tmp_path, "last.ckpt")) == 1


def test_an_empty_file_is_damaged(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="0 bytes"):
        assert usable_checkpoint(tmp_path / "last.ckpt") is None


def test_no_checkpoint_means_start_from_scratch(tmp_path):
    assert usable_checkpoint(tmp_path / "missing" / "last.ckpt") is None
    assert usable_checkpoint(tmp_path / "last.ckpt") is None


def test_a_missing_last_falls_back_to_another_checkpoint(ckpt_dir):
    (ckpt_dir / "last.ckpt").unlink()
    assert usable_checkpoint(ckpt_dir / "last.ckpt") == ckpt_dir / "epoch=0-step=4.ckpt"


def test_an_intact_file_weights_only_refuses_is_kept_and_reported(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"where": Path("/x")}}, path)
    with pytest.raises(RuntimeError, match="add_safe_globals"):
        usable_checkpoint(path)
    assert path.exists()
