"""Recipe engine: YAML recipes → Trainer fine-tuning for the registered tasks (classification, extractive
QA, summarization; see :mod:`.tasks`), and `compare` over schemes (not part of the remote code)."""

from .arguments import DataTrainingArguments, ModelArguments, parse_recipe
from .compare import compare
from .run import run, train
from .task import Task, TaskSetup
from .tasks import TASKS, get_task, register_task

__all__ = [
    "DataTrainingArguments",
    "ModelArguments",
    "TASKS",
    "Task",
    "TaskSetup",
    "compare",
    "get_task",
    "parse_recipe",
    "register_task",
    "run",
    "train",
]
