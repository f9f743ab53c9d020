"""The schema of every setting forgetlab reads: typed dataclasses registered in Hydra's ConfigStore.

`conf/train.yaml` starts from `train_schema` (this file's `TrainConfig`), so every YAML file under conf/
is merged onto a typed node: an unknown key or a wrong type fails when Hydra composes, naming the key.
Each field says what it is for in its `help`; value ranges (`min`, `max`, `max_exclusive`) are declared
here too and checked by `forgetlab.config.checks` before any model loads.

One source of truth: a default is written either here or in the YAML preset that sets it, never both.
Fields whose value defines an experiment (learning rate, steps, tasks) are `MISSING` here and set by the
presets under conf/; knobs with a natural default (mixing temperature, EWC's Fisher sample) are set here.
`forgetlab --cfg job` prints the composed result.
"""

# ruff: noqa: RUF009 - `knob` returns a dataclasses.field (with help and limits), not a shared default
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf


def knob(default: Any = MISSING, help: str = "", **limits: float) -> Any:
    """A dataclass field with its one-line help and optional limits (min, max, max_exclusive)."""
    meta = {"help": help, **limits}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class DataKind(str, Enum):
    single = "single"  # the target task only
    multitask = "multitask"  # the target mixed with other tasks at FLAN-style rates
    replay = "replay"  # the target plus a fraction of earlier (base) tasks' training data


class MixingMode(str, Enum):
    proportional = "proportional"  # examples-proportional, optionally capped per task (FLAN)
    uniform = "uniform"  # every task equally often
    temperature = "temperature"  # (capped) sizes ** (1/T)


class ParamsKind(str, Enum):
    all = "all"  # full fine-tuning
    lora = "lora"  # low-rank adapters on `target_modules` (peft.LoraConfig)
    ia3 = "ia3"  # learned rescaling of activations (peft.IA3Config)
    prompt_tuning = "prompt_tuning"  # learned virtual input tokens; the model's weights stay frozen
    partial = "partial"  # the model's own weights, some frozen: chosen blocks / tensor kinds / names, HFT


class PenaltyKind(str, Enum):
    none = "none"
    l2sp = "l2sp"  # (alpha/2) * ||w - w0||^2 over the trainable weights (Li et al. 2018)
    ewc = "ewc"  # (lam/2) * sum_i F_i (w_i - w0_i)^2, F = diagonal empirical Fisher on the base tasks
    lwf = "lwf"  # lwf_weight * T^2 * KL(p_start/T || p/T) on the training inputs (Li & Hoiem 2016)


class DistillTokens(str, Enum):
    answer = "answer"  # the answer tokens (the positions the loss trains)
    all = "all"  # every non-padding position (causal models: the prompt's next-token predictions too)


@dataclass
class DataConfig:
    """Which examples a run trains on."""

    kind: DataKind = knob(DataKind.single, "single | multitask | replay")
    tasks: list[str] = knob([], "multitask: tasks mixed with the target; empty = tasks.base")
    mixing: MixingMode = knob(MixingMode.proportional, "multitask: proportional | uniform | temperature")
    cap: int | None = knob(None, "multitask: per-task example cap for proportional/temperature mixing", min=1)
    temperature: float = knob(1.0, "multitask, mixing=temperature: rates ~ size ** (1/temperature)", min=1e-6)
    replay_fraction: float = knob(0.2, "replay: fraction of each batch drawn from the base tasks",
                                  min=0.0, max_exclusive=1.0)


class BlockChoice(str, Enum):
    all = "all"  # every block
    top = "top"  # the k blocks nearest the output, in each stack (T5: the encoder's and the decoder's)
    bottom = "bottom"  # the k blocks nearest the input, in each stack


class TensorKind(str, Enum):
    matrix = "matrix"  # weights of linear layers (attention, MLP, an untied output head)
    bias = "bias"  # every bias vector, layer norms' shifts included (BitFit)
    norm = "norm"  # layer-norm / RMS-norm scales
    embedding = "embedding"  # nn.Embedding tables: tokens, positions, T5's relative position bias
    other = "other"  # anything else


