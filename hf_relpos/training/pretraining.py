"""Pretraining tasks: masked language modelling (``mlm``, relpos_bert) and T5 span corruption
(``span_corruption``, relpos_t5), from a fresh model or a checkpoint.

Data: plain text (.txt, a blank line ends a document), json/jsonl with a ``text_column``, or a Hub
dataset; ``streaming: true`` reads the training split as it trains (IterableDataset, needs ``max_steps``).
Texts are tokenized with their special tokens (``[CLS] .. [SEP]`` / ``.. </s>``: the separator keeps the
document boundaries) and packed into fixed blocks, HF run_mlm's "group texts" (the remainder of each map
batch is dropped).

- ``mlm``: blocks of ``max_seq_length`` tokens, masked by transformers' ``DataCollatorForLanguageModeling``
  (``mlm_probability`` 0.15, 80% [MASK] / 10% random / 10% kept; ``whole_word_masking`` uses the collator's
  own whole-word option, from the tokenizer's offsets).
- ``span_corruption``: T5's objective as in HF's run_t5_mlm_flax.py: blocks of ``tokens_length`` tokens
  (:func:`compute_input_and_target_lengths`) become inputs of exactly ``max_seq_length`` tokens and targets
  of ``targets_length`` tokens: ``noise_density`` of the tokens in spans of mean ``mean_noise_span_length``,
  each span replaced by a sentinel ``<extra_id_N>`` (N = 0, 1, .. in order) in the inputs, and the targets
  are the spans, each after its sentinel, then ``</s>``.

Metrics: masked-token (target-token) accuracy, loss and perplexity on validation blocks, next to
``eval_baseline_accuracy`` (every masked or span token guessed as the most frequent training token; span
corruption's first target token, always ``<extra_id_0>``, counted right); ``eval_lengths``
repeats them on validation blocks of each length (``eval_len<N>_*``, a PNG plot beside the model when
matplotlib is installed).

Distillation (``mlm``, ``teacher_model_name_or_path``): the loss adds ``distillation_weight`` × the squared
error between the student's last hidden states and a frozen teacher's on the same masked inputs, over real
tokens, relative to the teacher's mean square. Made for context extension: after ``convert --drop-absolute`` the student has lost its
absolute table, and the original model at ≤ 512 tokens says at every token, not only the masked 15%, what
its representation was.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from tokenizers import AddedToken
from transformers import DataCollatorForLanguageModeling, TrainerCallback
from transformers.utils import logging

from .data import comma_list, require_columns
from .modeling import _needs_remote_code, build_config, fresh_model, learned_position_limit, load_tokenizer
from .task import TaskSetup
from .trainer import RelPosTrainer

logger = logging.get_logger("hf_relpos")

WORDS = (
    "river stone cloud maple amber lantern meadow harbor violet copper falcon willow ember canyon orchid "
    "pebble thunder saffron glacier marble juniper quartz tundra cobalt prairie lotus cedar dune fjord hazel"
).split()
TOKENIZER_DOCS = 10_000  # documents a tokenizer is trained on in a streamed from-scratch run
SENTINEL = "<extra_id_{}>"


# ---------------------------------------------------------------------------------------------- data


def synthetic_pretraining(train_size=2000, eval_size=300, seed=1234):
    """Documents of "counting" sentences: each sentence walks the word list in order from a random word,
    so a masked word is given by its neighbours' words and positions."""
    import random

    from datasets import DatasetDict

    def rows(rng, n):
        out = []
        for _ in range(n):
            sentences = []
            for _ in range(rng.randint(2, 6)):
                start, length = rng.randrange(len(WORDS)), rng.randint(4, 12)
                sentences.append(" ".join(WORDS[(start + k) % len(WORDS)] for k in range(length)) + ".")
            out.append({"text": " ".join(sentences)})
        return out

    return DatasetDict(
        train=Dataset.from_list(rows(random.Random(seed), train_size)),
        validation=Dataset.from_list(rows(random.Random(seed + 1), eval_size)),
    )


