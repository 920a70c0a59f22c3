"""What a task is (:class:`Task`, one entry of the registry in :mod:`.tasks`) and what its setup hands
to the recipe runner (:class:`TaskSetup`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping


@dataclass
class TaskSetup:
    trainer: object  # a transformers Trainer (or Seq2SeqTrainer) ready to train
    evaluate: Callable[[], dict]  # final evaluation: metrics with the "eval_" prefix
    main_metric: str  # the headline metric, e.g. "accuracy", "f1", "rougeL"
    text_column: str | None = None  # the column a card's example input comes from
    pipeline_parameters: dict | None = None  # settings the checkpoint's pipeline and `predict` default to
    extra_files: Callable[[object], None] | None = None  # writes task files into the final folder (a Path)


@dataclass(frozen=True)
class Task:
    """A recipe task: everything the runner, the data loader, the validation and the model card need.

    ``setup(task, model_args, data_args, training_args, raw) -> TaskSetup`` builds tokenizer, model and
    trainer; ``synthetic(data_args) -> DatasetDict`` the built-in (offline, deterministic) train and
    validation splits; ``default_columns`` fills the recipe's column fields left unset (field → column);
    ``length_fields`` are the recipe fields that bound the model's input lengths (checked against learned
    absolute positions); the card template is model_cards/<name>.md."""

    name: str
    pipeline_tag: str  # Hub pipeline tag of the fine-tuned model's card
    auto_class: type  # the transformers Auto class of the fine-tuned model
    setup_fn: Callable[..., TaskSetup]
    synthetic: Callable
    default_columns: Mapping[str, str] = field(default_factory=dict)
    length_fields: tuple[str, ...] = ("max_seq_length",)
    seq2seq: bool = False

    def column(self, data_args, name: str) -> str | None:
        """The recipe's ``name`` column field, or this task's default for it."""
        return getattr(data_args, name) or self.default_columns.get(name)

    def max_length(self, data_args) -> int:
        """The longest input (or target) the recipe asks the model to take."""
        return max(getattr(data_args, name) for name in self.length_fields)

    def setup(self, model_args, data_args, training_args, raw) -> TaskSetup:
        return self.setup_fn(self, model_args, data_args, training_args, raw)

    @property
    def auto_class_name(self) -> str:
        return self.auto_class.__name__