@dataclass
class PartialConfig:
    """params.kind=partial: which of the model's own tensors train; the rest stay bit-identical. Blocks are
    found by name (`*.block.<i>.`, `*.h.<i>.`, `*.layers.<i>.`, `*.layer.<i>.`); each filter below narrows
    the trainable set, in order, and a set left empty fails before training (strategies/partial.py)."""

    blocks: BlockChoice = knob(BlockChoice.all, "all | top | bottom: train every block, or only the k blocks "
                                                "nearest the output (top) / input (bottom) of each stack; "
                                                "tensors outside the blocks (embeddings, final norms, head) train")
    k: int | None = knob(None, "blocks=top|bottom: how many blocks of each stack train", min=1)
    kinds: list[TensorKind] = knob([], "train only tensors of these kinds: matrix | bias | norm | embedding | "
                                       "other; empty = every kind. BitFit: [bias]")
    freeze_embeddings: bool = knob(False, "freeze every embedding table (T5 ties its token table to the output "
                                          "head, so that freezes the head too)")
    include: list[str] = knob([], "train only tensors whose full name matches one of these fnmatch patterns, "
                                  "e.g. ['*.SelfAttention.*']; empty = no such filter")
    exclude: list[str] = knob([], "freeze tensors whose full name matches one of these fnmatch patterns")
    half: bool = knob(False, "Half Fine-Tuning (Hui et al. 2024): freeze a random half of each block's "
                             "matrices (with their biases), drawn from the run's seed, recorded in metrics.json")


@dataclass
class ParamsConfig:
    """Which parameters train: `all`, a peft method applied to the model, or `partial` (some of its own)."""

    kind: ParamsKind = knob(ParamsKind.all, "all | lora | ia3 | prompt_tuning | partial")
    peft: Any = knob(None, "the peft config built by Hydra ({_target_: peft.LoraConfig, r: 8, ...}); "
                           "null keys keep peft's default; required unless kind=all")
    target_modules: Any = knob(None, "modules peft wraps (a list, or 'all-linear'); null = peft's default "
                                     "for the architecture plus forgetlab's additions (strategies/adapters.py)")
    partial: PartialConfig = field(default_factory=PartialConfig)


@dataclass
class PenaltyConfig:
    """A term added to the training loss that pulls the weights back toward where they started."""

    kind: PenaltyKind = knob(PenaltyKind.none, "none | l2sp | ewc | lwf")
    # Both strengths measured on the built-in default (experiments/methods_vs_forgetting): alpha 0.01 and lam 100
    # ended within seed noise of full fine-tuning; alpha 1 and lam 1e4 forget ~12 and ~9 points less at its gain.
    alpha: float = knob(1.0, "l2sp: strength of (alpha/2) * ||w - w0||^2; sweep on a log scale", min=0.0)
    lam: float = knob(1e4, "ewc: strength of (lam/2) * sum F_i (w_i - w0_i)^2; sweep on a log scale", min=0.0)
    fisher_examples: int = knob(128, "ewc: base-task training examples the diagonal Fisher averages over", min=1)
    lwf_weight: float = knob(1.0, "lwf: weight of the distillation term T^2 * KL(p_start/T || p/T), a mean over the "
                                  "distilled tokens, added to the per-token loss", min=0.0)
    temperature: float = knob(2.0, "lwf: softmax temperature T of both distributions (Hinton et al. 2015)",
                              min=1e-6)
    lwf_tokens: DistillTokens = knob(DistillTokens.answer, "lwf: answer (the trained answer tokens) | all (every "
                                                           "non-padding position; the same for seq2seq models)")


class SelfDistillCheck(str, Enum):
    match = "match"  # the task's metric scores the rewrite against the reference as well as the reference itself
    nonempty = "nonempty"  # any non-empty rewrite


@dataclass
class SelfDistillConfig:
    """Self-distillation of the targets (SDFT, Yang et al. 2024): the starting model rewrites each training
    answer of the target task, given the reference; fine-tuning trains on the usable rewrites."""

    enabled: bool = knob(False, "rewrite the target task's training answers with the starting model first")
    template: str = knob("{prompt}\nReference answer: {reference}\nRepeat the answer in your own words:",
                         "the rewrite prompt; {prompt} and {reference} are filled in per row")
    check: SelfDistillCheck = knob(SelfDistillCheck.match, "match (the rewrite must score as the reference does "
                                                           "under the task's metric) | nonempty")
    max_new_tokens: int | None = knob(None, "rewrite length cap; null = the longest reference + 5 tokens", min=1)


class ReplayMemory(str, Enum):
    proportional = "proportional"  # every earlier task at examples-proportional rates, from its whole train split
    reservoir = "reservoir"  # a fixed-size memory filled by reservoir sampling over the examples trained on


