"""Model cards: huggingface_hub `ModelCard.from_template` over the templates in model_cards/ (one per
task, plus base.md for a checkpoint without task results), with model-index metadata (`ModelCardData`,
`EvalResult`) holding the evaluation results."""

from __future__ import annotations

import enum
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .relative_positions import SCHEMES

# the templates live at the top of the repository (model_cards/) and ship in the wheel as the
# package data `hf_relpos/model_cards/` (see pyproject.toml)
TEMPLATES = Path(__file__).resolve().parents[1] / "model_cards"
if not TEMPLATES.is_dir():  # installed wheel
    TEMPLATES = Path(__file__).resolve().parent / "model_cards"


def scheme_description(scheme: str) -> str:
    """The scheme class's two-sentence summary, then its paper as a link (from the scheme registry)."""
    cls = SCHEMES.get(scheme)
    text = getattr(cls, "summary", None) or f"Relative position scheme `{scheme}`."
    paper, url = getattr(cls, "paper", None), getattr(cls, "paper_url", None)
    if paper and url:
        return f"{text} Paper: [{paper}]({url})."
    return f"{text} Paper: {paper}." if paper else text


def task_template(task: str) -> Path:
    """model_cards/<task>.md, or a ValueError naming the task and the templates there are."""
    path = TEMPLATES / f"{task}.md"
    if not path.is_file():
        names = sorted(p.stem for p in TEMPLATES.glob("*.md") if p.stem != "base")
        raise ValueError(
            f"task={task!r} has no model card template {path.name} in {TEMPLATES}; "
            f"templates exist for: {', '.join(names)}"
        )
    return path


# architecture suffix -> (Auto class, Hub pipeline tag, transformers pipeline usable in 5.x or None)
HEADS = (
    ("ForSequenceClassification", "AutoModelForSequenceClassification", "text-classification", "text-classification"),
    ("ForTokenClassification", "AutoModelForTokenClassification", "token-classification", "token-classification"),
    ("ForQuestionAnswering", "AutoModelForQuestionAnswering", "question-answering", None),
    ("ForMaskedLM", "AutoModelForMaskedLM", "fill-mask", "fill-mask"),
    ("ForMultipleChoice", "AutoModelForMultipleChoice", "multiple-choice", None),
    ("ForConditionalGeneration", "AutoModelForSeq2SeqLM", "text2text-generation", None),
    ("EncoderModel", "AutoModelForTextEncoding", "feature-extraction", "feature-extraction"),
    ("Model", "AutoModel", "feature-extraction", "feature-extraction"),
)

TRAINING_FIELDS = (
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "num_train_epochs",
    "max_steps",
    "warmup_steps",
    "weight_decay",
    "lr_scheduler_type",
    "seed",
    "gradient_accumulation_steps",
)


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


def training_args_dict(training_args) -> dict:
    """The card's training arguments, as plain values (from TrainingArguments or a dict)."""
    if training_args is None:
        return {}
    get = training_args.get if isinstance(training_args, dict) else (lambda f: getattr(training_args, f, None))
    return {f: _plain(get(f)) for f in TRAINING_FIELDS if get(f) is not None}


