"""`hf-relpos predict` against the evaluation `hf-relpos train` runs, side by side on one QA checkpoint: the
same answers (EM / F1 and every answer string) and the throughput of each, measured alternately in one process.

    python benchmarks/predict_qa_vs_evaluation.py RUN_DIR [RECIPE] [--repeats 2] [--batch-size 64]

RUN_DIR: a folder written by `hf-relpos train RECIPE` (default recipe: qa_pydoc). The evaluation side is the
recipe's own code path (hf_relpos.training.qa: windows padded to max_seq_length, Trainer.predict,
post-processing, the squad metric), rebuilt on RUN_DIR's weights; its tokenization happens at setup and is not
timed. predict's time is its whole call (loading, tokenization, model, post-processing).
"""

import argparse
import json
import sys
import time
from pathlib import Path

# recipe fields that build a fresh model or tokenizer; the checkpoint brings its own
FROM_CHECKPOINT = ["--tokenizer_newlines", "false"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("recipe", nargs="?", default="qa_pydoc")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's per_device_eval_batch_size")
    args = parser.parse_args(argv)

    import evaluate
    from transformers.utils import logging as hf_logging

    from hf_relpos.prediction import predict
    from hf_relpos.training.arguments import parse_recipe
    from hf_relpos.training.data import load_raw_datasets
    from hf_relpos.training.qa import METRIC_DIR
    from hf_relpos.training.tasks import get_task

    hf_logging.disable_progress_bar()
    model_args, data_args, training_args = parse_recipe(
        args.recipe,
        [
            "--model_name_or_path",
            str(args.run_dir),
            "--output_dir",
            str(args.run_dir / "bench-eval"),
            "--disable_tqdm",
            "true",
            *FROM_CHECKPOINT,
        ],
    )
    batch_size = args.batch_size or training_args.per_device_eval_batch_size
    training_args.per_device_eval_batch_size = batch_size
    task = get_task(data_args.task)
    raw = load_raw_datasets(data_args, task.synthetic)
    setup = task.setup(model_args, data_args, training_args, raw)
    validation = [dict(row) for row in raw["validation"]]
    rows = [
        {"id": r["id"], "question": r[data_args.question_column], "context": r[data_args.context_column]}
        for r in validation
    ]
    eval_s, predict_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scores = setup.evaluate()
        eval_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        answers = predict(args.run_dir, rows, batch_size=batch_size, progress=False)
        predict_s.append(time.perf_counter() - start)
    evaluated = {
        r["id"]: r["prediction"]
        for r in json.loads((args.run_dir / "bench-eval" / "eval_predictions.json").read_text())
    }
    ours = {r["id"]: r["answer"] for r in answers}
    squad = evaluate.load(str(METRIC_DIR))
    mine = squad.compute(
        predictions=[{"id": k, "prediction_text": v} for k, v in ours.items()],
        references=[{"id": r["id"], "answers": r[data_args.answer_column]} for r in validation],
    )
    n = len(rows)
    print(f"{n} questions ({args.recipe} validation), batch size {batch_size}, best of {args.repeats}")
    print(f"answers identical: {sum(ours[k] == v for k, v in evaluated.items())}/{len(evaluated)}")
    print(f"{'':38s} {'EM':>8s} {'F1':>8s} {'seconds':>8s} {'q/s':>7s}")
    print(
        f"{'evaluation (the train code path)':38s} {scores['eval_exact_match']:8.3f} {scores['eval_f1']:8.3f} "
        f"{min(eval_s):8.2f} {n / min(eval_s):7.1f}"
    )
    print(
        f"{'hf-relpos predict (whole call)':38s} {mine['exact_match']:8.3f} {mine['f1']:8.3f} "
        f"{min(predict_s):8.2f} {n / min(predict_s):7.1f}"
    )
    print(f"throughput predict / evaluation: {min(eval_s) / min(predict_s):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
