"""The recipe runner: parse → check output_dir → data → task setup → Trainer.train → evaluate → save → card.

Output folders are complete or visibly incomplete:

- ``output_dir`` must be empty (or absent) unless ``overwrite_output_dir: true`` (its contents are removed
  first, so ``save_total_limit`` can never delete an earlier run's checkpoints) or the run resumes
  (``resume_from_checkpoint``); otherwise a ValueError names the folder and both ways out.
- While a run is going, ``output_dir/TRAINING_INCOMPLETE`` says so (what to do is written in it) and the
  folder has no top-level ``config.json``, so ``from_pretrained(output_dir)`` fails instead of loading a
  half-finished model. Trainer's ``checkpoint-N`` folders are written as Trainer writes them; a
  ``checkpoint-N`` without ``trainer_state.json`` (written last) was cut short and is never resumed from.
- The final model, tokenizer, ``metrics.json`` and the model card ``README.md`` are written into
  ``output_dir/.final-incomplete`` and then moved up, ``config.json`` last; then the marker goes. A folder
  with a top-level ``config.json`` therefore always carries its metrics and card. (A kill between the last
  move and the marker's removal leaves a complete folder that still says incomplete: safe side.)
- A ``push_to_hub`` request runs after the folder is complete; a failed push leaves it complete locally.

Resumed runs report whole-run training metrics: ``train_loss`` averages over every step since step 0
(the loss sum so far is stored in each checkpoint's trainer_state.json), with ``global_step`` and
``resumed_from_step``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from transformers import set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..cards import build_model_card, training_args_dict
from ..hub import INCOMPLETE_MARKER, check_repo_id, push_to_hub
from ..pipeline_files import add_pipelines
from ..tokenization import finalize_tokenizer_files
from .arguments import parse_recipe
from .data import data_files, dataset_label, hub_dataset, load_raw_datasets
from .tasks import get_task
from .trainer import TOTALS_KEY

FINAL_TMP = ".final-incomplete"
_MARKER_TEXT = (
    "This folder holds a training run that has not finished (or was killed): the files here are not a finished\n"
    "model. Resume it with `hf-relpos train RECIPE --output_dir {out} --resume_from_checkpoint true`, or start\n"
    "over with `--overwrite_output_dir true`. The marker goes when the final model, metrics.json and README.md\n"
    "are in place.\n"
)


def train(recipe=None, overrides: list[str] | None = None) -> dict:
    """Run a recipe (YAML path or dict) with ``--key value`` overrides. Returns the final metrics,
    the training time and the output folder."""
    return run(*parse_recipe(recipe, overrides))


def _wants_resume(training_args) -> bool:
    resume = training_args.resume_from_checkpoint
    return resume is not None and str(resume).lower() not in ("false", "no", "")


def complete_checkpoints(folder) -> list[Path]:
    """The ``checkpoint-N`` folders of ``folder`` that Trainer finished writing (trainer_state.json is its
    last file), by step."""
    found = []
    for path in Path(folder).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.rsplit("-", 1)[1]
        if step.isdigit() and path.is_dir() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def _resume_path(training_args):
    if not _wants_resume(training_args):
        return None
    resume = training_args.resume_from_checkpoint
    if str(resume).lower() in ("true", "last", "yes"):
        out = Path(training_args.output_dir)
        done = complete_checkpoints(out) if out.is_dir() else []
        if not done:
            raise ValueError(
                f"resume_from_checkpoint={resume!r}: no complete checkpoint-N folder in "
                f"output_dir={training_args.output_dir!r}; start over with overwrite_output_dir=true"
            )
        return str(done[-1])
    if not Path(resume).is_dir():
        raise ValueError(f"resume_from_checkpoint={resume!r} is not a checkpoint folder")
    if not (Path(resume) / "trainer_state.json").is_file():
        raise ValueError(
            f"resume_from_checkpoint={resume!r} has no trainer_state.json: the checkpoint was not "
            "finished (a run killed while saving it); resume from an earlier one"
        )
    return str(resume)


def _check_output_dir(training_args, overwrite: bool) -> None:
    """Refuse a non-empty output_dir unless the run overwrites it or resumes in it."""
    out = Path(training_args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir={str(out)!r} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()) or overwrite or _wants_resume(training_args):
        return
    what = "an unfinished run (TRAINING_INCOMPLETE)" if (out / INCOMPLETE_MARKER).exists() else "files"
    raise ValueError(
        f"output_dir={str(out)!r} is not empty (it holds {what}); set overwrite_output_dir=true to replace "
        "it, resume_from_checkpoint=true to continue its run, or choose another output_dir"
    )


def _prepare_output_dir(training_args, overwrite: bool) -> Path:
    """(Main process) clear an overwritten folder, drop stale final files, write the marker."""
    out = Path(training_args.output_dir)
    if overwrite and out.is_dir() and not _wants_resume(training_args):
        for entry in out.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text(_MARKER_TEXT.format(out=out))
    shutil.rmtree(out / FINAL_TMP, ignore_errors=True)  # a final save cut short by an earlier kill
    (out / "config.json").unlink(missing_ok=True)  # an earlier final model must not load as this run's
    return out


def _prior_totals(resume) -> dict:
    """Step, loss sum and seconds of the run up to the checkpoint resumed from."""
    if resume is None:
        return {"step": 0, "loss_sum": 0.0, "seconds": 0.0}
    state = json.loads((Path(resume) / "trainer_state.json").read_text())
    saved = (state.get("stateful_callbacks") or {}).get(TOTALS_KEY, {}).get("attributes", {})
    step = int(state.get("global_step", 0))
    if "loss_sum" in saved:
        return {"step": step, "loss_sum": float(saved["loss_sum"]), "seconds": float(saved.get("seconds", 0.0))}
    # a checkpoint from another trainer: estimate from the logged losses (each covers its logging interval)
    loss_sum, last = 0.0, 0
    for entry in state.get("log_history", []):
        if "loss" in entry and entry.get("step", 0) <= step:
            loss_sum += entry["loss"] * (entry["step"] - last)
            last = entry["step"]
    return {"step": step, "loss_sum": loss_sum * step / last if last else 0.0, "seconds": 0.0}


def whole_run_metrics(metrics: dict, prior: dict, global_step: int, seconds: float) -> dict:
    """Trainer's metrics of this session, with train_loss over the whole run (from step 0)."""
    metrics = dict(metrics)
    this = global_step - prior["step"]
    if prior["step"]:
        metrics["resumed_from_step"] = prior["step"]
        metrics["train_loss_this_session"] = metrics.get("train_loss")
    if global_step:
        metrics["train_loss"] = (prior["loss_sum"] + metrics.get("train_loss", 0.0) * this) / global_step
    metrics["global_step"] = global_step
    metrics["train_seconds_total"] = prior["seconds"] + seconds
    return metrics


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


