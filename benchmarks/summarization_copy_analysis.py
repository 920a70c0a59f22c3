"""What a summarization run copies and what it invents: generates for the validation split with the run's
saved generation settings and writes ROUGE, the lead baseline, copy statistics and the training curve (the
run's `trainer_state.json`: steps → loss, eval ROUGE) to one JSON.

    python benchmarks/summarization_copy_analysis.py RUN_DIR --out benchmarks/reports/summarization_minilm.json

Copy statistics, on lowercased whitespace words (punctuation stripped): the share of a summary's words found in
its document (the rest are invented), the share of summaries that are a prefix of the document (pure lead
copies), the mean position in the document where the longest copied span starts, and the same for the
references, so the model's habits sit beside the human synopses'.
"""

import argparse
import json
import re
import time
from pathlib import Path


def words(text):
    return [w for w in (re.sub(r"[^\w\-+.]", " ", text.lower()).split()) if w.strip(".")]


def copy_stats(summaries, documents):
    found, prefix, starts, lengths = [], [], [], []
    for summary, document in zip(summaries, documents):
        s, d = words(summary), words(document)
        lengths.append(len(s))
        if not s:
            continue
        vocab = set(d)
        found.append(sum(w in vocab for w in s) / len(s))
        prefix.append(d[: len(s)] == s)
        best, where = 0, 0  # longest common span (summary contiguous in the document), its start in the document
        for i in range(len(d)):
            n = 0
            while i + n < len(d) and n < len(s) and d[i + n] == s[n]:
                n += 1
            if n > best:
                best, where = n, i
        starts.append(where)
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
    return {
        "words_found_in_document": mean(found),
        "invented_word_share": 1 - mean(found),
        "exact_document_prefix_share": mean(prefix),
        "mean_start_of_first_word_copy": mean(starts),
        "mean_words": mean(lengths),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--validation", default="../shared/data/summarization/validation.jsonl")
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--examples", type=int, default=12)
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation rows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_relpos  # noqa: F401  (registers the classes)
    from hf_relpos.training.summarization import lead, rouge

    rows = [json.loads(line) for line in Path(args.validation).read_text().splitlines() if line.strip()]
    rows = rows[: args.limit] if args.limit else rows
    documents, references = [r["document"] for r in rows], [r["summary"].strip() for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(args.run_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.run_dir).eval()
    started, predictions = time.time(), []
    with torch.no_grad():
        for i in range(0, len(documents), args.batch_size):
            batch = tokenizer(
                documents[i : i + args.batch_size],
                max_length=args.max_source_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            )
            batch.pop("token_type_ids", None)
            out = model.generate(**batch)
            predictions += [p.strip() for p in tokenizer.batch_decode(out, skip_special_tokens=True)]
    seconds = time.time() - started
    state_path = args.run_dir / "trainer_state.json"
    history = json.loads(state_path.read_text())["log_history"] if state_path.exists() else []
    curve = [
        {k: h[k] for k in ("step", "eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_gen_len") if k in h}
        for h in history
        if "eval_rouge1" in h
    ]
    losses = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
    result = {
        "run_dir": str(args.run_dir),
        "generation": {k: v for k, v in model.generation_config.to_diff_dict().items() if k != "transformers_version"},
        "generation_seconds": round(seconds, 1),
        "rouge": rouge(predictions, references),
        "lead12_rouge": rouge([lead(d, 12) for d in documents], references),
        "copy": {
            "model": copy_stats(predictions, documents),
            "references": copy_stats(references, documents),
            "lead12": copy_stats([lead(d, 12) for d in documents], documents),
        },
        "distinct_predictions": len(set(predictions)),
        "curve": curve,
        "train_loss": losses,
        "examples": [
            {"document": d[:300], "reference": r, "prediction": p}
            for d, r, p in list(zip(documents, references, predictions))[: args.examples]
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rouge", "lead12_rouge", "copy", "distinct_predictions")}, indent=2))


if __name__ == "__main__":
    main()
