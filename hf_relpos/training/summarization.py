"""Summarization (document → summary) with relpos_t5, or BERT2BERT warm-started from a relpos_bert encoder
checkpoint (:func:`warm_start_bert2bert`), Seq2SeqTrainer and predict_with_generate;
ROUGE-1/2/L/Lsum F-measures from rouge_score (what `evaluate`'s rouge module wraps), next to the lead
baseline (the document's first ``lead_words`` words as the summary: ``eval_baseline_rouge*``), and
``eval_other_source_loss`` (does the model read its source at all? see :func:`other_source_loss`)."""

from __future__ import annotations

import numpy as np
from rouge_score import rouge_scorer, scoring
from transformers import DataCollatorForSeq2Seq

from ..configuration_relpos_bert import RelPosBertConfig, RelPosBertEncoderDecoderConfig
from ..modeling_relpos_bert import RelPosBertEncoderDecoderModel
from .data import check_text_columns, require_columns, tokenize
from .modeling import build_config, load_model, load_tokenizer
from .task import TaskSetup
from .trainer import RelPosSeq2SeqTrainer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge(predictions, references) -> dict:
    """Mean ROUGE F-measure × 100; rougeLsum splits summaries into lines (sentences on newlines)."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    aggregator = scoring.BootstrapAggregator()
    for prediction, reference in zip(predictions, references):
        aggregator.add_scores(scorer.score(reference, prediction))
    result = aggregator.aggregate()
    return {key: 100.0 * result[key].mid.fmeasure for key in ROUGE_TYPES}


def lead(document: str, words: int) -> str:
    """The lead baseline's summary: the first ``words`` whitespace-separated words of ``document``."""
    return " ".join(document.split()[:words])


def other_source_loss(trainer, evals) -> dict:
    """``eval_other_source_loss``: the validation loss with every summary paired with the NEXT document's
    source (sources rotated by one). A model that reads its input scores clearly worse here than on
    ``eval_loss``; one whose two losses are equal writes the same text whatever the document — the symptom
    of a decoder that learned the summaries' language but not to use the encoder."""
    if len(evals) < 2:
        return {}
    rotated = evals.remove_columns(["input_ids", "attention_mask"])
    for column in ("input_ids", "attention_mask"):
        values = evals[column]
        rotated = rotated.add_column(column, values[1:] + values[:1])
    output = trainer.evaluation_loop(
        trainer.get_eval_dataloader(rotated),
        description="Other source",
        prediction_loss_only=True,
        metric_key_prefix="eval_other_source",
    )
    return {"eval_other_source_loss": output.metrics["eval_other_source_loss"]}


