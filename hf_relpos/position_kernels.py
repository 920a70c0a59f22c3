"""Attention-math kernels of the relative schemes: distances, the tiled table product, bucket gathers,
the fixed tables (sinusoids, ALiBi slopes, T5 and DeBERTa buckets) and the per-call memo.

Queries are always the LAST ``q_len`` of the ``k_len`` positions unless a block gives ``q_start``.
This file travels as remote code with the modeling files: it imports only torch.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F


class PositionMemo(dict):
    """What one forward (or one attention call) computes once and shares: a shared scheme's bias, a
    content scheme's projected tables. Keys are tuples starting with the owner's ``id``.

    ``sink(tensor)`` is the hook of the blocked backward (``attention_engine._LeafMemo``): a tensor to
    sum ``tensor``'s gradient into in place, or None (here: always None, gradients flow as usual)."""

    def sink(self, tensor: torch.Tensor) -> torch.Tensor | None:
        return None


def relative_distance(q_len: int, k_len: int, device=None, q_start: int | None = None) -> torch.Tensor:
    """(Lq, Lk) integer tensor of j − i, queries being the last ``q_len`` of ``k_len`` positions, or
    positions ``q_start`` … ``q_start + q_len − 1`` when given (a block of queries)."""
    if q_start is None:
        if q_len > k_len:
            raise ValueError(f"q_len={q_len} must not exceed k_len={k_len} (queries are the last positions)")
        q_start = k_len - q_len
    q_pos = torch.arange(q_start, q_start + q_len, device=device)
    k_pos = torch.arange(k_len, device=device)
    return k_pos[None, :] - q_pos[:, None]


RELATIVE_TILE = 64  # rows per tile in relative_dot: the table product costs (1 + tile / M) × the minimum


