"""`hf-relpos predict`: run a checkpoint over a file of inputs, for every task a checkpoint can have.

    import hf_relpos
    rows = hf_relpos.predict("runs/qa_pydoc", [{"id": "q1", "question": "...", "context": "..."}])
    hf_relpos.predict("runs/qa_pydoc", "questions.jsonl", output="answers.jsonl")

Tasks (read from the checkpoint: metrics.json's recipe task, else config.json's ``architectures``; ``task=``
overrides) and what each row gets:

- ``qa`` (``question``, ``context``): ``answer``, ``score``, ``start`` / ``end`` (characters), ``n_best`` with
  ``n_best > 1``. Windows and post-processing are the evaluation's (:func:`~hf_relpos.pipelines_relpos.best_answers`),
  with the settings the checkpoint's training saved; SQuAD v2 no-answer with ``version_2=True``.
- ``classification`` (``text``, optional ``text_pair``): ``label``, ``score``, ``probabilities`` (every class).
- ``token-classification`` (``text``): ``entities``: ``entity_group``, ``score``, ``word``, ``start``, ``end``.
- ``summarization`` / ``text2text`` (``text``, or ``document``): ``summary_text`` / ``generated_text``, with the
  checkpoint's generation_config.json (``num_beams`` / ``max_new_tokens`` override it).
- ``fill-mask`` (``text`` with the tokenizer's mask token): ``predictions``, the ``top_k`` tokens per mask.
- ``embeddings`` (``text``): ``embedding``; pooling from the checkpoint's sentence-transformers files
  (modules.json, 1_Pooling/config.json, Normalize) when present, else the mean over tokens. An ``output``
  ending in .npy or .safetensors gets one matrix (rows in input order) instead of jsonl.

Inputs: a .jsonl / .csv / .json file (a list of objects, or ``{"data": [...]}``), ``"-"`` for jsonl on stdin, or a
list of dicts (or strings, for one-text tasks). Output rows are in input order and keep the input's ``id``
column. Batches are sorted by length (little padding). A bad row raises :class:`BadRowError` naming the file, the
line and the field; with ``skip_bad_rows=True`` it is reported on stderr and skipped. An existing ``output`` is
not overwritten unless ``overwrite=True``; the file is written to a temporary name and renamed, never half-written.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .pipelines_relpos import best_answers, qa_parameters, qa_windows, seq2seq_parameters

TASKS = ("qa", "classification", "token-classification", "summarization", "text2text", "fill-mask", "embeddings")
RECIPE_TASKS = {
    "qa": "qa",
    "classification": "classification",
    "summarization": "summarization",
    "mlm": "fill-mask",
    "span_corruption": "text2text",
}
_ARCHITECTURE_TASKS = (
    ("ForQuestionAnswering", "qa"),
    ("ForSequenceClassification", "classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForConditionalGeneration", "summarization"),
    ("ForMaskedLM", "fill-mask"),
    ("Model", "embeddings"),
)
DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
SEQ2SEQ_COLUMNS = ("text", "document")


class BadRowError(ValueError):
    """An input row the task cannot take: ``FILE:LINE: field 'NAME': problem``."""


class Predictions(list):
    """The output rows (in input order), with ``task``, ``skipped`` (one message per skipped bad row),
    ``seconds`` (model time, loading excluded), ``output`` (the file written, or None)."""

    task: str = ""
    skipped: list
    seconds: float = 0.0
    output: str | None = None


# --------------------------------------------------------------------------------------------------
# the checkpoint
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def resolve_checkpoint(checkpoint) -> Path:
    """A checkpoint folder: ``checkpoint`` itself, or a Hub repository id downloaded (cached) with
    huggingface_hub; ValueError naming it when it is neither."""
    path = Path(checkpoint)
    if path.is_dir():
        return path
    name = str(checkpoint)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise FileNotFoundError(f"checkpoint={name!r} is not a folder (nor a Hub repository id)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as err:  # offline, unknown repository, no access: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"checkpoint={name!r} is not a folder, and downloading it from the Hub failed: {first}"
        ) from None


def task_of(checkpoint) -> str:
    """The predict task of a checkpoint folder: metrics.json's recipe task, else config.json's architectures."""
    folder = Path(checkpoint)
    recipe_task = _read_json(folder / "metrics.json").get("task")
    if recipe_task in RECIPE_TASKS:
        return RECIPE_TASKS[recipe_task]
    config = _read_json(folder / "config.json")
    if not config:
        raise ValueError(f"checkpoint={str(checkpoint)!r} has no config.json: not a checkpoint folder")
    for architecture in config.get("architectures") or []:
        for suffix, task in _ARCHITECTURE_TASKS:
            if architecture.endswith(suffix):
                return task
    raise ValueError(
        f"checkpoint={str(checkpoint)!r}: cannot tell its task from config.json's architectures "
        f"{config.get('architectures')!r}; pass task= (--task), one of: {', '.join(TASKS)}"
    )


def _auto_class(task: str, config):
    import transformers

    if task == "embeddings":
        name = "AutoModelForTextEncoding" if getattr(config, "is_encoder_decoder", False) else "AutoModel"
    else:
        name = {
            "qa": "AutoModelForQuestionAnswering",
            "classification": "AutoModelForSequenceClassification",
            "token-classification": "AutoModelForTokenClassification",
            "summarization": "AutoModelForSeq2SeqLM",
            "text2text": "AutoModelForSeq2SeqLM",
            "fill-mask": "AutoModelForMaskedLM",
        }[task]
    return getattr(transformers, name)


def _device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None


def _load_tokenizer(checkpoint, trust_remote_code):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)


def _load_model(checkpoint, task, device, dtype, trust_remote_code):
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not valid; choose one of: {', '.join(DTYPES)}")
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" is noise beside predict's own bar
    try:
        model = _auto_class(task, config).from_pretrained(
            checkpoint, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
        )
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model.to(device).eval()


def _model_limit(tokenizer, default=512) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 10**6 else default


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------


def _rows(inputs):
    """(where, row or error) for each input row; ``where`` is "FILE:LINE" (or "input[i]")."""
    if isinstance(inputs, (str, Path)):
        name = str(inputs)
        if name == "-":
            yield from _jsonl_rows(sys.stdin, "<stdin>")
            return
        path = Path(inputs)
        if not path.is_file():
            raise FileNotFoundError(f"input={name!r} does not exist")
        suffix = path.suffix.lower()
        with open(path, encoding="utf-8", newline="") as handle:
            if suffix in (".jsonl", ".ndjson"):
                yield from _jsonl_rows(handle, name)
            elif suffix == ".csv":
                reader = csv.DictReader(handle)
                for row in reader:
                    yield f"{name}:{reader.line_num}", row
            elif suffix == ".json":
                yield from _json_rows(handle.read(), name)
            else:
                raise ValueError(
                    f"input={name!r}: unknown format {suffix!r}; use .jsonl, .csv or .json (or - for jsonl on stdin)"
                )
        return
    for i, row in enumerate(inputs):
        yield f"input[{i}]", row


def _jsonl_rows(handle, name):
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", json.loads(line)
        except json.JSONDecodeError as err:
            yield f"{name}:{number}", BadRowError(f"{name}:{number}: not valid JSON ({err.msg}, column {err.colno})")


def _json_rows(text, name):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadRowError(f"{name}:{err.lineno}: not valid JSON ({err.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(f'input={name!r}: a .json input is a list of objects, or {{"data": [...]}}')
    lines = _item_lines(text, len(data))
    for i, row in enumerate(data):
        yield f"{name}:{lines[i]}" if lines else f"{name}: item {i}", row


def _item_lines(text, count):
    """The line each top-level list item of a pretty-printed (one item per line or block) JSON starts on, when
    simple to tell (json.JSONDecoder.raw_decode over the list); [] otherwise."""
    decoder, lines = json.JSONDecoder(), []
    start = text.find("[")
    if start < 0:
        return []
    pos = start + 1
    try:
        for _ in range(count):
            while text[pos] in " \t\r\n,":
                pos += 1
            lines.append(text.count("\n", 0, pos) + 1)
            _, pos = decoder.raw_decode(text, pos)
    except (json.JSONDecodeError, IndexError):
        return []
    return lines


def _text(row, where, field, *, required=True):
    value = row.get(field) if isinstance(row, dict) else None
    if value is None:
        if not required:
            return None
        have = ", ".join(map(repr, row)) if isinstance(row, dict) else type(row).__name__
        raise BadRowError(f"{where}: field {field!r} is missing (the row has: {have or 'nothing'})")
    if not isinstance(value, str):
        raise BadRowError(f"{where}: field {field!r} must be a string, got {type(value).__name__} {value!r:.40}")
    if not value.strip():
        raise BadRowError(f"{where}: field {field!r} is empty")
    return value


def _text_column(task, text_column, row):
    if text_column:
        return text_column
    if task in ("summarization", "text2text") and isinstance(row, dict):
        return next((c for c in SEQ2SEQ_COLUMNS if c in row), "text")
    return "text"


def _parse(task, where, row, options, tokenizer):
    """The task's fields of ``row`` (a dict), or BadRowError."""
    if isinstance(row, BadRowError):
        raise row
    if isinstance(row, str) and task != "qa":
        row = {"text": row}
    if not isinstance(row, dict):
        raise BadRowError(f"{where}: a row is an object with the task's fields, got {type(row).__name__}")
    if task == "qa":
        return {
            "question": _text(row, where, options["question_column"]),
            "context": _text(row, where, options["context_column"]),
        }
    column = _text_column(task, options["text_column"], row)
    fields = {"text": _text(row, where, column)}
    if task == "classification" and options.get("text_pair_column"):
        fields["text_pair"] = _text(row, where, options["text_pair_column"], required=False)
    if task == "fill-mask" and tokenizer.mask_token not in fields["text"]:
        raise BadRowError(f"{where}: field {column!r} has no mask token {tokenizer.mask_token!r}")
    return fields


