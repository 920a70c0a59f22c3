"""Context extension that keeps what a sentence-embedding model is for (task ``embedding_distillation``).

The student is a relpos_bert model, or an absolute BERT converted here with ``relative_position`` and
``model_overrides``: ``absolute_position="learned"`` keeps its table, copied past its length (Longformer), so
the student starts as the source itself on inputs the source could read; ``"none"`` drops it. A frozen
teacher (``teacher_model_name_or_path``, e.g. the original model) sets the targets:

- short texts (at most the teacher's window): the teacher's last hidden states and pooled embedding;
- long texts (up to ``max_seq_length`` tokens): the teacher's states of each token read in window-sized
  pieces cut at a random offset, so a long text embeds like what it contains;
- with ``contrastive_loss_weight`` > 0, each long text comes as copies holding different passages inserted at
  random depths (LongEmbed's needle set-up, on real text), and each passage's teacher embedding must find its
  own copy among the batch's long texts (InfoNCE): a long embedding must keep every part it holds visible.

Loss per training block: the squared error of the states over the teacher's mean square, plus
``embedding_loss_weight`` × (1 − cosine) of the pooled embeddings (the teacher's own pooling, from its
sentence-transformers files), plus ``contrastive_loss_weight`` × the passage term. Nothing trains an MLM
head the checkpoint never had. The evaluation reports the cosine to the teacher on held-out texts and the
passkey retrieval of :mod:`hf_relpos.long_tasks` at ``eval_lengths``. The saved folder carries the teacher's sentence-transformers files, so
``SentenceTransformer(folder, trust_remote_code=True)`` loads it with its pooling.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModel

from ..prediction import _pool, pooling_of
from .modeling import _needs_remote_code, learned_position_limit, load_tokenizer
from .task import TaskSetup
from .trainer import RelPosTrainer

SHORTEST = 8  # tokens of the shortest training text
BLOCK_TOKENS = 2048  # tokens of a block of short texts
PASSAGES = 4  # long texts of a contrastive group, each holding another passage
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "1_Pooling", "2_Normalize")


def training_blocks(
    stream: list[int], window: int, longest: int, cls: int, sep: int, seed: int, passages: int = 0
) -> Dataset:
    """``stream`` (token ids) cut once, in order, into training blocks that alternate: short texts of
    ``SHORTEST``…``window`` tokens (log-uniform lengths) packed to ``BLOCK_TOKENS``, then one long text of
    2·``window``…``longest`` tokens. Each block: ``input_ids``, ``position_ids`` restarting per text, and
    ``pairs`` (text index of a long text, text index of the passage inserted in it).

    With ``passages`` = K > 0 a long block holds K copies of the long text, each with another passage of
    ``SHORTEST``…64 tokens (cut from the stream) inserted at its own random depth, then the K passages as
    short texts: the hard negatives of the contrastive term (LongEmbed's needle set-up, built from real text)."""
    rng = random.Random(seed)
    blocks, at, long_turn = [], 0, False

    def take(n):
        nonlocal at
        at += n
        return stream[at - n : at]

    while True:
        texts, pairs = [], []
        if long_turn and longest > window:
            n = rng.randint(min(2 * window, longest), longest) - 2
            if passages:
                body = take(n)
                inserts = [take(int(math.exp(rng.uniform(math.log(SHORTEST), math.log(64))))) for _ in range(passages)]
                for k, insert in enumerate(inserts):
                    depth = rng.randint(0, n - len(insert))
                    texts.append(body[:depth] + insert + body[depth : n - len(insert)])
                    pairs.append([k, passages + k])
                texts += inserts
            else:
                texts.append(take(n))
        else:
            used = 0
            while True:
                n = int(math.exp(rng.uniform(math.log(SHORTEST), math.log(window))))
                if used + n > BLOCK_TOKENS:
                    break
                texts.append(take(n - 2))
                used += n
        if at > len(stream):
            break
        ids = [i for body in texts for i in (cls, *body, sep)]
        positions = [p for body in texts for p in range(len(body) + 2)]
        blocks.append({"input_ids": ids, "position_ids": positions, "pairs": pairs})
        long_turn = not long_turn
    return Dataset.from_list(blocks)


def collate_blocks(features: list[dict]) -> dict:
    """The blocks of a batch as one packed row [1, tokens] (the model runs each text alone, restarting
    ``position_ids``), with ``pairs`` [P, 2] renumbered to the row's texts."""
    pairs, texts = [], 0
    for f in features:
        pairs += [[doc + texts, passage + texts] for doc, passage in f.get("pairs") or []]
        texts += sum(p == 0 for p in f["position_ids"])
    return {
        "input_ids": torch.tensor([[i for f in features for i in f["input_ids"]]]),
        "position_ids": torch.tensor([[p for f in features for p in f["position_ids"]]]),
        "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
    }


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each text in a packed row, from ``position_ids`` [tokens] restarting at 0."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    return list(zip(starts, starts[1:] + [len(position_ids)]))


class EmbeddingDistillationTrainer(RelPosTrainer):
    """Trains the student towards the teacher's states and pooled embeddings (see the module docstring)."""

    def __init__(
        self,
        *args,
        teacher,
        window: int,
        pooling: dict,
        embedding_loss_weight: float,
        contrastive_loss_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.teacher, self.window, self.pooling = teacher, window, pooling
        self.embedding_loss_weight, self.contrastive_loss_weight = embedding_loss_weight, contrastive_loss_weight
        self.teacher.to(self.args.device)
        self._rng = random.Random(self.args.seed)
        self._terms = {"states": [], "cosine": [], "contrastive": []}

    @torch.no_grad()
    def targets(self, input_ids: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
        """The teacher's last hidden states [tokens, hidden] of a packed row; a text longer than the window
        is read in pieces of at most ``window`` tokens (its own [CLS] … [SEP] each) from a random offset."""
        cls, sep = input_ids[spans[0][0]], input_ids[spans[0][1] - 1]
        pieces, places = [], []  # teacher inputs; for each, (row start, row end, piece start, piece end)
        for a, b in spans:
            if b - a <= self.window:
                pieces.append(input_ids[a:b])
                places.append((a, b, 0, b - a))
                continue
            body = b - a - 2
            first = self._rng.randrange(1, self.window - 1)
            cuts = [0, *range(first, body, self.window - 2), body]
            for lo, hi in zip(cuts, cuts[1:]):
                pieces.append(torch.cat([cls[None], input_ids[a + 1 + lo : a + 1 + hi], sep[None]]))
                head, tail = int(lo == 0), int(hi == body)  # the text's [CLS] / [SEP]: its first / last piece's
                places.append((a + 1 + lo - head, a + 1 + hi + tail, 1 - head, 1 + hi - lo + tail))
        out = torch.empty(len(input_ids), self.teacher.config.hidden_size, device=input_ids.device)
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
        for group in [order[i : i + 32] for i in range(0, len(order), 32)]:
            longest = len(pieces[group[0]])
            ids = torch.zeros(len(group), longest, dtype=torch.long, device=input_ids.device)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(group):
                ids[row, : len(pieces[i])], mask[row, : len(pieces[i])] = pieces[i], 1
            states = self.teacher(input_ids=ids, attention_mask=mask).last_hidden_state
            for row, i in enumerate(group):
                a, b, lo, hi = places[i]
                out[a:b] = states[row, lo:hi]
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        input_ids, position_ids, pairs = inputs["input_ids"], inputs["position_ids"], inputs.get("pairs")
        spans = segments(position_ids[0])
        target = self.targets(input_ids[0], spans).float()
        outputs = model(input_ids=input_ids, position_ids=position_ids)
        hidden = outputs.last_hidden_state[0].float()
        states = torch.nn.functional.mse_loss(hidden, target) / target.pow(2).mean().clamp_min(1e-12)
        ones = lambda n: torch.ones(1, n, device=hidden.device)  # noqa: E731
        mine = torch.cat([_pool(hidden[None, a:b], ones(b - a), self.pooling) for a, b in spans])
        theirs = torch.cat([_pool(target[None, a:b], ones(b - a), self.pooling) for a, b in spans])
        cosine = 1 - torch.nn.functional.cosine_similarity(mine, theirs).mean()
        self._terms["states"].append(states.detach())
        self._terms["cosine"].append(cosine.detach())
        loss = states + self.embedding_loss_weight * cosine
        if pairs is not None and len(pairs) and self.contrastive_loss_weight:
            contrastive = self.contrastive(mine[pairs[:, 0]], theirs[pairs[:, 1]])
            self._terms["contrastive"].append(contrastive.detach())
            loss = loss + self.contrastive_loss_weight * contrastive
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def contrastive(texts: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
        """InfoNCE [P, hidden] × [P, hidden]: each passage's teacher embedding must be closest to the student's
        embedding of the long text that holds it, among all long texts of the batch (the same text with other
        passages elsewhere are the hard negatives). Temperature 0.05, the MiniLM's own training scale (20)."""
        logits = torch.nn.functional.normalize(passages, dim=-1) @ torch.nn.functional.normalize(texts, dim=-1).T
        return torch.nn.functional.cross_entropy(logits / 0.05, torch.arange(len(texts), device=texts.device))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs, *args, **kwargs):
        """Logs gain ``states`` (share of the teacher's states missed), ``cosine_distance`` (1 − cosine of
        the pooled embeddings) and ``contrastive`` (the passage term), means since the last log."""
        if self._terms["states"] and ("loss" in logs or "eval_loss" in logs):
            prefix = "eval_" if "eval_loss" in logs else ""
            for key, name in (("states", "states"), ("cosine", "cosine_distance"), ("contrastive", "contrastive")):
                if self._terms[key]:
                    logs[prefix + name] = round(torch.stack(self._terms[key]).float().mean().item(), 5)
                self._terms[key] = []
        super().log(logs, *args, **kwargs)


def load_student(model_args, table_length: int):
    """The relpos_bert student: the checkpoint itself, or an absolute BERT converted in memory.

    ``absolute_position="learned"`` keeps the absolute table, resized to ``table_length`` by Longformer's
    copies (Beltagy et al. 2020), so the student is the source exactly on inputs it could read; ``"none"``
    drops it (purely relative) and adds its mean row to the token-type embeddings (the inputs keep their mean)."""
    from ..convert import convert_bert_to_relpos

    path = model_args.model_name_or_path
    if not path:
        raise ValueError("task='embedding_distillation' needs model_name_or_path (the model to extend)")
    config = _needs_remote_code(
        "model_name_or_path",
        path,
        lambda: AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code),
    )
    overrides = model_args.overrides()
    if str(config.model_type).startswith("relpos_"):
        return AutoModel.from_pretrained(path, trust_remote_code=model_args.trust_remote_code, **overrides)
    keep = model_args.absolute_position
    if keep not in ("none", "learned"):
        raise ValueError(
            f"absolute_position={keep!r} is not valid for converting {path!r}; choose learned (keep its table) or none"
        )
    source = AutoModel.from_pretrained(path)
    scheme = model_args.relative_position if model_args.relative_position not in (None, "none") else "t5"
    if keep == "learned":
        length = max(table_length, source.config.max_position_embeddings)
        student = convert_bert_to_relpos(
            source, scheme, keep_absolute=True, max_position_embeddings=length, head="base", **overrides
        )
        kept = f"absolute table kept, copied to {length} positions"
    else:
        table = source.embeddings.position_embeddings.weight.detach().mean(0)
        student = convert_bert_to_relpos(source, scheme, keep_absolute=False, head="base", **overrides)
        with torch.no_grad():
            student.embeddings.token_type_embeddings.weight += table
        kept = "absolute table dropped"
    print(f"hf-relpos: {path} converted to relpos_bert ({scheme}, {kept}, {overrides or 'no overrides'})")
    return student.train()


def passkey_scores(model, tokenizer, pooling: dict, lengths, seed: int = 0) -> dict:
    """Passkey top-1 (:mod:`hf_relpos.long_tasks`) of ``model`` at each length."""
    from types import SimpleNamespace

    from ..long_tasks import build_task
    from ..prediction import embed, retrieval_top1

    reader = SimpleNamespace(embed=lambda texts, n: embed(model, tokenizer, pooling, texts, n))
    return {n: retrieval_top1(reader, build_task("passkey", tokenizer, n, seed=seed))[0] for n in lengths}


def setup(task, model_args, data_args, training_args, raw) -> TaskSetup:
    from .data import require_columns
    from .pretraining import _texts, load_teacher

    teacher_path = data_args.teacher_model_name_or_path
    if not teacher_path:
        raise ValueError("task='embedding_distillation' needs teacher_model_name_or_path (e.g. the original model)")
    for name in ("embedding_loss_weight", "contrastive_loss_weight"):
        if getattr(data_args, name) < 0:
            raise ValueError(f"{name}={getattr(data_args, name)} is not valid; choose a number ≥ 0")
    column = task.column(data_args, "text_column")
    for split in ("train", "validation"):
        require_columns(raw[split], {"text_column": column}, split)
    tokenizer = load_tokenizer(model_args, None, False)
    student = load_student(model_args, max(data_args.sentence_max_length, data_args.max_seq_length))
    teacher = load_teacher(data_args, model_args, student.config, None)
    window = min(learned_position_limit(teacher.config) or 512, 512)
    if data_args.max_seq_length < window:
        raise ValueError(
            f"max_seq_length={data_args.max_seq_length} is shorter than the teacher's window ({window} tokens): "
            "context extension trains longer inputs; raise it"
        )
    pooling = pooling_of(teacher_path)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def blocks(split, seed):
        stream = tokenizer("\n\n".join(_texts(raw[split], column)), add_special_tokens=False, verbose=False)
        passages = PASSAGES if data_args.contrastive_loss_weight else 0
        return training_blocks(stream["input_ids"], window, data_args.max_seq_length, cls, sep, seed, passages)

    with training_args.main_process_first(desc="tokenizing"):
        train, evals = blocks("train", training_args.seed), blocks("validation", training_args.seed + 1)
    if len(evals) == 0:
        raise ValueError(f"the validation split has too little text for one block of {BLOCK_TOKENS} tokens")
    training_args.remove_unused_columns = False
    trainer = EmbeddingDistillationTrainer(
        position_learning_rate=model_args.relative_position_learning_rate,
        teacher=teacher,
        window=window,
        pooling=pooling,
        embedding_loss_weight=data_args.embedding_loss_weight,
        contrastive_loss_weight=data_args.contrastive_loss_weight,
        model=student,
        args=training_args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        data_collator=collate_blocks,
    )

    def evaluate():
        metrics = trainer.evaluate()
        metrics["eval_cosine"] = 1 - metrics.pop("eval_cosine_distance")
        for n, score in passkey_scores(trainer.model, tokenizer, pooling, data_args.eval_lengths or []).items():
            metrics[f"eval_passkey_len{n}"] = score
        return metrics

    def extra_files(folder: Path) -> None:
        """The teacher's sentence-transformers files, reading up to ``sentence_max_length`` tokens."""
        source = Path(teacher_path)
        for name in SENTENCE_TRANSFORMERS_FILES:
            if (source / name).is_dir():
                shutil.copytree(source / name, folder / name, dirs_exist_ok=True)
            elif (source / name).is_file():
                shutil.copy2(source / name, folder / name)
        if (folder / "modules.json").is_file():
            settings = {"max_seq_length": data_args.sentence_max_length, "do_lower_case": False}
            (folder / "sentence_bert_config.json").write_text(json.dumps(settings, indent=2) + "\n")

    return TaskSetup(
        trainer=trainer, evaluate=evaluate, main_metric="cosine", text_column=column, extra_files=extra_files
    )