def _column_names(dataset) -> list[str]:
    names = dataset.column_names
    if names is None:  # a stream whose features are not known until read
        names = list(next(iter(dataset)).keys())
    return list(names)


def _texts(dataset, column, limit=None):
    rows = dataset if limit is None else itertools.islice(dataset, limit)
    if isinstance(dataset, Dataset) and limit is None:
        rows = ({column: t} for t in dataset[column])
    return (r[column] for r in rows if isinstance(r[column], str) and r[column].strip())


def pack(batch: dict, block_size: int, document_positions: bool = False) -> dict:
    """run_mlm's group texts: concatenate each column's lists and cut into ``block_size`` blocks (the
    remainder is dropped). ``document_positions``: add ``position_ids`` that restart at 0 where a document
    starts and at each block's start (the layout of transformers' ``DataCollatorWithFlattening``), so the
    model can keep each document's attention within it."""
    if document_positions:
        batch = {**batch, "position_ids": [list(range(len(ids))) for ids in batch["input_ids"]]}
    concatenated = {k: list(itertools.chain.from_iterable(v)) for k, v in batch.items()}
    total = (len(concatenated["input_ids"]) // block_size) * block_size
    blocks = {k: [v[i : i + block_size] for i in range(0, total, block_size)] for k, v in concatenated.items()}
    if document_positions:  # a document cut by a block boundary restarts there: positions stay < block_size
        blocks["position_ids"] = [_restarted(pos) for pos in blocks["position_ids"]]
    return blocks


def _restarted(positions: list[int]) -> list[int]:
    """Positions of a block counted from its start for the document it starts inside, from 0 for the others."""
    out, base = [], positions[0]
    for p in positions:
        base = 0 if p == 0 else base
        out.append(p - base)
    return out


def packed_blocks(dataset, tokenizer, column: str, block_size: int, keep: tuple[str, ...], data_args=None):
    """``dataset``'s texts (null or blank ones dropped) tokenized with special tokens and packed into blocks
    of ``block_size`` tokens (columns ``keep``)."""
    offsets = "offset_mapping" in keep

    def tokenize_and_pack(batch):
        texts = [t for t in batch[column] if isinstance(t, str) and t.strip()]
        enc = tokenizer(
            texts,
            return_special_tokens_mask="special_tokens_mask" in keep,
            return_offsets_mapping=offsets,
            verbose=False,
        )
        return pack({k: enc[k] for k in keep}, block_size, getattr(data_args, "document_attention", False))

    options = {"batched": True, "remove_columns": _column_names(dataset)}
    if isinstance(dataset, Dataset):
        options["num_proc"] = getattr(data_args, "preprocessing_num_workers", None)
    return dataset.map(tokenize_and_pack, **options)


# ------------------------------------------------------------------------------------- span corruption


def compute_input_and_target_lengths(inputs_length: int, noise_density: float, mean_noise_span_length: float):
    """T5's lengths: the raw block length (tokens) whose corrupted inputs (with sentinels and </s>) are
    ``inputs_length`` tokens, and the targets' length. Returns (tokens_length, targets_length)."""

    def lengths(tokens_length):
        num_noise_tokens = int(round(tokens_length * noise_density))
        num_nonnoise_tokens = tokens_length - num_noise_tokens
        num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
        return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:  # T5's adjustment
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def noise_tokens(length: int, noise_density: float) -> int:
    """T5's number of noise tokens in a block of ``length``: round(length × density), at least 1, at most length − 1."""
    return min(max(int(round(length * noise_density)), 1), length - 1)


def noise_spans(length: int, noise_density: float, mean_noise_span_length: float) -> int:
    num_noise_tokens = noise_tokens(length, noise_density)
    return max(int(round(min(num_noise_tokens, length - num_noise_tokens) / mean_noise_span_length)), 1)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float, rng) -> np.ndarray:
    """T5's noise mask (bool, ``length``): round(length × density) noise tokens in ``noise_spans`` spans, the
    sequence starting with a non-noise span and alternating; span lengths a random segmentation."""
    num_noise_tokens = noise_tokens(length, noise_density)
    num_spans = noise_spans(length, noise_density, mean_noise_span_length)
    num_nonnoise_tokens = length - num_noise_tokens

    def segmentation(num_items, num_segments):
        first = np.arange(num_items - 1) < (num_segments - 1)
        rng.shuffle(first)
        segment_id = np.cumsum(np.pad(first, [[1, 0]]))
        return np.unique(segment_id, return_counts=True)[1]

    interleaved = np.stack(
        [segmentation(num_nonnoise_tokens, num_spans), segmentation(num_noise_tokens, num_spans)], axis=1
    ).reshape(-1)
    starts = np.zeros(length, dtype=np.int64)
    starts[np.cumsum(interleaved)[:-1]] = 1
    return np.cumsum(starts) % 2 == 1