def warm_start_bert2bert(model_args, config, tokenizer):
    """BERT2BERT (Rothe, Narayan and Severyn, TACL 2020) from the relpos_bert encoder checkpoint that
    ``model_name_or_path`` names: encoder and decoder both start from its weights (the decoder causal, with each
    scheme's causal form, and fresh cross-attention), as a :class:`RelPosBertEncoderDecoderModel`. The
    summary starts after ``[CLS]`` (the decoder start) and ends with ``[SEP]`` (end of sequence)."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise ValueError(
            f"model_name_or_path={model_args.model_name_or_path!r}: a BERT2BERT warm start needs a tokenizer with "
            "[CLS] (or bos), [SEP] (or eos) and [PAD] tokens"
        )
    path = model_args.model_name_or_path
    model = RelPosBertEncoderDecoderModel.from_encoder_decoder_pretrained(
        path,
        path,
        encoder_config=config.__class__.from_dict(config.to_dict()),
        decoder_config=config.__class__.from_dict(
            {**config.to_dict(), "is_decoder": True, "add_cross_attention": True}
        ),
        decoder_start_token_id=start,
        pad_token_id=tokenizer.pad_token_id,
    )
    for name, value in (("decoder_start_token_id", start), ("bos_token_id", start), ("eos_token_id", end)):
        setattr(model.generation_config, name, value)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = end
    model.train()
    return model


def setup(task, model_args, data_args, training_args, raw) -> TaskSetup:
    text_column = task.column(data_args, "text_column")
    summary_column = task.column(data_args, "summary_column")
    if data_args.lead_words < 1:
        raise ValueError(f"lead_words={data_args.lead_words} is not valid; choose a number of words ≥ 1")
    beams = data_args.num_beams if data_args.num_beams is not None else training_args.generation_num_beams
    if data_args.length_penalty is not None and (beams or 1) <= 1:  # generate() would refuse it at save time
        raise ValueError(
            f"length_penalty={data_args.length_penalty} needs beam search; num_beams={beams}: set "
            "num_beams to 2 or more, or leave length_penalty unset"
        )
    if data_args.no_repeat_ngram_size is not None and data_args.no_repeat_ngram_size < 1:
        raise ValueError(
            f"no_repeat_ngram_size={data_args.no_repeat_ngram_size} is not valid; choose an n-gram size ≥ 1"
        )
    for split in ("train", "validation"):
        require_columns(raw[split], {"text_column": text_column, "summary_column": summary_column}, split)
        check_text_columns(raw[split], {"text_column": text_column, "summary_column": summary_column}, split, data_args)

    texts = list(raw["train"][text_column]) + list(raw["train"][summary_column])
    tokenizer = load_tokenizer(model_args, texts, task.seq2seq)
    config = build_config(model_args, tokenizer, task.seq2seq, max_length=task.max_length(data_args))
    # a relpos_bert (encoder) checkpoint: warm-start both halves from it; a saved BERT2BERT: go on training it
    bert2bert = isinstance(config, (RelPosBertConfig, RelPosBertEncoderDecoderConfig))
    if isinstance(config, RelPosBertConfig):
        model = warm_start_bert2bert(model_args, config, tokenizer)
    else:
        model = load_model(task.auto_class, model_args, config)

    def preprocess(batch):
        inputs = [data_args.source_prefix + doc for doc in batch[text_column]]
        enc = tokenizer(inputs, max_length=data_args.max_source_length, truncation=True)
        labels = tokenizer(text_target=batch[summary_column], max_length=data_args.max_target_length, truncation=True)
        enc["labels"] = labels["input_ids"]
        if bert2bert:  # the decoder starts from [CLS] (decoder_start_token_id): the labels are "summary [SEP]"
            enc["labels"] = [ids[1:] for ids in enc["labels"]]
            enc.pop("token_type_ids", None)  # the encoder's are all 0; other_source_loss rotates the inputs only
        return enc

    with training_args.main_process_first(desc="tokenizing"):
        train, evals = (tokenize(raw[split], preprocess, data_args) for split in ("train", "validation"))

    references = [r.strip() for r in raw["validation"][summary_column]]

    def compute_metrics(prediction):
        preds = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
        decoded_preds = [p.strip() for p in tokenizer.batch_decode(preds, skip_special_tokens=True)]
        if len(decoded_preds) == len(references):  # the full validation split, in order: score against the
            decoded_labels = references  # raw summaries, as the baseline is (not their truncated tokenization)
        else:
            labels = np.where(prediction.label_ids != -100, prediction.label_ids, tokenizer.pad_token_id)
            decoded_labels = [r.strip() for r in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        scores = rouge(decoded_preds, decoded_labels)
        scores["gen_len"] = float(np.mean([np.count_nonzero(p != tokenizer.pad_token_id) for p in preds]))
        return scores

    if training_args.generation_max_length is None:
        training_args.generation_max_length = data_args.max_target_length
    training_args.generation_num_beams = beams
    # the evaluated generation settings go on the model: saved in generation_config.json, generate()'s defaults
    for name, value in (
        ("num_beams", beams if (beams or 1) > 1 else None),
        ("max_length", training_args.generation_max_length),
        ("no_repeat_ngram_size", data_args.no_repeat_ngram_size),
        ("length_penalty", data_args.length_penalty),
    ):
        if value is not None:
            setattr(model.generation_config, name, value)
    baseline = rouge([lead(doc, data_args.lead_words) for doc in raw["validation"][text_column]], references)
    trainer = RelPosSeq2SeqTrainer(
        position_learning_rate=model_args.relative_position_learning_rate,
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=compute_metrics if training_args.predict_with_generate else None,
    )

    def final_evaluate():
        metrics = trainer.evaluate()
        metrics.update(other_source_loss(trainer, evals))
        if training_args.predict_with_generate:
            metrics.update({f"eval_baseline_{k}": v for k, v in baseline.items()})
        return metrics

    return TaskSetup(
        trainer=trainer,
        evaluate=final_evaluate,
        main_metric="rougeL",
        text_column=text_column,
        pipeline_parameters={
            "source_prefix": data_args.source_prefix,  # predict / pipeline: the evaluated inputs
            "max_source_length": data_args.max_source_length,
        },
    )
