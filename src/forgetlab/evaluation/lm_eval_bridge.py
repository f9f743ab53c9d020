"""Optional bridge to lm-evaluation-harness (`pip install 'forgetlab[lmeval]'`): the starting and the
fine-tuned model scored on lm-eval tasks, recorded in metrics.json (`lm_eval`) as extra forgetting columns.

lm-eval is imported only when `lm_eval.tasks` names tasks, and its absence fails before any model loads
(`check_installed`). The model is handed over in memory (a PEFT model merged into a copy first), with the
run's tokenizer, BOS choice and input limit, so lm-eval scores exactly the model the run trained. A local
YAML task (`lm_eval.include_path`, e.g. `dataset_path: json` with local `data_files`) works offline.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from typing import Any

from forgetlab.config import ConfigError
from forgetlab.config.schema import LmEvalConfig
from forgetlab.models.language_model import LanguageModel

INSTALL_HINT = "pip install 'forgetlab[lmeval]' (lm-evaluation-harness), or set lm_eval.tasks=[]"


def check_installed(config: LmEvalConfig) -> None:
    """Fail early, naming the setting and the fix, when tasks are asked for and lm-eval is missing."""
    if config.tasks and importlib.util.find_spec("lm_eval") is None:
        raise ConfigError(f"lm_eval.tasks={list(config.tasks)} needs lm-evaluation-harness, which is not "
                          f"installed: {INSTALL_HINT}")


_MANAGERS: dict[tuple[str | None, tuple[str, ...]], Any] = {}


def task_manager(config: LmEvalConfig) -> Any:
    """lm-eval's TaskManager, built once per process. Indexing lm-eval's thousands of built-in task files takes
    over a minute on a small CPU, so when `include_path` holds every task asked for, only it is indexed."""
    from lm_eval.tasks import TaskManager

    key = (config.include_path, tuple(config.tasks))
    if key not in _MANAGERS:
        manager = None
        if config.include_path:
            manager = TaskManager(include_path=config.include_path, include_defaults=False)
            if not all(t in manager.all_tasks for t in config.tasks):
                manager = None
        _MANAGERS[key] = manager or TaskManager(include_path=config.include_path)
    return _MANAGERS[key]


def _numbers(result: dict[str, Any]) -> dict[str, float]:
    """lm-eval's 'acc,none' / 'acc_stderr,none' -> {'acc': ...}; stderrs and non-numbers dropped."""
    out = {}
    for key, value in result.items():
        metric, _, filt = key.partition(",")
        if "stderr" in metric or metric == "sample_len" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[metric if filt in ("", "none") else f"{metric},{filt}"] = float(value)
    return out


def score_lm_eval(lm: LanguageModel, config: LmEvalConfig) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of lm-eval's `simple_evaluate` on the model as it is now."""
    check_installed(config)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from forgetlab.strategies.adapters import merged_copy

    model = merged_copy(lm.model)
    was_training = model.training
    model.eval()
    try:
        harness = HFLM(pretrained=model, tokenizer=lm.tokenizer, backend=lm.kind, batch_size=config.batch_size,
                       max_length=lm.max_length, add_bos_token=lm.add_bos, device=str(model.device))
        results = lm_eval.simple_evaluate(
            model=harness, tasks=list(config.tasks), num_fewshot=config.num_fewshot, limit=config.limit,
            task_manager=task_manager(config), log_samples=False, bootstrap_iters=0,
            random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    finally:
        model.train(was_training)
    return {task: _numbers(values) for task, values in sorted(results["results"].items())}


def lm_eval_summary(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """metrics.json's `lm_eval`: scores before/after and forgetting (before - after) per task/metric."""
    forgetting = {f"{task}/{metric}": before[task][metric] - value
                  for task, values in after.items() for metric, value in values.items()
                  if metric in before.get(task, {})}
    return {"version": importlib.metadata.version("lm_eval"), "before": before, "after": after,
            "forgetting": forgetting}
