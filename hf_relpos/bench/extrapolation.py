"""Length extrapolation: train a tiny ``relpos_bert`` per position scheme at one length, evaluate it at
1×, 2×, 4×, 8× that length (the setting of Press et al. 2022, "Train Short, Test Long", ALiBi).

Tasks:
  position  built-in, seeded: per-token classification "label at i = the token at i − OFFSET" (class 0
            where i < OFFSET). Defined the same way at every length; quality = token accuracy.
  mlm       masked LM on the text of --data-dir, WordPiece tokenizer trained on the train split; quality =
            masked-token accuracy (loss → perplexity too). ``--mlm-data short``: sentiment ``text`` +
            summarization ``document`` (short texts); ``longtext``: the Python documentation pages of
            longtext/ (long documents: more context for the windows to use).

Schemes are registry names, the baselines below, or a variant ``NAME:VARIANT`` of a scheme's
hyper-parameters: ``alibi:directional`` / ``alibi:symmetric`` (``directional`` True / False), or
``NAME:KEY=VALUE`` (VALUE read as JSON, else as a string), e.g. ``fire:mlp_width=16``.

Every factor scores the same tokens: one evaluation stream of ``eval_examples × train_length × max(factors)``
tokens (and, for mlm, one fixed mask) is cut into windows of each length, so only the context length
changes between the columns of the table.

Verdict at 4×: "holds" ≥ 95% of the 1× quality; "collapses" < 50% of it, or ≤ 25% of its margin over the
floor left; "degrades" in between; "not learned" when the 1× quality itself is too low for a ratio to mean
anything (position: < 40%; mlm: < the order-blind `nopos` model + 0.02). Direction-blind schemes (a bias
of |i − j| only) are reversal-equivariant without absolute embeddings, so they cannot tell the token at
i − 2 from the one at i + 2: ≈ 53% is their ceiling on the position task.

    hf-relpos bench extrapolation [--schemes NAME,NAME:VARIANT,absolute] [--tasks position,mlm] [--seed 0]
                                  [--mlm-data short|longtext] [--data-dir FOLDER]
                                  [--out benchmarks/results/extrapolation.json] ...
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from ..configuration_relpos_bert import RelPosBertConfig
from ..modeling_relpos_bert import RelPosBertForMaskedLM, RelPosBertForTokenClassification
from ..relative_positions import SCHEMES
from .common import add_io_options, line_plot, write_json

# Baselines without a relative scheme, named by their absolute embeddings; `nopos` sees no order at all
# (a bag of words): the floor a scheme must beat to show it uses positions.
ABSOLUTE = {"absolute": "learned", "absolute_sinusoidal": "sinusoidal", "nopos": "none"}
DEFAULT_SCHEMES = [s for s in SCHEMES if s != "none"] + list(ABSOLUTE)
TASKS = ("position", "mlm")

OFFSET = 2  # position task: copy the token OFFSET places to the left
POSITION_VOCAB = 16  # position task: input tokens 1..POSITION_VOCAB (0 is padding, never used)

# Per-task training defaults (the same for every scheme), tuned on 1 CPU thread so that the whole default
# study stays under ~15 minutes:
# - position: at BERT's init 0.02 learned absolute embeddings sit on the loss plateau for >1000 steps;
#   at 0.1 the order-aware schemes reach ~100% within 800 steps (the slowest, absolute_sinusoidal, checked
#   on seeds 0, 1, 3); the lr decays to 0 so that the copies end exact.
# - mlm: BERT's init; the lr stays constant after warmup, because with this short budget a decay slows
#   the escape from the bag-of-words plateau (the rotation scheme: 0.15 vs 0.18 masked accuracy at 800
#   steps). Even so, at this size only the schemes where position meets content (rotation, projected
#   distance encodings, disentangled attention) leave that plateau; bucketed biases and learned absolute
#   embeddings stay on it at 3000 steps too, and lr 1e-3, init 0.1, 2 heads or batch 32 did not help.
TASK_DEFAULTS = {
    "position": dict(steps=800, batch_size=16, lr=2e-3, init_range=0.1, eval_examples=16, decay=True),
    "mlm": dict(steps=800, batch_size=16, lr=3e-3, init_range=0.02, eval_examples=32, decay=False),
}

VERDICT_FACTOR = 4
HOLD = 0.95  # "holds": quality at 4× ≥ 95% of quality at 1×
COLLAPSE = 0.5  # "collapses": quality at 4× < 50% of 1×, or ≤ 25% of the 1× margin over the floor left
FLOOR_MARGIN = 0.02  # "learned": 1× quality ≥ floor (nopos, or chance) + this (≈ 3 standard errors for mlm)


VARIANTS = {"directional": {"directional": True}, "symmetric": {"directional": False}}  # NAME:VARIANT shorthands


def variant_parameters(scheme: str, variant: str) -> dict:
    """``directional`` / ``symmetric`` or ``KEY=VALUE`` → hyper-parameters of ``scheme`` (validated)."""
    if variant in VARIANTS:
        params = dict(VARIANTS[variant])
    elif "=" in variant:
        key, _, text = variant.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        params = {key: value}
    else:
        raise ValueError(
            f"scheme={scheme + ':' + variant!r} is not valid; choose NAME:VARIANT with VARIANT one of: "
            f"{', '.join(VARIANTS)}, or KEY=VALUE with KEY among: {', '.join(SCHEMES[scheme].defaults) or '(none)'}"
        )
    SCHEMES[scheme].resolve(params, prefix=f"scheme={scheme + ':' + variant!r}: ")  # ValueError naming the key
    return params


def position_fields(scheme: str) -> dict:
    """Config fields of a scheme name: a relative scheme alone (``NAME:VARIANT``: with those hyper-parameters),
    or a baseline's absolute embeddings."""
    if scheme in ABSOLUTE:
        return {"relative_position": "none", "absolute_position": ABSOLUTE[scheme]}
    name, _, variant = scheme.partition(":")
    if name in SCHEMES and name != "none" and variant:
        return {
            "relative_position": name,
            "absolute_position": "none",
            "relative_position_parameters": variant_parameters(name, variant),
        }
    if scheme in SCHEMES:
        return {"relative_position": scheme, "absolute_position": "none"}
    raise ValueError(
        f"scheme={scheme!r} is not valid; choose one of: {', '.join([*SCHEMES, *ABSOLUTE])} "
        f"(a scheme also as NAME:VARIANT, e.g. alibi:directional, alibi:symmetric)"
    )


