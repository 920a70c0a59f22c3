"""Recipe engine: YAML recipes → Trainer fine-tuning for classification, extractive QA and
summarization (not part of the remote code)."""

from .arguments import DataTrainingArguments, ModelArguments, parse_recipe
from .run import run, train

__all__ = ["DataTrainingArguments", "ModelArguments", "parse_recipe", "run", "train"]
