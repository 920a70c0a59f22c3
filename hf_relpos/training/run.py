"""The recipe runner: parse → data → task setup → Trainer.train → save → evaluate → card."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from .arguments import parse_recipe
from .cards import build_model_card
from .data import load_raw_datasets


def train(recipe=None, overrides: list[str] | None = None) -> dict:
    """Run a recipe (YAML path or dict) with ``--key value`` overrides. Returns the final metrics,
    the training time and the output folder."""
    return run(*parse_recipe(recipe, overrides))


def _resume_path(training_args):
    resume = training_args.resume_from_checkpoint
    if resume is None or str(resume).lower() in ("false", "no", ""):
        return None
    if str(resume).lower() in ("true", "last", "yes"):
        last = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None
        if last is None:
            raise ValueError(f"resume_from_checkpoint={resume!r}: no checkpoint-N folder in output_dir={training_args.output_dir!r}")
        return last
    if not Path(resume).is_dir():
        raise ValueError(f"resume_from_checkpoint={resume!r} is not a checkpoint folder")
    return resume


def run(model_args, data_args, training_args) -> dict:
    set_seed(training_args.seed)
    resume = _resume_path(training_args)
    raw = load_raw_datasets(data_args)
    task = importlib.import_module(f"{__package__}.{data_args.task}")
    setup = task.setup(model_args, data_args, training_args, raw)
    trainer = setup.trainer
    if trainer.is_world_process_zero():
        total = training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps
        print(f"hf-relpos: task {data_args.task}, model {type(trainer.model).__name__} "
              f"({getattr(trainer.model.config, 'relative_position', '?')}), processes: {training_args.world_size}, "
              f"total train batch size: {total}", flush=True)

    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - start
    trainer.save_model()  # weights, config with auto_map, modeling code, tokenizer
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    metrics = setup.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)

    out = Path(training_args.output_dir)
    result = {
        "task": data_args.task,
        "relative_position": getattr(trainer.model.config, "relative_position", None),
        "absolute_position": getattr(trainer.model.config, "absolute_position", None),
        "dataset": setup.dataset_name,
        "main_metric": setup.main_metric,
        "eval": metrics,
        "train": train_result.metrics,
        "train_seconds": train_seconds,
        "output_dir": str(out),
    }
    if trainer.is_world_process_zero():
        (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
        example = raw["validation"][0]
        card = build_model_card(
            data_args.task, trainer.model.config, metrics, training_args, setup.dataset_name,
            repo_id=training_args.hub_model_id or str(out),
            example_input=str(example.get(setup.text_column or "", "")),
            example_question=str(example.get(data_args.question_column, "")),
        )
        card.save(out / "README.md")
    return result
