"""Model cards: huggingface_hub `ModelCard.from_template` over the task templates in model_cards/,
with model-index metadata (`ModelCardData`, `EvalResult`) holding the evaluation results."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATES = Path(__file__).resolve().parents[2] / "model_cards"
if not TEMPLATES.is_dir():  # installed wheel: the templates ship as package data
    TEMPLATES = Path(__file__).resolve().parent / "model_cards"

SCHEME_DESCRIPTIONS = {
    "none": "No relative term: position information comes only from the absolute embeddings, if any.",
    "sinusoidal": "A fixed sinusoidal table of the clipped distance i − j is dotted with each query (the classic "
                  "relative formulation of Vaswani-style sinusoids). Nothing is learned.",
    "shaw": "Learned embeddings of the clipped distance j − i are added on the key side (and optionally the value "
            "side) of every attention layer (Shaw et al. 2018, Self-Attention with Relative Position Representations).",
    "shaw_kq": "Learned distance embeddings interact with both queries and keys (Huang et al. 2020, Improve "
               "Transformer Models with Better Relative Position Embeddings), as transformers 4.x relative_key_query.",
    "t5": "A learned scalar bias per head for log-spaced buckets of j − i, shared by all layers (Raffel et al. 2020, "
          "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer).",
    "alibi": "A fixed linear penalty −m·|i − j| with geometric head slopes, no learned parameters (Press et al. 2022, "
             "Train Short, Test Long).",
    "rotary": "Queries and keys are rotated by angles proportional to their positions, so their dot product depends "
              "on the distance only (Su et al. 2021, RoFormer).",
    "xl": "Projected sinusoids of i − j with global content and position biases u, v (Dai et al. 2019, "
          "Transformer-XL).",
    "deberta": "Disentangled content-to-position and position-to-content terms over log buckets of the distance "
               "(He et al. 2021, DeBERTa).",
    "fire": "A learned MLP of a log-transformed, length-normalised distance (Li et al. 2023, Functional "
            "Interpolation for Relative Positions Improves Long Context Transformers).",
    "kerple": "A learned logarithmic kernel −r1·log(1 + r2·|i − j|) per head (Chi et al. 2022, KERPLE).",
}

TASK_INFO = {
    "classification": ("text-classification", "AutoModelForSequenceClassification"),
    "qa": ("question-answering", "AutoModelForQuestionAnswering"),
    "summarization": ("summarization", "AutoModelForSeq2SeqLM"),
}

TRAINING_FIELDS = ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs",
                   "max_steps", "warmup_steps", "weight_decay", "lr_scheduler_type", "seed", "gradient_accumulation_steps")


def _table(rows):
    lines = ["| name | value |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def build_model_card(task, config, metrics, training_args, dataset, repo_id=None, limitations=None, example_input="",
                     example_question="") -> ModelCard:
    """A ModelCard for a fine-tuned checkpoint. ``metrics`` are the final eval metrics (eval_ prefix)."""
    pipeline_tag, _ = TASK_INFO[task]
    scheme = getattr(config, "relative_position", "none")
    decoder_scheme = getattr(config, "decoder_relative_position", None) or scheme
    repo_id = repo_id or "path/to/this/folder"
    model_name = Path(repo_id).name or "model"
    results = {k.removeprefix("eval_"): v for k, v in metrics.items()
               if isinstance(v, (int, float)) and k.removeprefix("eval_") not in ("runtime", "samples_per_second",
                                                                                 "steps_per_second", "epoch")}
    eval_results = [
        EvalResult(task_type=pipeline_tag, dataset_type=dataset, dataset_name=dataset, metric_type=name,
                   metric_name=name, metric_value=float(value))
        for name, value in results.items()
    ]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["hf_relpos", "relative-position", scheme, "custom_code", config.model_type],
        datasets=[dataset],
        model_name=model_name,
        eval_results=eval_results or None,
        license="apache-2.0",
    )
    training_rows = [(f, getattr(training_args, f)) for f in TRAINING_FIELDS if hasattr(training_args, f)]
    template = TEMPLATES / f"{task}.md"
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        dataset=dataset,
        scheme=scheme,
        decoder_scheme=decoder_scheme,
        absolute=getattr(config, "absolute_position", "none"),
        scheme_description=SCHEME_DESCRIPTIONS.get(scheme, ""),
        results_table=_table([(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in results.items()]),
        training_table=_table(training_rows),
        version_2=bool(getattr(training_args, "version_2_with_negative", False)),
        example_input=example_input.replace('"', "'")[:300],
        example_question=example_question.replace('"', "'"),
        limitations=limitations or (
            "Trained from the data named above only; quality outside that domain is unknown. Tiny models trained "
            "from scratch on synthetic data are demonstrations, not useful models."
        ),
    )