def corrupt(ids, mask: np.ndarray, sentinel_ids, eos_id: int) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one block: each noise span becomes the next sentinel in the inputs; the targets
    are each span after its sentinel; both end with </s>."""
    inputs, targets, span = [], [], -1
    for k, (token, noise) in enumerate(zip(ids, mask)):
        if noise:
            if k == 0 or not mask[k - 1]:
                span += 1
                inputs.append(sentinel_ids[span])
                targets.append(sentinel_ids[span])
            targets.append(int(token))
        else:
            inputs.append(int(token))
    return inputs + [eos_id], targets + [eos_id]


@dataclass
class DataCollatorForSpanCorruption:
    """Batches of packed blocks (``input_ids`` of one length) → T5 span-corruption inputs and labels of
    fixed shapes (all blocks of a length give the same input and target lengths)."""

    tokenizer: object
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    seed: int | None = None

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def sentinel_ids(self, count: int) -> list[int]:
        ids = self.tokenizer.convert_tokens_to_ids([SENTINEL.format(i) for i in range(count)])
        if any(i is None or i == self.tokenizer.unk_token_id for i in ids):
            raise ValueError(f"the tokenizer lacks the sentinel tokens <extra_id_0> .. <extra_id_{count - 1}>")
        return ids

    def __call__(self, examples):
        blocks = [list(e["input_ids"]) for e in examples]
        length = len(blocks[0])
        if any(len(b) != length for b in blocks):
            raise ValueError("span corruption needs blocks of one length in a batch")
        sentinels = self.sentinel_ids(noise_spans(length, self.noise_density, self.mean_noise_span_length))
        inputs, labels = zip(
            *(
                corrupt(
                    b,
                    random_spans_noise_mask(length, self.noise_density, self.mean_noise_span_length, self.rng),
                    sentinels,
                    self.tokenizer.eos_token_id,
                )
                for b in blocks
            )
        )
        input_ids = torch.tensor(inputs, dtype=torch.long)
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def add_sentinels(tokenizer, count: int) -> int:
    """Add ``<extra_id_0>`` .. ``<extra_id_{count-1}>`` the tokenizer lacks (special tokens); returns how many."""
    have = set(tokenizer.get_vocab())
    missing = [SENTINEL.format(i) for i in range(count) if SENTINEL.format(i) not in have]
    if not missing:
        return 0
    return tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)


# ------------------------------------------------------------------------------------------- the task


def _load_pretraining_model(task, model_args, config, tokenizer):
    """A fresh model, or the checkpoint's; a checkpoint without the pretraining head (a ``convert`` output
    saved as a base model) starts the head fresh, its output projection tied to the word embeddings."""
    if not model_args.model_name_or_path:
        return fresh_model(task.auto_class, model_args, config)
    model, info = _needs_remote_code(
        "model_name_or_path",
        model_args.model_name_or_path,
        lambda: task.auto_class.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        ),
    )
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    head = [k for k in info.get("missing_keys", []) if k.startswith(("cls.", "lm_head."))]
    if head:
        out, emb = model.get_output_embeddings(), model.get_input_embeddings()
        if out is not None and out.weight is not emb.weight:
            with torch.no_grad():
                out.weight.copy_(emb.weight)
        logger.warning(
            f"hf-relpos: {model_args.model_name_or_path} has no {task.name} head ({', '.join(sorted(head))} "
            "missing): the head starts fresh, its output projection tied to the word embeddings"
        )
    return model


def _accuracy(prediction) -> dict:
    preds, labels = prediction.predictions, prediction.label_ids
    preds = preds[0] if isinstance(preds, tuple) else preds
    keep = labels != -100
    return {"accuracy": float((preds[keep] == labels[keep]).mean()) if keep.any() else 0.0}


def unigram_baseline(train_blocks, eval_blocks) -> float:
    """The masked-token accuracy of a model-free guess: every masked token predicted as the training blocks'
    most frequent non-special token. The collator masks non-special tokens uniformly, so the expected
    accuracy is that token's share of the validation blocks' non-special tokens."""

    def counts(blocks):
        ids = np.asarray(blocks["input_ids"]).ravel()
        if "special_tokens_mask" in blocks.column_names:
            ids = ids[~np.asarray(blocks["special_tokens_mask"]).ravel().astype(bool)]
        return np.bincount(ids)

    train_counts, eval_counts = counts(train_blocks), counts(eval_blocks)
    if train_counts.sum() == 0 or eval_counts.sum() == 0:
        return 0.0
    top = int(np.argmax(train_counts))
    return float(eval_counts[top] / eval_counts.sum()) if top < len(eval_counts) else 0.0


def span_corruption_baseline(
    train_blocks, eval_blocks, tokens_length: int, noise_density: float, mean_noise_span_length: float
) -> float:
    """The target-token accuracy of a model-free guess: the first target is always ``<extra_id_0>``
    (right); every later one is guessed as the training blocks' most frequent token, right as often as
    that token's share of the validation tokens for span tokens (spans are placed at random), never for the
    later sentinels and ``</s>``: where they fall depends on the random span lengths, which only the text
    (the model) can tell. Expected accuracy over a block's ``spans + noise tokens + 1`` targets."""
    noise = noise_tokens(tokens_length, noise_density)
    spans = noise_spans(tokens_length, noise_density, mean_noise_span_length)
    share = unigram_baseline(train_blocks, eval_blocks)
    return (1 + share * noise) / (spans + noise + 1)


