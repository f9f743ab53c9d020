"""The config is the schema: every option composes and is the one selected, every documented command
composes, every knob is settable without `+`, and bad values fail before any model loads, naming the key,
the value and what is allowed."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from forgetlab.config import ConfigError, validate
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
GROUPS = ["model", "tasks", "strategy", "trainer", "logger", "base", "paths", "experiment", "callbacks",
          "hparams_search", "sequence"]
# Values a documented command leaves to the reader; composing needs something in their place.
REQUIRED_BY_OPTION = {
    "hf": ["model.build.name_or_path=some/model"],
    "llama_local": ["model.build.name_or_path=/models/llama"],
    "local_llama": ["model.build.name_or_path=/models/llama", "tasks.custom.my_task.source=train.jsonl",
                    "tasks.custom.held_out.source=held_out.txt"],
    "custom_jsonl": ["tasks.custom.my_task.source=data.jsonl"],
}
OTHER_COMMANDS = ("forgetlab-report", "forgetlab-reproduce", "forgetlab-export")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_checked(overrides: list[str], tmp_path: Path):
    """Compose like the CLI (sweeps expanded to their first value, and an experiment's own sweeper params
    too), then validate; returns (cfg, typed)."""
    overrides = first_of_each_sweep(overrides)
    for option, extra in REQUIRED_BY_OPTION.items():
        if any(o.endswith(f"={option}") for o in overrides) and not any(e.split("=")[0] in " ".join(overrides)
                                                                         for e in extra):
            overrides += extra
    cfg = compose_config(overrides, output_dir=tmp_path)
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) if "hydra" in cfg else None
    typed = validate(cfg)
    return cfg, typed, params


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """`seed=0,1,2` -> `seed=0`; `strategy.optim.lr=tag(log, interval(1e-5, 3e-3))` is left to Optuna."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            if override.is_choice_sweep():
                first = next(iter(override.sweep_string_iterator()))
                out.append(f"{override.get_key_element()}={first}")
            continue  # interval / range sweeps: Optuna's or a range; the key is checked via its preset
        else:
            out.append(text)
    return out


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_validates_and_is_the_one_selected(group, option, tmp_path):
    cfg = compose_config([f"{group}={option}", *REQUIRED_BY_OPTION.get(option, [])], output_dir=tmp_path,
                         return_hydra_config=True)
    typed = validate(cfg)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(job, resolve=True)  # every value resolves (no dangling interpolation)
    assert cfg.hydra.runtime.choices[group] == option
    if group == "strategy":
        assert typed.strategy.name == option
    if group == "model":
        assert typed.model.name == option
    if group in ("experiment", "hparams_search"):  # sweeper params are overrides that must compose too
        params = cfg.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params else {}
        sweep = [f"{k}={v}" for k, v in params.items()]
        compose_checked([f"{group}={option}", *sweep], tmp_path)
    assert typed.paths.output_dir == str(tmp_path)


def _header_commands(path: Path) -> list[str]:
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    return header


def test_every_config_file_names_its_command():
    for path in CONF.rglob("*.yaml"):
        assert any(re.search(r"(^|\s)forgetlab(\s|$)", line) for line in _header_commands(path)), (
            f"{path} must start with a comment showing the command that runs it")


def _code_lines(text: str, markdown: bool) -> list[str]:
    """Lines of code in a doc: fenced or indented blocks and inline code spans, comments removed."""
    if not markdown:
        return text.splitlines()
    lines, fenced = [], False
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            lines.append(re.split(r"\s#", line, maxsplit=1)[0])
        else:
            lines += re.findall(r"`([^`]+)`", line)
    return lines


def _commands_in(text: str, markdown: bool) -> list[str]:
    """The arguments of every `forgetlab ...` command in a doc's code."""
    found = []
    for line in _code_lines(text, markdown):
        match = re.search(r"(?:^|\s)forgetlab((?:[ \t]+[^\s#|;]+)*)", line)
        if match is None:
            continue
        args = match.group(1).strip()
        if args and "..." not in args and "<" not in args:
            found.append(args)
    return found


def _wrapped_commands(text: str) -> list[str]:
    """A study script's `NAME SWEEP overrides...` lines, for each wrapper
    `NAME() { forgetlab ARGS "$1" MORE "${@:2}" ...}`: the wrapper's arguments (SWEEP goes to its "$1")
    followed by the line's overrides."""
    found = []
    for name, before, after in re.findall(
            r'^(\w+)\(\) \{ forgetlab ((?:[^\s"]+ )*)\S*"\$1" ((?:[^\s"]+ )*)"\$\{@:2\}"', text, re.MULTILINE):
        found += [before + after + line.split(maxsplit=2)[2] for line in text.splitlines()
                  if re.match(rf"{name} \S+ \S", line)]
    return found