def _publish(tmp: Path, out: Path) -> None:
    """Move the final files up from ``tmp``, config.json last (what makes the folder loadable), then
    drop the marker."""
    names = sorted(p.name for p in tmp.iterdir())
    for name in [n for n in names if n != "config.json"] + [n for n in names if n == "config.json"]:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp / name, target)
    tmp.rmdir()
    (out / INCOMPLETE_MARKER).unlink(missing_ok=True)


def run(model_args, data_args, training_args) -> dict:
    set_seed(training_args.seed)
    overwrite = bool(getattr(data_args, "overwrite_output_dir", False))
    _check_output_dir(training_args, overwrite)
    resume = _resume_path(training_args)
    hub_repo_id = _hub_push_request(training_args)  # checked before any data or training
    task = get_task(data_args.task)
    raw = load_raw_datasets(data_args, task.synthetic)
    setup = task.setup(model_args, data_args, training_args, raw)
    dataset = dataset_label(data_args)
    trainer = setup.trainer
    main_process = trainer.is_world_process_zero()
    out = Path(training_args.output_dir)
    if main_process:
        _prepare_output_dir(training_args, overwrite)
        total = (
            training_args.per_device_train_batch_size
            * training_args.world_size
            * training_args.gradient_accumulation_steps
        )
        print(
            f"hf-relpos: task {data_args.task}, model {type(trainer.model).__name__} "
            f"({getattr(trainer.model.config, 'relative_position', '?')}), processes: {training_args.world_size}, "
            f"total train batch size: {total}",
            flush=True,
        )

    prior = _prior_totals(resume)
    if hasattr(trainer, "prior_totals"):
        trainer.prior_totals = prior
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - start
    train_metrics = whole_run_metrics(train_result.metrics, prior, trainer.state.global_step, train_seconds)
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    metrics = setup.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)

    tmp = out / FINAL_TMP
    trainer.save_model(str(tmp))  # weights, config with auto_map, modeling code, tokenizer (every process calls it)
    result = {
        "task": data_args.task,
        "relative_position": getattr(trainer.model.config, "relative_position", None),
        "absolute_position": getattr(trainer.model.config, "absolute_position", None),
        "dataset": dataset,
        "data_files": data_files(data_args) or None,
        "hub_dataset": hub_dataset(data_args),
        "main_metric": setup.main_metric,
        "eval": metrics,
        "train": train_metrics,
        "train_seconds": train_seconds,
        "output_dir": str(out),
    }
    if main_process:
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
        finalize_tokenizer_files(tmp, trained_length=card_fields["max_seq_length"], config=trainer.model.config)
        add_pipelines(tmp, setup.pipeline_parameters)  # question-answering / summarization pipelines as remote code
        if setup.extra_files is not None:
            setup.extra_files(tmp)
        (tmp / "metrics.json").write_text(json.dumps({**result, **card_fields}, indent=2, default=str))
        card = build_model_card(
            task.name,
            trainer.model.config,
            metrics,
            training_args,
            dataset,
            repo_id=hub_repo_id or training_args.hub_model_id or str(out),
            example_input=card_fields["example_input"],
            example_question=card_fields["example_question"],
            version_2=card_fields["version_2_with_negative"],
            max_seq_length=card_fields["max_seq_length"],
            pipeline_tag=task.pipeline_tag,
            auto_class=task.auto_class_name,
            data_files=result["data_files"],
            hub_dataset=result["hub_dataset"],
        )
        card.save(tmp / "README.md")
        _publish(tmp, out)
        if hub_repo_id:
            try:
                result["hub"] = push_to_hub(
                    out,
                    hub_repo_id,
                    private=training_args.hub_private_repo,
                    revision=training_args.hub_revision,
                    token=training_args.hub_token,
                    commit_message=f"hf-relpos train: {data_args.task}, {result['relative_position']}",
                )
            except ValueError as err:
                raise ValueError(
                    f"{err} (the trained model is complete in {str(out)!r}: push it later with "
                    f"`hf-relpos push {out} --repo-id {hub_repo_id}`)"
                ) from err
            print(f"hf-relpos: pushed {out} to {result['hub']['repo_id']} ({result['hub']['commit_url']})", flush=True)
    return result
