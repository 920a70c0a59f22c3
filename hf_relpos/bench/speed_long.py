"""``hf-relpos bench speed --parts long``: long inputs with local layers, and unpadded batches (issue 29).

For each L in ``--long-lengths`` (default 1,024 … 8,192), batch 1, ``--long-layers`` BERT-base-wide layers:

- relpos_bert per scheme (``--long-schemes``, default rotary t5 alibi deberta) in three patterns — all global,
  1 global : 2 local (ModernBERT's: layers 0, 3, … global), all local — with a window of ±``--long-window``
  (64: ModernBERT's ``local_attention`` 128);
- ``ModernBertModel`` of the same width, depth and pattern (its own local_attention = 2 × window), all
  global and 1 : 2, beside relpos rotary with ModernBERT's rope thetas (160k global, 10k local);
- HF ``BertModel`` (absolute, sdpa) as the anchor of every ratio.

Inference and forward+backward time (``--long-modes``), time per 1k tokens, the ratio to HF BertModel at the
same L, and peak memory at ``--long-memory-lengths``. Then 16 texts of 64–512 tokens (seeded): relpos
inference on the padded batch against the same batch unpadded (``RelPosBertModel`` skips padding by itself;
the padded run is forced), with the largest per-text difference.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from .measure import HF_BERT, MB, _bert_kwargs, _timed, build_encoder, interleaved_times, paired_ratio, peak_memory

PATTERNS = ("global", "1:2", "local")
MODERNBERT = "modernbert"


def add_long_arguments(parser) -> None:
    parser.add_argument("--long-lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--long-schemes", nargs="+", default=["rotary", "t5", "alibi", "deberta"])
    parser.add_argument("--long-patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    parser.add_argument("--long-layers", type=int, default=3, help="layers (3: one ModernBERT period)")
    parser.add_argument("--long-window", type=int, default=64, help="local layers' half-width w (2w + 1 keys)")
    parser.add_argument("--long-modes", nargs="+", default=["inference", "fwd+bwd"], choices=["inference", "fwd+bwd"])
    parser.add_argument("--long-memory-lengths", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--long-repeats", type=int, default=1, help="paired rounds per model (after a warm-up)")
    parser.add_argument("--long-no-modernbert", action="store_true", help="leave ModernBertModel out")


def layer_types(pattern: str, layers: int) -> list[str]:
    if pattern == "global":
        return ["full_attention"] * layers
    if pattern == "local":
        return ["sliding_attention"] * layers
    return ["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(layers)]


def build_long(name, pattern, args, length, device):
    """relpos_bert (scheme ``name``) or ModernBertModel with ``pattern``'s layer types."""
    torch.manual_seed(0)
    kwargs = _bert_kwargs(args, length)
    kwargs["num_hidden_layers"] = args.long_layers
    types = layer_types(pattern, args.long_layers)
    if name == MODERNBERT:
        from transformers import ModernBertConfig, ModernBertModel

        config = ModernBertConfig(
            hidden_size=args.hidden,
            num_hidden_layers=args.long_layers,
            num_attention_heads=args.heads,
            intermediate_size=args.intermediate,
            max_position_embeddings=max(8192, length),
            local_attention=2 * args.long_window,
            layer_types=types,
            attention_dropout=0.0,
            mlp_dropout=0.0,
            embedding_dropout=0.0,
            attn_implementation="sdpa",
        )
        return ModernBertModel(config).to(device)
    from hf_relpos import RelPosBertConfig, RelPosBertModel

    extra = {}
    if name == "rotary":  # ModernBERT's thetas
        extra = dict(
            relative_position_parameters={"theta": 160000.0}, local_relative_position_parameters={"theta": 10000.0}
        )
    elif name in ("alibi", "kerple", "fire"):
        extra = dict(relative_position_parameters={"directional": True})
    config = RelPosBertConfig(
        **kwargs,
        relative_position=name,
        absolute_position="none",
        layer_types=types,
        sliding_window=args.long_window,
        attn_implementation=args.attn,
        **extra,
    )
    return RelPosBertModel(config, add_pooling_layer=False).to(device)


def _inference(model, ids):
    def run():
        with torch.no_grad():
            model(input_ids=ids)

    return run


def _fwd_bwd(model, ids):
    def run():
        model(input_ids=ids).last_hidden_state.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    return run


