"""A user's own metric, plugged in by dotted path: a function `fn(predictions, references)` returning a
float or a dict of floats, a class whose instances have `compute` and `headline`, or a ready `Metric`.

References reach the metric as the task holds them: one string per example, or a list of strings per
example for tasks with several references (summarisation).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
from typing import Any

from forgetlab.evaluation.metric import Metric, MetricLike


def _locate(path: str) -> Any:
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as err:  # hydra wraps import errors of every kind
        raise ValueError(f"cannot import metric {path!r}: {type(err).__name__}: {err}") from err


def _distributions(obj: Any) -> tuple[str, ...]:
    """The installed distributions that provide `obj`'s top-level package (none for a loose module)."""
    top = (getattr(obj, "__module__", None) or type(obj).__module__ or "").split(".")[0]
    return tuple(importlib.metadata.packages_distributions().get(top, ()))


def load_custom_metric(target: Any, headline: str | None = None, **kwargs: Any) -> Metric:
    """Build a `Metric` from `target` (a dotted path or the object itself); `kwargs` go to a class's
    constructor or are bound to a function; `headline` defaults to the object's own or its name."""
    obj = _locate(target) if isinstance(target, str) else target
    inner = obj.func if isinstance(obj, functools.partial) else obj  # hydra's `_partial_: true` gives a partial
    name = target if isinstance(target, str) else getattr(inner, "__qualname__", type(inner).__name__)
    if isinstance(obj, type):
        obj = obj(**kwargs)
    elif kwargs:
        if not callable(obj):
            raise TypeError(f"metric {name!r} is not callable, so it takes no arguments {sorted(kwargs)}")
        obj = functools.partial(obj, **kwargs)
    libraries = _distributions(obj.func if isinstance(obj, functools.partial) else obj)
    if isinstance(obj, Metric):
        return dataclasses.replace(obj, headline=headline or obj.headline)  # keeps its per-example rows
    if isinstance(obj, MetricLike):
        return Metric(name, headline or obj.headline, obj.compute, libraries)
    if callable(obj):
        return Metric(name, headline or name.rsplit(".", 1)[-1], obj, libraries)
    raise ValueError(
        f"metric {name!r} is a {type(obj).__name__}: expected a function fn(predictions, references) or a "
        "class with `compute(predictions, references) -> dict` and `headline`"
    )
