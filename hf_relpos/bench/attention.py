"""Forward+backward time and peak memory of ONE attention layer per scheme, against plain sdpa
attention without positions, measured side by side in one run.

    hf-relpos bench attention [--lengths 128 512 2048] [--schemes NAME ...] [--out FILE]

Peak memory as in ``hf-relpos bench speed`` (which measures whole models against HF anchors; this
suite isolates one layer). Writes JSON (default benchmarks/results/attention.json) and prints ratios
to the baseline at each length.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F

from ..attention_engine import relpos_attention
from ..relative_positions import SCHEMES
from ..scheme_config import SchemeFields, build_relative_position
from .common import add_io_options, write_json
from .speed import peak_memory


class Layer(nn.Module):
    """BERT-style self-attention: query/key/value projections, a scheme, an output projection."""

    def __init__(self, scheme_name, hidden, heads, max_len, backend):
        super().__init__()
        self.heads, self.head_dim, self.backend = heads, hidden // heads, backend
        self.query, self.key, self.value, self.dense = (nn.Linear(hidden, hidden) for _ in range(4))
        self.scheme = None
        if scheme_name != "baseline":
            fields = SchemeFields(relative_position=scheme_name, max_position_embeddings=max_len)
            self.scheme = build_relative_position(fields, heads, self.head_dim, hidden)

    def forward(self, x):
        B, L, _ = x.shape
        q, k, v = (
            proj(x).view(B, L, self.heads, self.head_dim).transpose(1, 2) for proj in (self.query, self.key, self.value)
        )
        if self.scheme is None:  # the anchor: plain fused sdpa, no positions, no mask
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        else:
            out, _ = relpos_attention(
                self,
                q,
                k,
                v,
                None,
                scheme=self.scheme,
                scaling=self.head_dim**-0.5,
                memo={},
                projections=(self.query, self.key),
                implementation=self.backend,
            )
        return self.dense(out.reshape(B, L, -1))


def step(layer, x):
    layer(x).float().pow(2).mean().backward()
    layer.zero_grad(set_to_none=True)


def measure(scheme, L, args):
    torch.manual_seed(0)
    layer = Layer(scheme, args.hidden, args.heads, max(L, 512), args.backend)
    x = torch.randn(args.batch, L, args.hidden, requires_grad=True)
    step(layer, x)  # warm-up
    layer.zero_grad(set_to_none=True)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step(layer, x)
        times.append(time.perf_counter() - start)
    return {"time_s": sorted(times)[len(times) // 2], "peak_bytes": peak_memory(lambda: step(layer, x), x.device)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="hf-relpos bench attention",
        allow_abbrev=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--schemes", nargs="+", default=[s for s in SCHEMES if s != "none"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="sdpa", choices=["eager", "sdpa", "flex_attention"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    add_io_options(parser, "attention")
    args = parser.parse_args(argv)
    for name in args.schemes:
        if name not in SCHEMES:
            parser.error(f"--schemes: {name!r} is not a scheme; choose from {', '.join(SCHEMES)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    header = f"{'scheme':<12}{'L':>6}{'fwd+bwd ms':>12}{'× sdpa':>8}{'peak MB':>10}{'× sdpa':>8}"
    print(
        f"one attention layer, hidden {args.hidden}, {args.heads} heads, batch {args.batch}, backend {args.backend}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(header)
    for L in args.lengths:
        base = measure("baseline", L, args)
        rows.append({"scheme": "baseline_sdpa", "length": L, **base, "time_ratio": 1.0, "memory_ratio": 1.0})
        print(
            f"{'sdpa (none)':<12}{L:>6}{base['time_s'] * 1e3:>12.1f}{1.0:>8.2f}{base['peak_bytes'] / 2**20:>10.1f}{1.0:>8.2f}"
        )
        for name in args.schemes:
            m = measure(name, L, args)
            row = {
                "scheme": name,
                "length": L,
                **m,
                "time_ratio": m["time_s"] / base["time_s"],
                "memory_ratio": m["peak_bytes"] / max(base["peak_bytes"], 1),
            }
            rows.append(row)
            print(
                f"{name:<12}{L:>6}{m['time_s'] * 1e3:>12.1f}{row['time_ratio']:>8.2f}"
                f"{m['peak_bytes'] / 2**20:>10.1f}{row['memory_ratio']:>8.2f}",
                flush=True,
            )
    out = write_json(args.out, {k: v for k, v in vars(args).items() if k != "out"}, rows)
    print(f"wrote {out}")
    return 0
