"""Sequence classification (single sentences or pairs, any number of labels): accuracy, macro F1, next to a
model-free baseline (every validation text given the training split's most frequent class:
``eval_baseline_accuracy`` / ``eval_baseline_macro_f1``)."""

from __future__ import annotations

from pathlib import Path

import evaluate
import numpy as np
from transformers import DataCollatorWithPadding

from .data import check_text_columns, require_columns, tokenize
from .modeling import build_config, load_model, load_tokenizer
from .task import TaskSetup
from .trainer import RelPosTrainer

METRIC_DIR = Path(__file__).parent / "metrics" / "classification"


def _label_names(dataset, column):
    feature = dataset.features[column]
    if hasattr(feature, "names"):
        return list(feature.names)
    values = sorted(set(dataset[column]))
    return [str(v) for v in values]


def _integral_labels(dataset, data_args, split):
    """Classes are ints or strings. Float labels that are whole numbers (1.0: a csv column with a gap) become
    ints; other floats (0.5) are refused: regression is not a task of the recipes, and treating each float as
    a class would train a meaningless classifier silently."""
    column = data_args.label_column
    feature = dataset.features[column]
    if getattr(feature, "dtype", "").startswith("float"):
        values = dataset[column]
        for index, value in enumerate(values):
            if value is None or value != value or float(value) != int(value):
                raise ValueError(
                    f"label_column={column!r}: the {split} split has label {value!r} (row {index + 1}), a float; "
                    "classification needs class labels (integers or strings). Regression (a float score per text) "
                    "is not supported by the recipes: round the scores into classes"
                )
        from datasets import Value

        dataset = dataset.cast_column(column, Value("int64"))
    elif any(v is None for v in dataset[column]):
        index = dataset[column].index(None)
        raise ValueError(f"label_column={column!r}: the {split} split has a null label (row {index + 1})")
    return dataset


def setup(task, model_args, data_args, training_args, raw) -> TaskSetup:
    text_column = task.column(data_args, "text_column")
    columns = {
        "text_column": text_column,
        "text_pair_column": data_args.text_pair_column,
        "label_column": data_args.label_column,
    }
    for split in ("train", "validation"):
        require_columns(raw[split], columns, split)
        check_text_columns(
            raw[split], {"text_column": text_column, "text_pair_column": data_args.text_pair_column}, split, data_args
        )
        raw[split] = _integral_labels(raw[split], data_args, split)
    labels = _label_names(raw["train"], data_args.label_column)
    feature = raw["train"].features[data_args.label_column]
    if not hasattr(feature, "names"):  # map raw values (ints or strings) to ids, in sorted order
        to_id = {v: i for i, v in enumerate(sorted(set(raw["train"][data_args.label_column])))}
    else:
        to_id = None
    for split in ("train", "validation"):
        values = raw[split][data_args.label_column]
        if to_id is None:
            bad = [v for v in values if not 0 <= v < len(labels)]
        else:
            bad = [v for v in values if v not in to_id]
        if bad:
            raise ValueError(
                f"label_column={data_args.label_column!r}: the {split} split has label {bad[0]!r} outside the "
                f"training labels ({', '.join(map(str, labels))})"
            )

    tokenizer = load_tokenizer(model_args, raw["train"][text_column], task.seq2seq)
    config = build_config(
        model_args,
        tokenizer,
        task.seq2seq,
        max_length=task.max_length(data_args),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model = load_model(task.auto_class, model_args, config)

    def preprocess(batch):
        pair = batch[data_args.text_pair_column] if data_args.text_pair_column else None
        out = tokenizer(batch[text_column], pair, truncation=True, max_length=data_args.max_seq_length)
        values = batch[data_args.label_column]
        out["labels"] = [to_id[v] for v in values] if to_id else values
        return out

    with training_args.main_process_first(desc="tokenizing"):
        train, evals = (tokenize(raw[split], preprocess, data_args) for split in ("train", "validation"))

    metric = evaluate.load(str(METRIC_DIR))
    majority = majority_label(train["labels"])
    baseline = metric.compute(predictions=[majority] * len(evals), references=evals["labels"])

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric.compute(predictions=np.argmax(logits, axis=-1), references=prediction.label_ids)

    trainer = RelPosTrainer(
        position_learning_rate=model_args.relative_position_learning_rate,
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )

    def final_evaluate():
        return {**trainer.evaluate(), **{f"eval_baseline_{k}": v for k, v in baseline.items()}}

    return TaskSetup(trainer=trainer, evaluate=final_evaluate, main_metric="accuracy", text_column=text_column)


def majority_label(labels) -> int:
    """The most frequent class id of ``labels`` (the smallest id on a tie)."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(values[np.argmax(counts)])
