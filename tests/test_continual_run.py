"""Continual sequences end to end (`forgetlab experiment=continual`): the (T+1) x N matrices in metrics.json,
what each strategy carries across stages (replay proportions, a reservoir memory, EWC's accumulated Fisher,
LoRA kept or merged), and a sequence killed in stage 3 that resumes without retraining stages 1-2 and ends
with the uninterrupted matrix.

Runs are short (6 steps a stage, 8 test examples a task) and use one torch thread: on shared cores two
spinning threads per process made these runs ~8x slower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgetlab import continual_run
from forgetlab.config import ConfigError, validate
from forgetlab.config.schema import DataConfig, DataKind, ReplayMemory, SequenceConfig
from forgetlab.continual_run import build_sequence_suite, run_continual, stage_seed
from forgetlab.evaluation.continual import continual_summary
from forgetlab.evaluation.scoring import score_tasks
from forgetlab.run import instantiate, prepare_base
from forgetlab.run_dirs import run_state
from forgetlab.strategies.carry import Carry, load_stage_weights
from forgetlab.training.stage_data import (
    MEMORY,
    ReplayBuffer,
    earlier_tasks,
    stage_rates,
    stage_training_data,
)
from forgetlab.training.stage_store import FISHER_FILE, MEMORY_FILE, SCORES_FILE, WEIGHTS_FILE, StageStore
from tests.conftest import compose_config

QUICK = ["experiment=tiny", "sequence=tiny", "threads=1", "strategy.optim.steps=6", "eval.every_n_steps=0",
         "eval.test_max_examples=8", "diagnostics.spectral=false"]
STAGES = [["reverse"], ["length", "last_letter"], ["count_vowels"]]  # conf/sequence/tiny.yaml


def _run(overrides: list[str], out: Path, cache: Path) -> dict:
    return run_continual(compose_config([*QUICK, *overrides], out, cache))


def _model_at(cfg, stage: int | None, run_dir: Path):
    """A fresh model at the start of the sequence, or with stage `stage`'s kept weights loaded."""
    config = validate(cfg)
    suite = build_sequence_suite(cfg, config, STAGES)
    lm = instantiate(cfg.model.build)
    prepare_base(cfg, config, lm, suite, None)
    carry = Carry(config, suite)
    carry.prepare(lm)
    if stage is not None:
        load_stage_weights(lm.model, StageStore(run_dir, "").read_tensors(stage, WEIGHTS_FILE))
    return config, suite, lm, carry


def test_three_stages_write_the_matrix_and_replay_draws_on_earlier_stages(tmp_path, cache_dir):
    """strategy=replay (proportional, 25%, base tasks not replayed): 4 x 7 matrices, each row the scores of
    the weights the stage kept, and stage 3's batches hold 75% count_vowels and 25% stages 1-2 by size."""
    overrides = ["strategy=replay", "strategy.data.replay_fraction=0.25", "sequence.include_base=false"]
    metrics = _run(overrides, tmp_path, cache_dir)
    assert run_state(tmp_path).completed
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    scores, losses = on_disk["continual"], on_disk["continual_loss"]
    tasks = ["copy", "uppercase", "sentiment", "reverse", "length", "last_letter", "count_vowels"]
    assert scores["tasks"] == tasks and scores["stages"] == STAGES
    assert scores["row_labels"] == ["start", "reverse", "length+last_letter", "count_vowels"]
    assert len(scores["matrix"]) == len(losses["matrix"]) == 4
    assert all(len(row) == len(tasks) for row in scores["matrix"] + losses["matrix"])
    assert on_disk["sequence"]["stage_names"] == scores["row_labels"][1:]
    assert scores == continual_summary(scores["matrix"], tasks, STAGES)
    assert losses == continual_summary(losses["matrix"], tasks, STAGES, higher_is_better=False)
    assert on_disk["before"] == json.loads((tmp_path / "stages/00" / SCORES_FILE).read_text())["scores"]
    assert on_disk["target"] == ["reverse", "length", "last_letter", "count_vowels"]
    assert set(on_disk["forgetting"]) == {"copy", "uppercase", "sentiment"}  # the untrained (base) tasks

    # Each row is what the weights kept after that stage score: reload them and score the stage's tasks.
    cfg = compose_config([*QUICK, *overrides], tmp_path, cache_dir)
    for t, stage in enumerate(STAGES, start=1):
        recorded = json.loads((tmp_path / f"stages/{t:02d}" / SCORES_FILE).read_text())["scores"]
        _, suite, lm, _ = _model_at(cfg, t, tmp_path)
        again = score_tasks(lm, {n: suite.tasks[n] for n in stage}, "test", 256, 8)
        for name in stage:
            col = tasks.index(name)
            assert scores["matrix"][t][col] == recorded[name]["score"] == again[name]["score"]
            assert losses["matrix"][t][col] == recorded[name]["loss"] == pytest.approx(again[name]["loss"], rel=1e-6)

    # Replay: nothing earlier in stage 1; stage 2 replays stage 1; stage 3 stages 1 and 2 by training-set size
    # (200 rows each: reverse 1/3, length 1/3, last_letter 1/3 of the 25%). 6 steps x 16 = 96 rows.
    mixtures = [s["mixture"]["sampled"] for s in metrics["stages"]]
    assert mixtures[0] == {"reverse": 1.0}
    assert mixtures[1] == pytest.approx({"length": 0.375, "last_letter": 0.375, "reverse": 0.25})
    assert mixtures[2] == pytest.approx({"count_vowels": 0.75, "reverse": 0.25 / 3, "length": 0.25 / 3,
                                         "last_letter": 0.25 / 3})
    assert metrics["stages"][2]["earlier_tasks"] == ["reverse", "length", "last_letter"]


