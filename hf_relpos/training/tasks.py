"""The recipe tasks: one registry of :class:`~.task.Task` objects, keyed by the recipe's ``task`` field.

Adding a task is one entry here plus its setup function (``setup(task, model_args, data_args,
training_args, raw) -> TaskSetup``), a synthetic data builder and a card template model_cards/<name>.md.
"""

from __future__ import annotations

from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from . import classification, embedding_distillation, pretraining, qa, summarization
from .data import synthetic_classification, synthetic_qa, synthetic_summarization
from .task import Task


def _sized(builder, **options):
    """A ``synthetic(data_args)`` calling ``builder(train_size, eval_size, seed, **options)``; ``options``
    maps a builder keyword to the recipe field that sets it."""

    def synthetic(data_args):
        return builder(
            train_size=data_args.synthetic_train_size,
            eval_size=data_args.synthetic_eval_size,
            seed=data_args.seed_data,
            **{k: getattr(data_args, f) for k, f in options.items()},
        )

    return synthetic


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task={task.name!r} is already registered")
    TASKS[task.name] = task
    return task


register_task(
    Task(
        "classification",
        "text-classification",
        AutoModelForSequenceClassification,
        classification.setup,
        synthetic=_sized(synthetic_classification),
        default_columns={"text_column": "text"},
    )
)
register_task(
    Task(
        "qa",
        "question-answering",
        AutoModelForQuestionAnswering,
        qa.setup,
        synthetic=_sized(synthetic_qa, with_negative="version_2_with_negative"),
    )
)
register_task(
    Task(
        "summarization",
        "summarization",
        AutoModelForSeq2SeqLM,
        summarization.setup,
        synthetic=_sized(synthetic_summarization),
        default_columns={"text_column": "document", "summary_column": "summary"},
        length_fields=("max_source_length", "max_target_length"),
        seq2seq=True,
    )
)

register_task(
    Task(  # pretraining: texts packed into blocks; built-in data = "counting" sentences
        "mlm",
        "fill-mask",
        AutoModelForMaskedLM,
        pretraining.setup,
        synthetic=_sized(pretraining.synthetic_pretraining),
        default_columns={"text_column": "text"},
    )
)
register_task(
    Task(
        "span_corruption",
        "text2text-generation",
        AutoModelForSeq2SeqLM,
        pretraining.setup,
        synthetic=_sized(pretraining.synthetic_pretraining),
        default_columns={"text_column": "text"},
        seq2seq=True,
    )
)
register_task(
    Task(  # context extension of a sentence-embedding model: the teacher's states and embeddings, short and long
        "embedding_distillation",
        "feature-extraction",
        AutoModel,
        embedding_distillation.setup,
        synthetic=_sized(pretraining.synthetic_pretraining),
        default_columns={"text_column": "text"},
    )
)


def get_task(name) -> Task:
    """The registered task ``name``, or a ValueError naming the value and the choices."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not valid; choose one of: {', '.join(TASKS)}")
    return TASKS[name]
