"""The recipe runner: parse → data → task setup → Trainer.train → save → evaluate → card."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..cards import build_model_card, training_args_dict
from ..hub import check_repo_id, push_to_hub
from .arguments import parse_recipe
from .data import data_files, dataset_label, load_raw_datasets
from .tasks import get_task


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


def _hub_push_request(training_args):
    """``push_to_hub`` asks for one upload at the end of the run, done by hf_relpos.hub (safetensors, code,
    tokenizer, card; no pickles or checkpoint folders), so Trainer's own pushes are switched off."""
    if not training_args.push_to_hub:
        return None
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).name
    try:
        check_repo_id(repo_id)
    except ValueError as err:
        raise ValueError(f"hub_model_id={repo_id!r} is not valid: {err}") from None
    training_args.push_to_hub = False
    return repo_id


def run(model_args, data_args, training_args) -> dict:
    set_seed(training_args.seed)
    resume = _resume_path(training_args)
    hub_repo_id = _hub_push_request(training_args)  # checked before any data or training
    task = get_task(data_args.task)
    raw = load_raw_datasets(data_args, task.synthetic)
    setup = task.setup(model_args, data_args, training_args, raw)
    dataset = dataset_label(data_args)
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
        "dataset": dataset,
        "data_files": data_files(data_args) or None,
        "main_metric": setup.main_metric,
        "eval": metrics,
        "train": train_result.metrics,
        "train_seconds": train_seconds,
        "output_dir": str(out),
    }
    if trainer.is_world_process_zero():
        example = raw["validation"][0]
        card_fields = {  # what hf_relpos.hub needs to render the card again under another repo id
            "training_args": training_args_dict(training_args),
            "example_input": str(example.get(setup.text_column or "", ""))[:300],
            "example_question": str(example.get(data_args.question_column, "")),
            "version_2_with_negative": bool(data_args.version_2_with_negative),
            "max_seq_length": getattr(data_args, task.length_fields[0]),
            "pipeline_tag": task.pipeline_tag,
            "auto_class": task.auto_class_name,
        }
        (out / "metrics.json").write_text(json.dumps({**result, **card_fields}, indent=2, default=str))
        card = build_model_card(
            task.name, trainer.model.config, metrics, training_args, dataset,
            repo_id=hub_repo_id or training_args.hub_model_id or str(out),
            example_input=card_fields["example_input"], example_question=card_fields["example_question"],
            version_2=card_fields["version_2_with_negative"], max_seq_length=card_fields["max_seq_length"],
            pipeline_tag=task.pipeline_tag, auto_class=task.auto_class_name,
        )
        card.save(out / "README.md")
        if hub_repo_id:
            result["hub"] = push_to_hub(
                out, hub_repo_id, private=training_args.hub_private_repo, revision=training_args.hub_revision,
                token=training_args.hub_token,
                commit_message=f"hf-relpos train: {data_args.task}, {result['relative_position']}",
            )
            print(f"hf-relpos: pushed {out} to {result['hub']['repo_id']} ({result['hub']['commit_url']})", flush=True)
    return result
