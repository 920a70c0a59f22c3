"""Recipe arguments: YAML files and command-line overrides, parsed by transformers' HfArgumentParser
into the dataclasses of HF's example scripts (run_glue.py, run_qa.py, run_summarization.py) plus
`Seq2SeqTrainingArguments`, so field names and habits carry over."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from ..initialization import ATTENTION_INITS
from ..relative_positions import ABSOLUTE_POSITIONS, SCHEMES
from .data import comma_list
from .modeling import BERT_PRESETS, check_fresh_position_limit, check_position_limit
from .recipes import did_you_mean, is_local_model, resolve_model_reference, resolve_recipe
from .tasks import TASKS, get_task

PRESETS = tuple(BERT_PRESETS)


def parse_json_object(field: str, text: str) -> dict:
    """A JSON object of config fields, or a ValueError naming the field and the value."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{field}={text!r} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{field}={text!r} must be a JSON object of config fields")
    return value


@dataclass
class ModelArguments:
    """Which model to fine-tune: a pretrained/converted checkpoint, or a fresh preset × scheme."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint dir or Hub id; empty: build from `preset`."}
    )
    preset: str = field(default="tiny", metadata={"help": f"Size of a fresh model: {', '.join(PRESETS)}."})
    relative_position: str | None = field(
        default=None, metadata={"help": f"Scheme of a fresh model: {', '.join(SCHEMES)} (default: the model config's)."}
    )
    absolute_position: str = field(
        default="none", metadata={"help": f"Absolute embeddings: {', '.join(ABSOLUTE_POSITIONS)}."}
    )
    decoder_relative_position: str | None = field(
        default=None, metadata={"help": "Summarization: decoder scheme (default: same)."}
    )
    model_overrides: str | None = field(
        default=None, metadata={"help": 'JSON of config fields, e.g. {"num_hidden_layers": 4}.'}
    )
    relative_position_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the scheme's own parameters (scalar bias tables learn slowly at the shared rate); default: learning_rate."
        },
    )
    attention_init: str = field(
        default="default",
        metadata={
            "help": "Initialisation of a fresh model's attention: default (BERT/T5 random), or mimetic (Trockman & Kolter "
            "2023: each head starts attending from a token to its copies; helps small models on little data)."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer dir or Hub id; default: the model's, or one trained on the training text."},
    )
    tokenizer_vocab_size: int = field(default=2000, metadata={"help": "Vocabulary of a tokenizer trained on the fly."})
    tokenizer_lowercase: bool | None = field(
        default=None,
        metadata={
            "help": "A WordPiece tokenizer trained on the fly lowercases (default true); false keeps case. (The T5 SentencePiece one is always cased.)"
        },
    )
    tokenizer_newlines: bool = field(
        default=False,
        metadata={
            "help": "A WordPiece tokenizer trained on the fly keeps each line break as a token `¶` (offsets still point at the newline): for text whose layout carries meaning, e.g. reference pages."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run the modeling code a Hub checkpoint carries (only for repositories you trust); hf_relpos's own "
            "relpos_* checkpoints load without it while hf_relpos is installed."
        },
    )

    def overrides(self) -> dict:
        """``model_overrides`` as a dict (ValueError naming the field for bad JSON)."""
        return parse_json_object("model_overrides", self.model_overrides) if self.model_overrides else {}


@dataclass
class DataTrainingArguments:
    """What to train on: a Hub dataset, local csv/json/jsonl files, or the built-in synthetic data."""

    task: str = field(default="classification", metadata={"help": f"One of: {', '.join(TASKS)}."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset (load_dataset(name, config)), or `synthetic`."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of the Hub dataset (e.g. sst2 for glue)."}
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "csv/json/jsonl/txt training file, or several comma-separated (of different layouts: text_column lists a column of each)."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "csv/json/jsonl evaluation file."})
    test_file: str | None = field(default=None, metadata={"help": "csv/json/jsonl test file."})
    synthetic_train_size: int = field(default=2000, metadata={"help": "Rows of the built-in synthetic training split."})
    synthetic_eval_size: int = field(default=300, metadata={"help": "Rows of the built-in synthetic validation split."})
    seed_data: int = field(default=1234, metadata={"help": "Seed of the synthetic data (deterministic)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N evaluation rows."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Tokens per input (classification, QA); longer inputs are truncated / windowed."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc)."}
    )
    # classification
    text_column: str | None = field(
        default=None, metadata={"help": "classification: `text`; summarization: `document`."}
    )
    text_pair_column: str | None = field(default=None, metadata={"help": "classification: second sentence of a pair."})
    label_column: str = field(default="label", metadata={"help": "classification: integer or string class labels."})
    # extractive QA (SQuAD layout)
    question_column: str = field(default="question", metadata={"help": "qa: the question."})
    context_column: str = field(default="context", metadata={"help": "qa: the passage holding the answer."})
    answer_column: str = field(
        default="answers", metadata={"help": "qa: SQuAD-style {text: [...], answer_start: [...]}."}
    )
    doc_stride: int = field(default=32, metadata={"help": "qa: overlap of the windows of a long context, in tokens."})
    version_2_with_negative: bool = field(
        default=False, metadata={"help": "qa: some questions have no answer (SQuAD v2)."}
    )
    n_best_size: int = field(default=20, metadata={"help": "qa: start/end candidates considered per window."})
    max_answer_length: int = field(default=30, metadata={"help": "qa: longest answer, in tokens."})
    renamed_copies: int = field(
        default=0,
        metadata={
            "help": "qa: add N copies of every training example whose rare question words (names) are renamed to other "
            "training names in question, context and answer alike, so that the model must find the entry the "
            "question names instead of memorising answers (entity anonymisation; 0 = off)."
        },
    )
    null_score_diff_threshold: float = field(
        default=0.0, metadata={"help": "qa v2: predict no answer when null score - best span > this."}
    )
    # summarization
    summary_column: str | None = field(default=None, metadata={"help": "summarization: `summary`."})
    source_prefix: str = field(
        default="", metadata={"help": "summarization: text prepended to every document (T5: `summarize: `)."}
    )
    max_source_length: int = field(default=256, metadata={"help": "summarization: document tokens."})
    max_target_length: int = field(default=64, metadata={"help": "summarization: summary tokens."})
    num_beams: int | None = field(
        default=None, metadata={"help": "summarization: beams at evaluation (default: generation_num_beams)."}
    )
    no_repeat_ngram_size: int | None = field(
        default=None,
        metadata={
            "help": "summarization: generation never repeats an n-gram of this size (saved in generation_config.json)."
        },
    )
    length_penalty: float | None = field(
        default=None,
        metadata={
            "help": "summarization: beam search length penalty (> 1 favours longer summaries; saved in generation_config.json)."
        },
    )
    lead_words: int = field(
        default=12,
        metadata={
            "help": "summarization: the baseline summary is the document's first N words (eval_baseline_rouge*)."
        },
    )
    # pretraining (mlm, span_corruption)
    mlm_probability: float = field(
        default=0.15, metadata={"help": "mlm: share of tokens masked (80% [MASK], 10% random, 10% kept)."}
    )
    whole_word_masking: bool = field(
        default=False,
        metadata={
            "help": "mlm: mask all pieces of a word together (transformers' collator; all masked become [MASK])."
        },
    )
    document_attention: bool = field(
        default=False,
        metadata={
            "help": "mlm: a packed block's documents attend within themselves only (position_ids restart at each document; relpos_bert runs them as separate texts)."
        },
    )
    noise_density: float = field(default=0.15, metadata={"help": "span_corruption: share of tokens in noise spans."})
    mean_noise_span_length: float = field(
        default=3.0, metadata={"help": "span_corruption: mean noise span length, in tokens."}
    )
    eval_lengths: list[int] | None = field(
        default=None,
        metadata={"help": "mlm/span_corruption: also evaluate on validation blocks of each length, e.g. 128 512 2048."},
    )
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "mlm: a teacher checkpoint with the same tokenizer and hidden size (e.g. the original absolute BERT "
            "before `convert --drop-absolute`); the loss adds distillation_weight × the squared error between the "
            "student's and the teacher's last hidden states on the same inputs (real tokens), relative to the "
            "teacher's mean square (0 = same states, 1 = as far as zeros)."
        },
    )
    distillation_weight: float = field(
        default=10.0, metadata={"help": "mlm: weight of the hidden-state loss of teacher_model_name_or_path."}
    )
    embedding_loss_weight: float = field(
        default=10.0,
        metadata={
            "help": "embedding_distillation: weight of 1 − cosine between the student's and the teacher's pooled "
            "embeddings, beside the squared error of the hidden states."
        },
    )
    contrastive_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "embedding_distillation: weight of a contrastive term on long texts: each holds a passage "
            "inserted at a random depth and must embed closer to that passage (the teacher's embedding) than "
            "copies of itself holding other passages (0 = off)."
        },
    )
    sentence_max_length: int = field(
        default=8192,
        metadata={
            "help": "embedding_distillation: the max_seq_length written to the saved sentence-transformers files "
            "(the longest input SentenceTransformer.encode reads)."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "mlm/span_corruption: stream the training data (local files or Hub) instead of loading it; needs max_steps."
        },
    )
    # the run
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a non-empty output_dir (its contents are removed first); without it such a folder is "
            "refused unless the run resumes (resume_from_checkpoint)."
        },
    )


RECIPE_DATACLASSES = (ModelArguments, DataTrainingArguments, Seq2SeqTrainingArguments)
GROUP_TITLES = {DataTrainingArguments: "task and data", ModelArguments: "model and scheme"}

# TrainingArguments' fields (about 120) in help groups, by name: the first group holding the field's name,
# or a prefix of it (``optim`` takes ``optim_args``), takes the field; a field of a newer transformers that matches none lands in "training: other"
TRAINING_GROUPS = (
    (
        "training: output, checkpoints, resume",
        (
            "output_dir",
            "save_",
            "enable_jit_checkpoint",
            "resume_from_checkpoint",
            "ignore_data_skip",
            "restore_callback_states_from_checkpoint",
            "do_train",
            "do_eval",
            "do_predict",
            "overwrite_output_dir",
        ),
    ),
    (
        "training: length, batches, optimizer, schedule",
        (
            "num_train_epochs",
            "max_steps",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "learning_rate",
            "lr_scheduler_",
            "warmup_",
            "optim",
            "weight_decay",
            "adam_",
            "max_grad_norm",
            "label_smoothing_factor",
            "average_tokens_across_devices",
            "neftune_noise_alpha",
            "auto_find_batch_size",
            "seed",
            "data_seed",
            "full_determinism",
        ),
    ),
    (
        "training: evaluation",
        (
            "eval_",
            "per_device_eval_batch_size",
            "prediction_loss_only",
            "include_for_metrics",
            "batch_eval_metrics",
            "metric_for_best_model",
            "greater_is_better",
            "load_best_model_at_end",
        ),
    ),
    ("training: generation (summarization)", ("predict_with_generate", "generation_", "sortish_sampler")),
    (
        "training: logging and reporting",
        (
            "logging_",
            "log_",
            "disable_tqdm",
            "report_to",
            "run_name",
            "project",
            "trackio_",
            "include_num_input_tokens_seen",
            "skip_memory_metrics",
        ),
    ),
    ("training: Hub", ("push_to_hub", "hub_")),
    (
        "training: precision, memory, speed",
        (
            "bf16",
            "fp16",
            "tf32",
            "activation_checkpointing",
            "gradient_checkpointing",
            "torch_compile",
            "use_liger_kernel",
            "liger_kernel_config",
            "use_cache",
            "torch_empty_cache_steps",
        ),
    ),
    (
        "training: devices, data loading, distributed",
        (
            "use_cpu",
            "accelerator_config",
            "parallelism_config",
            "dataloader_",
            "ddp_",
            "fsdp",
            "deepspeed",
            "local_rank",
            "debug",
            "remove_unused_columns",
            "label_names",
            "train_sampling_strategy",
            "length_column_name",
        ),
    ),
)


def training_group(name: str) -> str:
    for title, names in TRAINING_GROUPS:
        if any(name == n or name.startswith(n.rstrip("_") + "_") for n in names):
            return title
    return "training: other"


def _type_name(tp) -> str:
    """INT, FLOAT, STR, BOOL, JSON, or A|B for a union (None dropped)."""
    if get_origin(tp) in (Union, types.UnionType):
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        return "|".join(dict.fromkeys(names))
    origin = get_origin(tp)
    if origin in (list, tuple):
        return _type_name(get_args(tp)[0]) if get_args(tp) else "STR"
    if origin is dict or tp is dict:
        return "JSON"
    return getattr(tp, "__name__", str(tp)).upper()


class RecipeArgumentParser(HfArgumentParser):
    """transformers' HfArgumentParser over the recipe dataclasses, with no abbreviated flags
    (``--num_train_epoch`` is an error, not ``--num_train_epochs``), fields in help groups (task and data,
    model and scheme, training by topic) and the type of each field in its help line. One parser both
    parses recipes and prints ``hf-relpos train --help``, so the help cannot drift from what is parsed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        self._groups = {}
        super().__init__(RECIPE_DATACLASSES, **kwargs)
        order = [
            GROUP_TITLES[DataTrainingArguments],
            GROUP_TITLES[ModelArguments],
            *(title for title, _ in TRAINING_GROUPS),
            "training: other",
        ]
        ours = sorted(self._groups.values(), key=lambda g: order.index(g.title))
        self._action_groups = [g for g in self._action_groups if g not in ours] + ours

    def _group(self, title: str):
        if title not in self._groups:
            self._groups[title] = self.add_argument_group(title)
        return self._groups[title]

    def _add_dataclass_arguments(self, dtype):
        hints = get_type_hints(dtype)
        for f in fields(dtype):
            if not f.init:
                continue
            f.type = hints[f.name]
            title = GROUP_TITLES.get(dtype) or training_group(f.name)
            group = self._group(title)
            before = len(self._actions)
            self._parse_dataclass_field(group, f)
            for action in self._actions[before:]:
                if not action.help:
                    action.help = f"see transformers.{dtype.__name__}"
                elif "%(" not in action.help:  # argparse formats help with %: a literal "80%" must be escaped
                    action.help = action.help.replace("%", "%%")
                if action.nargs != 0 and action.choices is None and action.metavar is None:
                    action.metavar = _type_name(f.type)

    def set_recipe_defaults(self, config: dict) -> None:
        """Show (and use) a recipe's values as the defaults."""
        self.set_defaults(**config)


