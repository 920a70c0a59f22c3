"""What a task hands to the recipe runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class TaskSetup:
    trainer: object  # a transformers Trainer (or Seq2SeqTrainer) ready to train
    evaluate: Callable[[], dict]  # final evaluation: metrics with the "eval_" prefix
    main_metric: str  # the headline metric, e.g. "accuracy", "f1", "rougeL"
    dataset_name: str
    text_column: str | None = None
    extra: dict = field(default_factory=dict)