def _table(rows):
    lines = ["| name | value |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def results_table(results: dict, comparison: list[dict] | None = None) -> str:
    """The card's results: ``name | this model | baseline`` when the run scored a model-free baseline
    (``baseline_<name>`` keys), else ``name | value``; then, after a checkpoint comparison (`hf-relpos compare
    --models`), one row per compared model with the metrics they share."""
    baselines = {k.removeprefix("baseline_"): v for k, v in results.items() if k.startswith("baseline_")}
    own = {k: v for k, v in results.items() if not k.startswith("baseline_")}
    if baselines:
        lines = ["| name | this model | baseline |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v)} | {_fmt(baselines[k]) if k in baselines else ''} |" for k, v in own.items()]
        text = "\n".join(lines)
    else:
        text = _table([(k, _fmt(v)) for k, v in own.items()])
    if comparison:
        names = [k for k in comparison[0]["metrics"] if all(k in row["metrics"] for row in comparison)]
        lines = ["| model | " + " | ".join(names) + " | train s |", "|---" * (len(names) + 2) + "|"]
        lines += [
            f"| {row['label']} | "
            + " | ".join(_fmt(row["metrics"][k]) for k in names)
            + f" | {row['train_seconds']:.0f} |"
            for row in comparison
        ]
        text += (
            "\n\nThe same recipe run from each of these checkpoints (`hf-relpos compare --models`; validation "
            "split):\n\n" + "\n".join(lines)
        )
    return text


LOCAL_SUFFIXES = (".json", ".jsonl", ".csv", ".txt", ".tsv", ".parquet", ".arrow")


def _file_label(paths) -> str:
    """Local data files as the card names them: "local file `folder/name`" (several comma-separated: "local
    files `a`, `b`"), or "" for none."""
    names = [p.strip() for p in (paths or "").split(",") if p.strip()] if isinstance(paths, str) else list(paths or [])
    shown = list(dict.fromkeys("/".join(Path(p).parts[-2:]) for p in names))
    if not shown:
        return ""
    return ("local file " if len(shown) == 1 else "local files ") + ", ".join(f"`{s}`" for s in shown)


def data_sources(dataset=None, data_files=None, hub_dataset=None) -> dict:
    """What the model was trained on and what it was evaluated on, named apart, and the Hub dataset ids among
    them (the only thing a card's ``datasets`` metadata may hold): ``{"training", "evaluation", "hub_ids"}``.

    ``data_files`` (split → local file(s), as in metrics.json) wins; else ``hub_dataset`` (``name`` or
    ``(name, config)``); else ``dataset``, the label of metrics.json (``synthetic``, a Hub name, or the
    files of a run that predates ``data_files``)."""
    if data_files:
        train, evaluation = _file_label(data_files.get("train")), _file_label(data_files.get("validation"))
        return {"training": train or "unknown data", "evaluation": evaluation or "unknown data", "hub_ids": []}
    if dataset == "synthetic" and not hub_dataset:
        return {
            "training": "the train split of hf_relpos' built-in synthetic task",
            "evaluation": "the validation split of hf_relpos' built-in synthetic task",
            "hub_ids": [],
        }
    if isinstance(hub_dataset, (list, tuple)):
        name, config = (list(hub_dataset) + [None])[:2]
    else:
        name, config = hub_dataset, None
    if not name:
        if not dataset or dataset == "unknown":
            return {"training": "unknown data", "evaluation": "unknown data", "hub_ids": []}
        if "," in dataset or dataset.lower().endswith(LOCAL_SUFFIXES):  # files, from a run without data_files
            return {"training": f"local files {dataset}", "evaluation": f"local files {dataset}", "hub_ids": []}
        name = dataset
    shown = f"`{name}`" + (f" (config `{config}`)" if config else "")
    return {
        "training": f"the train split of the Hub dataset {shown}",
        "evaluation": f"the validation split (the test split where it has none) of the Hub dataset {shown}",
        "hub_ids": [name],
        "hub_config": config,
    }


def data_section(sources: dict) -> str:
    return f"- Training data: {sources['training']}\n- Evaluation data: {sources['evaluation']}"


def _get(config, name, default=None):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def default_limitations(config, dataset=None, max_seq_length=None, sources=None) -> str:
    """What a user of this checkpoint should know, as a bullet list. ``sources``: `data_sources`' answer
    (else derived from ``dataset``)."""
    bullets = [
        "Loading runs the Python files in this repository (`trust_remote_code=True`); they import only torch and "
        "transformers. Read them before trusting a copy you did not make. Tested with transformers 5.24 and 5.25.",
    ]
    absolute = _get(config, "absolute_position", "none")
    max_pos = _get(config, "max_position_embeddings")
    if absolute == "learned":
        bullets.append(f"Learned absolute embeddings limit inputs to max_position_embeddings = {max_pos} tokens.")
    else:
        seen = f" ({max_seq_length} tokens here)" if max_seq_length else ""
        bullets.append(
            "Without learned absolute embeddings, inputs longer than max_position_embeddings run, but quality "
            f"beyond the training length{seen} was not measured."
        )
    if _get(config, "relative_value"):
        bullets.append(
            "The value-side relative term needs the attention probabilities, so those layers run eager "
            "attention (slower, more memory) whatever `attn_implementation` asks."
        )
    if sources is None and dataset:
        sources = data_sources(dataset)
    if dataset == "synthetic" and not (sources and sources["hub_ids"]):
        bullets.append(
            "Trained from scratch on hf_relpos' built-in synthetic task: a demonstration of the pipeline, "
            "not a useful model."
        )
    elif sources:
        bullets.append(
            f"Trained on {sources['training']} only (evaluated on {sources['evaluation']}); quality "
            "outside that data's domain and language is unknown, and its biases carry over."
        )
    return "\n".join(f"- {b}" for b in bullets)


def build_model_card(
    task,
    config,
    metrics,
    training_args,
    dataset,
    repo_id=None,
    limitations=None,
    example_input="",
    example_question="",
    version_2=None,
    max_seq_length=None,
    pipeline_tag=None,
    auto_class=None,
    comparison=None,
    data_files=None,
    hub_dataset=None,
) -> ModelCard:
    """A ModelCard for a fine-tuned checkpoint from the template model_cards/<task>.md. ``metrics`` are the
    final eval metrics (eval_ prefix); ``config`` and ``training_args`` may be objects or dicts (e.g. read
    back from config.json / metrics.json). ``pipeline_tag`` and ``auto_class`` (the task's, from the
    recipe task registry) default to what the checkpoint's architecture says. ``data_files`` (split → local
    files) and ``hub_dataset`` (a Hub name, or (name, config)) say what the training and evaluation data were
    (`data_sources`): the card names them apart, and its ``datasets`` metadata holds Hub ids only."""
    template = task_template(task)
    head_class, head_tag, _ = head_of(config)
    pipeline_tag, auto_class = pipeline_tag or head_tag, auto_class or head_class
    scheme = _get(config, "relative_position", "none")
    decoder_scheme = _get(config, "decoder_relative_position") or scheme
    repo_id = repo_id or "path/to/this/folder"
    model_name = Path(repo_id).name or "model"
    results = {
        k.removeprefix("eval_"): v
        for k, v in metrics.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k.removeprefix("eval_") not in ("runtime", "samples_per_second", "steps_per_second", "epoch")
    }
    sources = data_sources(dataset, data_files, hub_dataset)
    eval_type = sources["hub_ids"][0] if sources["hub_ids"] else ("synthetic" if dataset == "synthetic" else "local")
    eval_results = [  # the model's own scores; a model-free baseline is not a result of this model
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=eval_type,
            dataset_name=sources["evaluation"].replace("`", ""),
            dataset_config=sources.get("hub_config"),
            metric_type=name,
            metric_name=name,
            metric_value=float(value),
        )
        for name, value in results.items()
        if not name.startswith("baseline_")
    ]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["hf_relpos", "relative-position", scheme, "custom_code", _get(config, "model_type", "relpos")],
        datasets=sources["hub_ids"] or None,  # Hub ids only: local files and the synthetic task are named in the text
        model_name=model_name,
        eval_results=eval_results or None,
        license="apache-2.0",
    )
    if version_2 is None:
        version_2 = bool(getattr(training_args, "version_2_with_negative", False))
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        auto_class=auto_class,
        dataset=dataset,
        training_data=sources["training"],
        evaluation_data=sources["evaluation"],
        data_section=data_section(sources),
        scheme=scheme,
        decoder_scheme=decoder_scheme,
        absolute=_get(config, "absolute_position", "none"),
        scheme_description=scheme_description(scheme),
        results_table=results_table(results, comparison),
        training_table=_table(list(training_args_dict(training_args).items())),
        version_2=bool(version_2),
        example_input=example_input.replace('"', "'").replace("\n", " ")[:300],
        example_question=example_question.replace('"', "'").replace("\n", " "),
        limitations=limitations or default_limitations(config, dataset, max_seq_length, sources),
    )