def recipe_field_names() -> list[str]:
    return [f.name for cls in RECIPE_DATACLASSES for f in fields(cls) if f.init]


def _to_argv(config: dict) -> list[str]:
    argv = []
    for key, value in config.items():
        if value is None:
            continue
        if (
            key == "fsdp" and value is True
        ):  # TrainingArguments.fsdp: bare flag = True; "True" is read as a legacy option
            argv += ["--fsdp"]
        elif isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def load_recipe_file(recipe) -> dict:
    """The fields of a recipe (a YAML path, or a shipped recipe's name), ``description`` removed, with
    unknown fields refused by name (and the closest known field)."""
    path = resolve_recipe(recipe)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"recipe {str(path)!r} is not valid YAML{at}: {problem}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"recipe {str(path)!r} must be a YAML mapping of field: value, got {type(data).__name__}")
    description = data.pop("description", None)
    if description is not None and not isinstance(description, str):
        raise ValueError(
            f"recipe {str(path)!r}: description must be one line of text, got {type(description).__name__}"
        )
    check_recipe_fields(data, str(path))
    return data


def check_recipe_fields(config: dict, path: str | None = None) -> None:
    """ValueError naming the recipe file, each unknown field and the closest known one."""
    known = recipe_field_names()
    unknown = [k for k in config if k not in known]
    if unknown:
        names = ", ".join(f"{k!r}{did_you_mean(str(k), known)}" for k in unknown)
        where = f" in {path!r}" if path else ""
        raise ValueError(f"unknown recipe field(s){where}: {names}; `hf-relpos train --help` lists the valid ones")


