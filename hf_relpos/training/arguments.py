"""Recipe arguments: YAML files and command-line overrides, parsed by transformers' HfArgumentParser
into the dataclasses of HF's example scripts (run_glue.py, run_qa.py, run_summarization.py) plus
`Seq2SeqTrainingArguments`, so field names and habits carry over."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from ..relative_positions import ABSOLUTE_POSITIONS, SCHEMES
from .modeling import BERT_PRESETS, check_fresh_position_limit, check_position_limit
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

    model_name_or_path: str | None = field(default=None, metadata={"help": "Checkpoint dir or Hub id; empty: build from `preset`."})
    preset: str = field(default="tiny", metadata={"help": f"Size of a fresh model: {', '.join(PRESETS)}."})
    relative_position: str | None = field(
        default=None, metadata={"help": f"Scheme of a fresh model: {', '.join(SCHEMES)} (default: the model config's)."}
    )
    absolute_position: str = field(default="none", metadata={"help": f"Absolute embeddings: {', '.join(ABSOLUTE_POSITIONS)}."})
    decoder_relative_position: str | None = field(default=None, metadata={"help": "Summarization: decoder scheme (default: same)."})
    model_overrides: str | None = field(default=None, metadata={"help": 'JSON of config fields, e.g. {"num_hidden_layers": 4}.'})
    relative_position_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the scheme's own parameters (scalar bias tables learn slowly at the shared rate); default: learning_rate."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer dir or Hub id; default: the model's, or one trained on the training text."})
    tokenizer_vocab_size: int = field(default=2000, metadata={"help": "Vocabulary of a tokenizer trained on the fly."})
    trust_remote_code: bool = field(default=True, metadata={"help": "Load checkpoints that carry their modeling code."})

    def overrides(self) -> dict:
        """``model_overrides`` as a dict (ValueError naming the field for bad JSON)."""
        return parse_json_object("model_overrides", self.model_overrides) if self.model_overrides else {}


@dataclass
class DataTrainingArguments:
    """What to train on: a Hub dataset, local csv/json/jsonl files, or the built-in synthetic data."""

    task: str = field(default="classification", metadata={"help": f"One of: {', '.join(TASKS)}."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset (load_dataset(name, config)), or `synthetic`."})
    dataset_config_name: str | None = field(default=None)
    train_file: str | None = field(default=None, metadata={"help": "csv/json/jsonl training file."})
    validation_file: str | None = field(default=None)
    test_file: str | None = field(default=None)
    synthetic_train_size: int = field(default=2000, metadata={"help": "Rows of the built-in synthetic training split."})
    synthetic_eval_size: int = field(default=300)
    seed_data: int = field(default=1234, metadata={"help": "Seed of the synthetic data (deterministic)."})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    max_seq_length: int = field(default=128)
    preprocessing_num_workers: int | None = field(default=None)
    # classification
    text_column: str | None = field(default=None, metadata={"help": "classification: `text`; summarization: `document`."})
    text_pair_column: str | None = field(default=None, metadata={"help": "classification: second sentence of a pair."})
    label_column: str = field(default="label")
    # extractive QA (SQuAD layout)
    question_column: str = field(default="question")
    context_column: str = field(default="context")
    answer_column: str = field(default="answers")
    doc_stride: int = field(default=32)
    version_2_with_negative: bool = field(default=False)
    n_best_size: int = field(default=20)
    max_answer_length: int = field(default=30)
    null_score_diff_threshold: float = field(default=0.0)
    # summarization
    summary_column: str | None = field(default=None, metadata={"help": "summarization: `summary`."})
    source_prefix: str = field(default="")
    max_source_length: int = field(default=256)
    max_target_length: int = field(default=64)
    num_beams: int | None = field(default=None)


RECIPE_DATACLASSES = (ModelArguments, DataTrainingArguments, Seq2SeqTrainingArguments)


def _to_argv(config: dict) -> list[str]:
    argv = []
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def load_recipe_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {str(path)!r} must be a YAML mapping of field: value, got {type(data).__name__}")
    return data


def parse_recipe(recipe: str | dict | None = None, overrides: list[str] | None = None):
    """(ModelArguments, DataTrainingArguments, Seq2SeqTrainingArguments) from a YAML path or dict,
    then ``--key value`` overrides (command-line flags, which win)."""
    config = load_recipe_file(recipe) if isinstance(recipe, (str, Path)) else dict(recipe or {})
    known = {f.name for cls in RECIPE_DATACLASSES for f in fields(cls)}
    unknown = sorted(k for k in config if k not in known)
    if unknown:
        raise ValueError(f"unknown recipe field(s): {', '.join(unknown)} (see `hf-relpos train --help` for the valid ones)")
    config.setdefault("output_dir", "runs/" + str(config.get("task", "classification")))
    parser = HfArgumentParser(RECIPE_DATACLASSES)
    model_args, data_args, training_args, rest = parser.parse_args_into_dataclasses(
        args=_to_argv(config) + list(overrides or []), return_remaining_strings=True
    )
    if rest:
        raise ValueError(f"unknown command-line argument(s): {' '.join(rest)}")
    validate(model_args, data_args)
    return model_args, data_args, training_args


def validate(model_args: ModelArguments, data_args: DataTrainingArguments) -> None:
    """Fail before any download or training with the field, the value and the valid choices."""
    task = get_task(data_args.task)
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
    model_args.overrides()
    if model_args.relative_position_learning_rate is not None and model_args.relative_position_learning_rate <= 0:
        raise ValueError(
            f"relative_position_learning_rate={model_args.relative_position_learning_rate} is not valid; choose a positive number"
        )
    for name in ("max_seq_length", "doc_stride", "n_best_size", "max_answer_length", "max_source_length",
                 "max_target_length", "synthetic_train_size", "synthetic_eval_size"):
        value = getattr(data_args, name)
        if value < 1:
            raise ValueError(f"{name}={value} is not valid; choose a positive integer")
    if data_args.task == "qa" and data_args.doc_stride >= data_args.max_seq_length:
        raise ValueError(
            f"doc_stride={data_args.doc_stride} must be smaller than max_seq_length={data_args.max_seq_length}"
        )
    for name in ("train_file", "validation_file", "test_file"):
        path = getattr(data_args, name)
        if path is not None:
            if not Path(path).is_file():
                raise ValueError(f"{name}={path!r} does not exist")
            if Path(path).suffix.lower() not in (".csv", ".json", ".jsonl"):
                raise ValueError(f"{name}={path!r} has an unsupported extension; choose one of: .csv, .json, .jsonl")
    if not model_args.model_name_or_path:
        check_fresh_position_limit(model_args, task.max_length(data_args))
    config_file = Path(model_args.model_name_or_path or "") / "config.json"
    if model_args.model_name_or_path and config_file.is_file():  # a local checkpoint: its limit is known now
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"model_name_or_path={model_args.model_name_or_path!r}: config.json is not valid JSON ({err})") from None
        check_position_limit({**config, **model_args.overrides()}, task.max_length(data_args), model_args.model_name_or_path)
