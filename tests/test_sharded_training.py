"""Sharded engines (trainer=fsdp: FSDP2 through Lightning's ModelParallelStrategy; trainer=deepspeed_zero2/3).

Fast: combinations that cannot work fail before any model loads, naming the key and the alternatives;
DeepSpeed without the package (or without a GPU) likewise; the whole-weights copy built from a meta-device
skeleton keeps tied weights tied and reproduces the model's outputs exactly; a sharded checkpoint folder
is accepted for resuming and an incomplete one set aside.
Slow (2 CPU processes, gloo): FSDP2 trains the tiny experiment with full fine-tuning and LoRA, saves the
whole model / adapter, resumes from its sharded checkpoint folder, and both processes score.
GPU (skipped without 2 CUDA devices): FSDP and DeepSpeed ZeRO-3 end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from forgetlab.config import ConfigError, validate
from forgetlab.training.checkpoint_files import usable_checkpoint
from forgetlab.training.sharded import check_engine, materialize, skeleton
from tests.conftest import compose_config

TINY = ["experiment=tiny", "threads=1", "base.steps=5", "strategy.optim.steps=4", "strategy.optim.batch_size=8",
        "eval.every_n_steps=2", "eval.test_max_examples=8", "eval.val_max_examples=8", "diagnostics.spectral=false",
        "checkpoint_every_n_steps=2"]
FSDP_CPU = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.devices=2"]


def _check(overrides: list[str], tmp_path: Path):
    """The typed config, after the engine check (which raises for a combination the engine cannot run)."""
    cfg = compose_config(overrides, tmp_path)
    typed = validate(cfg)
    check_engine(cfg.trainer, typed.strategy)
    return typed


@pytest.mark.parametrize("strategy, key", [("prompt_tuning", "strategy.params.kind=prompt_tuning"),
                                           ("ia3", "strategy.params.kind=ia3"),
                                           ("l2sp", "strategy.penalty.kind=l2sp"),
                                           ("ewc", "strategy.penalty.kind=ewc"),
                                           ("mofo", "strategy.optim.optimizer._target_=")])
def test_fsdp_refuses_what_it_cannot_shard_before_training(strategy, key, tmp_path):
    with pytest.raises(ConfigError) as err:
        _check([*TINY, *FSDP_CPU, f"strategy={strategy}"], tmp_path)
    assert key in str(err.value) and "allowed" in str(err.value) and "trainer.strategy=ddp" in str(err.value)


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_fsdp_accepts_full_fine_tuning_and_lora(strategy, tmp_path):
    typed = _check([*TINY, *FSDP_CPU, f"strategy={strategy}"], tmp_path)
    assert typed.strategy.name == strategy and typed.strategy.params.kind.value in ("all", "lora")


@pytest.mark.parametrize("trainer", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_missing_or_without_gpu_fails_before_any_model_loads(trainer, tmp_path):
    from forgetlab.run import run_experiment

    try:
        import deepspeed  # noqa: F401
        missing = False
    except ImportError:
        missing = True
    if not missing and torch.cuda.is_available():
        pytest.skip("DeepSpeed and a GPU are here: nothing to refuse")
    cfg = compose_config([*TINY, f"trainer={trainer}"], tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ConfigError, match="DeepSpeed") as err:
        run_experiment(cfg)
    assert "trainer=fsdp" in str(err.value) and "trainer.strategy=ddp" in str(err.value)
    assert not (tmp_path / "cache" / "base").exists()  # nothing trained, no model built


def test_whole_copy_from_a_skeleton_keeps_tied_weights_and_outputs():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                                d_kv=8, decoder_start_token_id=0)).eval()
    meta = skeleton(model)
    assert all(p.device.type == "meta" for p in meta.parameters())
    plain = materialize(meta, torch.device("cpu"))
    with torch.no_grad():
        for (name, src), (_, dst) in zip(model.named_parameters(), plain.named_parameters()):
            dst.copy_(src)
        for (_, src), (_, dst) in zip(model.named_buffers(), plain.named_buffers()):
            dst.copy_(src)
    assert plain.lm_head.weight is plain.shared.weight is plain.encoder.embed_tokens.weight
    ids = torch.randint(0, 40, (2, 5))
    assert torch.equal(model(input_ids=ids, labels=ids).logits, plain.eval()(input_ids=ids, labels=ids).logits)


def test_sharded_checkpoint_folders_resume_and_incomplete_ones_are_set_aside(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.mkdir()
    torch.save({"global_step": 3}, ckpt / "meta.pt")
    (ckpt / ".metadata").write_bytes(b"index")
    assert usable_checkpoint(ckpt) == ckpt
    (ckpt / ".metadata").unlink()  # cut short before the shards' index was written
    with pytest.warns(RuntimeWarning, match="last.ckpt"):
        assert usable_checkpoint(ckpt) is None
    assert list(tmp_path.glob("last.ckpt.corrupt-*"))


def _cli(args: list[str], run_dir: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "forgetlab.cli", *args, f"paths.cache_dir={cache}",
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True, env=env, timeout=900,
                          check=False)


@pytest.mark.slow
@pytest.mark.parametrize("strategy, saved", [("full", "model/model.safetensors"),
                                             ("lora", "adapter/adapter_model.safetensors")])
def test_fsdp_two_cpu_processes_train_save_and_resume(strategy, saved, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = [*TINY, *FSDP_CPU, f"strategy={strategy}"]
    first = _cli(args, run_dir, cache)
    assert first.returncode == 0, first.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 4 and metrics["batch"]["processes"] == 2
    assert [h["step"] for h in metrics["history"]] == [0, 2, 4]
    shares = metrics["timing"]["scored_examples_per_process"]
    assert len(shares) == 2 and min(shares) > 0, shares  # both processes scored, on whole weights
    assert (run_dir / saved).is_file()  # rank 0 saved the whole model (or the adapter) after gathering it
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_dir() and (ckpt / "meta.pt").is_file()  # each process wrote its shards

    # the same command again resumes from the sharded folder at step 4: nothing left to train, same weights
    (run_dir / "metrics.json").unlink()
    second = _cli(args, run_dir, cache)
    assert second.returncode == 0, second.stderr[-4000:]
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["steps"] == 4
    assert {t: s["score"] for t, s in again["after"].items()} == {t: s["score"] for t, s in metrics["after"].items()}
    for task, s in again["after"].items():
        assert s["loss"] == pytest.approx(metrics["after"][task]["loss"], rel=1e-6), task


two_gpus = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                              reason="needs 2 CUDA GPUs")


@two_gpus
@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["fsdp", "deepspeed_zero3"])
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_sharded_engines_end_to_end_on_two_gpus(trainer, strategy, tmp_path):
    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    run_dir = tmp_path / "run"
    out = _cli([*TINY, f"trainer={trainer}", "trainer.devices=2", f"strategy={strategy}"], run_dir, tmp_path / "c")
    assert out.returncode == 0, out.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["batch"]["processes"] == 2
    assert min(metrics["timing"]["scored_examples_per_process"]) > 0
    assert (run_dir / ("adapter" if strategy == "lora" else "model")).is_dir()
