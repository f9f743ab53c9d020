"""Checks of a composed config before any model loads: the value ranges declared in the schema, names that
only a library knows (schedulers, peft options), and choices that must agree with each other.

`validate(cfg)` returns the typed `TrainConfig`; every failure is a `ConfigError` whose message names the
key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from forgetlab.config.schema import (
    AdapterCarry,
    BlockChoice,
    CustomTaskConfig,
    DataKind,
    ParamsKind,
    PartialConfig,
    PenaltyKind,
    StrategyConfig,
    TasksConfig,
    TrainConfig,
)


class ConfigError(ValueError):
    """A config value forgetlab cannot run with; the message names the key and what is allowed."""


PEFT_CLASSES = {
    ParamsKind.lora: "LoraConfig", ParamsKind.ia3: "IA3Config", ParamsKind.prompt_tuning: "PromptTuningConfig",
}
# Set by forgetlab from the model, never by the user.
PEFT_KEYS_SET_BY_FORGETLAB = {"task_type"}


def validate(cfg: DictConfig) -> TrainConfig:
    """The typed config, after every check below; raises ConfigError naming the first bad key."""
    check_required(_without_hydra(cfg))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), _without_hydra(cfg))
        for key in free_form_keys(TrainConfig):  # taken whole: a merge would bring back keys deleted with ~
            if (node := OmegaConf.select(cfg, key)) is not None:
                OmegaConf.update(merged, key, node, merge=False)
        typed: TrainConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        msg = str(err).split("\n")[0] + _allowed_keys(err)
        raise ConfigError(f"{key}: {msg}" if key else msg) from None
    check_limits(typed)
    check_custom_tasks(typed.tasks)
    check_scheduler("strategy.optim.scheduler", typed.strategy.optim.scheduler)
    check_scheduler("base.scheduler", typed.base.scheduler)
    check_optimizer("strategy.optim.optimizer", typed.strategy.optim.optimizer)
    check_optimizer("base.optimizer", typed.base.optimizer)
    check_mofo("strategy.optim.optimizer", typed.strategy.optim.optimizer)
    check_mofo("base.optimizer", typed.base.optimizer)
    check_strategy_config(typed.strategy)
    check_earlier_tasks(typed)
    if typed.select.max_forgetting is not None and typed.eval.every_n_steps == 0:
        raise ConfigError(f"select.max_forgetting={typed.select.max_forgetting} chooses among the periodic "
                          "evaluations, but eval.every_n_steps=0 turns them off; set eval.every_n_steps >= 1")
    check_sequence(typed)
    check_starting_model(typed)
    check_alphas(typed.diagnostics.interpolate, typed.diagnostics.extrapolate, "diagnostics.interpolate")
    return typed


def check_starting_model(typed: TrainConfig) -> None:
    """Distillation needs a starting model to distil from: a built-in model without its base stage starts
    from random weights, and there is nothing to keep."""
    build = typed.model.build if isinstance(typed.model.build, dict) else {}
    from_scratch = str(build.get("_target_", "")).startswith("forgetlab.models.tiny.")
    users = [key for key, used in (("strategy.penalty.kind=lwf", typed.strategy.penalty.kind == PenaltyKind.lwf),
                                   ("strategy.self_distill.enabled=true", typed.strategy.self_distill.enabled))
             if used]
    if users and from_scratch and not typed.model.base_stage:
        raise ConfigError(f"{' and '.join(users)} learns from the starting model, but model.base_stage=false leaves "
                          f"the built-in model {typed.model.name!r} at random weights: no starting model to keep; "
                          "set model.base_stage=true, or use a pretrained model (model=hf ...)")
    if typed.strategy.self_distill.enabled and typed.sequence.stages:
        raise ConfigError("strategy.self_distill.enabled=true rewrites one fine-tuning run's target data; a continual "
                          "sequence (sequence.stages) does not support it yet: set it to false")


def check_alphas(alphas: Any, extrapolate: bool, key: str) -> None:
    """Interpolation weights in [0, 1]; outside only when extrapolation is deliberate (`extrapolate`)."""
    outside = [a for a in alphas or [] if not 0.0 <= float(a) <= 1.0]
    if outside and not extrapolate:
        raise ConfigError(f"{key}: alphas {outside} lie outside [0, 1] (0 = the starting model, 1 = the run); "
                          "extrapolating is allowed only deliberately: diagnostics.extrapolate=true "
                          "(forgetlab-interpolate --extrapolate)")


def _allowed_keys(err: OmegaConfBaseException) -> str:
    """For a key a section does not have: the keys it has (and the closest one)."""
    section, key = getattr(err, "object_type", None), getattr(err, "key", None)
    if not isinstance(err, (ConfigKeyError, ConfigAttributeError)) or not dataclasses.is_dataclass(section):
        return ""
    allowed = [f.name for f in dataclasses.fields(section) if not f.name.startswith("_")]
    close = difflib.get_close_matches(str(key), allowed, n=1)
    return (f" (did you mean {close[0]!r}?)" if close else "") + f"; allowed keys: {allowed}"


def check_custom_tasks(tasks: TasksConfig) -> None:
    """What a custom task's config alone shows is wrong, before any data or model loads: keys its kind
    never reads, keys its kind needs, split roles and split names, sizes, label and tag settings."""
    from forgetlab.tasks import kinds
    from forgetlab.tasks.task import SPLITS

    for name, task in tasks.custom.items():
        key, kind = f"tasks.custom.{name}", task.kind.value
        if kind not in kinds.KINDS:  # the schema's TaskKind and the loaders' kinds must agree
            raise ConfigError(f"{key}.kind={kind!r} has no loader; allowed: {list(kinds.KINDS)}")
        _check_kind_keys(key, kind, task, kinds.KIND_KEYS, kinds.REQUIRED_KEYS.get(kind, ()))
        _check_format_fields(key, kind, task.fields)
        if task.sizes is not None:
            bad = [role for role in task.sizes if role not in SPLITS]
            if bad:
                raise ConfigError(f"{key}.sizes: unknown split(s) {bad}; allowed: {list(SPLITS)}")
            for role, size in task.sizes.items():
                if size < 0:
                    raise ConfigError(f"{key}.sizes.{role}={size} is out of range; allowed: [0, inf)")
        _check_task_source(key, task, SPLITS)
        if task.tag_column == 0:
            raise ConfigError(f"{key}.tag_column=0 is the token column of a CoNLL line; the tag is another one "
                              "(null = the last)")
        if kind == "ner" and _reads_conll(task):
            renamed = {k: v for k, v in (task.fields or {}).items() if k in ("tokens", "tags") and v != k}
            if renamed:
                raise ConfigError(f"{key}.fields={renamed}: a CoNLL file's sentences have the fields tokens and "
                                  "tags only (the tag column is chosen by tag_column); remove the mapping")
        if task.label_names is not None:
            _check_label_names(f"{key}.label_names", task.label_names)


def _check_kind_keys(key: str, kind: str, task: CustomTaskConfig, kind_keys: Any, required: Any) -> None:
    only_some = sorted({k for keys in kind_keys.values() for k in keys} - kind_keys[kind])
    stray = [k for k in only_some if getattr(task, k) is not None]
    if stray:
        readers: dict[str, list[str]] = {}
        for k in stray:
            readers.setdefault("/".join(kd for kd, keys in kind_keys.items() if k in keys), []).append(k)
        read_by = "; ".join(f"{', '.join(ks)}: kind {kinds}" for kinds, ks in readers.items())
        raise ConfigError(
            f"{key}: {', '.join(stray)} {'does' if len(stray) == 1 else 'do'} not apply to kind={kind} (read "
            f"only by {read_by}); remove {'it' if len(stray) == 1 else 'them'} with "
            f"{' '.join(f'~{key}.{k}' for k in stray)}, or set another kind. Beyond the keys every kind reads, "
            f"kind={kind} reads {sorted(kind_keys[kind])}")
    absent = [k for k in required if not getattr(task, k)]
    if absent:
        raise ConfigError(f"{key}: kind={kind} needs {' and '.join(absent)} (e.g. {key}.prompt_template="
                          f"'question: {{question}}' {key}.completion_template='{{answer}}'), str.format "
                          "templates over the rows' fields")


def _check_format_fields(key: str, kind: str, fields: Any) -> None:
    """alpaca and chat read fixed field names; a mapping of any other name is a typo the data would hide."""
    from forgetlab.tasks.formats import FIELDS

    unknown = [name for name in (fields or {}) if kind in FIELDS and name not in FIELDS[kind]]
    if unknown:
        raise ConfigError(f"{key}.fields: {unknown} {'is' if len(unknown) == 1 else 'are'} not a field of kind={kind}; "
                          f"it reads {list(FIELDS[kind])} (map them to your columns, e.g. {key}.fields."
                          f"{FIELDS[kind][0]}=your_column)")


def _check_task_source(key: str, task: CustomTaskConfig, roles: tuple[str, ...]) -> None:
    from forgetlab.tasks.loaders import DataFileError, folder_splits, is_split_file

    if not task.splits:
        if not task.source:
            raise ConfigError(f"{key}.source is not set: a file, a dataset folder or a hub dataset name (or name "
                              f"a file per role in {key}.splits)")
        return
    unknown = [role for role in task.splits if role not in roles]
    if unknown:
        raise ConfigError(f"{key}.splits: unknown role(s) {unknown}; allowed roles: {list(roles)} (each maps to "
                          "a split of the source, or a file)")
    if task.split is not None:
        raise ConfigError(f"{key}: split={task.split!r} (one split, carved into three) and splits (the dataset's "
                          f"own) exclude each other; remove one, e.g. ~{key}.split")
    named = {role: v for role, v in task.splits.items() if not is_split_file(v)}
    if named and not task.source:
        raise ConfigError(f"{key}.splits {named} name splits of a dataset, but {key}.source is not set (a file "
                          "per role is a value with a suffix or a '/', e.g. data/train.jsonl)")
    path = Path(task.source or "").expanduser()
    if named and task.source and path.is_dir():
        try:
            available = folder_splits(path, "", task.config_name)
        except DataFileError as err:
            raise ConfigError(f"{key}.source: {err}") from None
        for role, split in named.items():
            if available is None:
                raise ConfigError(f"{key}.splits.{role}={split!r}: {path} holds one saved dataset without splits; "
                                  "leave out splits (it is carved) or name a file per role")
            if split not in available:
                raise ConfigError(f"{key}.splits.{role}={split!r}: {path} has no such split; its splits: "
                                  f"{available}")


def _reads_conll(task: CustomTaskConfig) -> bool:
    """Whether an ner task reads CoNLL text files (rather than a dataset with its own columns)."""
    from forgetlab.tasks.loaders import SUFFIX_FORMATS, is_split_file

    files = [task.source] if task.source and not task.splits else []
    files += [v for v in (task.splits or {}).values() if is_split_file(v)]
    if task.format is not None:
        return task.format.value in ("conll", "text") and bool(files)
    return any(SUFFIX_FORMATS.get(Path(f).suffix.lower(), "") in ("conll", "text") for f in files)


def _check_label_names(key: str, names: Any) -> None:
    values = list(names.values()) if isinstance(names, dict) else names if isinstance(names, list) else None
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{key}={names!r}: expected label words, as a list ([negative, positive]) or a mapping "
                          "from stored labels ({0: negative, 1: positive})")
    if isinstance(names, list) and len(set(values)) != len(values):
        raise ConfigError(f"{key}={names!r}: a label word appears twice")


def free_form_keys(schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of the schema's `Any` fields (an optimizer or peft `_target_` node): their composed value
    is the whole truth, so `~strategy.optim.optimizer.fused` removes a default argument for good."""
    keys = []
    for name, hint in typing.get_type_hints(schema).items():
        if hint is Any:
            keys.append(prefix + name)
        elif dataclasses.is_dataclass(hint):
            keys += free_form_keys(hint, f"{prefix}{name}.")
    return keys