def unknown_flags_error(rest: list[str], known=None) -> str:
    """``unknown command-line argument(s): --num_train_epoch (did you mean --num_train_epochs?) 5``."""
    known = recipe_field_names() if known is None else known
    parts = []
    for arg in rest:
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            parts.append(f"{arg}{did_you_mean(name, known, '--')}")
        else:
            parts.append(arg)
    return f"unknown command-line argument(s): {' '.join(parts)}"


def recipe_defaults(recipe=None) -> dict:
    """The recipe's fields plus the output_dir default that parse_recipe applies."""
    config = load_recipe_file(recipe) if isinstance(recipe, (str, Path)) else dict(recipe or {})
    config.setdefault("output_dir", "runs/" + str(config.get("task", "classification")))
    return config


def recipe_help(recipe=None, prog: str = "hf-relpos train", usage: str | None = None) -> str:
    """``hf-relpos train [RECIPE] --help``: every field by group, with type, default (the recipe's value
    when a recipe is given) and help line."""
    parser = RecipeArgumentParser(
        prog=prog,
        usage=usage or f"{prog} RECIPE [--field value ...]",
        description="Fields of a recipe (YAML `field: value`), each also a flag that "
        "overrides the recipe. RECIPE: a shipped recipe's name (`hf-relpos recipes`) "
        "or a YAML path." + (f" Defaults shown: {recipe}." if recipe else ""),
    )
    parser.set_recipe_defaults(recipe_defaults(recipe))
    return parser.format_help()