def part_long(args, device):
    args = argparse.Namespace(**{**vars(args), "layers": args.long_layers})  # the HF anchor at the same depth
    rows = []
    models = [(s, p) for s in args.long_schemes for p in args.long_patterns]
    if not args.long_no_modernbert:
        models += [(MODERNBERT, p) for p in args.long_patterns if p != "local"]
    print(
        f"\n[long] {args.long_layers} layers × hidden {args.hidden}, batch 1, {args.attn}, window ±{args.long_window}; "
        f"ratio = median over {args.long_repeats} paired rounds of model / HF BertModel (sdpa) at the same L"
    )
    print(f"{'model':<12}{'pattern':<8}{'mode':<10}{'L':>6}{'ms':>10}{'ms/1k tok':>11}{'× HF':>7}{'peak MB':>9}")
    for L in args.long_lengths:
        ids = torch.randint(0, 1000, (1, L), generator=torch.Generator().manual_seed(0)).to(device)
        for mode in args.long_modes:
            make = _inference if mode == "inference" else _fwd_bwd
            anchor = make(build_encoder(HF_BERT, args, L, device).train(mode != "inference"), ids)
            anchor_peak = peak_memory(anchor, device) if L in args.long_memory_lengths else None
            for name, pattern in models:
                model = build_long(name, pattern, args, L, device).train(mode != "inference")
                step = make(model, ids)
                runs = interleaved_times({HF_BERT: anchor, "model": step}, args.long_repeats, device)
                peak = peak_memory(step, device) if anchor_peak is not None else None
                t = statistics.median(runs["model"])
                row = {
                    "part": "long",
                    "model": name,
                    "pattern": pattern,
                    "mode": mode,
                    "length": L,
                    "window": args.long_window,
                    "layers": args.long_layers,
                    "time_s": t,
                    "ms_per_1k_tokens": t * 1e6 / L,
                    "anchor_time_s": statistics.median(runs[HF_BERT]),
                    "times_s": runs["model"],
                    "anchor_times_s": runs[HF_BERT],
                    "ratio": paired_ratio(runs["model"], runs[HF_BERT]),
                    "peak_bytes": peak,
                    "anchor_peak_bytes": anchor_peak,
                }
                rows.append(row)
                mem = f"{peak / MB:>9.0f}" if peak is not None else f"{'-':>9}"
                print(
                    f"{name:<12}{pattern:<8}{mode:<10}{L:>6}{t * 1e3:>10.0f}{row['ms_per_1k_tokens']:>11.1f}"
                    f"{row['ratio']:>7.2f}{mem}",
                    flush=True,
                )
                del model, step
    rows += part_unpadded(args, device)
    summarize(rows, args)
    return rows


def part_unpadded(args, device, texts: int = 16, shortest: int = 64, longest: int = 512):
    """Inference on 16 texts of 64–512 tokens: the padded batch vs the same batch unpadded (per scheme)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(shortest, longest + 1, (texts,), generator=g)
    L = int(lengths.max())
    ids = torch.randint(5, 1000, (texts, L), generator=g).to(device)
    mask = (torch.arange(L) < lengths[:, None]).long().to(device)
    print(
        f"\n[long: unpadded] inference, {texts} texts of {shortest}–{longest} tokens ({int(lengths.sum())} real of "
        f"{texts * L}), {args.long_layers} layers; padded = the same model with unpadding switched off"
    )
    print(f"{'model':<12}{'padded ms':>11}{'unpadded ms':>13}{'ratio':>7}{'max |Δ| per text':>18}")
    rows = []
    for name in args.long_schemes:
        model = build_long(name, "global", args, L, device).eval()

        def run(padded):
            if padded:
                model._unpadding = lambda *a: None  # the padded computation, forced
            elif "_unpadding" in vars(model):
                del model._unpadding
            with torch.no_grad():
                return model(input_ids=ids, attention_mask=mask).last_hidden_state

        reference, unpadded = run(True), run(False)
        diff = max(float((reference[i, :n] - unpadded[i, :n]).abs().max()) for i, n in enumerate(lengths.tolist()))
        times = {"padded": [], "unpadded": []}
        for _ in range(max(1, args.long_repeats)):
            for key in times:
                times[key].append(_timed(lambda: run(key == "padded"), device))
        padded_s, unpadded_s = (statistics.median(times[k]) for k in ("padded", "unpadded"))
        ratio = paired_ratio(times["unpadded"], times["padded"])
        rows.append(
            {
                "part": "long_unpadded",
                "model": name,
                "texts": texts,
                "lengths": lengths.tolist(),
                "padded_s": padded_s,
                "unpadded_s": unpadded_s,
                "ratio": ratio,
                "max_abs_diff": diff,
            }
        )
        print(f"{name:<12}{padded_s * 1e3:>11.0f}{unpadded_s * 1e3:>13.0f}{ratio:>7.2f}{diff:>18.1e}", flush=True)
    return rows


def summarize(rows, args) -> None:
    """The issue's targets, read off the rows: flatness of all-local, 1:2 vs global, rotary vs ModernBERT."""

    def get(model, pattern, mode, L, key="time_s"):
        return next(
            (
                r[key]
                for r in rows
                if r["part"] == "long"
                and r["model"] == model
                and r["pattern"] == pattern
                and r["mode"] == mode
                and r["length"] == L
            ),
            None,
        )

    lo, hi = min(args.long_lengths), max(args.long_lengths)
    print("\ntargets:")
    for mode in args.long_modes:
        for name in args.long_schemes:
            a, b = get(name, "local", mode, lo, "ms_per_1k_tokens"), get(name, "local", mode, hi, "ms_per_1k_tokens")
            if a and b:
                print(f"  {name:<8} all-local {mode}: time per token at {hi} / at {lo} = {b / a:.2f} (target ≤ 1.25)")
            g, m = get(name, "global", mode, hi), get(name, "1:2", mode, hi)
            if g and m:
                print(f"  {name:<8} 1:2 / all-global {mode} at {hi}: {m / g:.2f} (target ≤ 0.65)")
        for L in args.long_lengths:
            r, mb = get("rotary", "1:2", mode, L), get(MODERNBERT, "1:2", mode, L)
            if r and mb and L >= 4096:
                print(f"  rotary 1:2 / ModernBERT 1:2 {mode} at {L}: {r / mb:.2f} (target ≤ 0.8)")
    mem = {
        L: {n: get(n, "local", "fwd+bwd", L, "peak_bytes") for n in args.long_schemes} for L in args.long_memory_lengths
    }
    if len(mem) >= 2:
        a, b = sorted(mem)[-2:]
        for name in args.long_schemes:
            if mem[a][name] and mem[b][name]:
                print(
                    f"  {name:<8} all-local fwd+bwd peak memory {b} / {a}: {mem[b][name] / mem[a][name]:.2f} "
                    f"(target ≤ 2.2)"
                )