def test_a_sequence_killed_in_stage_3_resumes_there_and_ends_with_the_same_matrix(tmp_path, cache_dir,
                                                                                  monkeypatch):
    """EWC (online, decay 0.5): killed after stage 3 trained but before it was saved; the rerun trains only
    stage 3 (from its checkpoint) and matches an uninterrupted run, Fisher included; the Fisher kept after
    stage 2 is 0.5 x stage 1's plus the Fisher of stage 2's tasks at stage 2's weights."""
    overrides = ["strategy=ewc", "strategy.penalty.lam=1000", "strategy.penalty.fisher_examples=16",
                 "sequence.ewc_decay=0.5", "checkpoint_every_n_steps=3"]
    clean = _run(overrides, tmp_path / "clean", cache_dir)

    killed = tmp_path / "killed"
    real_end = Carry.end_stage

    def die_in_stage_3(self, lm, stage, stream, seed):
        if stage == STAGES[2]:
            raise RuntimeError("killed in stage 3")
        return real_end(self, lm, stage, stream, seed)

    monkeypatch.setattr(Carry, "end_stage", die_in_stage_3)
    with pytest.raises(RuntimeError, match="killed in stage 3"):
        _run(overrides, killed, cache_dir)
    monkeypatch.setattr(Carry, "end_stage", real_end)
    assert not (killed / "metrics.json").exists()
    assert (killed / "stages/03/checkpoints/last.ckpt").exists() and not (killed / "stages/03" / SCORES_FILE).exists()
    kept = {t: (killed / f"stages/{t:02d}" / WEIGHTS_FILE).read_bytes() for t in (1, 2)}

    trained = []
    real_fit = continual_run.fit
    monkeypatch.setattr(continual_run, "fit", lambda lm, train, *a, **k: trained.append(sorted(set(train["task"])))
                        or real_fit(lm, train, *a, **k))
    resumed = _run(overrides, killed, cache_dir)
    assert trained == [["count_vowels"]], "stages 1-2 must not be trained again"
    assert resumed["timing"]["stages_trained_now"] == 1
    assert {t: (killed / f"stages/{t:02d}" / WEIGHTS_FILE).read_bytes() for t in (1, 2)} == kept
    assert resumed["continual"] == clean["continual"] and resumed["continual_loss"] == clean["continual_loss"]
    assert resumed["stages"] == clean["stages"]
    for t in (1, 2, 3):
        a = torch.load(killed / f"stages/{t:02d}" / FISHER_FILE, weights_only=True)
        b = torch.load(tmp_path / "clean" / f"stages/{t:02d}" / FISHER_FILE, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [s["penalty"] for s in clean["stages"]] == ["EWC", "EWC", "EWC"]  # stage 1: the base tasks' Fisher

    # Online EWC: F_2 = 0.5 F_1 + Fisher(stage 2's tasks | weights after stage 2), on the same rows.
    store = StageStore(tmp_path / "clean", "")
    f1, f2 = store.read_tensors(1, FISHER_FILE), store.read_tensors(2, FISHER_FILE)
    cfg = compose_config([*QUICK, *overrides], tmp_path / "clean", cache_dir)
    _, _, lm, carry = _model_at(cfg, 2, tmp_path / "clean")
    fresh = carry._fisher(lm, STAGES[1], stage_seed(0, 2))
    assert f2.keys() == f1.keys() == fresh.keys() and sum(float(f.sum()) for f in fresh.values()) > 0
    for name in f2:
        torch.testing.assert_close(f2[name], 0.5 * f1[name] + fresh[name], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("adapter", ["keep", "merge"])
def test_lora_keeps_one_adapter_or_merges_one_per_stage(adapter, tmp_path, cache_dir):
    """Both modes run two stages; `keep` stores the adapter alone, `merge` the merged weights (every weight
    moved, no adapter left). With reservoir replay, stage 2 draws from a memory of stage 1's rows."""
    overrides = ["strategy=lora_replay", f"sequence.adapter={adapter}", "sequence.stages=[[reverse],[length]]",
                 "sequence.include_base=false", "sequence.replay=reservoir", "sequence.memory_size=20",
                 "strategy.data.replay_fraction=0.25"]
    metrics = _run(overrides, tmp_path, cache_dir)
    assert len(metrics["continual"]["matrix"]) == 3
    weights = torch.load(tmp_path / "stages/02" / WEIGHTS_FILE, weights_only=True)
    has_adapter = any("lora_" in name for name in weights)
    assert has_adapter == (adapter == "keep")
    assert all("lora_" in name for name in weights) == (adapter == "keep")
    assert metrics["stages"][1]["trainable_params"] < metrics["stages"][1]["total_params"]  # an adapter trained
    memory = json.loads((tmp_path / "stages/02" / MEMORY_FILE).read_text())
    assert memory["size"] == 20 and len(memory["rows"]) == 20 and memory["seen"] == 96 + 72  # stage 1: 96 rows of reverse; stage 2: its 72 own rows
    assert metrics["stages"][1]["mixture"]["sampled"] == pytest.approx({"length": 0.75, "reverse": 0.25})
    assert metrics["stages"][1]["replay_memory"]["tasks"].keys() <= {"reverse", "length"}


def _suite(base=("copy", "uppercase")):
    from forgetlab.tasks.suite import build_suite

    return build_suite("reverse", list(base), {"train": 30, "validation": 4, "test": 4}, 0,
                       eval=[*base, "reverse", "length", "last_letter", "count_vowels"])


def test_stage_rates_grow_with_the_stages():
    suite, seq = _suite(), SequenceConfig(stages=STAGES)
    earlier = earlier_tasks(seq, suite, STAGES, 3)
    assert earlier == ["copy", "uppercase", "reverse", "length", "last_letter"]
    assert earlier_tasks(SequenceConfig(stages=STAGES, include_base=False), suite, STAGES, 1) == []
    multitask = stage_rates(DataConfig(kind=DataKind.multitask), seq, suite, STAGES[2], earlier)
    assert multitask == pytest.approx({n: 1 / 6 for n in ["count_vowels", *earlier]})
    replay = stage_rates(DataConfig(kind=DataKind.replay, replay_fraction=0.5), seq, suite, STAGES[1], ["reverse"])
    assert replay == pytest.approx({"length": 0.25, "last_letter": 0.25, "reverse": 0.5})
    reservoir = SequenceConfig(stages=STAGES, replay=ReplayMemory.reservoir)
    assert stage_rates(DataConfig(kind=DataKind.replay), reservoir, suite, ["length"], ["reverse"]) == \
        pytest.approx({"length": 0.8, MEMORY: 0.2})
    assert stage_rates(DataConfig(kind=DataKind.single), seq, suite, STAGES[1], earlier) == {"length": 0.5,
                                                                                            "last_letter": 0.5}


def test_reservoir_keeps_a_uniform_sample_of_everything_offered():
    suite = _suite()
    memory = ReplayBuffer(30)
    memory.offer(suite.tasks["reverse"].splits["train"], seed=1)
    assert memory.composition() == {"reverse": 30} and memory.seen == 30
    for name in ("length", "last_letter", "count_vowels"):  # 120 offered, 30 kept: each stage ~1/4
        memory.offer(suite.tasks[name].splits["train"], seed=2)
    assert memory.seen == 120 and len(memory) == 30 and set(memory.composition()) <= {
        "reverse", "length", "last_letter", "count_vowels"}
    assert ReplayBuffer.from_state(json.loads(json.dumps(memory.state()))).rows == memory.rows
    data = stage_training_data({"copy": 0.5, MEMORY: 0.5}, suite, memory, 40, seed=0)
    kept = {(r["task"], r["prompt"]) for r in memory.rows}
    replayed = [r for r in data if r["task"] != "copy"]
    assert len(data) == 40 and len(replayed) == 20 and all((r["task"], r["prompt"]) in kept for r in replayed)


@pytest.mark.parametrize("overrides,needles", [
    (["sequence.stages=[[reverse],[juggling]]"], ["sequence.stages", "stage 2", "juggling", "copy"]),
    (["select.max_forgetting=5", "eval.every_n_steps=3"], ["select.max_forgetting", "null"]),
    (["strategy=prompt_tuning", "sequence.adapter=merge"], ["sequence.adapter=merge", "keep"]),
    (["strategy=lora", "sequence.adapter=merge", "strategy.penalty.kind=l2sp"], ["nothing to anchor", "keep"]),
    (["tasks.eval=[copy,reverse]"], ["tasks.eval", "length"]),
])
def test_bad_sequences_fail_before_any_training(overrides, needles, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(continual_run, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError) as err:
        _run(overrides, tmp_path, cache_dir)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_the_cli_runs_a_sequence_when_one_is_configured(tmp_path, monkeypatch):
    from forgetlab import cli

    seen = []
    monkeypatch.setattr(continual_run, "run_continual", lambda cfg, wandb=None: seen.append("continual") or {})
    monkeypatch.setattr("forgetlab.run.run_experiment", lambda cfg, wandb=None, **k: seen.append("single") or {})
    cli.run_and_record(compose_config(["experiment=continual"], tmp_path))
    cli.run_and_record(compose_config([], tmp_path))
    assert seen == ["continual", "single"]
    cfg = compose_config(["experiment=continual"], tmp_path)
    assert cfg.sequence.stages == [["length"], ["count_consonants"], ["count_names"]]
    assert cfg.run_name == "full-three_tasks-s0"
