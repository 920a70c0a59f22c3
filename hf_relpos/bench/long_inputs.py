"""``hf-relpos bench long CKPT [CKPT ...]``: does a model read long inputs? One table per measure, each
checkpoint a row, each length a column; JSON report and a plot.

- ``passkey`` / ``needle``: LongEmbed's synthetic retrieval (:mod:`hf_relpos.long_tasks`), top-1 by cosine of the
  checkpoint's own pooling (its sentence-transformers files, else mean);
- ``mlm``: masked-token accuracy by length on the long documents (checkpoints with an MLM head);
- ``qa``: extractive QA on whole pages (every context of one qa_pydoc page joined in order) read at once,
  against the same model with 512-token windows and a stride (QA checkpoints).

A checkpoint with a learned absolute table (an original BERT, or a relpos model that kept one) reads at
most that many tokens: longer inputs are truncated there, as its users run it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..long_tasks import TASKS, build_task
from ..prediction import embed, pooling_of, retrieval_top1
from ..training.modeling import learned_position_limit
from .common import add_io_options, line_plot, write_json

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
PARTS = (*TASKS, "mlm", "qa")


class Reader:
    """One checkpoint ready to embed / score: tokenizer, model (eval), pooling and the longest input it reads."""

    def __init__(self, checkpoint, task: str = "embeddings", dtype=torch.float32):
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForMaskedLM,
            AutoModelForQuestionAnswering,
            AutoTokenizer,
        )

        import hf_relpos  # noqa: F401  (registers relpos_* with the Auto classes)

        self.path = Path(checkpoint)
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.config = AutoConfig.from_pretrained(checkpoint)
        auto = {"embeddings": AutoModel, "mlm": AutoModelForMaskedLM, "qa": AutoModelForQuestionAnswering}[task]
        self.model = auto.from_pretrained(checkpoint, dtype=dtype).eval()
        self.limit = learned_position_limit(self.config)
        self.pooling = pooling_of(checkpoint)

    def read_length(self, length: int) -> int:
        return length if self.limit is None else min(length, self.limit)

    def embed(self, texts: list[str], max_length: int, batch_tokens: int = 16384) -> torch.Tensor:
        """[len(texts), hidden] pooled embeddings, inputs truncated at ``read_length(max_length)``."""
        return embed(self.model, self.tokenizer, self.pooling, texts, self.read_length(max_length), batch_tokens)


# --------------------------------------------------------------------------------------------------
# masked-token accuracy by length
# --------------------------------------------------------------------------------------------------


def has_mlm_head(checkpoint) -> bool:
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    return any(a.endswith("ForMaskedLM") or a.endswith("ForPreTraining") for a in config.get("architectures") or [])


def long_documents(data_dir: Path) -> list[str]:
    path = Path(data_dir) / "longtext" / "validation.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"--data-dir={str(data_dir)!r} has no longtext/validation.jsonl (../shared/data's layout)"
        )
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


@torch.inference_mode()
def masked_accuracy(
    reader: Reader, texts: list[str], length: int, *, seed: int = 0, documents: int = 8, probability: float = 0.15
) -> dict:
    """Masked-token accuracy over the first ``length`` tokens of each of the first ``documents`` texts that
    have that many (15% of the positions masked, seeded). A model that reads fewer tokens (its learned
    table) sees the input truncated: the masked tokens it never read count as misses."""
    tok = reader.tokenizer
    generator = torch.Generator().manual_seed(seed)
    hits = total = used = 0
    read = reader.read_length(length)
    for text in texts:
        ids = tok(text, truncation=True, max_length=length)["input_ids"]
        if len(ids) < length:
            continue
        ids = torch.tensor([ids])
        special = torch.tensor(tok.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True)).bool()
        masked = (torch.rand(length, generator=generator) < probability) & ~special
        inputs = ids.masked_fill(masked, tok.mask_token_id)
        logits = reader.model(input_ids=inputs[:, :read]).logits[0]
        predicted = torch.full((length,), -1, dtype=torch.long)
        predicted[:read] = logits.argmax(-1)
        hits += int((predicted[masked] == ids[0][masked]).sum())
        total += int(masked.sum())
        used += 1
        if used == documents:
            break
    return {"accuracy": hits / total if total else None, "documents": used, "masked": total, "read": read}


# --------------------------------------------------------------------------------------------------
# whole-page extractive QA
# --------------------------------------------------------------------------------------------------


def qa_pages(data_dir: Path, split: str = "validation") -> list[dict]:
    """qa_pydoc questions with a whole page as context: every context of one page's questions, joined in
    the order they first appear (``answer_start`` moved to the page)."""
    path = Path(data_dir) / "qa" / f"pydoc_{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"--data-dir={str(data_dir)!r} has no qa/pydoc_{split}.jsonl (../shared/data's layout)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    contexts: dict[str, list[str]] = {}
    for row in rows:
        page = contexts.setdefault(row["title"], [])
        if row["context"] not in page:
            page.append(row["context"])
    pages = {title: "\n\n".join(parts) for title, parts in contexts.items()}
    out = []
    for row in rows:
        parts, page = contexts[row["title"]], pages[row["title"]]
        offset = sum(len(p) + 2 for p in parts[: parts.index(row["context"])])
        answers = dict(row["answers"], answer_start=[offset + s for s in row["answers"]["answer_start"]])
        assert all(page[s : s + len(t)] == t for s, t in zip(answers["answer_start"], answers["text"]))
        out.append({"id": row["id"], "question": row["question"], "context": page, "answers": answers})
    return out


def qa_scores(checkpoint, rows: list[dict], *, max_seq_length: int, doc_stride: int, batch_size: int) -> dict:
    """EM / F1 (percent) and seconds of ``hf-relpos predict`` on ``rows`` with these windows."""
    import evaluate

    from ..prediction import predict
    from ..training.qa import METRIC_DIR

    predictions = predict(
        checkpoint,
        [{k: r[k] for k in ("id", "question", "context")} for r in rows],
        task="qa",
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        batch_size=batch_size,
        progress=False,
    )
    scores = evaluate.load(str(METRIC_DIR)).compute(
        predictions=[{"id": p["id"], "prediction_text": p["answer"]} for p in predictions],
        references=[{"id": r["id"], "answers": r["answers"]} for r in rows],
    )
    return {**scores, "seconds": predictions.seconds, "max_seq_length": max_seq_length, "doc_stride": doc_stride}


# --------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="hf-relpos bench long",
        allow_abbrev=False,
        description="Does a model read long inputs? Passkey and needle retrieval (LongEmbed's synthetic tasks), "
        "masked-token accuracy by length and whole-page QA, each checkpoint side by side.",
    )
    parser.add_argument(
        "checkpoints",
        nargs="+",
        metavar="[NAME=]CKPT",
        help="checkpoint folders (relpos or an original absolute BERT, truncated at its table); NAME labels a row",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="what to measure (default: all; a part that does not apply to a checkpoint is skipped)",
    )
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS), help="input lengths in tokens")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="task seeds (retrieval: averaged)")
    parser.add_argument("--documents", type=int, default=50, help="retrieval candidates per task (≤ 50)")
    parser.add_argument("--mlm-documents", type=int, default=8, help="long documents per length for mlm")
    parser.add_argument("--qa-window", type=int, default=512, help="the windowed QA reading: window tokens")
    parser.add_argument("--qa-stride", type=int, default=128, help="the windowed QA reading: overlap tokens")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="tokens per forward when embedding")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_io_options(parser, "long", data_help="folder with longtext/ and qa/ (../shared/data's layout)")
    args = parser.parse_args(argv)
    bad = [n for n in args.lengths if n < 64]
    if bad:
        parser.error(f"--lengths: {bad[0]} is too short; give lengths of at least 64 tokens")
    if not 1 <= args.documents <= 50:
        parser.error(f"--documents: {args.documents} is not valid; choose 1 to 50")
    args.named = []
    for spec in args.checkpoints:
        name, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
        if not (Path(path) / "config.json").is_file():
            parser.error(f"checkpoint {path!r} is not a checkpoint folder (no config.json)")
        args.named.append((name or Path(path).name, Path(path)))
    needs_data = {"needle", "mlm", "qa"} & set(args.parts)
    if needs_data and args.data_dir is None:
        parser.error(
            f"--parts {' '.join(sorted(needs_data))} need --data-dir (or $HF_RELPOS_DATA_DIR); "
            "or choose --parts passkey"
        )
    return args


def _table(title: str, rows: dict, lengths, fmt="{:.2f}") -> None:
    print(f"\n{title}")
    print("| model | " + " | ".join(f"{n:,}" for n in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for name, by_length in rows.items():
        cells = [fmt.format(by_length[n]) if by_length.get(n) is not None else "–" for n in lengths]
        print(f"| {name} | " + " | ".join(cells) + " |")


def run_retrieval(args, readers, haystack) -> dict:
    results = {}
    for part in [p for p in ("passkey", "needle") if p in args.parts]:
        results[part] = {}
        for name, reader in readers.items():
            results[part][name] = {}
            for length in args.lengths:
                scores = []
                for seed in args.seeds:
                    task = build_task(part, reader.tokenizer, length, seed=seed, haystack=haystack, n=args.documents)
                    scores.append(retrieval_top1(reader, task)[0])
                results[part][name][length] = sum(scores) / len(scores)
                print(
                    f"{part} {name} {length}: top-1 {results[part][name][length]:.2f} "
                    f"(reads {reader.read_length(length)} tokens)",
                    flush=True,
                )
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    haystack = " ".join(long_documents(args.data_dir)) if {"needle", "mlm"} & set(args.parts) else None
    results = {}
    readers = {name: Reader(path) for name, path in args.named} if {"passkey", "needle"} & set(args.parts) else {}
    results.update(run_retrieval(args, readers, haystack))
    readers.clear()
    if "mlm" in args.parts:
        texts = long_documents(args.data_dir)
        results["mlm"] = {}
        for name, path in args.named:
            if not has_mlm_head(path):
                print(f"mlm {name}: skipped (no masked-LM head in config.json's architectures)")
                continue
            reader = Reader(path, task="mlm")
            results["mlm"][name] = {}
            for length in args.lengths:
                score = masked_accuracy(reader, texts, length, seed=args.seeds[0], documents=args.mlm_documents)
                results["mlm"][name][length] = score["accuracy"]
                print(
                    f"mlm {name} {length}: accuracy {score['accuracy']} over {score['masked']} masked tokens "
                    f"of {score['documents']} documents (reads {score['read']})",
                    flush=True,
                )
    if "qa" in args.parts:
        from ..prediction import task_of

        rows = qa_pages(args.data_dir)
        results["qa"] = {}
        for name, path in args.named:
            if task_of(path) != "qa":
                print(f"qa {name}: skipped (not a question-answering checkpoint)")
                continue
            reader_limit = learned_position_limit(json.loads((path / "config.json").read_text()))
            whole = max(len(r["context"]) for r in rows)  # characters bound tokens from above
            whole = whole if reader_limit is None else reader_limit
            results["qa"][name] = {
                "whole page": qa_scores(path, rows, max_seq_length=whole, doc_stride=args.qa_stride, batch_size=1),
                f"{args.qa_window}-token windows": qa_scores(
                    path, rows, max_seq_length=args.qa_window, doc_stride=args.qa_stride, batch_size=8
                ),
            }
            for how, score in results["qa"][name].items():
                print(
                    f"qa {name} {how}: EM {score['exact_match']:.2f} F1 {score['f1']:.2f} in {score['seconds']:.1f} s",
                    flush=True,
                )
    for part in ("passkey", "needle", "mlm"):
        if results.get(part):
            _table(
                f"{part}: {'top-1 retrieval' if part != 'mlm' else 'masked-token accuracy'} by input length",
                results[part],
                args.lengths,
            )
    if results.get("qa"):
        print("\nwhole-page QA (qa_pydoc validation, every context of a page joined)")
        print("| model | reading | EM | F1 | seconds |\n|---|---|---|---|---|")
        for name, hows in results["qa"].items():
            for how, s in hows.items():
                print(f"| {name} | {how} | {s['exact_match']:.2f} | {s['f1']:.2f} | {s['seconds']:.1f} |")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "named"}
    settings["checkpoints"] = {name: str(path) for name, path in args.named}
    out = write_json(args.out, settings, results)
    panels = [
        {
            "title": part,
            "xlabel": "input tokens",
            "ylabel": "top-1" if part != "mlm" else "masked accuracy",
            "logx": True,
            "series": {n: (list(v), list(v.values())) for n, v in results[part].items()},
        }
        for part in ("passkey", "needle", "mlm")
        if results.get(part)
    ]
    if panels:
        line_plot(Path(out).with_suffix(".png"), panels, title="hf-relpos bench long")
    print(f"\nwrote {out}")
    return 0