class L2SPAnchor(str, Enum):
    start = "start"  # the weights before stage 1
    previous = "previous"  # the weights at the end of the previous stage


class AdapterCarry(str, Enum):
    keep = "keep"  # one adapter, trained on through every stage
    merge = "merge"  # merge the adapter into the weights after each stage and start a new one


@dataclass
class SequenceConfig:
    """A continual sequence (`experiment=continual`): fine-tune stage after stage, scoring every evaluation
    task before stage 1 and after each stage; how the strategy carries from one stage to the next."""

    name: str = knob("sequence", "the sequence's name, used in run names and reports")
    stages: list[list[str]] = knob([], "the tasks trained in each stage, in order (built-in or tasks.custom "
                                       "names), e.g. [[length], [reverse], [copy, uppercase]]; empty = no sequence")
    include_base: bool = knob(True, "tasks.base count as stage 0, what the starting model knows: replay, "
                                    "multi-task mixing and EWC's Fisher draw on them from stage 1 on")
    replay: ReplayMemory = knob(ReplayMemory.proportional, "data.kind=replay: proportional | reservoir")
    memory_size: int = knob(1000, "replay=reservoir: examples the replay memory holds", min=1)
    ewc_decay: float = knob(1.0, "penalty.kind=ewc: F <- decay * F + F_stage after each stage (online EWC, "
                                 "Schwarz et al. 2018); 1 = plain sum", min=0.0, max=1.0)
    l2sp_anchor: L2SPAnchor = knob(L2SPAnchor.start, "penalty.kind=l2sp: the weights pulled toward: start | "
                                                     "previous (end of the previous stage)")
    adapter: AdapterCarry = knob(AdapterCarry.keep, "peft strategies: keep (one adapter trained on through every "
                                                    "stage) | merge (merged after each stage, a new one per stage)")


@dataclass
class OptimConfig:
    """How the weights are updated: the optimizer (built by Hydra, `_partial_`), its schedule and length."""

    lr: float = knob(help="peak learning rate", min=0.0)
    batch_size: int = knob(help="examples per optimizer step", min=1)
    steps: int = knob(help="optimizer steps", min=1)
    warmup_steps: int = knob(0, "linear warm-up steps of the schedule", min=0)
    scheduler: str = knob("constant_with_warmup", "a transformers scheduler name (transformers.SchedulerType)")
    optimizer: Any = knob({"_target_": "torch.optim.AdamW", "_partial_": True, "weight_decay": 0.0, "fused": True},
                          "torch optimizer, called with (params, lr=lr). fused: one kernel updates every parameter "
                          "(the transformers Trainer's default too): the optimizer step ~3x faster than per tensor. "
                          "For an optimizer without that argument drop it: ~strategy.optim.optimizer.fused")
    group_by_length: bool = knob(False, "batch examples of similar length (within shuffled groups of 50 batches): "
                                        "~1% padding instead of ~19%, but off by default because the built-in "
                                        "tasks' answers follow their input's length (length, count_vowels), so "
                                        "grouped batches repeat one answer and the base stage learns far less")


