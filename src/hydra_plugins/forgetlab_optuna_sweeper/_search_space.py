"""`hydra.sweeper.params` and the command line's overrides -> Optuna distributions and fixed overrides.

The syntax is Hydra's sweep grammar, as hydra-optuna-sweeper read it: `interval(a,b)` (float),
`int(interval(a,b))`, `tag(log, interval(a,b))`, `choice(x,y)` or `x,y` (categorical), `range(a,b,step)`.
Anything that is not a sweep is a fixed override, passed unchanged to every trial's job.
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from forgetlab.config.checks import ConfigError

SYNTAX = ("interval(a,b), int(interval(a,b)), tag(log, interval(a,b)), choice(x,y,...), x,y,... "
          "or range(a,b,step)")


def _choices(override: Override) -> list[Any]:
    return list(override.sweep_iterator(transformer=Transformer.encode))


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override; ConfigError naming it where Optuna cannot take it."""
    value, line = override.value(), override.input_line or override.get_key_element()
    try:
        if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
            return CategoricalDistribution(_choices(override))
        if isinstance(value, RangeSweep):
            values = list(override.sweep_iterator())
            if not values or len(values) == 1 or (value.step or 1) < 0:
                return CategoricalDistribution(values or [value.start])
            if all(isinstance(v, int) for v in values):
                return IntDistribution(values[0], values[-1], step=int(value.step or 1))
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step or 1))
        if isinstance(value, IntervalSweep):
            log = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)
    except ValueError as err:
        raise ConfigError(f"search space {line}: {err}") from err
    raise ConfigError(f"search space {line}: the Optuna sweeper takes {SYNTAX}")


def parse_search_space(lines: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """(distributions by key, fixed overrides by key); a later line for the same key wins, so the
    command line (after hydra.sweeper.params) can fix a searched key or search a fixed one."""
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return distributions, fixed


def as_override_value(value: Any) -> str:
    """A sampled value as Hydra's override grammar reads it back (null, true/false, numbers, strings)."""
    if isinstance(value, bool):
        return str(value).lower()
    return Override._get_value_element_as_str(value)  # quotes what the grammar would split: a\ b, x\,y
