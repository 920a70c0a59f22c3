"""`hf-relpos` command line (also `python -m hf_relpos.cli`).

    hf-relpos train classification_demo [--key value ...]     (a shipped recipe's name, or a YAML path)
    hf-relpos train [RECIPE] --help                            (every field; RECIPE's values as the defaults)
    hf-relpos recipes                                          (the shipped recipes and what they need)
    hf-relpos --version
    hf-relpos compare recipes/classification_demo.yaml --schemes NAME,NAME,...,none [--key value ...]
    hf-relpos compare sentiment_minilm --models LABEL=PATH,LABEL=PATH [--key value ...]   (checkpoints)
    hf-relpos push OUTPUT_DIR --repo-id user/name [--private] [--revision BRANCH] [--commit-message MSG]
    hf-relpos convert SRC OUT --scheme NAME [--keep-absolute | --drop-absolute] [--max-position-embeddings N] [--exact]
    hf-relpos predict CHECKPOINT --input FILE --output FILE [--task T] [--batch-size N] [--device D] [--overwrite] ...
    hf-relpos export CHECKPOINT OUT [--format onnx] [--opset N] [--no-check]   (needs the [onnx] extra)
    hf-relpos bench {speed,extrapolation,attention,convert-finetune,predict,long} [options]   (``hf-relpos bench long --help``)

The command line only parses and prints: the work is in hf_relpos.training (train, compare),
hf_relpos.hub (push), hf_relpos.convert, hf_relpos.prediction and hf_relpos.bench.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .bench import SUITES as BENCH_SUITES


def _train(args, overrides):
    from .training.run import train

    result = train(args.recipe, overrides)
    print(json.dumps({"output_dir": result["output_dir"], "eval": result["eval"]}, indent=2, default=str))
    return result


def _compare(args, overrides):
    from .training.compare import compare, compare_table

    schemes = None if args.schemes is None else [s.strip() for s in args.schemes.split(",") if s.strip()]
    rows = compare(args.recipe, schemes, overrides, models=args.models)
    print(compare_table(rows))
    base = Path(rows[0]["output_dir"]).parent
    chart = base / "compare.png"
    print(
        f"wrote {chart} and {base / 'compare.json'}"
        if chart.is_file()
        else f"wrote {base / 'compare.json'}; matplotlib is not installed: no chart (pip install matplotlib)"
    )
    return rows


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one `--help` away); subcommands inherit the class."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` for usage)\n")


def main(argv=None):
    parser = _Parser(prog="hf-relpos", description="Relative position encodings for Transformers.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    # no abbreviated flags anywhere: `--num_train_epoch` must be an error, not `--num_train_epochs`
    sub_add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: sub_add_parser(*a, **{"allow_abbrev": False, **kw})
    p_train = sub.add_parser(
        "train",
        help="fine-tune with a recipe; any recipe field can be overridden with --field value "
        "(`hf-relpos train --help` lists them)",
        add_help=False,
    )
    p_train.add_argument("recipe", help="a shipped recipe's name (`hf-relpos recipes`) or a YAML path")
    sub.add_parser(
        "recipes", help="list the shipped recipes: description, and whether they need the Hub or local files"
    )
    p_compare = sub.add_parser(
        "compare", help="run a recipe once per scheme (or per checkpoint) and compare metrics and time"
    )
    p_compare.add_argument("recipe")
    which = p_compare.add_mutually_exclusive_group(required=True)
    which.add_argument("--schemes", help="comma-separated relative_position values (`none`: no relative scheme)")
    which.add_argument(
        "--models",
        help="comma-separated checkpoint folders, LABEL=PATH or PATH: the recipe run "
        "from each (e.g. original=MINILM_DIR,converted=runs/minilm-t5)",
    )
    p_push = sub.add_parser("push", help="upload a checkpoint folder (safetensors, code, tokenizer, card) to the Hub")
    p_push.add_argument("output_dir", help="a folder written by `hf-relpos train` or save_pretrained")
    p_push.add_argument("--repo-id", required=True, help="namespace/name (a bare name goes under the token's user)")
    p_push.add_argument("--private", action="store_true", help="create the repository private (a new one only)")
    p_push.add_argument("--revision", default=None, help="branch to commit to (created from main if absent)")
    p_push.add_argument("--commit-message", default=None)
    p_push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    p_push.add_argument(
        "--dry-run", action="store_true", help="list what would be uploaded and print the card; send nothing"
    )
    _add_convert_parser(sub)
    _add_export_parser(sub)
    _add_predict_parser(sub)
    p_bench = sub.add_parser(
        "bench",
        help="benchmarks: speed/memory against HF anchors, length extrapolation, reading long inputs (long)",
        add_help=False,
    )
    p_bench.add_argument(
        "suite", nargs="?", choices=BENCH_SUITES, help="which benchmark (its own --help lists options)"
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the suite parses its own options
        rest = argv[1:]
        if not rest or rest[0] not in BENCH_SUITES:
            parser.error(
                f"bench: choose a suite from: {', '.join(BENCH_SUITES)} (got {rest[0] if rest else 'nothing'!r})"
            )
        return BENCH_SUITES[rest[0]](rest[1:]) or 0
    if argv[:1] == ["train"] and ("-h" in argv or "--help" in argv):  # the recipe fields, from their dataclasses
        return _train_help(argv[1:])
    args, overrides = parser.parse_known_args(argv)
    if args.command == "recipes":
        if overrides:
            sub.choices["recipes"].error(_unrecognized(sub.choices["recipes"], overrides))
        from .training.recipes import format_recipes, recipe_summaries

        print(format_recipes(recipe_summaries()))
        return 0
    if args.command in ("push", "convert", "export", "predict") and overrides:
        sub.choices[args.command].error(_unrecognized(sub.choices[args.command], overrides))
    succeeded = False
    try:
        if args.command == "train":
            _train(args, overrides)
            succeeded = True
        elif args.command == "compare":
            _compare(args, overrides)
            succeeded = True
        elif args.command == "push":
            return _push(args)
        elif args.command == "convert":
            return _convert(args)
        elif args.command == "export":
            return _export(args)
        elif args.command == "predict":
            return _predict(args)
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
    ) as err:  # user mistakes: one line, exit 2 (bugs keep their traceback)
        print(f"hf-relpos {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if type(err).__module__.split(".")[0] != "yaml":
            raise
        mark = getattr(err, "problem_mark", None)  # a recipe that is not valid YAML
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        print(
            f"hf-relpos {args.command}: error: recipe {getattr(args, 'recipe', '?')!r} is not valid YAML:{where}: "
            f"{getattr(err, 'problem', None) or err}",
            file=sys.stderr,
        )
        return 2
    finally:
        _end_distributed(succeeded)
    return 0


def _end_distributed(succeeded: bool):
    """Under torchrun / accelerate launch, Trainer leaves the process group up; a rank that exits with gloo's
    threads still running can abort ("terminate called without an active exception", SIGABRT) after a run
    that succeeded. Close it here: after a barrier when this rank succeeded (every rank is done), at once
    when it failed (a barrier could wait forever for ranks that will not come)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            if succeeded:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def _unrecognized(parser, extras: list[str]) -> str:
    """argparse's message, with the closest known flag (difflib) after each unknown one."""
    from .training.recipes import did_you_mean

    known = [s for s in parser._option_string_actions if s.startswith("--")]
    named = [f"{a}{did_you_mean(a.split('=', 1)[0], known)}" if a.startswith("--") else a for a in extras]
    return f"unrecognized arguments: {' '.join(named)}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    parts = [f"hf-relpos {__version__}"]
    for dist in ("transformers", "torch"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return f"{parts[0]} ({', '.join(parts[1:])})" if parts[1:] else parts[0]


def _train_help(rest: list[str]) -> int:
    """`hf-relpos train [RECIPE] --help`: every recipe field by group; RECIPE's values as the defaults."""
    from .training.arguments import recipe_help

    recipe = next((a for a in rest if not a.startswith("-")), None)
    try:
        print(recipe_help(recipe))
    except (ValueError, FileNotFoundError) as err:
        print(f"hf-relpos train: error: {err}", file=sys.stderr)
        return 2
    return 0


def _push(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from .hub import push_to_hub

    try:
        result = push_to_hub(
            args.output_dir,
            args.repo_id,
            private=True if args.private else None,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
            dry_run=args.dry_run,
        )
    except HfHubHTTPError as err:  # reached the Hub, which refused (auth, permissions, ...)
        print(f"hf-relpos push: error from the Hub: {err}", file=sys.stderr)
        return 1
    card = result.pop("card", None)
    print(json.dumps(result, indent=2))
    if card is not None:
        print(card)
    return 0


def _add_convert_parser(sub):
    p = sub.add_parser(
        "convert",
        help="convert a pretrained BERT/RoBERTa/ELECTRA, a legacy 4.x relative_key* BERT or a T5/mT5 checkpoint",
        description="Write a relpos_bert / relpos_t5 checkpoint folder (weights, code, tokenizer, conversion.json) "
        "from SRC (a folder or Hub id). Absolute BERT-family encoders take any --scheme; legacy relative_key / "
        "relative_key_query BERTs and T5 / mT5 become their exact relative counterparts.",
    )
    p.add_argument("src", help="source checkpoint folder or Hub repo id")
    p.add_argument("out", help="output folder (must not exist, or be empty)")
    p.add_argument("--scheme", default=None, help="relative scheme (default: the exact one for legacy and T5 sources)")
    absolute = p.add_mutually_exclusive_group()
    absolute.add_argument(
        "--keep-absolute",
        dest="keep_absolute",
        action="store_const",
        const=True,
        default=None,
        help="keep the learned absolute table (default for absolute sources)",
    )
    absolute.add_argument(
        "--drop-absolute",
        dest="keep_absolute",
        action="store_const",
        const=False,
        help="drop it: a purely relative model that runs at any length",
    )
    p.add_argument(
        "--max-position-embeddings",
        type=int,
        default=None,
        help="resize the learned table (longer: Longformer-style copies; exact on shorter inputs)",
    )
    p.add_argument("--exact", action="store_true", help="refuse options that cannot reproduce the source's outputs")
    p.add_argument("--head", default="auto", help="auto (the source's task head) or base (the encoder alone)")
    p.add_argument(
        "--init", default="preserve", help="preserve (new relative parameters add nothing where possible) or random"
    )
    p.add_argument("--tokenizer", default=None, help="take the tokenizer from this folder / Hub id")
    p.add_argument("--no-tokenizer", action="store_true", help="write the checkpoint without a tokenizer")
    p.add_argument("--no-check", action="store_true", help="skip the drift check against the source")
    p.add_argument(
        "--config-overrides", default=None, help='JSON of extra config fields, e.g. {"max_relative_position": 64}'
    )


def _convert(args) -> int:
    from .convert import convert_checkpoint
    from .training.arguments import parse_json_object

    overrides = parse_json_object("--config-overrides", args.config_overrides) if args.config_overrides else {}
    info = convert_checkpoint(
        args.src,
        args.out,
        args.scheme,
        keep_absolute=args.keep_absolute,
        max_position_embeddings=args.max_position_embeddings,
        exact=args.exact,
        head=args.head,
        init=args.init,
        tokenizer=args.tokenizer,
        no_tokenizer=args.no_tokenizer,
        check=not args.no_check,
        **overrides,
    )
    print(json.dumps(info, indent=2, default=str))
    return 0


def _add_export_parser(sub):
    p = sub.add_parser(
        "export",
        help='export a relpos checkpoint to ONNX (pip install "hf-relpos[onnx]")',
        description="relpos_bert with its task head -> model.onnx; relpos_t5 -> encoder_model.onnx and "
        "decoder_model.onnx (no past key values). Dynamic batch and sequence axes, checked in "
        "onnxruntime against PyTorch.",
    )
    p.add_argument("checkpoint", help="a checkpoint folder or Hub repo id")
    p.add_argument("out", help="output folder (must not exist, or be empty)")
    p.add_argument("--format", default="onnx", choices=("onnx",))
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch check")


def _export(args) -> int:
    from .export import export_checkpoint

    try:
        report = export_checkpoint(
            args.checkpoint, args.out, format=args.format, opset=args.opset, check=not args.no_check
        )
    except ImportError as err:  # the optional extra is missing
        print(f"hf-relpos export: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _add_predict_parser(sub):
    from .prediction import TASKS

    p = sub.add_parser(
        "predict",
        help="run a checkpoint over a file of inputs (every task): answers, labels, summaries, embeddings",
        description="Predictions of CHECKPOINT for every row of --input (.jsonl / .csv / .json; - = jsonl on stdin), "
        "written as jsonl to --output (- = stdout; .npy / .safetensors for embeddings). The task comes from the "
        "checkpoint. Input fields: qa: question, context; summarization: text or document; others: text. Output rows "
        "keep the input's id column. docs/predict.md has one command per task.",
    )
    p.add_argument("checkpoint", help="a checkpoint folder (hf-relpos train / convert output, or save_pretrained)")
    p.add_argument("--input", required=True, help="input file (.jsonl, .csv, .json) or - for jsonl on stdin")
    p.add_argument(
        "--output", required=True, help="output file (.jsonl; embeddings also .npy / .safetensors) or - for stdout"
    )
    p.add_argument("--task", default=None, choices=TASKS, help="override the checkpoint's task")
    p.add_argument(
        "--batch-size", type=int, default=32, help="rows (qa: windows) per forward; batches are sorted by length"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda when available)")
    p.add_argument("--dtype", default="auto", help="auto (the checkpoint's), float32, bfloat16, float16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument(
        "--skip-bad-rows", action="store_true", help="report and skip rows the task cannot take (default: stop)"
    )
    p.add_argument("--id-column", default="id", help="input column copied to each output row (default: id)")
    p.add_argument(
        "--text-column", default=None, help="input column of the text (default: text; seq2seq: text or document)"
    )
    p.add_argument("--text-pair-column", default=None, help="classification: second text of a pair")
    p.add_argument("--question-column", default="question")
    p.add_argument("--context-column", default="context")
    p.add_argument("--n-best", type=int, default=1, help="qa: answers per question (an n_best list when > 1)")
    p.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="tokens per input (qa: per window); default: the length the checkpoint was trained at",
    )
    p.add_argument(
        "--doc-stride",
        type=int,
        default=None,
        help="qa: overlap of the windows of a long context (default: training's)",
    )
    p.add_argument(
        "--max-answer-length", type=int, default=None, help="qa: longest answer in tokens (default: training's)"
    )
    p.add_argument(
        "--version-2",
        action="store_true",
        default=None,
        help="qa: SQuAD v2, the answer may be empty (default: as the checkpoint was trained)",
    )
    p.add_argument(
        "--null-threshold", type=float, default=None, help="qa v2: empty answer when null score - best span > this"
    )
    p.add_argument(
        "--num-beams",
        "--num_beams",
        dest="num_beams",
        type=int,
        default=None,
        help="seq2seq: beams (default: generation_config.json)",
    )
    p.add_argument(
        "--max-new-tokens",
        "--max_new_tokens",
        dest="max_new_tokens",
        type=int,
        default=None,
        help="seq2seq: tokens to generate at most (default: generation_config.json)",
    )
    p.add_argument("--top-k", type=int, default=5, help="fill-mask: tokens per mask")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow a checkpoint's own code (not needed for relpos_*)"
    )


def _predict(args) -> int:
    from .prediction import predict

    rows = predict(
        args.checkpoint,
        args.input,
        args.output,
        task=args.task,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        id_column=args.id_column,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        question_column=args.question_column,
        context_column=args.context_column,
        n_best=args.n_best,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_answer_length=args.max_answer_length,
        version_2=args.version_2,
        null_threshold=args.null_threshold,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        top_k=args.top_k,
        skip_bad_rows=args.skip_bad_rows,
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
        trust_remote_code=args.trust_remote_code,
    )
    rate = len(rows) / rows.seconds if rows.seconds else 0.0
    where = "stdout" if args.output == "-" else args.output
    print(
        f"hf-relpos predict: {rows.task}: {len(rows)} rows -> {where} ({rate:.1f} rows/s)"
        + (f"; skipped {len(rows.skipped)} bad rows" if args.skip_bad_rows else ""),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
