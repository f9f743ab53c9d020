"""The tasks of one experiment: the target to fine-tune on, the base tasks the model already knows, and
the evaluation tasks scored before and after. Unknown names fail here, before any training."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from forgetlab.tasks.external import build_external_task
from forgetlab.tasks.families import FAMILIES
from forgetlab.tasks.task import InstructionTask, build_builtin_task


@dataclass
class TaskSuite:
    target: str
    base: list[str]
    eval: list[str]
    tasks: dict[str, InstructionTask]

    def eval_tasks(self) -> dict[str, InstructionTask]:
        return {n: self.tasks[n] for n in self.eval}

    def skipped_rows(self) -> dict[str, int]:
        """Rows each task's loader skipped on purpose (`skip_empty: true`), for metrics.json."""
        return {n: t.skipped_rows for n, t in self.tasks.items()}

    def overlap(self) -> dict[str, dict[str, Any]]:
        """Per task, for metrics.json: validation and test inputs that its train split holds too (a
        dataset's own splits may share some; counted, never dropped) and where each split came from."""
        return {n: {"validation_in_train": t.overlap.get("validation", 0), "test_in_train": t.overlap.get("test", 0),
                    "splits": dict(t.split_origins)} for n, t in self.tasks.items()}

    def fingerprints(self) -> dict[str, dict[str, str]]:
        return {n: {s: t.fingerprint(s) for s in t.splits} for n, t in self.tasks.items()}


def _check(names: list[str], allowed: list[str], key: str) -> None:
    for name in names:
        if name not in allowed:
            raise ValueError(f"{key}: unknown task {name!r}; allowed values: {sorted(allowed)}")


def build_suite(
    target: str,
    base: list[str],
    sizes: dict[str, int],
    seed: int,
    eval: list[str] | None = None,
    custom: dict[str, dict[str, Any]] | None = None,
    templates: dict[str, list[str]] | None = None,
    cache_dir: str | None = None,
) -> TaskSuite:
    """Build every task named in `target`, `base` and `eval`; `custom` adds a user's own tasks by name.
    Built-in tasks are cached in `cache_dir` (paths.data_cache_dir) when given."""
    custom = dict(custom or {})
    allowed = sorted(FAMILIES) + sorted(custom)
    _check([target], allowed, "tasks.target")
    _check(list(base), allowed, "tasks.base")
    eval_names = list(eval) if eval else list(dict.fromkeys([*base, target]))
    _check(eval_names, allowed, "tasks.eval")
    _check(list((templates or {}).keys()), allowed, "tasks.templates")
    needed = list(dict.fromkeys([target, *base, *eval_names]))
    tasks: dict[str, InstructionTask] = {}
    for name in needed:
        if name in custom:
            spec = task_spec(custom[name])
            spec["sizes"] = {**dict(sizes), **spec.get("sizes", {})}  # a task may change some sizes only
            spec.setdefault("seed", seed)
            tasks[name] = build_external_task(name=name, **spec)
        else:
            tasks[name] = build_builtin_task(name, dict(sizes), seed, (templates or {}).get(name), cache_dir)
    return TaskSuite(target=target, base=list(base), eval=eval_names, tasks=tasks)


def task_spec(entry: dict[str, Any]) -> dict[str, Any]:
    """A custom task's settings as `build_external_task` takes them: unset (null) keys dropped, so its own
    defaults apply, and enum values (a typed CustomTaskConfig's kind, format) as their names."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in dict(entry).items() if v is not None}