def check_sequence(typed: TrainConfig) -> None:
    """Choices a continual sequence cannot honour (task names are checked against the tasks when built)."""
    if not typed.sequence.stages:
        return
    if typed.select.max_forgetting is not None:
        raise ConfigError(f"select.max_forgetting={typed.select.max_forgetting} picks a step of one fine-tuning run; "
                          "a continual sequence (sequence.stages) keeps every stage's end: set it to null")
    params, merge = typed.strategy.params.kind, typed.sequence.adapter == AdapterCarry.merge
    if merge and params == ParamsKind.prompt_tuning:
        raise ConfigError("sequence.adapter=merge: prompt tuning has no weights to merge; allowed with "
                          "strategy.params.kind=prompt_tuning: keep")
    if merge and params in PEFT_CLASSES and typed.strategy.penalty.kind != PenaltyKind.none:
        raise ConfigError(f"sequence.adapter=merge starts a new adapter each stage, so a penalty on the adapter "
                          f"(strategy.penalty.kind={typed.strategy.penalty.kind.value}) has nothing to anchor to; "
                          "allowed: sequence.adapter=keep, or strategy.penalty.kind=none")


def check_earlier_tasks(config: TrainConfig) -> None:
    """Replay, multi-task mixing over tasks.base and EWC draw on the model's earlier abilities, which
    tasks.base names (for a pretrained model, `model.base_stage: false`, whatever it already does well)."""
    data, penalty, tasks = config.strategy.data, config.strategy.penalty, config.tasks
    needs = [key for key, used in (("strategy.data.kind=replay", data.kind == DataKind.replay),
                                   ("strategy.data.kind=multitask", data.kind == DataKind.multitask and not data.tasks),
                                   ("strategy.penalty.kind=ewc", penalty.kind == PenaltyKind.ewc)) if used]
    if not needs or any(t != tasks.target for t in tasks.base):
        return
    state = "is empty" if not tasks.base else f"holds only the target {tasks.target!r}"
    if config.model.base_stage:
        hint = "e.g. tasks.base=[copy,uppercase] (built-in tasks the base stage teaches first)"
    else:
        hint = ("with model.base_stage=false it names what the pretrained model already knows: add a task to "
                "tasks.custom (held-out text is one line: {source: <text or JSONL file>, kind: text}) or a "
                "built-in task, and list it, e.g. tasks.base=[held_out]")
    raise ConfigError(f"{' and '.join(needs)} draws on earlier tasks, but tasks.base {state}; {hint}")