def relative_dot(x, lookup, x_start: int, other_start: int, other_len: int, tile: int = RELATIVE_TILE, clip=None):
    """out[b, h, n, m] = x[b, h, n] · T(p_n − o_m), where p_n = x_start + n are the positions of x's rows,
    o_m = other_start + m those of the other side (M = other_len of them), and T(δ) a table row.

    ``lookup(delta)`` maps an integer tensor (S, W) of distances to rows (S, W, d), or per head
    (H, S, W, d). x (B, H, N, d) → (B, H, N, M). The rows of x go in tiles of ``tile``; a tile needs
    only the tile + M − 1 distances it sees, so the products cost ≈ N·M·d (1 + tile / M) and no
    (N, M, d) tensor exists (transformers 4.x built one); a gather then picks each pair's entry.
    ``clip=(lo, hi)``: ``lookup`` clamps δ to [lo, hi]; when those K = hi − lo + 1 rows are fewer than a
    tile's, every row of x is multiplied by the K rows once instead (N·K·d).
    """
    B, H, N, d = x.shape
    M = other_len
    arange = functools.partial(torch.arange, device=x.device)
    exporting = torch.compiler.is_exporting()
    if exporting and clip is None:
        # torch.export/ONNX: one graph for every length, so no choice by size (tiles, padding): every row of
        # x times the N + M − 1 rows of the distances present, then the gather (memory ≈ 2× the scores)
        clip = (x_start - other_start - (M - 1), x_start - other_start + N - 1)
    if clip is not None and (exporting or clip[1] - clip[0] + 1 < min(tile, N) + M - 1):
        lo, hi = clip
        rows = lookup(arange(lo, hi + 1)[None, :])  # (1, K, d) or (H, 1, K, d)
        delta = (x_start + arange(N))[:, None] - (other_start + arange(M))[None, :]
        return bucket_dot(x, rows[0] if rows.dim() == 3 else rows[:, 0], delta.clamp(lo, hi) - lo)
    tile = max(1, min(tile, N))
    S = -(-N // tile)
    if S * tile != N:
        x = F.pad(x, (0, 0, 0, S * tile - N))
    W = tile + M - 1
    # a tile's distances in decreasing order, from its last row's δ to the first m: pair (t, m) then sits at
    # w = tile − 1 − t + m, i.e. at t·(W − 1) + m + tile − 1 in the tile's flat products, so every output
    # row is a contiguous run and the (tile, M) result a strided view (a row copy, no per-element gather)
    delta = (x_start + arange(S) * tile + (tile - 1) - other_start)[:, None] - arange(W)[None, :]  # (S, W)
    rows = lookup(delta).to(x.dtype)
    pattern = "bhsnd,swd->bhsnw" if rows.dim() == 3 else "bhsnd,hswd->bhsnw"
    products = torch.einsum(pattern, x.view(B, H, S, tile, d), rows)  # (B, H, S, tile, W), bmm's layout
    if torch.compiler.is_compiling():
        # traced graphs: a gather (storage offsets and strides of intermediates are not traceable)
        index = (tile - 1) - arange(tile)[:, None] + arange(M)[None, :]
        out = torch.gather(products, -1, index.expand(B, H, S, tile, M))
    else:
        if products.stride(-1) != 1:
            products = products.contiguous()
        sb, sh, ss, st, _ = products.stride()
        out = products.as_strided((B, H, S, tile, M), (sb, sh, ss, st - 1, 1), products.storage_offset() + tile - 1)
    return out.reshape(B, H, S * tile, M)[:, :, :N]


def bucket_dot(x, rows, index):
    """out[b, h, n, m] = x[b, h, n] · rows[(h,) index[n, m]]: every row of x times the K table rows once
    (N·K·d, as HF DeBERTa's c2p/p2c), then a gather. x (B, H, N, d), rows (K, d) or (H, K, d), index
    (N, M) integers in [0, K) → (B, H, N, M). Cheaper than :func:`relative_dot`'s tiles when K < N + M."""
    B, H, N, _ = x.shape
    products = torch.matmul(x, rows.to(x.dtype).transpose(-1, -2))  # (B, H, N, K)
    return torch.gather(products, -1, index.expand(B, H, N, index.shape[-1]))


def memoized(memo: dict | None, key, compute):
    """``memo[key]``, computed on a miss (without a memo: ``compute()``). Returns what the memo holds, so a
    memo that stores something else (a leaf cut from the graph, in the blocked backward) is honoured."""
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


class _GatherIntoSink(torch.autograd.Function):
    """``torch.gather(source, -1, index)`` whose gradient is added in place into ``sink`` (returning none
    for ``source``): query blocks that read one shared tensor sum its gradient without allocating a
    source-sized tensor per block, as gather's own backward does."""

    @staticmethod
    def forward(ctx, source, index, sink):
        ctx.save_for_backward(index)
        ctx.sink = sink
        return torch.gather(source, -1, index)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        ctx.sink.scatter_add_(-1, index, grad)
        return None, None, None


def memo_gather(memo, source, index):
    """``torch.gather(source, -1, index)`` of a memoized ``source``; where the memo gives a gradient sink
    for it (:meth:`PositionMemo.sink`, the blocked backward's memo) the gradient goes into the sink."""
    sink = memo.sink(source) if isinstance(memo, PositionMemo) and source.requires_grad else None
    return torch.gather(source, -1, index) if sink is None else _GatherIntoSink.apply(source, index, sink)


def distance_span(q_len: int, k_len: int, q_start: int | None, memo: dict | None) -> tuple[bool, int, int]:
    """(shared, lo, hi): the range of i − j a content term needs. A query block (``q_start`` given) with a
    memo private to its attention call (the blocked paths) takes every i − j of the call, so that what it
    derives from the distances is computed once and shared by the blocks; otherwise those of these rows."""
    if q_start is not None and memo is not None:
        return True, -(k_len - 1), k_len - 1
    start = query_start(q_len, k_len, q_start)
    return False, start - (k_len - 1), start + q_len - 1


def query_start(q_len: int, k_len: int, q_start: int | None) -> int:
    return k_len - q_len if q_start is None else q_start


def sinusoid_table(positions: torch.Tensor, dim: int, interleave: bool = True) -> torch.Tensor:
    """(N, dim) sinusoids of ``positions``: angle p / 10000^(2t/dim).

    ``interleave`` puts sin/cos at even/odd columns (Vaswani et al.); otherwise [sin | cos] halves
    (Transformer-XL)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    table = torch.zeros(positions.shape[0], dim, device=positions.device)
    if interleave:
        table[:, 0::2] = torch.sin(angles)
        table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    else:
        table[:, : angles.shape[1]] = torch.sin(angles)
        table[:, angles.shape[1] : angles.shape[1] * 2] = torch.cos(angles)[:, : dim - angles.shape[1]]
    return table


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Geometric head slopes 2^(−8h/H) (Press et al. 2022), with the usual completion for H not a
    power of 2: the slopes of the nearest lower power of 2, then every other slope of the next."""

    def power_of_2(n):
        start = 2 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_2(num_heads)
    else:
        lower = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_2(lower) + power_of_2(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def t5_relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's bucketing of j − i (Raffel et al. 2020), identical to HF ``T5Attention._relative_position_bucket``."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1)
    )
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def deberta_log_bucket(relative_pos: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """DeBERTa-v2 ``make_log_bucket_position`` (He et al. 2021): exact within ±bucket_size/2, log beyond."""
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid), torch.tensor(mid - 1).type_as(relative_pos), relative_pos.abs()
    )
    log_pos = torch.ceil(torch.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign).long()