def card_from_metrics(config, metrics: dict, repo_id: str) -> ModelCard | None:
    """The task card of a run folder rendered again from its config and metrics.json (what `hf-relpos train`
    wrote), e.g. under another repo id or with a comparison added; None when metrics.json names no task
    with a template."""
    task = metrics.get("task")
    if not (isinstance(task, str) and (TEMPLATES / f"{task}.md").is_file() and isinstance(metrics.get("eval"), dict)):
        return None
    return build_model_card(
        task,
        config,
        metrics["eval"],
        metrics.get("training_args") or {},
        metrics.get("dataset") or "unknown",
        repo_id=repo_id,
        example_input=str(metrics.get("example_input", "")),
        example_question=str(metrics.get("example_question", "")),
        version_2=metrics.get("version_2_with_negative", False),
        max_seq_length=metrics.get("max_seq_length"),
        pipeline_tag=metrics.get("pipeline_tag"),
        auto_class=metrics.get("auto_class"),
        comparison=metrics.get("comparison"),
        data_files=metrics.get("data_files"),
        hub_dataset=metrics.get("hub_dataset"),
    )


def head_of(config) -> tuple[str, str, str | None]:
    """(Auto class, Hub pipeline tag, transformers pipeline or None) of the checkpoint's architecture."""
    architectures = _get(config, "architectures") or []
    arch = architectures[0] if architectures else ""
    for suffix, auto_class, tag, pipe in HEADS:
        if arch.endswith(suffix):
            return auto_class, tag, pipe
    if _get(config, "model_type") == "relpos_t5":
        return "AutoModelForSeq2SeqLM", "text2text-generation", None
    return "AutoModel", "feature-extraction", "feature-extraction"