def check_required(cfg: DictConfig) -> None:
    """Every `???` value a preset leaves to the user (a model folder, a data file), all named at once."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"required settings have no value: {missing}; set each on the command line, e.g. "
                          f"{missing[0]}=<value>")


def _without_hydra(cfg: DictConfig) -> DictConfig:
    if "hydra" not in cfg:
        return cfg
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def check_limits(node: Any, prefix: str = "") -> None:
    """Every field's `min` / `max` / `max_exclusive` from the schema, recursively."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_limits(value, key + ".")
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        lo, hi, hi_open = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("max_exclusive")
        if (lo is not None and value < lo) or (hi is not None and value > hi) or (hi_open is not None and value >= hi_open):
            raise ConfigError(f"{key}={value} is out of range; allowed: {_range(lo, hi, hi_open)} "
                              f"({f.metadata.get('help', '')})")


def _range(lo: float | None, hi: float | None, hi_open: float | None) -> str:
    left = f"[{lo:g}" if lo is not None else "(-inf"
    right = f"{hi:g}]" if hi is not None else (f"{hi_open:g})" if hi_open is not None else "inf)")
    return f"{left}, {right}"


def check_scheduler(key: str, name: str) -> None:
    from transformers import SchedulerType

    allowed = [s.value for s in SchedulerType]
    if name not in allowed:
        raise ConfigError(f"{key}={name!r} is not a scheduler; allowed values: {allowed}")