# ---------------------------------------------------------------------------------------------- data


def shifted_copy_labels(tokens: torch.Tensor, offset: int = OFFSET) -> torch.Tensor:
    """tokens (B, L) → labels (B, L): ``labels[:, i] = tokens[:, i - offset]``, 0 where i < offset."""
    labels = torch.zeros_like(tokens)
    labels[:, offset:] = tokens[:, :-offset]
    return labels


def random_tokens(generator, batch, length, vocab=POSITION_VOCAB):
    return torch.randint(1, vocab + 1, (batch, length), generator=generator)


MLM_DATA = {  # --mlm-data → (folder, column) files read, in order
    "short": (("sentiment", "text"), ("summarization", "document")),
    "longtext": (("longtext", "text"),),
}


def read_texts(data_dir: Path, split: str, source: str = "short") -> list[str]:
    """The texts of one split of an ``MLM_DATA`` source (short: sentiment ``text`` + summarization ``document``)."""
    texts = []
    for folder, column in MLM_DATA[source]:
        with open(data_dir / folder / f"{split}.jsonl", encoding="utf-8") as f:
            texts += [json.loads(line)[column] for line in f if line.strip()]
    return texts


def token_stream(tokenizer, texts) -> torch.Tensor:
    """All texts as one 1-D id stream, documents separated by [SEP] (no [CLS]: windows start anywhere)."""
    ids = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids += enc + [tokenizer.sep_token_id]
    return torch.tensor(ids)