def usage_code(config, repo_id, has_tokenizer=True) -> str:
    """A runnable Python snippet that loads ``repo_id`` with the right Auto class and uses it."""
    auto_class, _, pipe = head_of(config)
    tok = (
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)'
        if has_tokenizer
        else 'tokenizer = AutoTokenizer.from_pretrained("<the tokenizer this model was trained with>")'
    )
    lines = [
        f"from transformers import {auto_class}, AutoTokenizer" + (", pipeline" if pipe else ""),
        "",
        f'model = {auto_class}.from_pretrained("{repo_id}", trust_remote_code=True)',
        tok,
    ]
    if pipe == "fill-mask":
        lines += [
            'fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)',
            'print(fill(f"relative positions help {tokenizer.mask_token} models"))',
        ]
    elif pipe == "feature-extraction":
        lines += [
            'extract = pipeline("feature-extraction", model=model, tokenizer=tokenizer)',
            'features = extract("relative positions help models")  # [1][tokens][hidden]',
            "print(len(features[0]), len(features[0][0]))",
        ]
    elif pipe:
        lines += [
            f'run = pipeline("{pipe}", model=model, tokenizer=tokenizer)',
            'print(run("relative positions help models"))',
        ]
    elif auto_class == "AutoModelForSeq2SeqLM":
        lines += [
            'inputs = tokenizer(["relative positions help models"], return_tensors="pt")',
            "out = model.generate(**inputs, max_new_tokens=20)",
            "print(tokenizer.batch_decode(out, skip_special_tokens=True))",
        ]
    else:
        lines += ['inputs = tokenizer("relative positions help models", return_tensors="pt")', "print(model(**inputs))"]
    return "\n".join(lines)


def build_base_card(
    config,
    repo_id=None,
    has_tokenizer=True,
    dataset=None,
    training_args=None,
    limitations=None,
    data_files=None,
    hub_dataset=None,
) -> ModelCard:
    """A ModelCard for a checkpoint without task results (a converted or freshly built base model); its
    ``datasets`` metadata holds Hub ids only (`data_sources`)."""
    sources = data_sources(dataset, data_files, hub_dataset) if (dataset or data_files or hub_dataset) else None
    repo_id = repo_id or "path/to/this/folder"
    model_name = Path(repo_id).name or "model"
    auto_class, tag, _ = head_of(config)
    scheme = _get(config, "relative_position", "none")
    model_type = _get(config, "model_type", "relpos")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=tag,
        tags=["hf_relpos", "relative-position", scheme, "custom_code", model_type],
        datasets=(sources and sources["hub_ids"]) or None,
        model_name=model_name,
        license="apache-2.0",
    )
    rows = list(training_args_dict(training_args).items())
    size_keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "d_model",
        "num_layers",
        "num_decoder_layers",
        "num_heads",
        "vocab_size",
        "max_position_embeddings",
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "base.md"),
        model_name=model_name,
        repo_id=repo_id,
        model_type=model_type,
        auto_class=auto_class,
        scheme=scheme,
        decoder_scheme=_get(config, "decoder_relative_position") or scheme,
        absolute=_get(config, "absolute_position", "none"),
        scheme_description=scheme_description(scheme),
        config_table=_table([(k, _get(config, k)) for k in size_keys if _get(config, k) is not None]),
        usage=usage_code(config, repo_id, has_tokenizer),
        training_table=_table(rows) if rows else "",
        data_section=data_section(sources) if sources else "",
        limitations=limitations or default_limitations(config, dataset, sources=sources),
    )