@dataclass
class StrategyConfig:
    """A fine-tuning strategy: which data, which parameters train, which penalty, and the optimizer."""

    name: str = knob(help="the preset's name, used in run names and reports")
    data: DataConfig = field(default_factory=DataConfig)
    params: ParamsConfig = field(default_factory=ParamsConfig)
    penalty: PenaltyConfig = field(default_factory=PenaltyConfig)
    self_distill: SelfDistillConfig = field(default_factory=SelfDistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class BaseStageConfig(OptimConfig):
    """The base stage of built-in models: multi-task training from random init on tasks.base, cached."""

    seed: int = knob(0, "seed of the base stage's data order (its cache key includes it)")


@dataclass
class EvalConfig:
    """Scoring: every evaluation task before and after fine-tuning, and periodically during it."""

    batch_size: int = knob(256, "examples per scoring batch", min=1)
    every_n_steps: int = knob(50, "validation scores of every task every N fine-tuning steps; 0 = off", min=0)
    val_max_examples: int | None = knob(32, "periodic evaluation: the first N validation examples per task (a "
                                            "sample that keeps evaluation a small share of the run); null = all",
                                        min=1)
    test_max_examples: int | None = knob(None, "before/after scoring: at most this many examples per task", min=1)
    max_batch_tokens: int | None = knob(32768, "a scoring batch holds at most this many tokens (examples x "
                                               "(longest input + generated tokens)), so long inputs are scored "
                                               "a few at a time within memory; null = batch_size alone", min=1)
    predictions: bool = knob(True, "keep every scored test example (prompt, references, prediction, its own score) "
                                   "in the run folder: predictions/<before|after|selected|...>/<task>.jsonl")
    max_predictions: int | None = knob(None, "predictions files keep the first N test examples per task (the "
                                             "same N before and after; metrics.json `predictions` says when it "
                                             "cut); null = all", min=1)
    compress_predictions: bool = knob(False, "gzip the predictions files (<task>.jsonl.gz, several times smaller)")


@dataclass
class DiagnosticsConfig:
    """What a finished run measures about its weights (metrics.json `weight_movement`)."""

    spectral: bool = knob(True, "count intruder dimensions of every linear layer (Shuttleworth et al. 2025)")
    intruder_k: int = knob(10, "top-k singular vectors of the fine-tuned matrix checked for intruders", min=1)
    intruder_eps: float = knob(0.5, "a singular vector is an intruder when its best cosine similarity to the "
                                    "pre-trained matrix's singular vectors is below this", min=0.0, max=1.0)
    max_numel: int | None = knob(4_000_000, "skip matrices larger than this (a 7B model must not spend an hour "
                                            "here); null = no cap", min=1)
    repair_lambdas: list[float] = knob([], "after the run, scale its intruder singular values by each lambda and "
                                           "rescore every task (repair.json, as forgetlab-repair does); empty = "
                                           "off. Sweepable: diagnostics.repair_lambdas='[1,0.5,0]'")
    repair_budget: float | None = knob(5.0, "mean forgetting (points) the best repair lambda may cost; null = "
                                            "report no best lambda", min=0.0)
    interpolate: list[float] = knob([], "after the run, rescore every task at theta0 + alpha (theta - theta0) for "
                                        "each alpha (interpolation.json, as forgetlab-interpolate does; best alpha "
                                        "under each select.budgets); empty = off. Sweepable: "
                                        "diagnostics.interpolate='[0,0.25,0.5,0.75,1]'")
    extrapolate: bool = knob(False, "allow interpolation alphas outside [0, 1] (deliberate extrapolation)")


@dataclass
class SelectConfig:
    """Choosing a checkpoint under a forgetting budget from the periodic evaluation history."""

    max_forgetting: float | None = knob(None, "keep the step with the best target score whose mean forgetting on "
                                              "the old tasks (validation, points) is at most this; null = off",
                                        min=0.0)
    budgets: list[float] = knob([1.0, 2.0, 5.0, 10.0], "budgets the report marks the best step under, per run")


@dataclass
class LmEvalConfig:
    """Optional lm-evaluation-harness tasks scored before and after (pip install 'forgetlab[lmeval]')."""

    tasks: list[str] = knob([], "lm-eval task names scored before/after fine-tuning; empty = off")
    include_path: str | None = knob(None, "a folder of your own lm-eval YAML tasks (local data works offline)")
    limit: int | None = knob(None, "at most this many examples per lm-eval task", min=1)
    num_fewshot: int | None = knob(None, "few-shot examples; null = each task's own", min=0)
    batch_size: int = knob(8, "lm-eval batch size", min=1)


class TaskKind(str, Enum):
    instruction = "instruction"  # any rows, rendered by your prompt_template / completion_template
    summarization = "summarization"  # dialogue -> summary (several references), ROUGE
    ner = "ner"  # CoNLL tokens/tags -> "person: Anna; location: Paris", entity F1
    classification = "classification"  # sentence -> label name, macro-F1 and accuracy
    text = "text"  # held-out text, scored by per-token loss (perplexity), never generated
    alpaca = "alpaca"  # {instruction, input, output} rows in Alpaca's prompt, ROUGE
    chat = "chat"  # {messages: [{role, content}, ...]} rows in the model's own chat template, ROUGE


class ChatTrainOn(str, Enum):
    last = "last"  # the last assistant turn only (the scored answer)
    all_assistant = "all_assistant"  # every assistant turn of a multi-turn conversation
    all = "all"  # every token of the conversation (no assistant mask)


class DataFormat(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    tsv = "tsv"
    conll = "conll"  # token ... tag lines, a blank line between sentences
    text = "text"  # paragraphs (or lines, text_unit=line) of plain text
    parquet = "parquet"  # a parquet file (read by `datasets`, features such as ClassLabel kept)
    hub = "hub"  # through `datasets`: a hub name, or a local dataset folder


class TextUnit(str, Enum):
    paragraph = "paragraph"  # blank-line separated paragraphs
    line = "line"  # every non-empty line


@dataclass
class CustomTaskConfig:
    """One of your own tasks (`tasks.custom.<name>`): where its rows come from, what they are (`kind`), how
    they become prompts and answers, and which splits it has. Null keys keep the loader's own behaviour
    (forgetlab.tasks.external.build_external_task). Keys for one kind only are refused on the others."""

    kind: TaskKind = knob(TaskKind.instruction, "instruction | summarization | ner | classification | text | "
                                                "alpaca | chat")
    source: str | None = knob(None, "a local file (.jsonl .json .csv .tsv .txt .conll .parquet), a local dataset "
                                    "folder (datasets' save_to_disk, or parquet/JSONL/CSV files per split), or a "
                                    "hub dataset name; may be left out when `splits` names a file per role")
    format: DataFormat | None = knob(None, "how to read `source`; null = from its suffix (a folder or any other "
                                           "name: hub)")
    config_name: str | None = knob(None, "the dataset's configuration (hub, or a folder's subfolder), e.g. "
                                         "wikitext-2-raw-v1")
    split: str | None = knob(None, "the one split of a hub dataset or folder that is carved into train/validation/"
                                   "test; null = train. Use `splits` for the dataset's own splits")
    splits: dict[str, str] | None = knob(None, "the dataset's own splits by role, {train: train, validation: "
                                               "validation, test: test}; a value with a file suffix or a '/' is a "
                                               "file ({train: data/train.jsonl, test: data/test.jsonl}). A role "
                                               "left out is carved out of train (or of the first split named)")
    fields: dict[str, Any] | None = knob(None, "the kind's field names -> the source's columns, e.g. {tags: "
                                               "ner_tags}; summarization's summary may list several columns")
    prompt_template: str | None = knob(None, "instruction: the prompt, a str.format template over the rows' "
                                             "fields, e.g. 'question: {question}'")
    completion_template: str | None = knob(None, "instruction: the answer's template, e.g. '{answer}'")
    extra_templates: list[str] | None = knob(None, "instruction: more prompt wordings, one drawn per row")
    key_field: str | None = knob(None, "instruction: the field that identifies an input (rows sharing it stay in "
                                       "one split); null = the rendered prompt")
    templates: list[str] | None = knob(None, "summarization/ner/classification: prompt wordings replacing the "
                                             "kind's three defaults ({dialogue}; {sentence}; {sentence} "
                                             "{options} {options_or})")
    metric: Any = knob(None, "a metric name (exact_match, rouge, entity_f1, macro_f1, ...), {name, headline} or "
                             "{_target_: your.metric}; null = the kind's own")
    label_names: Any = knob(None, "classification: names of the stored labels, [negative, positive] or {0: "
                                  "negative, 1: positive}; null = a ClassLabel's names, else the labels as written")
    tag_names: list[str] | None = knob(None, "ner: names of numeric tags; null = the source's ClassLabel names")
    entity_types: dict[str, str] | None = knob(None, "ner: tag type -> word in the answer; null = CoNLL's PER "
                                                     "person, LOC location, ORG organisation, MISC misc")
    text_unit: TextUnit | None = knob(None, "plain text files: paragraph | line; null = paragraph")
    tag_column: int | None = knob(None, "ner, CoNLL files: the column holding the tag (0 is the token); null = "
                                        "the last")
    sizes: dict[str, int] | None = knob(None, "this task's {train, validation, test} sizes; null = tasks.sizes")
    seed: int | None = knob(None, "seed of this task's split and subsets; null = tasks.seed")
    train_on: ChatTrainOn | None = knob(None, "chat: which turns training puts the loss on: last (the scored "
                                              "answer) | all_assistant (every assistant turn) | all (every "
                                              "token); null = last. Scoring always takes the last turn")
    shrink: bool = knob(False, "fewer distinct inputs than `sizes` asks: scale every carved split down (with a "
                               "warning) instead of failing")
    skip_empty: bool = knob(False, "skip (and count in metrics.json skipped_rows) rows with an empty needed "
                                   "field instead of failing")


@dataclass
class TasksConfig:
    """The tasks of an experiment (built by `_target_`, forgetlab.tasks.suite.build_suite)."""

    _target_: str = MISSING
    target: str = knob(help="the task fine-tuning learns")
    base: list[str] = knob(help="the tasks the model already knows: the base stage teaches them to built-in "
                                "models; for a pretrained model (model.base_stage=false) they name its old "
                                "abilities (any tasks, held-out text too); replay, multi-task mixing and EWC's "
                                "Fisher draw on them")
    eval: list[str] | None = knob(None, "tasks scored before/after; null = base + target")
    sizes: dict[str, int] = knob(help="examples per split: {train, validation, test}")
    seed: int = knob(1234, "seed that generates the built-in tasks' rows")
    templates: dict[str, list[str]] = knob({}, "task -> prompt templates replacing the built-in ones")
    custom: dict[str, CustomTaskConfig] = knob({}, "your own tasks by name, each a CustomTaskConfig "
                                                   "(conf/tasks/custom_jsonl.yaml); a new name composes as "
                                                   "tasks.custom.<name>.source=...")


@dataclass
class ModelConfig:
    name: str = knob(help="the model's name in run names, caches and reports")
    base_stage: bool = knob(False, "train the base stage first (built-in models); pretrained models start as they are")
    build: Any = knob(help="{_target_: a function returning a forgetlab LanguageModel, its arguments}")


@dataclass
class PathsConfig:
    root: str = knob(help="where outputs go (runs/, sweeps/, cache/)")
    cache_dir: str = knob(help="base-stage checkpoints shared by all runs")
    data_cache_dir: str | None = knob("${paths.cache_dir}/data", "generated tasks and tokenised training data, "
                                      "reused by later runs (the second job of a sweep loads them); null = off")
    output_dir: str = knob(help="this run's directory")


@dataclass
class TrainConfig:
    """The whole composed config of `forgetlab` (conf/train.yaml)."""

    seed: int = knob(0, "seed of fine-tuning (data order, adapter init)")
    threads: int = knob(2, "torch threads; a fixed count makes CPU runs repeat bit for bit; 0 = torch's choice",
                        min=0)
    deterministic: bool = knob(True, "deterministic torch kernels")
    verbose: bool = knob(False, "show third-party tips, warnings and loading bars")
    run_name: str = knob("${strategy.name}-${tasks.target}-s${seed}", "names the run folder and W&B run")
    sweep_name: str = knob("${now:%Y-%m-%d_%H-%M-%S}", "the sweep folder under -m; experiment files fix it so a "
                                                      "relaunch resumes")
    skip_completed: bool = knob(True, "under -m, skip a job whose metrics.json says completed (resume)")
    optimized_metrics: Any = knob(None, "what the app returns to a sweeper: null = mean_forgetting; a list for Optuna")
    checkpoint_every_n_steps: int = knob(100, "save checkpoints/last.ckpt every N steps (a killed run resumes)",
                                         min=1)
    eval: EvalConfig = field(default_factory=EvalConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    base: BaseStageConfig = field(default_factory=BaseStageConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    trainer: Any = knob(help="lightning.pytorch.Trainer arguments (conf/trainer/)")
    logger: Any = knob({}, "Lightning loggers by name (conf/logger/)")
    callbacks: Any = knob({}, "Lightning callbacks by name (conf/callbacks/)")


@dataclass
class _ComposedTasksConfig(TasksConfig):
    custom: dict[str, Any] = knob({}, "TasksConfig.custom, left open while Hydra composes")


_ComposedTasksConfig.__name__ = "TasksConfig"  # what a composition error names ("Key 'x' not in 'TasksConfig'")


@dataclass
class _ComposedTrainConfig(TrainConfig):
    tasks: _ComposedTasksConfig = field(default_factory=_ComposedTasksConfig)


def composition_schema() -> DictConfig:
    """What Hydra composes onto (`train_schema`): TrainConfig, except that `tasks.custom` is an open mapping.
    OmegaConf cannot add an entry to a dict of structured values from a dotted override, so with the typed
    dict `tasks.custom.<new name>.source=...` would fail even with `+`; open, every such override composes,
    and `forgetlab.config.checks.validate` then types each entry as a CustomTaskConfig, naming a misspelt
    key and the allowed ones before anything is built."""
    node = OmegaConf.structured(_ComposedTrainConfig)
    OmegaConf.set_struct(node.tasks.custom, False)
    return node