def check_optimizer(key: str, node: Any) -> None:
    """The optimizer target imports and takes every argument given (plus params and lr), so that a swapped
    `_target_` whose optimizer lacks a default argument (e.g. `fused`) fails here, naming it."""
    import importlib
    import inspect

    target = node.get("_target_") if isinstance(node, dict) else None
    if not target or not node.get("_partial_"):
        raise ConfigError(f"{key} needs _target_ (a torch optimizer class) and _partial_: true; got {node}")
    module, _, name = target.rpartition(".")
    try:
        optimizer = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported ({err})") from None
    params = inspect.signature(optimizer).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [name for name in params if name not in ("self", "params", "lr")]
    for arg in node:
        if not arg.startswith("_") and arg not in params:
            raise ConfigError(f"{key}.{arg}: {target} takes no such argument; allowed: {allowed} (remove it "
                              f"with ~{key}.{arg})")


def check_mofo(key: str, node: Any) -> None:
    """MoFO's `fraction` (forgetlab.strategies.mofo), the share of each tensor a step updates: in (0, 1]."""
    if not isinstance(node, dict) or str(node.get("_target_", "")).rsplit(".", 1)[-1] != "MoFO":
        return
    from forgetlab.strategies.mofo import MoFO, fraction_problem

    fraction = node.get("fraction", MoFO.DEFAULT_FRACTION)
    if (problem := fraction_problem(fraction)) is not None:
        raise ConfigError(f"{key}.fraction={fraction!r} {problem}")


