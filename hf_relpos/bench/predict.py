"""``hf-relpos bench predict``: `hf-relpos predict` against transformers' own ``text-classification`` pipeline on
the same checkpoint, rows and batch size, side by side in one run.

    hf-relpos bench predict                           # 10,000 short rows; a tiny classifier trained first (~1 min)
    hf-relpos bench predict --checkpoint runs/classification_demo --rows 10000 --batch-size 32

The rows are short texts of the built-in classification task (what classification_demo trains on). Each side
runs ``--repeats`` times, alternating; the best time counts. predict's time includes loading the checkpoint and
tokenizing (its whole call); the pipeline's excludes building the pipeline (it is built once before timing), so
the ratio leans towards the pipeline. Labels are compared row by row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .common import add_io_options, write_json


def _train_checkpoint(folder: Path) -> Path:
    from ..training import train

    train(
        "classification_demo",
        [
            "--max_steps",
            "40",
            "--save_strategy",
            "no",
            "--eval_strategy",
            "no",
            "--synthetic_train_size",
            "1280",
            "--synthetic_eval_size",
            "64",
            "--disable_tqdm",
            "true",
            "--output_dir",
            str(folder),
        ],
    )
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-relpos bench predict", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a classification checkpoint folder (default: train classification_demo briefly)",
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    add_io_options(parser, "predict")
    args = parser.parse_args(argv)

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from ..prediction import predict
    from ..training.data import synthetic_classification

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or _train_checkpoint(Path(tmp) / "classifier")
        texts = list(synthetic_classification(train_size=args.rows, eval_size=1, seed=7)["train"]["text"])
        rows = [{"id": i, "text": t} for i, t in enumerate(texts)]
        hf_logging.disable_progress_bar()
        classifier = pipeline(
            "text-classification", model=str(checkpoint), device=args.device, batch_size=args.batch_size
        )
        predict_s, pipeline_s = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = predict(checkpoint, rows, batch_size=args.batch_size, device=args.device, progress=False)
            predict_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = classifier(texts, batch_size=args.batch_size)
            pipeline_s.append(time.perf_counter() - start)
    agree = sum(a["label"] == b["label"] for a, b in zip(ours, theirs)) / len(texts)
    results = {
        "rows": len(texts),
        "batch_size": args.batch_size,
        "predict_seconds": min(predict_s),
        "pipeline_seconds": min(pipeline_s),
        "predict_rows_per_s": len(texts) / min(predict_s),
        "pipeline_rows_per_s": len(texts) / min(pipeline_s),
        "labels_agree": agree,
        "all_predict_seconds": predict_s,
        "all_pipeline_seconds": pipeline_s,
    }
    ratio = results["predict_rows_per_s"] / results["pipeline_rows_per_s"]
    results["throughput_ratio"] = ratio
    print(
        f"{len(texts):,} short classification rows, batch size {args.batch_size}, device {args.device}, "
        f"best of {args.repeats}"
    )
    print(f"{'':32s} {'seconds':>8s} {'rows/s':>9s}")
    print(
        f"{'hf-relpos predict (whole call)':32s} {results['predict_seconds']:8.2f} {results['predict_rows_per_s']:9.0f}"
    )
    print(
        f"{'pipeline(text-classification)':32s} {results['pipeline_seconds']:8.2f} {results['pipeline_rows_per_s']:9.0f}"
    )
    print(f"throughput predict / pipeline: {ratio:.2f}x; labels agree on {agree:.2%} of rows")
    out = write_json(args.out, {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, results)
    print(f"wrote {out}")
    return 0
