"""Issue 6: every run records what determines it (run_record.json), and `forgetlab-reproduce RUN_DIR` reruns
it and proves the metrics are identical, naming whatever differs. One small CLI run is shared by the module
(its base stage is trained once, in a module-wide FORGETLAB_OUTPUTS); each reproduce test reruns it."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forgetlab.reproduce.cli import hydra_value, override_key, rerun_plan
from forgetlab.reproduce.compare import compare_metrics, compare_records, diff_trees, flatten, is_ignored

# experiment=tiny, shrunk further so that a run (base stage included) takes seconds; the list override
# also checks that overrides needing shell quotes survive the record -> rerun round trip.
OVERRIDES = [
    "experiment=tiny", "base.steps=3", "strategy.optim.steps=3", "tasks.base=[copy,uppercase]",
    "tasks.sizes.train=24", "tasks.sizes.validation=4", "tasks.sizes.test=8", "eval.every_n_steps=2",
    "checkpoint_every_n_steps=2",
]


def _script(name: str, module: str) -> list[str]:
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


FORGETLAB = _script("forgetlab", "forgetlab.cli")
REPRODUCE = _script("forgetlab-reproduce", "forgetlab.reproduce.cli")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return {**os.environ, "FORGETLAB_OUTPUTS": str(tmp_path_factory.mktemp("outputs")), "HF_HUB_OFFLINE": "1",
            "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def original(tmp_path_factory, env) -> Path:
    """A run made through the CLI, as a user would, from a working directory that is not the repo."""
    workdir = tmp_path_factory.mktemp("checkout")
    run_dir = workdir / "run"
    proc = subprocess.run([*FORGETLAB, *OVERRIDES, f"hydra.run.dir={run_dir}"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def reproduce(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*REPRODUCE, *map(str, args)], cwd=cwd, env={**env, "COLUMNS": "250"},
                          capture_output=True, text=True, timeout=300, check=False)


def read(path: Path):
    return json.loads(Path(path).read_text())


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


# ---------------------------------------------------------------- the record


def test_record_holds_what_determines_the_run(original):
    record, metrics = read(original / "run_record.json"), read(original / "metrics.json")
    assert record["overrides"] == OVERRIDES
    assert record["command"].startswith("forgetlab experiment=tiny base.steps=3")
    assert "'tasks.base=[copy,uppercase]'" in record["command"]  # shell-quoted
    assert record["config"]["tasks"]["base"] == ["copy", "uppercase"]
    assert record["seeds"] == {"seed": 0, "base": 0, "data": 1234}
    assert record["threads"]["configured"] == record["threads"]["torch"] == 2
    assert record["deterministic"]["torch"] is True
    assert set(record["data_fingerprints"]) == {"reverse", "copy", "uppercase"}
    assert set(record["data_fingerprints"]["copy"]) == {"train", "validation", "test"}
    assert record["base"]["weights_sha256"] == metrics["base"]["weights_sha256"]
    assert record["versions"]["torch"] and record["versions"]["hydra-core"] and record["versions"]["python"]
    assert record["hardware"]["cpu_count"] >= 1
    git = record["git"]
    assert "available" in git
    if git["available"]:
        assert len(git["commit"]) == 40
        assert (original / "git_diff.patch").exists() == bool(git.get("diff_sha256"))


def test_record_without_hydra_app_and_without_git(tmp_path):
    """Configs composed in tests/notebooks have no Hydra overrides; a tree that is not a checkout has no git."""
    from hydra.utils import instantiate

    from forgetlab.utils.run_record import git_state, write_run_record
    from tests.conftest import compose_config

    cfg = compose_config([*OVERRIDES], output_dir=tmp_path, cache_dir=tmp_path / "cache")
    record = write_run_record(tmp_path, cfg, instantiate(cfg.tasks, _convert_="all"), None)
    assert record["overrides"] == [] and record["command"] == "forgetlab"
    assert record["base"] is None and record["data_fingerprints"]["reverse"]["test"]
    assert read(tmp_path / "run_record.json")["config"]["seed"] == 0

    not_a_repo = tmp_path / "site-packages" / "forgetlab"
    not_a_repo.mkdir(parents=True)
    assert git_state(not_a_repo)["available"] is False
    # A package copied (e.g. installed) into some git repo without being tracked there is not its source.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (not_a_repo / "__init__.py").write_text("")
    assert git_state(not_a_repo)["available"] is False


# ---------------------------------------------------------------- reproduce end to end


def test_reproduce_a_moved_run_from_another_directory_gives_identical_metrics(original, env, tmp_path):
    """The run dir copied elsewhere, its original checkout and cache gone (so the defaults apply), and
    forgetlab-reproduce started from yet another directory: exit 0, every metric bit-identical."""
    moved = copy_run(original, tmp_path / "elsewhere" / "moved-run")
    record = read(moved / "run_record.json")
    record["cwd"] = "/nonexistent/checkout"
    record["paths"] = {"root": "/nonexistent/outputs", "cache_dir": "/nonexistent/outputs/cache"}
    (moved / "run_record.json").write_text(json.dumps(record))
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    proc = reproduce([moved], cwd, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "REPRODUCED" in proc.stdout
    assert "paths.cache_dir /nonexistent/outputs/cache no longer exists" in proc.stdout
    [out] = [p for p in (tmp_path / "elsewhere").iterdir() if p.name.startswith("moved-run-reproduce-")]

    a, b = read(original / "metrics.json"), read(out / "metrics.json")
    for m in (a, b):
        m.pop("timing")
        m["base"].pop("cached"), m["base"].pop("path")
    assert a == b
    report = read(out / "reproduce.json")
    assert report["verdict"] == "identical" and report["differences"] == []
    # Nothing that determines the result changed; the source tree may (others edit it while tests run).
    assert [w for w in report["warnings"] if not w.startswith(("git commit", "uncommitted"))] == []
    # The rerun's own record: the original command plus the thread count made explicit.
    assert read(out / "run_record.json")["command"].startswith(record["command"])


def test_changed_data_config_and_metric_are_named(original, env, tmp_path):
    tampered = copy_run(original, tmp_path / "tampered")
    record = read(tampered / "run_record.json")
    record["data_fingerprints"]["copy"]["test"] = "0000000000000000"
    record["config"]["eval"]["batch_size"] = 7
    (tampered / "run_record.json").write_text(json.dumps(record))
    metrics = read(tampered / "metrics.json")
    metrics["after"]["uppercase"]["loss"] += 0.5
    (tampered / "metrics.json").write_text(json.dumps(metrics))

    out = tmp_path / "rerun"
    proc = reproduce([tampered, "--out", out], tmp_path, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "after.uppercase.loss" in proc.stdout and "NOT REPRODUCED" in proc.stdout
    assert "copy/test" in proc.stdout and "config.eval.batch_size" in proc.stdout
    report = read(out / "reproduce.json")
    assert report["verdict"] == "different"
    assert [d["key"] for d in report["differences"]] == ["after.uppercase.loss"]
    assert any("copy/test" in w for w in report["warnings"])
    assert any("config.eval.batch_size" in w for w in report["warnings"])

    # The same comparison without rerunning, with a tolerance that covers the change: exit 0.
    proc = reproduce([tampered, "--rerun-dir", out, "--tolerance", "0.6"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "within tolerance" in proc.stdout


def test_failed_rerun_exits_2(original, env, tmp_path):
    broken = copy_run(original, tmp_path / "broken")
    record = read(broken / "run_record.json")
    record["overrides"] = [*OVERRIDES, "tasks.target=no_such_task"]
    (broken / "run_record.json").write_text(json.dumps(record))
    out = tmp_path / "rerun"
    proc = reproduce([broken, "--out", out], tmp_path, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "RERUN FAILED" in proc.stdout
    assert read(out / "reproduce.json")["verdict"] == "rerun_failed"
    # Never rerun into a directory that holds a run (it would resume from its checkpoints).
    assert reproduce([original, "--out", out], tmp_path, env).returncode == 2


# ---------------------------------------------------------------- units


def test_flatten_nested_dicts_and_lists():
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": "x", "e": {}, "f": []}) == {
        "a.b[0]": 1, "a.b[1].c": 2, "d": "x", "e": {}, "f": []}


def test_is_ignored_covers_subkeys_only():
    assert is_ignored("timing", ["timing"]) and is_ignored("timing.tokens_per_s", ["timing"])
    assert is_ignored("timing[0]", ["timing"]) and not is_ignored("timings", ["timing"])
    assert is_ignored("base.path", ["base.path"]) and not is_ignored("base.weights_sha256", ["base.path"])


def test_compare_metrics_exact_and_tolerance():
    a = {"after": {"copy": {"score": 0.5, "loss": 1.0}}, "history": [{"step": 2, "loss": 3.0}], "steps": 3}
    b = {"after": {"copy": {"score": 0.5, "loss": 1.0 + 1e-9}}, "history": [{"step": 2, "loss": 3.5}], "steps": 3}
    diffs, beyond = compare_metrics(a, b)
    assert [d.key for d in diffs] == ["after.copy.loss", "history[0].loss"]
    assert [d.key for d in beyond] == ["after.copy.loss", "history[0].loss"]
    diffs, beyond = compare_metrics(a, b, tolerance=1e-6)
    assert [d.key for d in beyond] == ["history[0].loss"]
    assert diffs[1].abs_diff == pytest.approx(0.5)
    assert compare_metrics(a, b, tolerance=0.5)[1] == []
    assert compare_metrics(a, a) == ([], [])


def test_compare_metrics_ignores_machine_facts_only():
    a = {"timing": {"train_wall_time_s": 1.0, "finished_at": "x"}, "base": {"cached": False, "path": "/a",
                                                                            "weights_sha256": "aa"}}
    b = {"timing": {"train_wall_time_s": 9.0, "finished_at": "y"}, "base": {"cached": True, "path": "/b",
                                                                            "weights_sha256": "bb"}}
    diffs, beyond = compare_metrics(a, b, tolerance=100.0)
    assert [d.key for d in diffs] == [d.key for d in beyond] == ["base.weights_sha256"]  # text: never tolerated


def test_compare_metrics_missing_keys_types_and_nan():
    a = {"x": 1, "only_a": 2.0, "nan": math.nan, "flag": True, "n": 1}
    b = {"x": 1.0, "only_b": 3, "nan": math.nan, "flag": False, "n": None}
    diffs, beyond = compare_metrics(a, b, tolerance=10.0)
    assert {d.key for d in beyond} == {"only_a", "only_b", "flag", "n"}
    assert diffs == beyond  # 1 == 1.0 and nan == nan count as equal
    assert diff_trees({"a": [1, 2]}, {"a": [1]})[0].key == "a[1]"


def test_compare_records_names_each_cause():
    rec = {"versions": {"torch": "2.3"}, "data_fingerprints": {"copy": {"test": "aa", "train": "bb"}},
           "base": {"weights_sha256": "w1"}, "git": {"commit": "c1", "diff_sha256": None},
           "config": {"seed": 0, "paths": {"output_dir": "/r1"}, "logger": {"save_dir": "/r1"}},
           "paths": {"root": "/o", "cache_dir": "/o/cache"}, "threads": {"configured": 2, "torch": 2}}
    same = json.loads(json.dumps(rec))
    same["config"]["paths"]["output_dir"] = same["config"]["logger"]["save_dir"] = "/r2"
    assert compare_records(rec, same) == []  # where outputs go differs by design
    other = json.loads(json.dumps(same))
    other["versions"]["torch"] = "2.4"
    other["data_fingerprints"]["copy"]["test"] = "zz"
    other["base"]["weights_sha256"] = "w2"
    other["git"]["commit"] = "c2"
    other["config"]["seed"] = 1
    other["threads"]["torch"] = 1
    text = "\n".join(compare_records(rec, other))
    for expected in ("versions.torch", "copy/test", "w1", "w2", "c1", "c2", "config.seed", "threads.torch"):
        assert expected in text
    assert "copy/train" not in text


def test_rerun_plan_paths_threads_and_quoting(tmp_path):
    record = {"overrides": ["experiment=tiny", "threads=4", "paths.root=/gone", "+paths.extra=/gone/too"],
              "config": {"threads": 4}, "threads": {"configured": 4},
              "paths": {"root": str(tmp_path), "cache_dir": "/gone/cache"}, "cwd": "/gone"}
    overrides, workdir, notes = rerun_plan(record, tmp_path / "out dir")
    assert overrides == ["experiment=tiny", "threads=4", f"paths.root={tmp_path}", "paths.data_cache_dir=null",
                         f"hydra.run.dir='{tmp_path / 'out dir'}'"]
    assert workdir == Path.cwd()
    assert any("paths.cache_dir" in n for n in notes) and any("+paths.extra" in n for n in notes)
    assert override_key("+a.b=1") == "a.b" and override_key("~x") == "x"
    assert hydra_value("/a/b-c_d.e") == "/a/b-c_d.e" and hydra_value("it's") == "'it\\'s'"
