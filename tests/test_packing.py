"""Padding-free training: a batch's examples laid end to end in rows of the model's length, position ids
restarting per example, attention never crossing examples; per-example losses and gradients equal to the
padded batch's on saved models; on by default only where exact, refused with the key where it cannot be."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from datasets import Dataset

from forgetlab.config.schema import OptimConfig
from forgetlab.models.hf import load_pretrained
from forgetlab.models.language_model import IGNORE_INDEX
from forgetlab.models.tiny import build_tiny_gpt, build_tiny_t5
from forgetlab.training.fit import fit
from forgetlab.training.packing import PackedCollator, pack_rows, resolve_packing, training_collate
from tests.test_real_path import WORDS, llama_folder

PAIRS = [(" ".join(WORDS[i: i + n]), " ".join(WORDS[i + n: i + n + m]))
         for i, n, m in [(0, 2, 1), (1, 7, 3), (3, 1, 1), (2, 4, 6), (5, 9, 2), (4, 3, 3), (0, 12, 4), (6, 2, 2)]]


def _losses(lm, batch):
    lm.model.eval()
    with torch.no_grad():
        return lm.token_losses(batch)


def _gpt2_folder(path):
    lm = build_tiny_gpt(n_embd=32, n_layer=2, n_head=2)
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def test_rows_hold_every_example_once_within_the_capacity():
    lengths = [5, 9, 3, 7, 2, 8, 1, 6]
    rows = pack_rows(lengths, 12)
    assert sorted(i for row in rows for i in row) == list(range(8))
    assert all(sum(lengths[i] for i in row) <= 12 for row in rows) and len(rows) == 4  # 41 tokens, 4 rows
    assert pack_rows([20, 3], 12) == [[0], [1]]  # longer than a row: a row of its own


def test_packed_layout_restarts_positions_and_unlabels_each_first_token():
    feats = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "task_id": 0},
             {"input_ids": [4, 5], "labels": [4, 5], "task_id": 1},
             {"input_ids": [6, 7, 8, 9], "labels": [-100, -100, 8, 9], "task_id": 0}]
    batch = PackedCollator(capacity=6, pad_id=0)(feats)
    assert batch["input_ids"].tolist() == [[4, 5, 6, 7, 8, 9], [1, 2, 3, 0, 0, 0]]  # a row keeps batch order
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 5, -100, -100, 8, 9], [-100, 2, 3, -100, -100, -100]]
    assert batch["example_ids"].tolist() == [[1, 1, 2, 2, 2, 2], [0, 0, 0, -1, -1, -1]]
    assert batch["attention_mask"].sum() == 9 and batch["task_id"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_packed_per_example_losses_and_gradients_equal_the_padded_batchs(arch, attention, tmp_path):
    folder = llama_folder(tmp_path, positions=64) if arch == "llama" else _gpt2_folder(tmp_path)
    lm = load_pretrained(str(folder), packing="true")
    lm.model.set_attn_implementation(attention)
    feats = [lm.encode(p, c) for p, c in PAIRS]
    padded, packed = lm.collate(feats), PackedCollator(lm.max_length, lm.tokenizer.pad_token_id)(feats)
    assert packed["input_ids"].numel() < padded["input_ids"].numel() and packed["input_ids"].size(0) < len(PAIRS)
    nll, ntok = _losses(lm, padded)
    nll_packed, ntok_packed = _losses(lm, packed)
    assert ntok_packed.tolist() == ntok.tolist()
    torch.testing.assert_close(nll_packed, nll, rtol=1e-5, atol=1e-5)
    # the same gradient: nothing in a row leaks from one example into another
    grads = []
    for batch in (padded, packed):
        lm.model.zero_grad()
        total, count = lm.token_losses(batch)
        (total.sum() / count.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in lm.model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    # and a packed batch whose rows did cross examples would differ: the boundaries matter
    crossing = {**packed, "position_ids": torch.arange(packed["input_ids"].size(1)).expand_as(packed["input_ids"])}
    assert not torch.allclose(_losses(lm, crossing)[0], nll, atol=1e-3)


def test_packing_is_on_by_default_only_where_exact(tmp_path):
    llama = load_pretrained(str(llama_folder(tmp_path / "l")))
    assert llama.packing == "auto" and resolve_packing(llama)
    assert isinstance(training_collate(llama), PackedCollator)
    assert not resolve_packing(load_pretrained(str(llama_folder(tmp_path / "o")), packing=False))
    for tiny in (build_tiny_gpt(n_embd=32, n_layer=1, n_head=2), build_tiny_t5(d_model=32, d_ff=64, num_heads=2,
                                                                               d_kv=16, num_layers=1,
                                                                               num_decoder_layers=1)):
        assert tiny.packing == "false" and training_collate(tiny) == tiny.collate  # built-in models: as before
    t5 = build_tiny_t5(d_model=32, d_ff=64, num_heads=2, d_kv=16, num_layers=1, num_decoder_layers=1)
    t5.model.save_pretrained(tmp_path / "t5")
    t5.tokenizer.save_pretrained(tmp_path / "t5")
    assert not resolve_packing(load_pretrained(str(tmp_path / "t5")))  # auto: encoder-decoder stays padded
    with pytest.raises(ValueError, match=r"model.build.packing=true: .*encoder-decoder.*allowed: "
                                         r"model.build.packing=auto .* or false"):
        load_pretrained(str(tmp_path / "t5"), packing=True)
    with pytest.raises(ValueError, match=r"model.build.packing='sometimes'; allowed values"):
        load_pretrained(str(tmp_path / "t5"), packing="sometimes")


def test_a_packed_run_trains_on_the_same_examples_with_less_padding(tmp_path):
    folder = llama_folder(tmp_path, positions=64)
    rows = [{"task": "t", "prompt": p, "completion": c} for p, c in PAIRS] * 2
    stats = {}
    for mode in ("true", "false"):
        lm = load_pretrained(str(folder), packing=mode)
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", use_distributed_sampler=False)
        stats[mode] = fit(lm, Dataset.from_list(rows), trainer, OptimConfig(steps=2, batch_size=8, lr=1e-3,
                                                                            warmup_steps=0), seed=0)
    assert stats["true"]["batch"]["packed"] and not stats["false"]["batch"]["packed"]
    assert stats["true"]["tokens_seen"] == stats["false"]["tokens_seen"] and stats["true"]["steps"] == 2
    assert stats["true"]["pad_fraction"] < stats["false"]["pad_fraction"]


def test_labels_of_packed_rows_never_cross_an_example():
    feats = [{"input_ids": list(range(10, 10 + n)), "labels": list(range(10, 10 + n))} for n in (3, 4, 2)]
    batch = PackedCollator(capacity=16, pad_id=0)(feats)
    ex, labels = batch["example_ids"][0], batch["labels"][0]
    starts = [i for i in range(len(ex)) if ex[i] >= 0 and (i == 0 or ex[i] != ex[i - 1])]
    assert all(labels[s] == IGNORE_INDEX for s in starts) and len(starts) == 3