def parse_recipe(recipe: str | dict | None = None, overrides: list[str] | None = None):
    """(ModelArguments, DataTrainingArguments, Seq2SeqTrainingArguments) from a YAML path (or a shipped
    recipe's name) or dict, then ``--key value`` overrides (command-line flags, which win)."""
    if not isinstance(recipe, (str, Path)):
        check_recipe_fields(dict(recipe or {}))
    config = recipe_defaults(recipe)
    parser = RecipeArgumentParser()
    model_args, data_args, training_args, rest = parser.parse_args_into_dataclasses(
        args=_to_argv(config) + list(overrides or []), return_remaining_strings=True
    )
    if rest:
        raise ValueError(unknown_flags_error(rest))
    validate(model_args, data_args, training_args.output_dir)
    return model_args, data_args, training_args


def validate(model_args: ModelArguments, data_args: DataTrainingArguments, output_dir: str | None = None) -> None:
    """Fail before any download or training with the field, the value and the valid choices."""
    task = get_task(data_args.task)
    for args, name in (
        (model_args, "model_name_or_path"),
        (model_args, "tokenizer_name"),
        (data_args, "teacher_model_name_or_path"),
    ):
        setattr(args, name, resolve_model_reference(name, getattr(args, name)))
    if model_args.model_name_or_path is None:
        if model_args.preset not in PRESETS:
            raise ValueError(f"preset={model_args.preset!r} is not valid; choose one of: {', '.join(PRESETS)}")
        for name in ("relative_position", "decoder_relative_position"):
            value = getattr(model_args, name)
            if value is not None and value not in SCHEMES:
                raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(SCHEMES)}")
        if model_args.absolute_position not in ABSOLUTE_POSITIONS:
            raise ValueError(
                f"absolute_position={model_args.absolute_position!r} is not valid; choose one of: {', '.join(ABSOLUTE_POSITIONS)}"
            )
    if model_args.attention_init not in ATTENTION_INITS:
        raise ValueError(
            f"attention_init={model_args.attention_init!r} is not valid; choose one of: {', '.join(ATTENTION_INITS)}"
        )
    if model_args.attention_init != "default" and model_args.model_name_or_path:
        raise ValueError(
            f"attention_init={model_args.attention_init!r} initialises a fresh model; this recipe loads "
            f"model_name_or_path={model_args.model_name_or_path!r}, whose trained weights it would erase: remove one"
        )
    model_args.overrides()
    trained_tokenizer = model_args.tokenizer_name is None and model_args.model_name_or_path is None
    for name, default in (("tokenizer_lowercase", None), ("tokenizer_newlines", False)):
        value = getattr(model_args, name)
        if value != default and not trained_tokenizer:
            raise ValueError(
                f"{name}={value} applies to a tokenizer trained on the fly; this recipe loads one "
                f"(tokenizer_name / model_name_or_path): remove {name}"
            )
        if value != default and task.seq2seq and not (name == "tokenizer_lowercase" and value is False):
            raise ValueError(
                f"{name}={value} applies to the WordPiece tokenizer of relpos_bert tasks; task="
                f"{data_args.task!r} trains a cased T5 SentencePiece tokenizer: remove {name}"
            )
    if model_args.relative_position_learning_rate is not None and model_args.relative_position_learning_rate <= 0:
        raise ValueError(
            f"relative_position_learning_rate={model_args.relative_position_learning_rate} is not valid; choose a positive number"
        )
    if data_args.document_attention and data_args.task != "mlm":
        raise ValueError(f"document_attention=True applies to task 'mlm', not {data_args.task!r}: remove it")
    if data_args.teacher_model_name_or_path and data_args.task not in ("mlm", "embedding_distillation"):
        raise ValueError(
            f"teacher_model_name_or_path={data_args.teacher_model_name_or_path!r} applies to tasks 'mlm' and "
            "'embedding_distillation', "
            f"not {data_args.task!r}: remove it"
        )
    if not data_args.distillation_weight > 0:
        raise ValueError(f"distillation_weight={data_args.distillation_weight} is not valid; choose a positive number")
    if data_args.renamed_copies < 0 or (data_args.renamed_copies and data_args.task != "qa"):
        raise ValueError(
            f"renamed_copies={data_args.renamed_copies} is not valid for task={data_args.task!r}; "
            "it applies to qa, as a whole number >= 0"
        )
    for name in (
        "max_seq_length",
        "doc_stride",
        "n_best_size",
        "max_answer_length",
        "max_source_length",
        "max_target_length",
        "synthetic_train_size",
        "synthetic_eval_size",
    ):
        value = getattr(data_args, name)
        if value < 1:
            raise ValueError(f"{name}={value} is not valid; choose a positive integer")
    if data_args.task == "qa" and data_args.doc_stride >= data_args.max_seq_length:
        raise ValueError(
            f"doc_stride={data_args.doc_stride} must be smaller than max_seq_length={data_args.max_seq_length}"
        )
    for name in ("train_file", "validation_file", "test_file"):
        value = getattr(data_args, name)
        for path in comma_list(value):  # several files: comma-separated
            what = f"{name}={value!r}" + (f" (file {path!r})" if path != value else "")
            if not Path(path).is_file():
                raise ValueError(f"{what} does not exist (point the recipe at your file: --{name} PATH)")
            if Path(path).suffix.lower() not in (".csv", ".json", ".jsonl", ".txt"):
                raise ValueError(f"{what} has an unsupported extension; choose one of: .csv, .json, .jsonl, .txt")
    for name, value in (
        ("model_name_or_path", model_args.model_name_or_path),
        ("tokenizer_name", model_args.tokenizer_name),
        ("teacher_model_name_or_path", data_args.teacher_model_name_or_path),
    ):
        if value and is_local_model(value, output_dir) and not Path(value).expanduser().is_dir():
            raise ValueError(
                f"{name}={value!r} is not a folder (a local checkpoint must exist before the run: make it "
                "first, e.g. with `hf-relpos convert` or another recipe; a Hub id has the form name or org/name)"
            )
    if not model_args.model_name_or_path:
        check_fresh_position_limit(model_args, task.max_length(data_args))
    config_file = Path(model_args.model_name_or_path or "") / "config.json"
    # a local checkpoint: its limit is known now (embedding_distillation drops an absolute source's table)
    if model_args.model_name_or_path and config_file.is_file() and data_args.task != "embedding_distillation":
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(
                f"model_name_or_path={model_args.model_name_or_path!r}: config.json is not valid JSON ({err})"
            ) from None
        check_position_limit(
            {**config, **model_args.overrides()}, task.max_length(data_args), model_args.model_name_or_path
        )
