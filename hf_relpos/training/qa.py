"""Extractive question answering, SQuAD v1.1 / v2 layout: long contexts split into windows with a
stride, offset mapping back to characters, the standard n-best post-processing (max answer length,
null answer for v2), exact match and F1 with SQuAD normalisation, next to a model-free baseline (the first
sentence of each context as the answer: ``eval_baseline_exact_match`` / ``eval_baseline_f1``). Optional
training augmentation: ``renamed_copies`` (see :func:`renamed_copies`)."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import evaluate
import numpy as np
from datasets import Dataset, concatenate_datasets
from transformers import default_data_collator

from ..pipelines_relpos import best_answers, qa_windows
from .data import check_text_columns, require_columns, tokenize
from .modeling import build_config, load_model, load_tokenizer
from .task import TaskSetup
from .trainer import RelPosTrainer

METRIC_DIR = Path(__file__).parent / "metrics" / "squad"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentence(context: str) -> str:
    """The baseline answer: the context's first sentence, i.e. the first piece of a paragraph (blank-line
    separated) that ends in . ! or ? (a heading or signature line without one is skipped); a context with
    none gives its first paragraph."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", context) if p.strip()]
    for paragraph in paragraphs:
        for sentence in _SENTENCE_END.split(paragraph):
            if sentence.endswith((".", "!", "?")):
                return sentence
    return paragraphs[0] if paragraphs else ""


_WORD = re.compile(r"\w+")
RENAME_MAX_QUESTION_SHARE = 0.005  # a word in at most this share of the training questions (and at least 3) is a name


def renamed_copies(dataset, copies: int, seed: int, question_column: str, context_column: str, answer_column: str):
    """``copies`` renamed versions of every training example, as one Dataset (same columns).

    *Names* are the words (``\\w+``) that occur in few training questions (at most ``RENAME_MAX_QUESTION_SHARE``
    of them, and at least 3): "fork" in "What does fork do?". An example whose question has a name that its
    context holds gets copies; each copy replaces every whole-word occurrence of every name of the example (the
    question's and the other entries' alike), in question, context and answers, by a distinct other name that
    occurs in neither. The answer is the same span of a text that reads the same, but the pair (name, answer
    text) is new, so memorising which sentence answers which name no longer fits the data: the model has to
    find the entry the question names. Renaming every name, not only the asked one, leaves no odd one out for a
    model that has memorised the original context. The idea is the entity anonymisation of Hermann et al.
    (2015, "Teaching Machines to Read and Comprehend"), with real names instead of placeholders so that
    evaluation text looks like training text. An example whose answer boundary falls inside a name gets no
    copies.
    """
    rows = list(dataset)
    question_words = [set(_WORD.findall(row[question_column])) for row in rows]
    counts = collections.Counter(word for words in question_words for word in words)
    limit = max(3, int(RENAME_MAX_QUESTION_SHARE * len(rows)))
    pool = sorted(word for word, count in counts.items() if count <= limit)
    is_name = set(pool).__contains__
    rng = np.random.default_rng(seed)
    out = []
    for row, q_words in zip(rows, question_words):
        context, question, answers = row[context_column], row[question_column], row[answer_column]
        context_words = set(_WORD.findall(context))
        if not any(is_name(w) and w in context_words for w in q_words):
            continue
        names = sorted({w for w in q_words | context_words if is_name(w)}, key=lambda w: (-len(w), w))
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
        matches = list(pattern.finditer(context))
        bounds = [
            b for start, text in zip(answers["answer_start"], answers["text"]) for b in (start, start + len(text))
        ]
        if any(m.start() < b < m.end() for m in matches for b in bounds):
            continue
        taken = context_words | q_words
        for copy in range(copies):
            mapping = {}
            for name in names:
                for _ in range(100):  # the pool is large; a few draws find a word that is in neither text
                    other = pool[int(rng.integers(len(pool)))]
                    if other not in taken and other not in mapping.values():
                        mapping[name] = other
                        break
            if len(mapping) < len(names):
                continue

            def shift(position, mapping=mapping):
                return position + sum(
                    len(mapping[m.group(1)]) - len(m.group(1)) for m in matches if m.end() <= position
                )

            rename = lambda text, mapping=mapping: pattern.sub(lambda m: mapping[m.group(1)], text)
            new_context = rename(context)
            starts = [shift(start) for start in answers["answer_start"]]
            texts = [
                new_context[new : shift(start + len(text))]
                for new, start, text in zip(starts, answers["answer_start"], answers["text"])
            ]
            out.append(
                {
                    **row,
                    "id": f"{row['id']}-renamed{copy}",
                    question_column: rename(question),
                    context_column: new_context,
                    answer_column: {**answers, "answer_start": starts, "text": texts},
                }
            )
    return Dataset.from_list(out, features=dataset.features)