def documented_commands() -> list[tuple[str, str]]:
    docs = [*CONF.rglob("*.yaml"), ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
            *(ROOT / "experiments").rglob("*.md"), *(ROOT / "experiments").rglob("*.sh")]
    out = []
    for path in docs:
        text = "\n".join(_header_commands(path)) if path.suffix == ".yaml" else path.read_text()
        commands = _commands_in(text, markdown=path.suffix == ".md")
        commands += _wrapped_commands(text) if path.suffix == ".sh" else []
        for args in commands:
            out.append((str(path.relative_to(ROOT)), args))
    return sorted(set(out))


COMMANDS = documented_commands()


def test_the_docs_name_many_commands():
    assert len(COMMANDS) >= 40, COMMANDS  # the extraction itself must keep working


def test_the_readme_is_short_and_the_user_guide_is_linked():
    """The README fits on two screens; every guide page is in the guide's index and the README links the
    index's pages; every relative link in README.md and docs/ points at a file that exists."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    index = (ROOT / "docs" / "README.md").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    assert [p for p in pages if f"({p})" not in index] == []
    assert [p for p in pages if f"(docs/{p}" not in readme] == []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in link:
                assert (doc.parent / link).exists(), f"{doc.relative_to(ROOT)}: broken link {link}"


@pytest.mark.parametrize("source,args", COMMANDS, ids=[f"{s}: {a}"[:90] for s, a in COMMANDS])
def test_every_documented_command_composes(source, args, tmp_path):
    words = [w for w in shlex.split(args) if w not in ("-m", "--multirun")]
    words = [w for w in words if not w.startswith(("--cfg", "--help", "-"))]
    overrides = [w for w in words if "=" in w or w.startswith("~")]  # ~key deletes a key
    _, typed, _ = compose_checked(overrides, tmp_path)
    assert typed is not None
    if "-m" in args.split() or "--multirun" in args.split():
        # Hydra first composes a multirun's shared config from the overrides that are not sweeps (a key
        # that exists only under a swept group option fails there, before any job runs)
        parsed = OverridesParser.create().parse_overrides(overrides)
        compose_config([o for o, p in zip(overrides, parsed) if not p.is_sweep_override()], output_dir=tmp_path)


def _leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not any(str(k).startswith("_") for k in value):
            yield from _leaves(value, path + ".")
        elif not isinstance(value, (dict, list)) and "${" not in str(value):
            yield path, value


@pytest.mark.parametrize("preset", ["full", "lora", "multitask", "ewc"])
def test_every_knob_is_settable_without_plus(preset, tmp_path):
    cfg = compose_config([f"strategy={preset}"], output_dir=tmp_path)
    plain = OmegaConf.to_container(cfg, resolve=False)
    sections = {k: plain[k] for k in ("strategy", "eval", "base", "tasks") if k in plain}
    knobs = list(_leaves(sections))
    assert len(knobs) > 20
    for key, value in knobs:
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, str) and any(c in value for c in "{}[]()\n'\",=:"):  # Hydra's quoted form
            text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        compose_config([f"strategy={preset}", f"{key}={text}"], output_dir=tmp_path)
    for key in ("seed", "threads", "verbose", "checkpoint_every_n_steps", "strategy.data.temperature",
                "strategy.params.peft.use_rslora" if preset == "lora" else "strategy.penalty.lam"):
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key


def test_multitask_preset_command_runs_its_documented_knobs(tmp_path):
    _, typed, _ = compose_checked(["strategy=multitask", "strategy.data.mixing=temperature",
                                   "strategy.data.temperature=2"], tmp_path)
    assert typed.strategy.data.mixing.value == "temperature" and typed.strategy.data.temperature == 2.0


def test_unknown_model_lists_allowed_values(tmp_path):
    with pytest.raises(HydraException) as err:
        compose_config(["model=gpt9"], output_dir=tmp_path)
    assert "tiny_t5" in str(err.value) and "tiny_gpt" in str(err.value)


@pytest.mark.parametrize("override,needles", [
    ("strategy.data.kind=bogus", ["strategy.data.kind", "bogus", "single", "multitask", "replay"]),
    ("strategy.optim.lrr=1", ["lrr", "OptimConfig"]),
    ("eval.every_n_step=3", ["every_n_step", "EvalConfig"]),
])
def test_unknown_keys_and_choices_fail_at_composition_naming_them(override, needles, tmp_path):
    with pytest.raises(HydraException) as err:
        compose_config([override], output_dir=tmp_path)
    text = str(err.value) + str(err.value.__cause__)
    for needle in needles:
        assert needle in text, text


@pytest.mark.parametrize("overrides,needles", [
    (["strategy.optim.steps=0"], ["strategy.optim.steps=0", "[1, inf)"]),
    (["strategy.optim.batch_size=0"], ["strategy.optim.batch_size=0", "[1, inf)"]),
    (["strategy.optim.lr=-1"], ["strategy.optim.lr=-1", "[0, inf)"]),
    (["strategy=lora", "strategy.params.peft.r=-1"], ["strategy.params.peft.r=-1", "[1, inf)"]),
    (["strategy=replay", "strategy.data.replay_fraction=1.5"], ["replay_fraction=1.5", "[0, 1)"]),
    (["strategy=replay", "strategy.data.replay_fraction=1"], ["replay_fraction=1", "[0, 1)"]),
    (["eval.every_n_steps=-1"], ["eval.every_n_steps=-1", "[0, inf)"]),
    (["checkpoint_every_n_steps=0"], ["checkpoint_every_n_steps=0"]),
    (["strategy=ewc", "strategy.penalty.fisher_examples=0"], ["fisher_examples=0"]),
    (["strategy=l2sp", "strategy.penalty.alpha=-0.5"], ["strategy.penalty.alpha=-0.5"]),
    (["strategy.optim.scheduler=wobbly"], ["strategy.optim.scheduler='wobbly'", "cosine"]),
    (["strategy=lora", "+strategy.params.peft.use_magic=true"], ["strategy.params.peft.use_magic", "use_rslora"]),
    (["strategy=lora", "+strategy.params.peft.task_type=CAUSAL_LM"], ["task_type", "set by forgetlab"]),
    (["strategy=ia3", "strategy.params.peft._target_=peft.LoraConfig"], ["expected peft.IA3Config"]),
    (["strategy.optim.optimizer._target_=torch.optim.RMSprop"],
     ["strategy.optim.optimizer.fused", "RMSprop", "momentum", "~strategy.optim.optimizer.fused"]),
    (["base.optimizer._target_=torch.optim.Adafactor"], ["base.optimizer.fused", "Adafactor"]),
    (["strategy.optim.optimizer._target_=torch.optim.Nope"], ["strategy.optim.optimizer._target_", "Nope"]),
])
def test_out_of_range_values_fail_before_any_model_loads(overrides, needles, tmp_path, monkeypatch):
    from forgetlab import run

    def no_model(*args, **kwargs):
        raise AssertionError("validation must fail before anything is built")

    monkeypatch.setattr(run, "instantiate", no_model)
    cfg = compose_config(overrides, output_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        run.run_experiment(cfg)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_unknown_task_lists_allowed_values_before_training(tmp_path, cache_dir):
    from forgetlab.run import run_experiment

    cfg = compose_config(["experiment=tiny", "tasks.target=juggling"], tmp_path, cache_dir)
    with pytest.raises(ValueError) as err:
        run_experiment(cfg)
    msg = str(err.value)
    assert "tasks.target" in msg and "'juggling'" in msg and "reverse" in msg and "copy" in msg
    assert not (tmp_path / "checkpoints").exists(), "must fail before any training"


def test_schema_fields_all_have_help():
    import dataclasses

    from forgetlab.config import schema

    missing = []
    for cls in (schema.TrainConfig, schema.StrategyConfig, schema.DataConfig, schema.ParamsConfig,
                schema.PenaltyConfig, schema.OptimConfig, schema.BaseStageConfig, schema.EvalConfig,
                schema.TasksConfig, schema.ModelConfig, schema.PathsConfig, schema.SequenceConfig):
        for f in dataclasses.fields(cls):
            section = f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())
            if not section and f.name != "_target_" and not f.metadata.get("help"):
                missing.append(f"{cls.__name__}.{f.name}")
    assert not missing, missing


def test_defaults_are_written_once_yaml_never_repeats_the_schema(tmp_path):
    """A YAML value equal to the schema's default would be a second copy that can drift."""
    import yaml

    from forgetlab.config.schema import TrainConfig

    schema = OmegaConf.to_container(OmegaConf.structured(TrainConfig), resolve=False)
    repeats = []
    for group, section in (("strategy", "strategy"), ("base", "base"), ("tasks", "tasks"), ("sequence", "sequence")):
        for path in (CONF / group).glob("*.yaml"):
            data = yaml.safe_load(path.read_text()) or {}
            for key, value in _leaves({k: v for k, v in data.items() if k != "defaults"}):
                default = OmegaConf.select(OmegaConf.create(schema[section]), key, default="<none>")
                if isinstance(default, str) and default == "???":
                    continue
                if value == default and not (value is None and key.startswith("params.peft.")):
                    repeats.append(f"{path.relative_to(ROOT)}: {key}={value!r}")
    assert not repeats, repeats


def test_sweep_expansion_helper_keeps_single_values():
    assert first_of_each_sweep(["seed=0,1,2", "strategy=full", "strategy.optim.lr=tag(log, interval(1e-5, 1e-3))"]) \
        == ["seed=0", "strategy=full"]
    assert list(itertools.islice(COMMANDS, 1))  # documented commands were found


def test_default_optimizer_is_fused_adamw_and_a_swap_drops_what_it_does_not_take(tmp_path):
    typed = validate(compose_config([], output_dir=tmp_path))
    assert typed.strategy.optim.optimizer == typed.base.optimizer == {
        "_target_": "torch.optim.AdamW", "_partial_": True, "weight_decay": 0.0, "fused": True}
    swapped = validate(compose_config(["strategy.optim.optimizer._target_=torch.optim.RMSprop",
                                       "~strategy.optim.optimizer.fused"], output_dir=tmp_path))
    assert swapped.strategy.optim.optimizer == {"_target_": "torch.optim.RMSprop", "_partial_": True,
                                                "weight_decay": 0.0}