def check_partial(strategy: StrategyConfig) -> None:
    """`strategy.params.partial` belongs to kind=partial, and its choices agree with each other (what the
    model has is checked when it loads: strategies/partial.py)."""
    params, default = strategy.params, PartialConfig()
    if params.kind != ParamsKind.partial:
        if params.partial != default:
            changed = [f.name for f in dataclasses.fields(default)
                       if getattr(params.partial, f.name) != getattr(default, f.name)]
            raise ConfigError(f"strategy.params.partial.{changed[0]} is set but strategy.params.kind="
                              f"{params.kind.value}; it applies to strategy.params.kind=partial")
        return
    for key in ("peft", "target_modules"):
        if getattr(params, key) is not None:
            raise ConfigError(f"strategy.params.{key} is set but strategy.params.kind=partial trains the model's "
                              f"own tensors; set it to null, or choose a peft kind: {[k.value for k in PEFT_CLASSES]}")
    part = params.partial
    if part.blocks == BlockChoice.all and part.k is not None:
        raise ConfigError(f"strategy.params.partial.k={part.k} needs strategy.params.partial.blocks=top|bottom "
                          "(blocks=all trains every block)")
    if part.blocks != BlockChoice.all and part.k is None:
        raise ConfigError(f"strategy.params.partial.blocks={part.blocks.value} needs strategy.params.partial.k "
                          "(how many blocks of each stack train), e.g. k=2")


def peft_class(kind: ParamsKind) -> type:
    import peft

    return getattr(peft, PEFT_CLASSES[kind])


def check_strategy_config(strategy: StrategyConfig) -> None:
    """peft config against the kind it serves and the options the installed peft has; penalty strengths."""
    params = strategy.params
    check_partial(strategy)
    if params.kind == ParamsKind.partial:
        return
    if params.kind == ParamsKind.all:
        if params.peft is not None:
            raise ConfigError("strategy.params.peft is set but strategy.params.kind=all; allowed kinds with a "
                              f"peft config: {[k.value for k in PEFT_CLASSES]}")
        return
    expected = PEFT_CLASSES[params.kind]
    node = params.peft if isinstance(params.peft, dict) else {}
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"strategy.params.kind={params.kind.value} needs strategy.params.peft with "
                          f"_target_: peft.{expected} (see conf/strategy/{params.kind.value}.yaml)")
    if target.rsplit(".", 1)[-1] != expected:
        raise ConfigError(f"strategy.params.peft._target_={target!r} does not match "
                          f"strategy.params.kind={params.kind.value}; expected peft.{expected}")
    import peft

    known = {f.name for f in dataclasses.fields(peft_class(params.kind))}
    for key in node:
        if key.startswith("_"):
            continue
        if key in PEFT_KEYS_SET_BY_FORGETLAB:
            raise ConfigError(f"strategy.params.peft.{key} is set by forgetlab from the model; remove it")
        if key == "target_modules":
            raise ConfigError("strategy.params.peft.target_modules: set strategy.params.target_modules instead "
                              "(one place, checked against the model)")
        if key not in known:
            raise ConfigError(f"strategy.params.peft.{key}: the installed peft {peft.__version__} has no such "
                              f"{expected} option; allowed: {sorted(k for k in known if not k.startswith('_'))}")
    if params.kind == ParamsKind.lora and (node.get("r") or 0) <= 0:
        raise ConfigError(f"strategy.params.peft.r={node.get('r')} is out of range; allowed: [1, inf) (LoRA rank)")