def check_answers(dataset, data_args, split):
    """Every gold answer must be the context's text at answer_start (v1.1: and present)."""
    for row in dataset:
        answers = row[data_args.answer_column]
        texts, starts = answers.get("text", []), answers.get("answer_start", [])
        if not texts and not data_args.version_2_with_negative:
            raise ValueError(
                f"{split} example id={row.get('id')!r} has no answer; set version_2_with_negative=true for SQuAD v2 data"
            )
        context = row[data_args.context_column]
        for text, start in zip(texts, starts):
            if context[start : start + len(text)] != text:
                raise ValueError(
                    f"{split} example id={row.get('id')!r}: answer {text!r} is not found in the context at "
                    f"answer_start={start} (column {data_args.answer_column!r})"
                )


def postprocess_predictions(examples, features, start_logits, end_logits, data_args):
    """Answer string per example id from the features' logits: :func:`~hf_relpos.pipelines_relpos.best_answers`,
    the post-processing that ``hf-relpos predict`` and the checkpoint's question-answering pipeline run too."""
    by_example = collections.defaultdict(list)
    for i, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(i)
    predictions = {}
    for example in examples:
        windows = [
            (start_logits[fi], end_logits[fi], features[fi]["offset_mapping"]) for fi in by_example[example["id"]]
        ]
        best = best_answers(example[data_args.context_column], windows, **answer_settings(data_args))[0]
        predictions[example["id"]] = best["answer"]
    return predictions


def answer_settings(data_args) -> dict:
    """The recipe's post-processing fields as :func:`best_answers` keywords."""
    return {
        "n_best_size": data_args.n_best_size,
        "max_answer_length": data_args.max_answer_length,
        "version_2_with_negative": bool(data_args.version_2_with_negative),
        "null_score_diff_threshold": data_args.null_score_diff_threshold,
    }


def pipeline_parameters(data_args) -> dict:
    """What a QA checkpoint keeps in ``custom_pipelines["question-answering"]["parameters"]``: the windows and
    post-processing of its evaluation, the defaults of ``hf-relpos predict`` and of its pipeline."""
    return {
        "max_seq_len": data_args.max_seq_length,
        "doc_stride": data_args.doc_stride,
        "max_answer_len": data_args.max_answer_length,
        "n_best_size": data_args.n_best_size,
        "handle_impossible_answer": bool(data_args.version_2_with_negative),
        "null_score_diff_threshold": data_args.null_score_diff_threshold,
    }