# --------------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------------


def _by_length(lengths, batch_size):
    """Batches of indices, longest first (padding is mostly wasted on short rows beside long ones)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _collate(encodings, indices, names, tokenizer, device):
    """Pad the rows ``indices`` of ``encodings`` (dict of lists of lists) into tensors on ``device``."""
    width = max(len(encodings["input_ids"][i]) for i in indices)
    left = tokenizer.padding_side == "left"
    pad = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0}
    out = {}
    for name in names:
        fill = pad.get(name, 0)
        rows = []
        for i in indices:
            values = list(encodings[name][i])
            padding = [fill] * (width - len(values))
            rows.append(padding + values if left else values + padding)
        out[name] = torch.tensor(rows, device=device)
    if "attention_mask" not in names:
        out["attention_mask"] = (out["input_ids"] != pad["input_ids"]).long()
    return out


def _input_names(tokenizer, encodings):
    return [n for n in tokenizer.model_input_names if n in encodings] or ["input_ids", "attention_mask"]


def _progress(total, task, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"predict {task}", unit="row", disable=not enabled, file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# the tasks
# --------------------------------------------------------------------------------------------------


def _run_qa(model, tokenizer, items, options, bar):
    params = qa_parameters(
        model.config,
        tokenizer,
        max_seq_len=options["max_seq_length"],
        doc_stride=options["doc_stride"],
        max_answer_len=options["max_answer_length"],
        handle_impossible_answer=options["version_2"],
        null_score_diff_threshold=options["null_threshold"],
    )
    enc = qa_windows(
        tokenizer,
        [it["question"] for it in items],
        [it["context"] for it in items],
        max_seq_len=params["max_seq_len"],
        doc_stride=params["doc_stride"],
    )
    names = _input_names(tokenizer, enc)
    lengths = [len(ids) for ids in enc["input_ids"]]
    windows = [[] for _ in items]
    sample_map = enc["overflow_to_sample_mapping"]
    per_row = np.bincount(sample_map, minlength=len(items))
    done = np.zeros(len(items), dtype=np.int64)
    device = model.device
    for batch in _by_length(lengths, options["batch_size"]):
        out = model(**_collate(enc, batch, names, tokenizer, device))
        starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        finished = 0
        for row, i in enumerate(batch):
            r = sample_map[i]
            windows[r].append((i, starts[row, : lengths[i]], ends[row, : lengths[i]], enc["offset_mapping"][i]))
            done[r] += 1
            finished += done[r] == per_row[r]
        bar.update(int(finished))
    top_k = options.get("n_best") or 1
    results = []
    for item, found in zip(items, windows):
        found.sort(key=lambda w: w[0])  # the windows in text order, as the evaluation sees them
        answers = best_answers(
            item["context"],
            [w[1:] for w in found],
            n_best_size=params["n_best_size"],
            max_answer_length=params["max_answer_len"],
            version_2_with_negative=bool(params["handle_impossible_answer"]),
            null_score_diff_threshold=params["null_score_diff_threshold"],
            top_k=top_k,
        )
        answers = [{k: a[k] for k in ("answer", "score", "start", "end")} for a in answers]
        results.append({**answers[0], **({"n_best": answers} if top_k > 1 else {})})
    return results


def _encode_texts(tokenizer, items, max_length, **kwargs):
    texts = [it["text"] for it in items]
    pairs = [it.get("text_pair") for it in items]
    if any(p is not None for p in pairs):
        return [tokenizer(t, p, truncation=True, max_length=max_length, **kwargs) for t, p in zip(texts, pairs)]
    return tokenizer(texts, truncation=True, max_length=max_length, **kwargs)


def _as_columns(encodings):
    if isinstance(encodings, list):  # one BatchEncoding per row (text pairs)
        keys = encodings[0].keys() if encodings else []
        return {k: [e[k] for e in encodings] for k in keys}
    return encodings


def _forward_batches(model, tokenizer, enc, options, bar, step):
    """Run ``step(batch_indices, model_output, inputs)`` over length-sorted batches of ``enc``."""
    names = _input_names(tokenizer, enc)
    lengths = [len(ids) for ids in enc["input_ids"]]
    for batch in _by_length(lengths, options["batch_size"]):
        inputs = _collate(enc, batch, names, tokenizer, model.device)
        step(batch, model(**inputs), inputs)
        bar.update(len(batch))


def _run_classification(model, tokenizer, items, options, bar):
    enc = _as_columns(_encode_texts(tokenizer, items, options["max_seq_length"] or _model_limit(tokenizer)))
    config = model.config
    labels = [config.id2label.get(i, str(i)) for i in range(config.num_labels)]
    sigmoid = config.problem_type == "multi_label_classification" or config.num_labels == 1
    results = [None] * len(items)

    def step(batch, out, _):
        logits = out.logits.float()
        probs = (logits.sigmoid() if sigmoid else logits.softmax(-1)).cpu().numpy()
        for row, i in enumerate(batch):
            best = int(probs[row].argmax())
            results[i] = {
                "label": labels[best],
                "score": float(probs[row, best]),
                "probabilities": {labels[k]: float(p) for k, p in enumerate(probs[row])},
            }

    _forward_batches(model, tokenizer, enc, options, bar, step)
    return results


def _entities(text, labels, probs, offsets, special):
    """Consecutive tokens of one entity type (B- starts a new one; O and special tokens end it)."""
    entities, current = [], None
    for k, (label, (start, end)) in enumerate(zip(labels, offsets)):
        if special[k] or start == end:
            continue
        tag, _, kind = label.partition("-") if label[:2] in ("B-", "I-") else ("", "", label)
        if kind in ("O", "") or label == "O":
            current = None
            continue
        if current is None or current["entity_group"] != kind or tag == "B":
            current = {"entity_group": kind, "scores": [], "start": int(start), "end": int(end)}
            entities.append(current)
        current["scores"].append(float(probs[k]))
        current["end"] = int(end)
    return [
        {
            "entity_group": e["entity_group"],
            "score": sum(e["scores"]) / len(e["scores"]),
            "word": text[e["start"] : e["end"]],
            "start": e["start"],
            "end": e["end"],
        }
        for e in entities
    ]


def _run_token_classification(model, tokenizer, items, options, bar):
    enc = tokenizer(
        [it["text"] for it in items],
        truncation=True,
        max_length=options["max_seq_length"] or _model_limit(tokenizer),
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    labels = model.config.id2label
    results = [None] * len(items)
    names = [n for n in _input_names(tokenizer, enc) if n not in ("offset_mapping", "special_tokens_mask")]

    def step(batch, out, _):
        probs = out.logits.float().softmax(-1).cpu().numpy()
        for row, i in enumerate(batch):
            n = len(enc["input_ids"][i])
            best = probs[row, :n].argmax(-1)
            results[i] = {
                "entities": _entities(
                    items[i]["text"],
                    [labels.get(int(b), str(int(b))) for b in best],
                    probs[row, np.arange(n), best],
                    enc["offset_mapping"][i],
                    enc["special_tokens_mask"][i],
                )
            }

    lengths = [len(ids) for ids in enc["input_ids"]]
    for batch in _by_length(lengths, options["batch_size"]):
        step(batch, model(**_collate(enc, batch, names, tokenizer, model.device)), None)
        bar.update(len(batch))
    return results


def _run_fill_mask(model, tokenizer, items, options, bar):
    enc = tokenizer(
        [it["text"] for it in items], truncation=True, max_length=options["max_seq_length"] or _model_limit(tokenizer)
    )
    top_k = options.get("top_k") or 5
    results = [None] * len(items)

    def step(batch, out, inputs):
        for row, i in enumerate(batch):
            positions = (inputs["input_ids"][row] == tokenizer.mask_token_id).nonzero().flatten().tolist()
            predictions = []
            for p in positions:
                probs = out.logits[row, p].float().softmax(-1)
                values, ids = probs.topk(min(top_k, probs.numel()))
                predictions.append(
                    [
                        {"token": int(t), "token_str": tokenizer.decode([int(t)]).strip(), "score": float(v)}
                        for v, t in zip(values.tolist(), ids.tolist())
                    ]
                )
            results[i] = {"predictions": predictions}

    _forward_batches(model, tokenizer, enc, options, bar, step)
    return results


def pooling_of(checkpoint) -> dict:
    """How a checkpoint's embeddings are pooled: ``{"mode": "mean" | "cls" | "max" | "mean_sqrt_len", "normalize":
    bool, "source": ...}``, from its sentence-transformers files (modules.json → the Pooling module's
    config.json; a Normalize module), else mean pooling without normalisation."""
    folder = Path(checkpoint)
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return {"mode": "mean", "normalize": False, "source": "default (no sentence-transformers modules.json)"}
    pooling = {"mode": "mean", "normalize": False, "source": "modules.json"}
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            conf = _read_json(folder / module.get("path", "1_Pooling") / "config.json")
            for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens"):
                if conf.get(f"pooling_mode_{mode}"):
                    pooling["mode"] = {
                        "cls_token": "cls",
                        "mean_tokens": "mean",
                        "max_tokens": "max",
                        "mean_sqrt_len_tokens": "mean_sqrt_len",
                    }[mode]
                    break
            pooling["source"] = f"{module.get('path', '1_Pooling')}/config.json"
        elif kind.endswith("Normalize"):
            pooling["normalize"] = True
    return pooling


def _pool(hidden, mask, pooling):
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    mode = pooling["mode"]
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = hidden.masked_fill(mask == 0, float("-inf")).max(1).values
    else:
        summed, count = (hidden * mask).sum(1), mask.sum(1).clamp(min=1e-9)
        out = summed / (count.sqrt() if mode == "mean_sqrt_len" else count)
    return torch.nn.functional.normalize(out, dim=-1) if pooling["normalize"] else out


@torch.inference_mode()
def embed(model, tokenizer, pooling: dict, texts: list[str], max_length: int, batch_tokens: int = 16384):
    """[len(texts), hidden] embeddings pooled as ``pooling`` says (:func:`hf_relpos.prediction.pooling_of`), the
    texts truncated at ``max_length`` tokens and batched longest first, about ``batch_tokens`` per forward."""
    was_training = model.training
    model.eval()
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))
    out = [None] * len(texts)
    i = 0
    while i < len(order):
        longest = len(enc["input_ids"][order[i]])
        batch = order[i : i + max(1, batch_tokens // longest)]
        inputs = tokenizer.pad({k: [enc[k][j] for j in batch] for k in enc}, return_tensors="pt").to(model.device)
        hidden = model(**inputs).last_hidden_state.float()
        vectors = _pool(hidden, inputs["attention_mask"], pooling)
        for row, j in enumerate(batch):
            out[j] = vectors[row]
        i += len(batch)
    model.train(was_training)
    return torch.stack(out)


def retrieval_top1(reader, task) -> tuple[float, list[bool]]:
    """Top-1 accuracy of ``task`` (query i's answer is document i) by cosine similarity; ``reader``: anything
    with ``embed(texts, max_length)`` (a :class:`Reader`)."""
    queries = torch.nn.functional.normalize(reader.embed(task.queries, 512), dim=-1)
    documents = torch.nn.functional.normalize(reader.embed(task.documents, task.length), dim=-1)
    hits = (queries @ documents.T).argmax(-1).cpu() == torch.arange(len(task.queries))
    return hits.float().mean().item(), hits.tolist()


def _run_embeddings(model, tokenizer, items, options, bar):
    enc = tokenizer(
        [it["text"] for it in items], truncation=True, max_length=options["max_seq_length"] or _model_limit(tokenizer)
    )
    pooling = options["pooling"]
    results = [None] * len(items)

    def step(batch, out, inputs):
        vectors = _pool(out.last_hidden_state.float(), inputs["attention_mask"], pooling).cpu().numpy()
        for row, i in enumerate(batch):
            results[i] = {"embedding": vectors[row]}

    _forward_batches(model, tokenizer, enc, options, bar, step)
    return results


def _run_seq2seq(model, tokenizer, items, options, bar):
    params = seq2seq_parameters(
        model.config,
        tokenizer,
        "summarization" if options["task"] == "summarization" else "text2text-generation",
        max_source_length=options["max_seq_length"],
    )
    limit = params["max_source_length"]
    enc = tokenizer(
        [params["source_prefix"] + it["text"] for it in items], truncation=limit is not None, max_length=limit
    )
    key = "summary_text" if options["task"] == "summarization" else "generated_text"
    overrides = {k: options[k] for k in ("num_beams", "max_new_tokens") if options.get(k) is not None}
    results = [None] * len(items)
    names = [n for n in ("input_ids", "attention_mask") if n in enc]
    lengths = [len(ids) for ids in enc["input_ids"]]
    for batch in _by_length(lengths, options["batch_size"]):
        inputs = _collate(enc, batch, names, tokenizer, model.device)
        output_ids = model.generate(**inputs, **overrides)
        for row, i in enumerate(batch):
            results[i] = {
                key: tokenizer.decode(output_ids[row], skip_special_tokens=True, clean_up_tokenization_spaces=False)
            }
        bar.update(len(batch))
    return results


_RUNNERS = {
    "qa": _run_qa,
    "classification": _run_classification,
    "token-classification": _run_token_classification,
    "summarization": _run_seq2seq,
    "text2text": _run_seq2seq,
    "fill-mask": _run_fill_mask,
    "embeddings": _run_embeddings,
}


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------


def check_output(output, overwrite: bool, task: str = "embeddings") -> None:
    """FileExistsError for an existing ``output`` without ``overwrite``, ValueError for a matrix file (.npy,
    .safetensors) of a task other than embeddings (checked before any work)."""
    if output in (None, "-"):
        return
    path = Path(output)
    if path.suffix.lower() in (".npy", ".safetensors") and task != "embeddings":
        raise ValueError(f"output={str(output)!r}: .npy / .safetensors hold embeddings only; use .jsonl for {task}")
    if path.is_dir():
        raise ValueError(f"output={str(output)!r} is a folder; name a file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output={str(output)!r} exists; pass overwrite=True (--overwrite) to replace it")


def _jsonable(row):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}


def _write(output, rows, task):
    """Write ``rows`` to ``output`` (a temporary name beside it, then renamed): jsonl, or one matrix for an
    embeddings .npy / .safetensors file."""
    suffix = Path(str(output)).suffix.lower()
    if suffix in (".npy", ".safetensors"):
        if task != "embeddings":
            raise ValueError(f"output={str(output)!r}: .npy / .safetensors hold embeddings only; use .jsonl for {task}")
        matrix = np.stack([r["embedding"] for r in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
    if output == "-":
        for row in rows:
            sys.stdout.write(json.dumps(_jsonable(row), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        if suffix == ".npy":
            with open(tmp, "wb") as handle:
                np.save(handle, matrix.astype(np.float32))
        elif suffix == ".safetensors":
            from safetensors.numpy import save_file

            ids = [r.get("id") for r in rows]
            save_file(
                {"embeddings": np.ascontiguousarray(matrix, dtype=np.float32)},
                str(tmp),
                metadata={"ids": json.dumps(ids, default=str)},
            )
        else:
            with open(tmp, "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(_jsonable(row), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------------------


def predict(
    checkpoint,
    inputs,
    output=None,
    *,
    task=None,
    batch_size=32,
    device=None,
    dtype="auto",
    id_column="id",
    text_column=None,
    text_pair_column=None,
    question_column="question",
    context_column="context",
    n_best=1,
    max_seq_length=None,
    doc_stride=None,
    max_answer_length=None,
    version_2=None,
    null_threshold=None,
    num_beams=None,
    max_new_tokens=None,
    top_k=5,
    skip_bad_rows=False,
    overwrite=False,
    progress=None,
    trust_remote_code=False,
) -> Predictions:
    """Predictions of ``checkpoint`` (a folder, or a Hub repository id) for ``inputs`` (a file path, "-" for stdin, or a list of
    dicts / strings); written to ``output`` (a path, or "-" for stdout) when given. See the module docstring.

    ``task``: one of ``TASKS`` (default: the checkpoint's). ``batch_size``: rows (QA: windows) per forward.
    ``device``: "cpu", "cuda", ... (default: cuda when available). ``dtype``: auto / float32 / bfloat16 / float16.
    qa: ``n_best`` answers per question (``n_best`` list when > 1), ``max_seq_length`` / ``doc_stride`` (windows),
    ``max_answer_length`` (tokens), ``version_2`` (allow no answer) and ``null_threshold``: the checkpoint's
    training values unless given. seq2seq: ``num_beams``, ``max_new_tokens`` over generation_config.json.
    fill-mask: ``top_k`` tokens per mask. ``progress``: a progress bar on stderr (default: when stderr is a terminal).
    """
    checkpoint = resolve_checkpoint(checkpoint)
    if task is None:
        task = task_of(checkpoint)
    elif task not in TASKS:
        raise ValueError(f"task={task!r} is not valid; choose one of: {', '.join(TASKS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if not isinstance(n_best, int) or n_best < 1:
        raise ValueError(f"n_best={n_best!r} must be a positive integer")
    check_output(output, overwrite, task)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not valid; choose one of: {', '.join(DTYPES)}")
    torch_device = _device(device)
    tokenizer = _load_tokenizer(checkpoint, trust_remote_code)
    options = {
        "task": task,
        "batch_size": batch_size,
        "text_column": text_column,
        "text_pair_column": text_pair_column,
        "question_column": question_column,
        "context_column": context_column,
        "n_best": n_best,
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "max_answer_length": max_answer_length,
        "version_2": version_2,
        "null_threshold": null_threshold,
        "num_beams": num_beams,
        "max_new_tokens": max_new_tokens,
        "top_k": top_k,
        "pooling": pooling_of(checkpoint) if task == "embeddings" else None,
    }

    items, ids, skipped = [], [], []  # every row is read and checked before the model loads
    for where, row in _rows(inputs):
        try:
            items.append(_parse(task, where, row, options, tokenizer))
        except BadRowError as err:
            if not skip_bad_rows:
                raise
            skipped.append(str(err))
            print(f"hf-relpos predict: skipped {err}", file=sys.stderr)
            continue
        ids.append(row.get(id_column) if isinstance(row, dict) else None)
    model = _load_model(checkpoint, task, torch_device, dtype, trust_remote_code)

    start = time.perf_counter()
    with (
        _progress(len(items), task, sys.stderr.isatty() if progress is None else progress) as bar,
        torch.inference_mode(),
    ):
        results = _RUNNERS[task](model, tokenizer, items, options, bar) if items else []
    seconds = time.perf_counter() - start

    rows = Predictions({**({id_column: i} if i is not None else {}), **r} for i, r in zip(ids, results))
    rows.task, rows.skipped, rows.seconds, rows.output = task, skipped, seconds, None
    if output is not None:
        _write(output, rows, task)
        rows.output = str(output)
    return rows


__all__ = ["BadRowError", "Predictions", "TASKS", "check_output", "pooling_of", "predict", "task_of"]
