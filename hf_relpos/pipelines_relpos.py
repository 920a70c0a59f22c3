"""Pipelines a relpos checkpoint carries as remote code, and the one extractive-QA post-processing.

transformers 5.24 and 5.25 have no ``question-answering``, ``summarization`` or ``text2text-generation``
pipelines. A saved relpos checkpoint names the classes below in ``config.json``'s ``custom_pipelines`` (the
transformers mechanism for pipelines that live in a model repository) and carries this file, so

    pipeline("question-answering", model=FOLDER, trust_remote_code=True)
    pipeline("summarization", model=FOLDER, trust_remote_code=True)

work in a process where hf_relpos is not installed. The file is flat remote code: it imports only the
standard library, numpy, torch and transformers (never hf_relpos).

:func:`best_answers` is THE post-processing of extractive QA: ``hf-relpos train``'s evaluation
(hf_relpos/training/qa.py), ``hf-relpos predict`` and the pipeline all call it, so an answer is the same
string on every path. Settings a training run used (window length, stride, answer length, no-answer
threshold) travel in ``custom_pipelines[task]["parameters"]`` and are the defaults of every path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import Pipeline

QA_DEFAULTS = {
    "max_seq_len": 384,  # tokens per window (question + context); the tokenizer's model_max_length when set
    "doc_stride": 128,  # overlap of consecutive windows of a long context, in tokens
    "max_answer_len": 30,  # longest answer, in tokens
    "n_best_size": 20,  # start / end candidates considered per window
    "handle_impossible_answer": False,  # SQuAD v2: an empty answer when the null score wins
    "null_score_diff_threshold": 0.0,  # ... by more than this
}


def best_answers(
    context,
    windows,
    *,
    n_best_size=20,
    max_answer_length=30,
    version_2_with_negative=False,
    null_score_diff_threshold=0.0,
    top_k=1,
):
    """The ``top_k`` best answers to one question about ``context`` (a list of dicts, best first).

    ``windows``: one ``(start_logits, end_logits, offsets)`` per window of the context; ``offsets[i]`` is the
    ``(char_start, char_end)`` of token i in ``context``, or None for a token that is not context (question,
    special, padding). Per window, the ``n_best_size`` context tokens with the highest start (end) logits are
    paired; a span ending before it starts or longer than ``max_answer_length`` tokens is skipped; a span's
    score is start logit + end logit. Only context tokens compete, so padding never changes an answer.
    The null score is the smallest CLS (token 0) start + end over the windows; with
    ``version_2_with_negative`` the answer is "" when ``null - best > null_score_diff_threshold``.

    Each answer: ``answer`` (text), ``start`` / ``end`` (character offsets, end exclusive), ``score``
    (softmax of the span scores over the candidates kept, the null one included under v2: run_qa's
    "probability"), ``logit`` (start + end logit). The same span from two windows is listed once.
    """
    candidates, min_null = [], None
    for starts, ends, offsets in windows:
        starts, ends = np.asarray(starts), np.asarray(ends)
        null = float(starts[0] + ends[0])
        if min_null is None or null < min_null:
            min_null = null
        context_tokens = np.array(
            [i for i, o in enumerate(offsets) if o is not None and i < len(starts)], dtype=np.int64
        )
        if not len(context_tokens):
            continue
        top_starts = context_tokens[np.argsort(starts[context_tokens], kind="stable")[::-1][:n_best_size]]
        top_ends = context_tokens[np.argsort(ends[context_tokens], kind="stable")[::-1][:n_best_size]]
        for s in top_starts:
            for e in top_ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                candidates.append((float(starts[s] + ends[e]), offsets[s][0], offsets[e][1]))
    candidates.sort(key=lambda c: -c[0])  # stable: ties keep window, start, end order
    seen, kept = set(), []
    for logit, start, end in candidates:
        if (start, end) not in seen:
            seen.add((start, end))
            kept.append((logit, start, end))
    no_answer = version_2_with_negative and (not kept or min_null - kept[0][0] > null_score_diff_threshold)
    logits = [c[0] for c in kept] + ([min_null] if version_2_with_negative and min_null is not None else [])
    top = max(logits) if logits else 0.0
    norm = sum(math.exp(x - top) for x in logits) or 1.0

    def prob(x):
        return math.exp(x - top) / norm

    answers = [
        {"answer": context[s:e], "start": int(s), "end": int(e), "score": prob(x), "logit": x} for x, s, e in kept
    ]
    if version_2_with_negative and min_null is not None:
        null_answer = {"answer": "", "start": 0, "end": 0, "score": prob(min_null), "logit": min_null}
        answers = [null_answer] + answers if no_answer else answers + [null_answer]
    if not answers:
        answers = [{"answer": "", "start": 0, "end": 0, "score": 0.0, "logit": float("-inf")}]
    return answers[:top_k]


def qa_windows(tokenizer, questions, contexts, *, max_seq_len, doc_stride, padding=False):
    """Tokenize question/context pairs into windows as the QA training recipe does (question first when the
    tokenizer pads on the right; long contexts split with ``doc_stride`` tokens of overlap). Returns the
    BatchEncoding with ``overflow_to_sample_mapping`` and ``offset_mapping`` whose non-context entries are
    None (what :func:`best_answers` reads)."""
    pad_right = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(
        questions if pad_right else contexts,
        contexts if pad_right else questions,
        truncation="only_second" if pad_right else "only_first",
        max_length=max_seq_len,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )
    context_index = 1 if pad_right else 0
    for i in range(len(enc["input_ids"])):
        seq_ids = enc.sequence_ids(i)
        enc["offset_mapping"][i] = [
            o if seq_ids[k] == context_index else None for k, o in enumerate(enc["offset_mapping"][i])
        ]
    return enc


def qa_parameters(config, tokenizer, **given):
    """The question-answering settings (keys of ``QA_DEFAULTS``): ``given`` (None: not given), else what the
    checkpoint's training saved in ``custom_pipelines["question-answering"]["parameters"]``, else defaults: the
    tokenizer's ``model_max_length`` (the trained length) for ``max_seq_len`` and a quarter of it (at most 128)
    for ``doc_stride``. The pipeline and ``hf-relpos predict`` both resolve them here."""
    entry = (getattr(config, "custom_pipelines", None) or {}).get("question-answering") or {}
    saved = {k: v for k, v in (entry.get("parameters") or {}).items() if k in QA_DEFAULTS}
    given = {k: v for k, v in given.items() if v is not None}
    unknown = set(given) - set(QA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown question-answering setting(s) {sorted(unknown)}; valid: {', '.join(QA_DEFAULTS)}")
    params = {**QA_DEFAULTS, **saved, **given}
    limit = getattr(tokenizer, "model_max_length", None)
    if "max_seq_len" not in saved and "max_seq_len" not in given and isinstance(limit, int) and 0 < limit < 10**6:
        params["max_seq_len"] = limit
    if "doc_stride" not in saved and "doc_stride" not in given:
        params["doc_stride"] = min(QA_DEFAULTS["doc_stride"], params["max_seq_len"] // 4)
    if params["doc_stride"] >= params["max_seq_len"]:
        raise ValueError(f"doc_stride={params['doc_stride']} must be smaller than max_seq_len={params['max_seq_len']}")
    return params


def seq2seq_parameters(config, tokenizer, task="summarization", **given):
    """``source_prefix`` (prepended to every input, as the training recipe's evaluation did) and
    ``max_source_length`` (input tokens; longer inputs are truncated): ``given`` (None: not given), else what the
    checkpoint's training saved in ``custom_pipelines[task]["parameters"]``, else "" and the tokenizer's
    ``model_max_length``. The pipelines and ``hf-relpos predict`` both resolve them here."""
    entry = (getattr(config, "custom_pipelines", None) or {}).get(task) or {}
    params = {"source_prefix": "", "max_source_length": None}
    params.update({k: v for k, v in (entry.get("parameters") or {}).items() if k in params and v is not None})
    params.update({k: v for k, v in given.items() if k in params and v is not None})
    if params["max_source_length"] is None:
        limit = getattr(tokenizer, "model_max_length", None)
        params["max_source_length"] = limit if isinstance(limit, int) and 0 < limit < 10**6 else None
    return params


class RelPosQuestionAnsweringPipeline(Pipeline):
    """Extractive QA: ``pipe(question=..., context=...)`` (or a dict / list of dicts with those keys) →
    ``{"answer", "score", "start", "end"}`` (a list of ``top_k`` of them when ``top_k > 1``). Options:
    ``top_k``, ``max_seq_len``, ``doc_stride``, ``max_answer_len``, ``handle_impossible_answer``,
    ``null_score_diff_threshold`` (defaults: what the checkpoint's training used). Each question runs as one
    forward over its windows (``batch_size`` is ignored); ``hf-relpos predict`` batches windows across questions."""

    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._batch_size = None

    def _sanitize_parameters(
        self,
        top_k=None,
        max_seq_len=None,
        doc_stride=None,
        max_answer_len=None,
        handle_impossible_answer=None,
        null_score_diff_threshold=None,
        n_best_size=None,
        **kwargs,
    ):
        params = qa_parameters(
            self.model.config,
            self.tokenizer,
            max_seq_len=max_seq_len,
            doc_stride=doc_stride,
            max_answer_len=max_answer_len,
            handle_impossible_answer=handle_impossible_answer,
            n_best_size=n_best_size,
            null_score_diff_threshold=null_score_diff_threshold,
        )
        pre = {"max_seq_len": params["max_seq_len"], "doc_stride": params["doc_stride"]}
        post = {
            "top_k": top_k or 1,
            "max_answer_len": params["max_answer_len"],
            "n_best_size": params["n_best_size"],
            "handle_impossible_answer": params["handle_impossible_answer"],
            "null_score_diff_threshold": params["null_score_diff_threshold"],
        }
        return pre, {}, post

    def __call__(self, *args, **kwargs):
        kwargs.pop("batch_size", None)  # one question per forward: its windows are the batch
        if "question" in kwargs and "context" in kwargs:
            question, context = kwargs.pop("question"), kwargs.pop("context")
            if isinstance(question, str):
                args = ({"question": question, "context": context},)
            else:
                args = ([{"question": q, "context": c} for q, c in zip(question, context)],)
        return super().__call__(*args, **kwargs)

    def preprocess(self, inputs, max_seq_len=384, doc_stride=128):
        if not isinstance(inputs, dict) or not {"question", "context"} <= set(inputs):
            raise ValueError("question-answering takes question=..., context=... (or dicts with those keys)")
        enc = qa_windows(
            self.tokenizer,
            [inputs["question"]],
            [inputs["context"]],
            max_seq_len=max_seq_len,
            doc_stride=doc_stride,
            padding=True,
        )
        names = [n for n in self.tokenizer.model_input_names if n in enc]
        return {
            "model_inputs": {n: torch.tensor(enc[n]) for n in names},
            "offsets": enc["offset_mapping"],
            "context": inputs["context"],
        }

    def _forward(self, inputs):
        out = self.model(**{k: v.to(self.device) for k, v in inputs["model_inputs"].items()})
        return {
            "start_logits": out.start_logits,
            "end_logits": out.end_logits,
            "offsets": inputs["offsets"],
            "context": inputs["context"],
        }

    def postprocess(
        self,
        outputs,
        top_k=1,
        max_answer_len=30,
        n_best_size=20,
        handle_impossible_answer=False,
        null_score_diff_threshold=0.0,
    ):
        starts = outputs["start_logits"].float().cpu().numpy()
        ends = outputs["end_logits"].float().cpu().numpy()
        answers = best_answers(
            outputs["context"],
            list(zip(starts, ends, outputs["offsets"])),
            n_best_size=n_best_size,
            max_answer_length=max_answer_len,
            version_2_with_negative=handle_impossible_answer,
            null_score_diff_threshold=null_score_diff_threshold,
            top_k=top_k,
        )
        answers = [{k: a[k] for k in ("score", "start", "end", "answer")} for a in answers]
        return answers[0] if top_k == 1 else answers


class RelPosText2TextPipeline(Pipeline):
    """Sequence-to-sequence generation with the checkpoint's generation_config.json: ``pipe(text)`` or
    ``pipe([texts])`` → ``{"generated_text": ...}``. Generation options (``num_beams``, ``max_new_tokens``, ...)
    go to ``generate``; ``source_prefix`` and ``max_source_length`` (input truncation): what the checkpoint's
    training evaluated (see :func:`seq2seq_parameters`)."""

    _load_tokenizer = True
    return_name = "generated"

    def _sanitize_parameters(self, max_source_length=None, source_prefix=None, **generate_kwargs):
        params = seq2seq_parameters(
            self.model.config,
            self.tokenizer,
            self.task or "text2text-generation",
            max_source_length=max_source_length,
            source_prefix=source_prefix,
        )
        return params, {"generate_kwargs": generate_kwargs}, {}

    def preprocess(self, text, max_source_length=None, source_prefix=""):
        if not isinstance(text, str):
            raise ValueError(
                f"{self.task or 'text2text-generation'} takes a string (or a list of strings), got {type(text).__name__}"
            )
        return self.tokenizer(
            source_prefix + text,
            truncation=max_source_length is not None,
            max_length=max_source_length,
            return_tensors="pt",
        )

    def _forward(self, model_inputs, generate_kwargs=None):
        inputs = {k: v.to(self.device) for k, v in model_inputs.items() if k in ("input_ids", "attention_mask")}
        return {"output_ids": self.model.generate(**inputs, **(generate_kwargs or {}))}

    def postprocess(self, outputs):
        return [
            {
                f"{self.return_name}_text": self.tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
            }
            for ids in outputs["output_ids"]
        ]


class RelPosSummarizationPipeline(RelPosText2TextPipeline):
    """``pipe(document)`` → ``[{"summary_text": ...}]`` with the checkpoint's generation settings."""

    return_name = "summary"
