"""Speed and memory of relpos models against Hugging Face anchors, measured side by side in one run.

    hf-relpos bench speed [--parts encoder memory generation flex compiled] [--schemes ...] [--out FILE]

Parts (each prints a table; together they write one JSON and one PNG):

- ``encoder``: forward+backward of a BERT-base-sized encoder (``--layers`` of 12 kept) at ``--lengths``
  (default 512), batch 8, per scheme, against HF ``BertModel`` (absolute positions, sdpa) of the same
  size. Runs are interleaved (anchor, scheme, anchor, ...) and the medians compared, so machine load
  hits both sides alike.
- ``memory``: peak memory of one forward+backward at ``--memory-length`` (2048), batch 1, per scheme,
  against HF ``BertModel`` and transformers 4.x ``relative_key_query`` BERT (its (L, L, head_dim)
  distance tensor), the latter run in a separate virtual environment (``--v4-python``, made by
  ``make bench-v4``).
- ``generation``: greedy generation tokens/s with the KV cache, ``relpos_t5`` against HF
  ``T5ForConditionalGeneration`` on the same (converted) weights.
- ``flex``: inference peak memory and time against L (up to ``--flex-lengths``, default 8192) of the
  distance-only bias schemes (``distance_only`` in the scheme registry) on the flex path (bias computed in ``score_mod`` from an (H, 2L − 1) table,
  compiled), next to sdpa with its dense (H, L, L) bias (up to ``--flex-sdpa-max-length``).
- ``compiled``: the ``encoder`` comparison with both sides under ``torch.compile(fullgraph=True)``
  (``--compiled-backend``, default inductor): forward+backward at ``--compiled-length`` (512), batch
  ``--compiled-batch`` (8), paired ratios against compiled HF ``BertModel`` (absolute, sdpa), the same
  targets; compile seconds reported beside.
- ``scaling``: forward+backward time ratio to HF ``BertModel`` (sdpa) and peak memory against L
  (``--scaling-lengths``, default 512 1024 2048 4096), batch ``--scaling-batch`` (1), every scheme,
  ``--scaling-repeats`` paired rounds; peak memory at ``--scaling-memory-lengths`` (default: every L).
  With ``deberta`` among the schemes, HF ``DebertaV2Model`` of the same size (the scheme's defaults:
  256 log buckets, c2p + p2c) runs beside it as ``hf_deberta_v2``. The PNG gets one line per model
  (ratio vs L). ``--device cuda`` prints the same table.
- ``long``: local layers to 8,192 tokens (all global / 1 global : 2 local / all local, beside ModernBertModel)
  and unpadded batches; see :mod:`hf_relpos.bench.speed_long` (``--long-*`` options). Not in the default set.

Peak memory: on CUDA the allocator's high-water mark; on CPU the high-water mark of live tensor
bytes in the torch profiler's memory timeline. Both count only what a step adds above what was live
before it (weights, inputs). This module imports only torch at the top so that it also runs as the
worker script of the 4.x virtual environment (``--v4-worker``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

try:
    from .measure import (
        HF_BERT,
        HF_DEBERTA,
        MB,
        _bert_kwargs,
        _timed,
        build_encoder,
        interleaved_medians,
        interleaved_times,
        paired_ratio,
        peak_memory,
        train_step,
    )
except ImportError:  # run as a script: the 4.x worker (``python speed.py --v4-worker``), beside measure.py
    from measure import (
        HF_BERT,
        HF_DEBERTA,
        MB,
        _bert_kwargs,
        _timed,
        build_encoder,
        interleaved_medians,
        interleaved_times,
        paired_ratio,
        peak_memory,
        train_step,
    )

PARTS = ("encoder", "memory", "generation", "flex", "compiled", "scaling", "long")
DEFAULT_PARTS = PARTS[:-1]  # `long` (local layers to 8,192 tokens) runs when asked for
# ≤1.10× HF BertModel for the bias and rotation schemes, ≤1.35× for the content schemes (issue 8)
TIME_TARGET_BY_COST = {"bias": 1.10, "rotate": 1.10, "content": 1.35}
HF_V4 = "hf_v4_relative_key_query"


def run_v4(args, lengths_batches, python) -> dict | None:
    """Measure transformers 4.x relative_key_query BERT in ``python``'s environment (this file as the
    worker). Returns {"L,B": {...}} or None with a message when that environment is missing."""
    if not python or not Path(python).exists():
        print(f"  (no 4.x environment at {python!r}: run `make bench-v4` or pass --v4-python; {HF_V4} skipped)")
        return None
    job = {
        "lengths_batches": lengths_batches,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "bert": _bert_kwargs(args, max(L for L, _ in lengths_batches)),
        "device": args.device,
    }
    proc = subprocess.run([python, __file__, "--v4-worker", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  ({HF_V4} failed in {python}: {last})")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _v4_worker(job):
    """Runs under transformers 4.x: time and memory of relative_key_query BertModel (and of its
    absolute BertModel, the same-process anchor)."""
    import transformers
    from transformers import BertConfig, BertModel

    if not transformers.__version__.startswith("4."):  # 5.x dropped relative_key*: it would measure absolute BERT
        raise SystemExit(f"the 4.x worker needs transformers 4.x, found {transformers.__version__}")
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    out = {"transformers": transformers.__version__}
    for L, B in job["lengths_batches"]:
        ids = torch.randint(0, 1000, (B, L), generator=torch.Generator().manual_seed(0)).to(device)
        steps = {}
        for kind in ("relative_key_query", "absolute"):
            torch.manual_seed(0)
            model = BertModel(BertConfig(**job["bert"], position_embedding_type=kind), add_pooling_layer=False).to(
                device
            )
            steps[kind] = train_step(model, ids)
        times = interleaved_medians(steps, job["repeats"], device)
        out[f"{L},{B}"] = {
            "time_s": times["relative_key_query"],
            "absolute_time_s": times["absolute"],
            "peak_bytes": peak_memory(steps["relative_key_query"], device),
        }
    print(json.dumps(out))


# ---------------------------------------------------------------- parts
def part_encoder(args, device):
    rows = []
    print(
        f"\n[encoder] forward+backward, {args.layers} layers × hidden {args.hidden}, batch {args.batch}, {args.attn}; "
        f"{args.repeats} rounds of (HF, scheme); ratio = median over rounds of scheme / HF BertModel (absolute, sdpa)"
    )
    print(f"{'model':<26}{'L':>6}{'ms':>10}{'× HF':>8}{'target':>8}")
    for L in args.lengths:
        ids = torch.randint(0, 1000, (args.batch, L), generator=torch.Generator().manual_seed(0)).to(device)
        base_model = build_encoder(HF_BERT, args, L, device)
        base_step = train_step(base_model, ids)
        for name in args.schemes:
            # one scheme at a time against a fresh anchor measurement: long runs drift, pairs don't
            model = build_encoder(name, args, L, device, attn=args.attn)
            runs = interleaved_times({HF_BERT: base_step, name: train_step(model, ids)}, args.repeats, device)
            times = {k: statistics.median(v) for k, v in runs.items()}
            ratio = paired_ratio(runs[name], runs[HF_BERT])
            target = time_targets().get(name)
            rows.append(
                {
                    "part": "encoder",
                    "model": name,
                    "attn": args.attn,
                    "length": L,
                    "batch": args.batch,
                    "time_s": times[name],
                    "anchor_time_s": times[HF_BERT],
                    "times_s": runs[name],
                    "anchor_times_s": runs[HF_BERT],
                    "ratio": ratio,
                    "target": target,
                    "meets_target": None if target is None else ratio <= target,
                }
            )
            print(
                f"{name:<26}{L:>6}{times[name] * 1e3:>10.0f}{ratio:>8.2f}{target or '':>8}"
                f"  (HF {times[HF_BERT] * 1e3:.0f} ms)",
                flush=True,
            )
            del model
    return rows


def time_targets() -> dict[str, float]:
    """scheme → time target from its cost class, for every relative scheme in the registry (imported here,
    not at the top: the 4.x worker runs this file without hf_relpos)."""
    from hf_relpos.relative_positions import SCHEMES

    return {name: TIME_TARGET_BY_COST[cls.cost] for name, cls in SCHEMES.items() if cls.cost != "none"}


def flex_schemes() -> list[str]:
    """The distance-only schemes: their bias is a 1-D table over j − i, which flex reads in score_mod."""
    from hf_relpos.relative_positions import SCHEMES

    return [name for name, cls in SCHEMES.items() if cls.distance_only]


def v4_counterpart() -> str:
    """Our scheme that reproduces transformers 4.x ``relative_key_query`` (the 4.x memory anchor's)."""
    from hf_relpos.convert import LEGACY_RELATIVE

    return LEGACY_RELATIVE["relative_key_query"]


def part_memory(args, device):
    L, B = args.memory_length, args.memory_batch
    print(f"\n[memory] peak memory of one forward+backward, L={L}, batch {B}, {args.layers} layers, {args.attn}")
    ids = torch.randint(0, 1000, (B, L), generator=torch.Generator().manual_seed(0)).to(device)
    results = {}
    for name in [HF_BERT, *args.schemes]:
        model = build_encoder(name, args, L, device, attn=args.attn)
        step = train_step(model, ids)
        step()  # warm-up: lazily built buffers are not a step's memory
        results[name] = {"peak_bytes": peak_memory(step, device), "time_s": _timed(step, device)}
        del model, step
    v4 = run_v4(args, [[L, B]], args.v4_python)
    if v4 is not None:
        results[HF_V4] = {**v4[f"{L},{B}"], "transformers": v4["transformers"]}
    rows = []
    base = results[HF_BERT]["peak_bytes"]
    v4_peak = results.get(HF_V4, {}).get("peak_bytes")
    print(f"{'model':<26}{'peak MB':>10}{'× HF':>8}{'× v4':>8}{'s':>8}")
    for name, r in results.items():
        row = {
            "part": "memory",
            "model": name,
            "length": L,
            "batch": B,
            **r,
            "ratio": r["peak_bytes"] / base,
            "ratio_to_v4": None if v4_peak is None else r["peak_bytes"] / v4_peak,
        }
        rows.append(row)
        v4_text = f"{row['ratio_to_v4']:>8.3f}" if v4_peak else f"{'-':>8}"
        print(f"{name:<26}{r['peak_bytes'] / MB:>10.0f}{row['ratio']:>8.2f}{v4_text}{r['time_s']:>8.1f}")
    counterpart = v4_counterpart()
    if v4_peak is not None and counterpart in results:
        ratio = results[counterpart]["peak_bytes"] / v4_peak
        print(
            f"{counterpart} / 4.x relative_key_query peak memory: {ratio:.3f} (target ≤ 0.125: "
            f"{'met' if ratio <= 0.125 else 'MISSED'})"
        )
    return rows


def part_generation(args, device):
    from transformers import T5Config, T5ForConditionalGeneration

    from hf_relpos import convert_t5_to_relpos

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=32128,
        d_model=args.t5_d_model,
        d_ff=4 * args.t5_d_model,
        num_layers=args.t5_layers,
        num_heads=args.t5_heads,
        d_kv=args.t5_d_model // args.t5_heads,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    hf = T5ForConditionalGeneration(config).to(device).eval()
    ours = convert_t5_to_relpos(hf).to(device).eval()
    B, n_in, n_new = args.gen_batch, args.gen_input_length, args.gen_new_tokens
    ids = torch.randint(2, 32000, (B, n_in), generator=torch.Generator().manual_seed(0)).to(device)
    outputs = {}

    def generate(model, key):
        def run():
            with torch.no_grad():
                outputs[key] = model.generate(
                    input_ids=ids,
                    max_new_tokens=n_new,
                    min_new_tokens=n_new,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                )

        return run

    runs = interleaved_times(
        {"hf_t5": generate(hf, "hf_t5"), "relpos_t5": generate(ours, "relpos_t5")}, args.repeats, device
    )
    times = {k: statistics.median(v) for k, v in runs.items()}
    same = torch.equal(outputs["hf_t5"], outputs["relpos_t5"])
    tokens = B * n_new
    rows = [
        {
            "part": "generation",
            "model": name,
            "batch": B,
            "input_length": n_in,
            "new_tokens": n_new,
            "time_s": t,
            "times_s": runs[name],
            "tokens_per_s": tokens / t,
            "same_tokens": same,
        }
        for name, t in times.items()
    ]
    ratio = 1 / paired_ratio(runs["relpos_t5"], runs["hf_t5"])
    rows[1]["ratio"] = ratio
    print(
        f"\n[generation] greedy, KV cache, batch {B}, {n_in} input → {n_new} new tokens, T5 d_model {args.t5_d_model}, "
        f"{args.t5_layers}+{args.t5_layers} layers, median of {args.repeats} interleaved runs"
    )
    for r in rows:
        print(f"{r['model']:<26}{r['tokens_per_s']:>10.1f} tok/s")
    print(
        f"relpos_t5 / HF T5 tokens/s: {ratio:.2f} (target ≥ 1.0: {'met' if ratio >= 1.0 else 'MISSED'}); "
        f"identical tokens: {same}"
    )
    return rows


def part_flex(args, device):
    """Inference memory against L: flex (score_mod over an (H, 2L − 1) table) vs sdpa (dense bias)."""
    from hf_relpos.attention_engine import flex_compiled

    rows = []
    print(
        f"\n[flex] inference (no grad), batch 1, {args.layers} layers × hidden {args.hidden}; peak memory above "
        f"weights and inputs; time of the same (profiled) forward"
    )
    print(f"{'scheme':<10}{'backend':<16}{'L':>7}{'peak MB':>10}{'MB / 1k tokens':>16}{'s':>8}")
    for name in args.flex_schemes:
        for backend in ("flex_attention", "sdpa"):
            model = build_encoder(name, args, max(args.flex_lengths), device, attn=backend).eval()
            for L in args.flex_lengths:
                if backend == "sdpa" and L > args.flex_sdpa_max_length:
                    continue
                ids = torch.randint(0, 1000, (1, L), generator=torch.Generator().manual_seed(0)).to(device)

                def forward():
                    with torch.no_grad():
                        model(input_ids=ids)  # noqa: F821 (bound in the loop; `del model` below confuses the checker)

                probe = torch.empty(1, 1, L, 64, device=device)
                compiled = backend == "flex_attention" and flex_compiled(probe, probe)
                forward()  # warm-up (and compilation)
                seconds = []  # one measured forward: at 8192 tokens a CPU forward takes a minute
                peak = peak_memory(lambda: seconds.append(_timed(forward, device)), device)
                seconds = seconds[0]
                rows.append(
                    {
                        "part": "flex",
                        "model": name,
                        "backend": backend,
                        "compiled": compiled,
                        "length": L,
                        "peak_bytes": peak,
                        "time_s": seconds,
                    }
                )
                print(
                    f"{name:<10}{backend + (' (compiled)' if compiled else ''):<16}{L:>7}{peak / MB:>10.1f}"
                    f"{peak / MB / (L / 1000):>16.2f}{seconds:>8.2f}",
                    flush=True,
                )
            del model
    for name in args.flex_schemes:
        pts = [(r["length"], r["peak_bytes"]) for r in rows if r["model"] == name and r["backend"] == "flex_attention"]
        if len(pts) >= 2:
            (l0, m0), (l1, m1) = pts[0], pts[-1]
            print(
                f"{name}: flex peak memory grows {m1 / max(m0, 1):.1f}× for {l1 / l0:.0f}× the length "
                f"(linear: {l1 / l0:.0f}×, quadratic: {(l1 / l0) ** 2:.0f}×)"
            )
    return rows


def part_compiled(args, device):
    """The encoder comparison with both models compiled (fullgraph: a graph break fails the part)."""
    L, B, backend = args.compiled_length, args.compiled_batch, args.compiled_backend
    print(
        f"\n[compiled] torch.compile(fullgraph=True, backend={backend!r}) forward+backward, {args.layers} layers × "
        f"hidden {args.hidden}, L {L}, batch {B}, {args.attn}; {args.repeats} rounds of (HF, scheme); ratio = median "
        "over rounds of scheme / compiled HF BertModel (absolute, sdpa)"
    )
    print(f"{'model':<26}{'L':>6}{'ms':>10}{'× HF':>8}{'target':>8}{'compile s':>11}")
    ids = torch.randint(0, 1000, (B, L), generator=torch.Generator().manual_seed(0)).to(device)

    def compiled_step(name):
        model = build_encoder(name, args, L, device, attn="sdpa" if name == HF_BERT else args.attn)
        step = train_step(torch.compile(model, fullgraph=True, backend=backend), ids)
        return step, _timed(step, device)  # the first call compiles forward and backward

    torch._dynamo.reset()
    # every scheme compiles the same forward code again (a new model): dynamo's per-code recompile limit (8)
    # would end the part with FailOnRecompileLimitHit at the ninth scheme
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, 4 * (len(args.schemes) + 1))
    base_step, base_compile = compiled_step(HF_BERT)
    rows = []
    for name in args.schemes:
        step, compile_s = compiled_step(name)
        runs = interleaved_times({HF_BERT: base_step, name: step}, args.repeats, device)
        times = {k: statistics.median(v) for k, v in runs.items()}
        ratio = paired_ratio(runs[name], runs[HF_BERT])
        target = time_targets().get(name)
        rows.append(
            {
                "part": "compiled",
                "model": name,
                "attn": args.attn,
                "backend": backend,
                "length": L,
                "batch": B,
                "time_s": times[name],
                "anchor_time_s": times[HF_BERT],
                "times_s": runs[name],
                "anchor_times_s": runs[HF_BERT],
                "ratio": ratio,
                "target": target,
                "meets_target": None if target is None else ratio <= target,
                "compile_s": compile_s,
                "anchor_compile_s": base_compile,
            }
        )
        print(
            f"{name:<26}{L:>6}{times[name] * 1e3:>10.0f}{ratio:>8.2f}{target or '':>8}{compile_s:>11.1f}"
            f"  (HF {times[HF_BERT] * 1e3:.0f} ms, compiled in {base_compile:.1f} s)",
            flush=True,
        )
        del step
    torch._dynamo.config.recompile_limit = limit
    return rows