def mask_tokens(ids, generator, tokenizer, prob=0.15):
    """BERT masking (Devlin et al. 2019): choose ``prob`` of the tokens; 80% → [MASK], 10% → random,
    10% kept. ids (..., L) → (inputs, labels) with labels −100 where not chosen."""
    chosen = torch.rand(ids.shape, generator=generator) < prob
    labels = torch.where(chosen, ids, -100)
    roll = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    inputs = torch.where(chosen & (roll < 0.8), tokenizer.mask_token_id, ids)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
    return inputs, labels


class PositionTask:
    """Shifted copy on random tokens; every batch from one seeded generator."""

    name, metric = "position", "token accuracy"

    def __init__(self, args=None):
        # A direction-blind encoder (a bias of |i − j| only and no absolute embeddings) is
        # reversal-equivariant, so it cannot tell the token at i − 2 from the one at i + 2 and tops out near
        # 53% (1/2 + chance/2). 40% counts as learned: enough to have singled out distance 2, which a bias
        # monotone in |i − j| (linear or logarithmic penalties) cannot do.
        self.learned_at = 0.4
        self.chance = 1.0 / POSITION_VOCAB
        self.num_labels = POSITION_VOCAB + 1
        self.vocab_size = POSITION_VOCAB + 1

    def train_batches(self, args, generator):
        for _ in range(args.steps):
            x = random_tokens(generator, args.batch_size, args.train_length)
            yield x, shifted_copy_labels(x)

    def eval_stream(self, args, generator, tokens):
        return random_tokens(generator, 1, tokens)[0], None

    def windows(self, stream, extra, length):
        x = stream[: len(stream) // length * length].view(-1, length)
        return x, shifted_copy_labels(x)


class MLMTask:
    """Masked LM on the text of --data-dir; random training windows, one fixed evaluation mask."""

    name, metric = "mlm", "masked-token accuracy"

    def __init__(self, args):
        from ..training.modeling import train_wordpiece_tokenizer

        train_texts = read_texts(args.data_dir, "train", args.mlm_data)
        self.tokenizer = train_wordpiece_tokenizer(train_texts, vocab_size=args.mlm_vocab)
        self.train_ids = token_stream(self.tokenizer, train_texts)
        # shuffled so that the evaluation prefix mixes both sources (the files come one after the other)
        eval_texts = read_texts(args.data_dir, "validation", args.mlm_data)
        random.Random(args.seed).shuffle(eval_texts)
        self.eval_ids = token_stream(self.tokenizer, eval_texts)
        self.vocab_size = len(self.tokenizer)
        self.chance = None  # set by eval_stream: the most frequent masked token's share (a unigram guesser)

    def train_batches(self, args, generator):
        for _ in range(args.steps):
            starts = torch.randint(len(self.train_ids) - args.train_length, (args.batch_size,), generator=generator)
            ids = self.train_ids[starts[:, None] + torch.arange(args.train_length)]
            yield mask_tokens(ids, generator, self.tokenizer)

    def eval_stream(self, args, generator, tokens):
        if tokens > len(self.eval_ids):
            raise ValueError(
                f"eval_examples={args.eval_examples} needs {tokens} validation tokens, "
                f"the data has {len(self.eval_ids)}; choose fewer"
            )
        ids = self.eval_ids[:tokens]
        inputs, labels = mask_tokens(ids, generator, self.tokenizer)
        counts = torch.bincount(labels[labels >= 0], minlength=self.vocab_size)
        self.chance = (counts.max() / counts.sum()).item()
        self.learned_at = self.chance + FLOOR_MARGIN
        return inputs, labels

    def windows(self, stream, extra, length):
        n = len(stream) // length * length
        return stream[:n].view(-1, length), extra[:n].view(-1, length)


# ------------------------------------------------------------------------------------------ training


def build_model(task, scheme, args):
    """A tiny encoder; every scheme shares the config except its position fields. Learned absolute
    embeddings get a table for 8× (max factor) the training length; rows past it stay at their init."""
    fields = dict(
        vocab_size=task.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=2 * args.hidden,
        max_position_embeddings=args.train_length * max(args.factors),
        pad_token_id=0,
        initializer_range=args.init_range,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **position_fields(scheme),
    )
    if task.name == "position":
        return RelPosBertForTokenClassification(RelPosBertConfig(num_labels=task.num_labels, **fields))
    return RelPosBertForMaskedLM(RelPosBertConfig(**fields))


def scored_logits(model, inputs, labels):
    """inputs, labels (B, L) → logits (N, C), labels (N,) at the N scored positions (labels ≠ −100). The MLM
    decoder runs on the masked tokens only: its vocabulary projection is half of a tiny model's compute."""
    keep = labels != -100
    if isinstance(model, RelPosBertForMaskedLM):
        return model.cls(model.bert(input_ids=inputs).last_hidden_state[keep]), labels[keep]
    return model(input_ids=inputs).logits[keep], labels[keep]


def train(model, batches, args):
    """AdamW, linear warmup (10%), then constant or (``args.decay``) linear decay to 0. No dropout, so the
    run is a pure function of the seed."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    tail = lambda s: max(0.0, (args.steps - s) / (args.steps - warmup + 1)) if args.decay else 1.0  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, tail(s)))
    model.train()
    for inputs, labels in batches:
        loss = torch.nn.functional.cross_entropy(*scored_logits(model, inputs, labels))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss.item()


@torch.no_grad()
def evaluate(model, inputs, labels, batch_tokens=8192):
    """inputs/labels (N, L) → (accuracy, mean loss) over labels ≠ −100, in batches of ≈ batch_tokens."""
    model.eval()
    step = max(1, batch_tokens // inputs.shape[1])
    correct = total = loss_sum = 0
    for b in range(0, len(inputs), step):
        logits, y = scored_logits(model, inputs[b : b + step], labels[b : b + step])
        correct += (logits.argmax(-1) == y).sum().item()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        total += len(y)
    return correct / total, loss_sum / total


def run_task(task, args):
    """Train one model per scheme, score it at every factor; returns result rows."""
    eval_tokens = args.eval_examples * args.train_length * max(args.factors)
    stream, extra = task.eval_stream(args, torch.Generator().manual_seed(args.seed + 1), eval_tokens)
    rows = []
    for scheme in args.schemes:
        start = time.perf_counter()
        torch.manual_seed(args.seed)  # the init depends on the seed only, not on the schemes run before
        model = build_model(task, scheme, args)
        final_loss = train(model, task.train_batches(args, torch.Generator().manual_seed(args.seed)), args)
        base = None
        for factor in args.factors:
            length = args.train_length * factor
            inputs, labels = task.windows(stream, extra, length)
            quality, loss = evaluate(model, inputs, labels)
            base = quality if base is None else base
            row = dict(
                task=task.name,
                scheme=scheme,
                factor=factor,
                length=length,
                quality=quality,
                loss=loss,
                ratio_to_1x=quality / base if base else float("nan"),
                eval_tokens=int(inputs.numel()),
                train_loss=final_loss,
            )
            if task.name == "mlm":
                row["perplexity"] = math.exp(min(loss, 50.0))
            rows.append(row)
        print(
            f"  {task.name:8s} {scheme:20s} trained+evaluated in {time.perf_counter() - start:5.1f} s "
            f"(final train loss {final_loss:.3f})",
            flush=True,
        )
    return rows


# -------------------------------------------------------------------------------------------- report


def verdict(rows, task, factor=VERDICT_FACTOR):
    """scheme → "holds" / "degrades" / "collapses" at ``factor`` (see HOLD, COLLAPSE); "not learned" when
    the 1× quality is below ``task.learned_at`` (its ratios say nothing then); "floor" for nopos."""
    by = {(r["scheme"], r["factor"]): r["quality"] for r in rows}
    floor = max(task.chance, by.get(("nopos", 1), 0.0))
    learned_at = max(task.learned_at, floor + FLOOR_MARGIN)
    out = {}
    for scheme in dict.fromkeys(r["scheme"] for r in rows):
        base, far = by[(scheme, 1)], by[(scheme, factor)]
        if scheme == "nopos":
            out[scheme] = "floor"
        elif base < learned_at:
            out[scheme] = "not learned"
        elif far >= HOLD * base:
            out[scheme] = "holds"
        elif far < COLLAPSE * base or far - floor <= 0.25 * (base - floor):
            out[scheme] = "collapses"
        else:
            out[scheme] = "degrades"
    return out, learned_at


def print_table(rows, task, factors):
    by = {(r["scheme"], r["factor"]): r for r in rows}
    print(f"\n{task.name}: {task.metric} (ratio to 1×); chance {task.chance:.3f}")
    heads = [f"{f}× (L={by[(rows[0]['scheme'], f)]['length']})" for f in factors]
    print(f"{'scheme':20s}" + "".join(f"{h:>16s}" for h in heads))
    for s in dict.fromkeys(r["scheme"] for r in rows):
        print(f"{s:20s}" + "".join(f"{by[(s, f)]['quality']:>9.3f} ({by[(s, f)]['ratio_to_1x']:.2f})" for f in factors))


def plt_color(i):
    try:
        from matplotlib import colormaps

        return colormaps["tab20"](i % 20)
    except ImportError:  # line_plot says so itself
        return None


def plot(path, rows, args):
    panels = []
    for name in dict.fromkeys(r["task"] for r in rows):
        series = {}
        for r in (r for r in rows if r["task"] == name):
            xs, ys = series.setdefault(r["scheme"], ([], []))
            xs.append(r["length"])
            ys.append(r["quality"])
        # 13 series: tab20 keeps the colours distinct, dashed lines mark the baselines without a scheme
        styles = {s: {"color": plt_color(i), "linestyle": "--" if s in ABSOLUTE else "-"} for i, s in enumerate(series)}
        if any(":" in s for s in series):  # variants: one tab20 colour pair per scheme, the symmetric one dotted
            bases = list(dict.fromkeys(s.partition(":")[0] for s in series))
            for s in series:
                base, _, variant = s.partition(":")
                styles[s] = {
                    "color": plt_color(2 * bases.index(base) + (variant == "symmetric")),
                    "linestyle": "--" if s in ABSOLUTE else ":" if variant == "symmetric" else "-",
                }
        panels.append(
            dict(
                title=f"{name} (trained at L={args.train_length})",
                xlabel="evaluation length (log2)",
                ylabel=(MLMTask if name == "mlm" else PositionTask).metric,
                series=series,
                logx=True,
                styles=styles,
                legend={"ncol": 2, "fontsize": 6, "framealpha": 0.6},
            )
        )
    return line_plot(path, panels, title=f"Length extrapolation (seed {args.seed})") if panels else None


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hf-relpos bench extrapolation",
        allow_abbrev=False,
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument(
        "--schemes",
        type=csv,
        default=DEFAULT_SCHEMES,
        help="comma-separated relative schemes and baselines without a relative scheme: absolute (learned "
        "absolute embeddings), absolute_sinusoidal (fixed sinusoids), nopos (no position at all: the floor)",
    )
    p.add_argument("--tasks", type=csv, default=list(TASKS), help="comma-separated: position, mlm")
    p.add_argument("--train-length", type=int, default=64)
    p.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4, 8], help="evaluation lengths / train length")
    p.add_argument("--seed", type=int, default=0)
    for name in ("steps", "batch_size", "lr", "init_range", "eval_examples"):  # None: the task's default
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=float if name in ("lr", "init_range") else int,
            default=None,
            help="for every task (default per task: "
            + ", ".join(f"{t} {d[name]}" for t, d in TASK_DEFAULTS.items())
            + ")"
            + (
                "; evaluation windows at the longest length, every factor scores the same tokens"
                if name == "eval_examples"
                else ""
            ),
        )
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument(
        "--mlm-data",
        choices=list(MLM_DATA),
        default="short",
        help="text of the mlm task: short (sentiment + summarization documents) or longtext (Python "
        "documentation pages, long documents)",
    )
    p.add_argument(
        "--mlm-vocab",
        type=int,
        default=500,
        help="WordPiece vocabulary of the mlm task (small: more word pieces, more local structure to learn)",
    )
    add_io_options(p, "extrapolation", data_help="text data of the mlm task: sentiment/ and summarization/ jsonl")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    for s in args.schemes:
        position_fields(s)
    for t in args.tasks:
        if t not in TASKS:
            p.error(f"--tasks: {t!r} is not valid; choose from: {', '.join(TASKS)}")
    if min(args.factors) < 1:
        p.error(f"--factors must be positive integers, got {args.factors}")
    args.factors = sorted(set(args.factors) | {1})  # the ratios need the in-length score
    return args


def task_args(args, name):
    """``args`` with the task's defaults filled in where the command line left them out."""
    fill = {k: v for k, v in TASK_DEFAULTS[name].items() if getattr(args, k, None) is None}
    return argparse.Namespace(**{**vars(args), **fill})


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows, verdicts, chance, per_task = [], {}, {}, {}
    for name in args.tasks:
        if name == "mlm" and args.data_dir is None:
            print("mlm: skipped, no text data: give --data-dir FOLDER or set HF_RELPOS_DATA_DIR")
            continue
        if name == "mlm" and not (args.data_dir / MLM_DATA[args.mlm_data][0][0] / "train.jsonl").is_file():
            print(f"mlm: skipped, no text data at {args.data_dir} ({MLM_DATA[args.mlm_data][0][0]}/train.jsonl)")
            continue
        targs = task_args(args, name)
        per_task[name] = {k: getattr(targs, k) for k in TASK_DEFAULTS[name]}
        task = (PositionTask if name == "position" else MLMTask)(targs)
        print(
            f"{name}: {len(args.schemes)} schemes, {targs.steps} steps × {targs.batch_size} at length "
            f"{args.train_length}, lr {targs.lr}, init {targs.init_range}",
            flush=True,
        )
        task_rows = run_task(task, targs)
        print_table(task_rows, task, args.factors)
        chance[name] = task.chance
        if VERDICT_FACTOR in args.factors:
            v, learned_at = verdict(task_rows, task)
            verdicts[name] = {"learned_at": learned_at, **v}
            print(f"  verdict at {VERDICT_FACTOR}× (learned if 1× ≥ {learned_at:.3f}):")
            for label in ("holds", "degrades", "collapses", "not learned", "floor"):
                print(f"    {label + ':':12s} {', '.join(s for s, x in v.items() if x == label) or '-'}")
        rows += task_rows
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.update(
        task_settings=per_task,
        offset=OFFSET,
        position_vocab=POSITION_VOCAB,
        hold=HOLD,
        collapse=COLLAPSE,
        chance=chance,
        verdicts=verdicts,
        wall_s=round(time.perf_counter() - started, 1),
    )
    path = write_json(args.out, settings, rows)
    png = plot(path.with_suffix(".png"), rows, args)
    print(f"\nwrote {path}" + (f" and {png}" if png else "") + f" in {time.perf_counter() - started:.0f} s")
    return 0