def _argmax(logits, labels):
    logits = logits[0] if isinstance(logits, tuple) else logits
    return logits.argmax(dim=-1)


def _plot(lengths_metrics: dict, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    lengths = sorted(lengths_metrics)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(lengths, [lengths_metrics[n] for n in lengths], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("validation block length (tokens)")
    ax.set_ylabel("masked-token accuracy")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def load_teacher(data_args, model_args, config, max_seq_length: int | None):
    """The frozen teacher of ``teacher_model_name_or_path`` (its base model, eval mode), checked against the
    student's ``config``: same hidden size and vocabulary, and learned positions for ``max_seq_length`` (None:
    the teacher reads pieces of its own length, as in ``embedding_distillation``)."""
    from transformers import AutoConfig, AutoModel

    path = data_args.teacher_model_name_or_path
    teacher_config = _needs_remote_code(
        "teacher_model_name_or_path",
        path,
        lambda: AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code),
    )
    for name in ("hidden_size", "vocab_size"):
        mine, theirs = getattr(config, name, None), getattr(teacher_config, name, None)
        if mine != theirs:
            raise ValueError(
                f"teacher_model_name_or_path={path!r} has {name}={theirs}, the trained model {mine}: "
                "the teacher must share the student's tokenizer and hidden size"
            )
    table = learned_position_limit(teacher_config)
    if table is not None and max_seq_length is not None and max_seq_length > table:
        raise ValueError(
            f"teacher_model_name_or_path={path!r} has learned absolute positions for {table} tokens; "
            f"max_seq_length={max_seq_length} is longer: train at ≤ {table} tokens (evaluate longer with eval_lengths)"
        )
    teacher = _needs_remote_code(
        "teacher_model_name_or_path",
        path,
        lambda: AutoModel.from_pretrained(path, config=teacher_config, trust_remote_code=model_args.trust_remote_code),
    ).eval()
    teacher.requires_grad_(False)
    return teacher


class MaskedPositionsTrainer(RelPosTrainer):
    """MLM training whose loss projects only the masked positions onto the vocabulary: the same loss as the
    model's forward (mean cross-entropy over the labelled tokens), but the head (hidden × vocabulary: 11.7M
    multiply-adds a token for a 30k-word BERT, more than a MiniLM's six layers) runs on the ~15% labelled
    tokens instead of all of them. Used for BERT-layout models (``.bert`` + ``.cls``) in one process;
    evaluation, and runs whose model Trainer wrapped (DDP, FSDP, compile), go through the model's forward."""

    def __init__(self, *args, teacher=None, distillation_weight=10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.distillation_weight = teacher, distillation_weight
        self._distilled = []  # this process's distillation terms since the last log
        if teacher is not None:  # once, beside the student (Trainer placed it on args.device)
            teacher.to(self.args.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        bert, head = getattr(model, "bert", None), getattr(model, "cls", None)
        distill = self.teacher is not None and model.training
        if (
            return_outputs
            or model is not self.model
            or bert is None
            or head is None
            or labels is None
            or not (labels != -100).any()
        ):
            if not distill:
                return super().compute_loss(
                    model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                )
            outputs = model(**inputs, output_hidden_states=True)
            loss = outputs.loss + self.distillation_weight * self._distilled_term(outputs.hidden_states[-1], inputs)
            return (loss, outputs) if return_outputs else loss
        hidden = bert(**{k: v for k, v in inputs.items() if k != "labels"}, return_dict=True).last_hidden_state
        keep = labels != -100
        logits = head(hidden[keep])
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[keep])
        if distill:
            loss = loss + self.distillation_weight * self._distilled_term(hidden, inputs)
        return loss

    def _distilled_term(self, hidden, inputs):
        term = self._distillation(hidden, inputs)
        self._distilled.append(term.detach())
        return term

    def log(self, logs, *args, **kwargs):
        """Training logs gain ``distillation``: the mean unweighted term since the last log (0 = the
        teacher's states), so a run shows how close the student has come, apart from the MLM loss."""
        if self._distilled and "loss" in logs:
            logs["distillation"] = round(torch.stack(self._distilled).float().mean().item(), 4)
            self._distilled = []
        super().log(logs, *args, **kwargs)

    def _distillation(self, hidden, inputs):
        """Squared error to the teacher's last hidden states over the real (unpadded) tokens, divided by the
        teacher's mean square: the share of the teacher's signal the student misses (0 = same states, 1 = as
        far as zeros), whatever the scale of the model's hidden states (a sentence-transformers MiniLM's mean
        square is 0.07, a BERT's near 0.5)."""
        mask = inputs.get("attention_mask")
        with torch.no_grad():
            target = self.teacher(
                input_ids=inputs["input_ids"],
                attention_mask=mask,
                return_dict=True,
                **({"token_type_ids": inputs["token_type_ids"]} if "token_type_ids" in inputs else {}),
            ).last_hidden_state
        real = torch.ones_like(inputs["input_ids"], dtype=torch.bool) if mask is None else mask.bool()
        target = target[real].float()
        return torch.nn.functional.mse_loss(hidden[real].float(), target) / target.pow(2).mean().clamp_min(1e-12)


class _WrappedModelReport(TrainerCallback):
    """Prints (main process) how Trainer wrapped the model for a multi-process run, e.g.
    ``DistributedDataParallel`` or ``FSDPModule``-based classes."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size > 1 and state.is_world_process_zero:
            wrapped = type(self.trainer.model_wrapped)
            print(
                f"hf-relpos: {args.world_size} processes, model wrapped in {wrapped.__module__}.{wrapped.__name__} "
                f"(accelerate: {getattr(self.trainer.accelerator.distributed_type, 'value', '?')})",
                flush=True,
            )


def _report_distributed(trainer, training_args) -> None:
    """Warn when ``fsdp`` was asked for but accelerate did not enable it: with ``use_cpu`` (gloo) accelerate
    1.x only switches to FSDP for GPU/NPU/XPU-like multi-device runs, so the plugin is dropped and the run
    trains as plain DDP (every process holds the whole model)."""
    trainer.add_callback(_WrappedModelReport(trainer))
    if training_args.fsdp and not getattr(trainer, "is_fsdp_enabled", False) and training_args.world_size > 1:
        logger.warning(
            f"hf-relpos: fsdp was requested but accelerate runs this as "
            f"{getattr(trainer.accelerator.distributed_type, 'value', trainer.accelerator.distributed_type)} (no sharding; DistributedDataParallel): FSDP needs "
            "GPUs (accelerate enables it only for multi-GPU/NPU/XPU runs, not for CPU processes with gloo)"
        )


def setup(task, model_args, data_args, training_args, raw) -> TaskSetup:
    span = task.name == "span_corruption"
    streaming = isinstance(raw["train"], IterableDataset)
    if streaming and training_args.max_steps <= 0:
        raise ValueError(
            f"streaming=true needs max_steps (a stream has no length, so epochs are unknown); got "
            f"max_steps={training_args.max_steps}: set e.g. --max_steps 1000"
        )
    for name in ("mlm_probability", "noise_density"):
        value = getattr(data_args, name)
        if not 0 < value < 1:
            raise ValueError(f"{name}={value} is not valid; choose a number between 0 and 1")
    if data_args.mean_noise_span_length < 1:
        raise ValueError(f"mean_noise_span_length={data_args.mean_noise_span_length} is not valid; choose a number ≥ 1")
    lengths = sorted(set(data_args.eval_lengths or []))
    if any(n < 8 for n in lengths):
        raise ValueError(
            f"eval_lengths={data_args.eval_lengths} is not valid; choose block lengths of at least 8 tokens"
        )
    column = comma_list(task.column(data_args, "text_column"))[0]  # "text,document": files of two layouts
    for split in ("train", "validation"):
        if not isinstance(raw[split], IterableDataset):
            require_columns(raw[split], {"text_column": column}, split)
    if isinstance(raw["validation"], IterableDataset):  # evaluated several times: held in memory
        raw["validation"] = Dataset.from_list(list(raw["validation"]))
        require_columns(raw["validation"], {"text_column": column}, "validation")

    tokenizer = load_tokenizer(model_args, _texts(raw["train"], column, TOKENIZER_DOCS if streaming else None), span)
    if span:
        block = lambda n: compute_input_and_target_lengths(
            n, data_args.noise_density, data_args.mean_noise_span_length
        )[0]
        needed = max(
            noise_spans(block(n), data_args.noise_density, data_args.mean_noise_span_length)
            for n in [data_args.max_seq_length, *lengths]
        )
        add_sentinels(tokenizer, max(100, needed))
        tokens_length, targets_length = compute_input_and_target_lengths(
            data_args.max_seq_length, data_args.noise_density, data_args.mean_noise_span_length
        )
        print(
            f"hf-relpos: span corruption: blocks of {tokens_length} tokens → inputs {data_args.max_seq_length}, "
            f"targets {targets_length} tokens",
            flush=True,
        )
        keep = ("input_ids",)
        collator = DataCollatorForSpanCorruption(
            tokenizer, data_args.noise_density, data_args.mean_noise_span_length, seed=training_args.seed
        )
    else:
        if tokenizer.mask_token is None:
            raise ValueError(
                f"task='mlm' needs a tokenizer with a mask token; {model_args.tokenizer_name or model_args.model_name_or_path!r} has none"
            )
        block = lambda n: n
        keep = ("input_ids", "attention_mask", "special_tokens_mask") + (
            ("offset_mapping",) if data_args.whole_word_masking else ()
        )
        collator = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=data_args.mlm_probability, whole_word_mask=data_args.whole_word_masking
        )
    if model_args.model_name_or_path:  # a checkpoint's learned absolute table bounds the evaluated lengths
        table = learned_position_limit(
            build_config(model_args, tokenizer, task.seq2seq, max_length=data_args.max_seq_length)
        )
        if table is not None and any(n > table for n in lengths):  # e.g. the original absolute BERT
            print(
                f"hf-relpos: eval_lengths: {model_args.model_name_or_path} has learned absolute positions for {table} "
                f"tokens; lengths {[n for n in lengths if n > table]} skipped (`hf-relpos convert --drop-absolute` "
                "makes a model that reads longer inputs)",
                flush=True,
            )
            lengths = [n for n in lengths if n <= table]
    config = build_config(model_args, tokenizer, task.seq2seq, max_length=max([data_args.max_seq_length, *lengths]))
    model = _load_pretraining_model(task, model_args, config, tokenizer)
    training_args.remove_unused_columns = False  # the collators read special_tokens_mask / offset_mapping

    with training_args.main_process_first(desc="tokenizing and packing"):
        train = packed_blocks(raw["train"], tokenizer, column, block(data_args.max_seq_length), keep, data_args)
        evals = packed_blocks(raw["validation"], tokenizer, column, block(data_args.max_seq_length), keep, data_args)
        by_length = {
            n: evals
            if n == data_args.max_seq_length
            else packed_blocks(raw["validation"], tokenizer, column, block(n), keep, data_args)
            for n in lengths
        }
    if len(evals) == 0:
        raise ValueError(
            f"the validation split has fewer than {block(data_args.max_seq_length)} tokens: no block of "
            f"max_seq_length={data_args.max_seq_length}; give more validation text or lower max_seq_length"
        )

    distill = (
        {}
        if span
        else dict(
            teacher=load_teacher(data_args, model_args, config, data_args.max_seq_length)
            if data_args.teacher_model_name_or_path
            else None,
            distillation_weight=data_args.distillation_weight,
        )
    )
    trainer = (RelPosTrainer if span else MaskedPositionsTrainer)(
        position_learning_rate=model_args.relative_position_learning_rate,
        **distill,
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=_accuracy,
        preprocess_logits_for_metrics=_argmax,
    )
    _report_distributed(trainer, training_args)

    def evaluate():
        metrics = trainer.evaluate()
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
        metrics["eval_blocks"] = len(evals)
        if isinstance(train, Dataset):  # a stream is not read twice for a baseline
            metrics["eval_baseline_accuracy"] = (
                span_corruption_baseline(
                    train,
                    evals,
                    block(data_args.max_seq_length),
                    data_args.noise_density,
                    data_args.mean_noise_span_length,
                )
                if span
                else unigram_baseline(train, evals)
            )
        accuracy = {}
        for n, blocks in by_length.items():
            if len(blocks) == 0:
                print(f"hf-relpos: eval_lengths: the validation split has no block of {n} tokens; skipped", flush=True)
                continue
            if blocks is evals:  # the training length: the evaluation above already covers it
                got = {f"eval_len{n}_{key}": metrics[f"eval_{key}"] for key in ("accuracy", "loss")}
            else:
                got = trainer.evaluate(eval_dataset=blocks, metric_key_prefix=f"eval_len{n}")
            for key in ("accuracy", "loss"):
                metrics[f"eval_len{n}_{key}"] = got[f"eval_len{n}_{key}"]
            metrics[f"eval_len{n}_perplexity"] = math.exp(min(got[f"eval_len{n}_loss"], 50.0))
            metrics[f"eval_len{n}_blocks"] = len(blocks)
            accuracy[n] = got[f"eval_len{n}_accuracy"]
        if accuracy and trainer.is_world_process_zero():
            path = Path(training_args.output_dir) / "length_eval.png"
            what = "target-token" if span else "masked-token"
            if _plot(accuracy, path, f"{task.name}: {what} accuracy by length"):
                print(f"hf-relpos: length evaluation plotted in {path}", flush=True)
        return metrics

    return TaskSetup(trainer=trainer, evaluate=evaluate, main_metric="accuracy", text_column=column)
