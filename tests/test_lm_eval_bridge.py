"""The optional lm-evaluation-harness bridge: a clear error before any model loads when lm-eval is missing,
and (where lm-eval is installed) a local YAML task scored offline on the starting and fine-tuned model,
recorded in metrics.json as extra forgetting columns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from forgetlab.config import ConfigError
from tests.conftest import compose_config

HAS_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
TASK_YAML = """task: local_sentiment
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{sentence}}}} ->"
doc_to_choice: ["negative", "positive"]
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def local_task(folder: Path) -> Path:
    """A two-choice lm-eval task over a JSONL file written here: no hub, no download."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"sentence": f"the film was {w}", "label": int(w in ("good", "great", "fun"))}
            for w in ("good", "dull", "great", "sad", "fun", "bad")]
    data = folder / "sentiment.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "local_sentiment.yaml").write_text(TASK_YAML.format(data=data))
    return folder


def test_lm_eval_tasks_without_lm_eval_fail_before_any_model_loads(tmp_path, monkeypatch):
    from forgetlab import run
    from forgetlab.evaluation import lm_eval_bridge

    real = importlib.util.find_spec
    monkeypatch.setattr(lm_eval_bridge.importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))
    monkeypatch.setattr(run, "instantiate", lambda *a, **k: pytest.fail("must fail before anything is built"))
    with pytest.raises(ConfigError, match=r"lm_eval.tasks=\['hellaswag'\].*pip install 'forgetlab\[lmeval\]'"):
        run.run_experiment(compose_config(["lm_eval.tasks=[hellaswag]"], tmp_path))


@pytest.mark.skipif(not HAS_LM_EVAL, reason="lm-evaluation-harness not installed (pip install 'forgetlab[lmeval]')")
def test_a_local_lm_eval_task_scores_before_and_after_into_metrics_json(tmp_path, cache_dir):
    from forgetlab.run import run_experiment

    tasks = local_task(tmp_path / "lm_eval_tasks")
    cfg = compose_config(["experiment=tiny", "model.base_stage=false", "strategy.optim.steps=3", "eval.every_n_steps=0",
                          "diagnostics.spectral=false", "lm_eval.tasks=[local_sentiment]",
                          f"lm_eval.include_path={tasks}"], tmp_path / "run", cache_dir)
    metrics = run_experiment(cfg)
    bridge = json.loads((tmp_path / "run" / "metrics.json").read_text())["lm_eval"]
    assert bridge == metrics["lm_eval"]
    for when in ("before", "after"):
        assert 0.0 <= bridge[when]["local_sentiment"]["acc"] <= 1.0
    assert bridge["forgetting"]["local_sentiment/acc"] == pytest.approx(
        bridge["before"]["local_sentiment"]["acc"] - bridge["after"]["local_sentiment"]["acc"])
    assert bridge["version"]