def setup(task, model_args, data_args, training_args, raw) -> TaskSetup:
    columns = {
        "question_column": data_args.question_column,
        "context_column": data_args.context_column,
        "answer_column": data_args.answer_column,
    }
    for split in ("train", "validation"):
        require_columns(raw[split], {**columns, "id": "id"}, split)
        check_text_columns(
            raw[split],
            {"question_column": data_args.question_column, "context_column": data_args.context_column},
            split,
            data_args,
        )
        check_answers(raw[split], data_args, split)
    if data_args.renamed_copies:
        copies = renamed_copies(
            raw["train"],
            data_args.renamed_copies,
            training_args.seed,
            data_args.question_column,
            data_args.context_column,
            data_args.answer_column,
        )
        check_answers(copies, data_args, "train (renamed copies)")
        raw["train"] = concatenate_datasets([raw["train"], copies])

    texts = list(raw["train"][data_args.context_column]) + list(raw["train"][data_args.question_column])
    tokenizer = load_tokenizer(model_args, texts, task.seq2seq)
    if not tokenizer.is_fast:
        raise ValueError(
            f"tokenizer_name={model_args.tokenizer_name!r}: extractive QA needs a fast tokenizer (offset mapping)"
        )
    config = build_config(model_args, tokenizer, task.seq2seq, max_length=task.max_length(data_args))
    model = load_model(task.auto_class, model_args, config)
    pad_right = tokenizer.padding_side == "right"
    q_col, c_col, a_col = data_args.question_column, data_args.context_column, data_args.answer_column

    def encode(batch):
        questions = [q.lstrip() for q in batch[q_col]]
        return tokenizer(
            questions if pad_right else batch[c_col],
            batch[c_col] if pad_right else questions,
            truncation="only_second" if pad_right else "only_first",
            max_length=data_args.max_seq_length,
            stride=data_args.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )

    context_index = 1 if pad_right else 0

    def prepare_train(batch):
        enc = encode(batch)
        sample_map = enc.pop("overflow_to_sample_mapping")
        offsets_all = enc.pop("offset_mapping")
        enc["start_positions"], enc["end_positions"] = [], []
        for i, offsets in enumerate(offsets_all):
            cls_index = (
                enc["input_ids"][i].index(tokenizer.cls_token_id)
                if tokenizer.cls_token_id in enc["input_ids"][i]
                else 0
            )
            seq_ids = enc.sequence_ids(i)
            answers = batch[a_col][sample_map[i]]
            if not answers["answer_start"]:
                enc["start_positions"].append(cls_index)
                enc["end_positions"].append(cls_index)
                continue
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start = 0
            while seq_ids[token_start] != context_index:
                token_start += 1
            token_end = len(enc["input_ids"][i]) - 1
            while seq_ids[token_end] != context_index:
                token_end -= 1
            if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
                enc["start_positions"].append(cls_index)  # answer outside this window
                enc["end_positions"].append(cls_index)
                continue
            while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                token_start += 1
            enc["start_positions"].append(token_start - 1)
            while offsets[token_end][1] >= end_char:
                token_end -= 1
            enc["end_positions"].append(token_end + 1)
        return enc

    def prepare_eval(batch):  # the windows hf-relpos predict and the pipeline cut too
        enc = qa_windows(
            tokenizer,
            batch[q_col],
            batch[c_col],
            max_seq_len=data_args.max_seq_length,
            doc_stride=data_args.doc_stride,
            padding="max_length",
        )
        sample_map = enc.pop("overflow_to_sample_mapping")
        enc["example_id"] = [batch["id"][sample_map[i]] for i in range(len(enc["input_ids"]))]
        return enc

    with training_args.main_process_first(desc="tokenizing"):
        train = tokenize(raw["train"], prepare_train, data_args)
        eval_features = tokenize(raw["validation"], prepare_eval, data_args)
    eval_inputs = eval_features.remove_columns(["example_id", "offset_mapping"])
    metric = evaluate.load(str(METRIC_DIR))

    trainer = RelPosTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        position_learning_rate=model_args.relative_position_learning_rate,
    )

    def final_evaluate():
        output = trainer.predict(eval_inputs, metric_key_prefix="eval")
        start_logits, end_logits = output.predictions[:2]
        predictions = postprocess_predictions(raw["validation"], eval_features, start_logits, end_logits, data_args)
        references = [{"id": ex["id"], "answers": ex[a_col]} for ex in raw["validation"]]
        scores = metric.compute(
            predictions=[{"id": k, "prediction_text": v} for k, v in predictions.items()], references=references
        )
        baseline = metric.compute(
            predictions=[{"id": ex["id"], "prediction_text": first_sentence(ex[c_col])} for ex in raw["validation"]],
            references=references,
        )
        if trainer.is_world_process_zero():  # as HF run_qa: every answer, to read what the model gets wrong
            out = Path(training_args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "eval_predictions.json").write_text(
                json.dumps(
                    [
                        {
                            "id": ex["id"],
                            "question": ex[q_col],
                            "prediction": predictions[ex["id"]],
                            "answers": list(ex[a_col]["text"]),
                        }
                        for ex in raw["validation"]
                    ],
                    indent=1,
                    ensure_ascii=False,
                )
            )
        return {
            **{k: v for k, v in output.metrics.items() if k.startswith("eval_")},
            **{f"eval_{k}": v for k, v in scores.items()},
            **{f"eval_baseline_{k}": baseline[k] for k in ("exact_match", "f1")},
        }

    return TaskSetup(
        trainer=trainer,
        evaluate=final_evaluate,
        main_metric="f1",
        text_column=c_col,
        pipeline_parameters=pipeline_parameters(data_args),
    )