def part_scaling(args, device):
    """Paired fwd+bwd ratios to HF BertModel against L for every scheme, and peak memory (issue 19)."""
    B, memory_lengths = args.scaling_batch, args.scaling_memory_lengths or args.scaling_lengths
    print(
        f"\n[scaling] forward+backward, {args.layers} layers × hidden {args.hidden}, batch {B}, {args.attn}, "
        f"{device}; ratio = median over {args.scaling_repeats} paired rounds of scheme / HF BertModel (sdpa); "
        f"peak memory above weights and inputs"
    )
    print(f"{'model':<14}{'L':>6}{'ms':>10}{'× HF':>8}{'peak MB':>10}{'× HF':>8}")
    rows = []
    for L in args.scaling_lengths:
        ids = torch.randint(0, 1000, (B, L), generator=torch.Generator().manual_seed(0)).to(device)
        base_step = train_step(build_encoder(HF_BERT, args, L, device), ids)
        base_step()
        base_peak = peak_memory(base_step, device) if L in memory_lengths else None
        print(
            f"{HF_BERT:<14}{L:>6}{'':>10}{'':>8}{'' if base_peak is None else f'{base_peak / MB:.0f}':>10}", flush=True
        )
        for name in args.schemes + ([HF_DEBERTA] if "deberta" in args.schemes else []):
            step = train_step(build_encoder(name, args, L, device, attn=args.attn), ids)
            runs = interleaved_times({HF_BERT: base_step, name: step}, args.scaling_repeats, device)
            peak = peak_memory(step, device) if base_peak is not None else None
            row = {
                "part": "scaling",
                "model": name,
                "attn": args.attn,
                "device": str(device),
                "length": L,
                "batch": B,
                "time_s": statistics.median(runs[name]),
                "anchor_time_s": statistics.median(runs[HF_BERT]),
                "times_s": runs[name],
                "anchor_times_s": runs[HF_BERT],
                "ratio": paired_ratio(runs[name], runs[HF_BERT]),
                "peak_bytes": peak,
                "anchor_peak_bytes": base_peak,
                "memory_ratio": None if peak is None else peak / base_peak,
            }
            rows.append(row)
            mem = f"{peak / MB:>10.0f}{row['memory_ratio']:>8.2f}" if peak is not None else f"{'-':>10}{'-':>8}"
            print(f"{name:<14}{L:>6}{row['time_s'] * 1e3:>10.0f}{row['ratio']:>8.2f}{mem}", flush=True)
            del step
    lengths, names = list(args.scaling_lengths), list(dict.fromkeys(r["model"] for r in rows))
    print("\nfwd+bwd time / HF BertModel:\n| L | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for L in lengths:
        cells = [next((f"{r['ratio']:.2f}×" for r in rows if r["model"] == n and r["length"] == L), "-") for n in names]
        print(f"| {L:,} | " + " | ".join(cells) + " |")
    return rows


# ---------------------------------------------------------------- report
def plot(rows, path):
    from .common import line_plot

    panels = []
    enc = [r for r in rows if r["part"] == "encoder"]
    if enc:
        series = {
            m: ([r["length"] for r in enc if r["model"] == m], [r["ratio"] for r in enc if r["model"] == m])
            for m in dict.fromkeys(r["model"] for r in enc)
        }
        panels.append(
            {
                "title": "fwd+bwd time / HF BertModel",
                "xlabel": "sequence length",
                "ylabel": "×",
                "series": series,
                "logx": True,
            }
        )
    scaling = [r for r in rows if r["part"] == "scaling"]
    for key, title in (
        ("ratio", "fwd+bwd time / HF BertModel vs L"),
        ("memory_ratio", "peak memory / HF BertModel vs L"),
    ):
        series = {}
        for r in scaling:
            if r[key] is not None:
                xs, ys = series.setdefault(r["model"], ([], []))
                xs.append(r["length"])
                ys.append(r[key])
        if series:  # the HF DeBERTa anchor dashed black, apart from the ten schemes' colours
            panels.append(
                {
                    "title": title,
                    "xlabel": "sequence length",
                    "ylabel": "×",
                    "series": series,
                    "logx": True,
                    "styles": {HF_DEBERTA: {"color": "black", "linestyle": "--"}},
                }
            )
    long = [r for r in rows if r["part"] == "long"]
    for mode in dict.fromkeys(r["mode"] for r in long):
        series = {}
        for r in long:
            if r["mode"] == mode:
                xs, ys = series.setdefault(f"{r['model']} {r['pattern']}", ([], []))
                xs.append(r["length"])
                ys.append(r["ms_per_1k_tokens"])
        panels.append(
            {
                "title": f"{mode}: ms per 1k tokens vs L (local ±{long[0]['window']})",
                "xlabel": "sequence length",
                "ylabel": "ms / 1k tokens",
                "series": series,
                "logx": True,
                "styles": {k: {"linestyle": "--"} for k in series if k.startswith("modernbert")},
            }
        )
    flex = [r for r in rows if r["part"] == "flex"]
    if flex:
        for key, label, scale in (
            ("peak_bytes", "inference peak memory (MB)", MB),
            ("time_s", "inference time (s)", 1),
        ):
            series = {}
            for r in flex:
                xs, ys = series.setdefault(f"{r['model']} {r['backend'].replace('_attention', '')}", ([], []))
                xs.append(r["length"])
                ys.append(r[key] / scale)
            panels.append(
                {
                    "title": label + " vs L",
                    "xlabel": "sequence length",
                    "ylabel": label,
                    "series": series,
                    "logx": True,
                    "logy": True,
                }
            )
    return line_plot(path, panels, title="hf_relpos speed and memory") if panels else None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="hf-relpos bench speed",
        allow_abbrev=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS), choices=PARTS)
    parser.add_argument("--schemes", nargs="+", default=None, help="relative schemes (default: all)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[512], help="encoder part lengths")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2, help="of BERT-base's 12 (CPU-sized)")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--attn",
        default="sdpa",
        choices=["eager", "sdpa", "flex_attention"],
        help="relpos models' attention in the encoder and memory parts (HF BertModel: sdpa)",
    )
    parser.add_argument("--memory-length", type=int, default=2048)
    parser.add_argument("--memory-batch", type=int, default=1)
    parser.add_argument("--v4-python", default=".venv-v4/bin/python", help="python of a transformers 4.x environment")
    parser.add_argument("--gen-batch", type=int, default=4)
    parser.add_argument("--gen-input-length", type=int, default=128)
    parser.add_argument("--gen-new-tokens", type=int, default=64)
    parser.add_argument("--t5-d-model", type=int, default=512, help="t5-small: 512 / 6 layers / 8 heads")
    parser.add_argument("--t5-layers", type=int, default=6)
    parser.add_argument("--t5-heads", type=int, default=8)
    parser.add_argument("--flex-schemes", nargs="+", default=None, help="distance-only schemes (default: all of them)")
    parser.add_argument("--flex-lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--flex-sdpa-max-length", type=int, default=4096, help="sdpa's dense bias is O(L²): stop here")
    parser.add_argument("--scaling-lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument(
        "--scaling-memory-lengths",
        type=int,
        nargs="+",
        default=None,
        help="scaling part: lengths with a peak-memory measurement (default: every length)",
    )
    parser.add_argument("--scaling-batch", type=int, default=1)
    parser.add_argument("--scaling-repeats", type=int, default=3)
    parser.add_argument("--compiled-length", type=int, default=512, help="compiled part: sequence length")
    parser.add_argument("--compiled-batch", type=int, default=8, help="compiled part: batch size")
    parser.add_argument("--compiled-backend", default="inductor", help="compiled part: torch.compile backend")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/results/speed.json", help="JSON report; the PNG goes beside it")
    parser.add_argument("--v4-worker", default=None, help=argparse.SUPPRESS)
    if __package__:  # not in the 4.x worker, which runs this file as a script
        from .speed_long import add_long_arguments

        add_long_arguments(parser)
    args = parser.parse_args(argv)
    if args.v4_worker is not None:
        return _v4_worker(json.loads(args.v4_worker))
    targets, flex = time_targets(), flex_schemes()
    args.schemes = args.schemes or list(targets)
    args.flex_schemes = args.flex_schemes or flex
    for name in args.schemes:
        if name not in targets:
            parser.error(f"--schemes: {name!r} is not valid; choose from: {', '.join(targets)}")
    for name in args.flex_schemes:
        if name not in flex:
            parser.error(f"--flex-schemes: {name!r} is not valid; choose from: {', '.join(flex)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    rows = []
    for part in args.parts:
        if part == "long":
            from .speed_long import part_long

            rows += part_long(args, device)
            continue
        rows += {
            "encoder": part_encoder,
            "memory": part_memory,
            "generation": part_generation,
            "flex": part_flex,
            "compiled": part_compiled,
            "scaling": part_scaling,
        }[part](args, device)
    from .common import write_json

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "v4_worker")}
    out = write_json(args.out, settings, rows)
    png = plot(rows, Path(args.out).with_suffix(".png"))
    print(f"wrote {out}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":  # the 4.x worker runs this file directly
    sys.exit(main())
