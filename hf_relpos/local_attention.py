"""Local (sliding-window) attention for any scheme: token i sees the keys j with |i − j| ≤ w.

A layer is local when its config's ``layer_types`` entry is ``"sliding_attention"`` (ModernBERT's and
transformers' name); ``w`` is the half-width (transformers' ``sliding_window_bidirectional_overlay``;
ModernBERT's ``local_attention`` is the whole window, 2w). Three ways to run it, the same numbers:

- :func:`band_mask`: the band as an additive (1, 1, Lq, Lk) mask from ``transformers.masking_utils``,
  merged into the layer's mask (:func:`with_band`). O(L²), every backend and every hook (eager's
  probabilities, Shaw's value side), and what torch.compile / ONNX export trace.
- :func:`banded_attention`: O(L·w) time and memory. Queries in blocks of ``b`` rows, each block reads only
  its ``b + 2w`` keys; the blocks are folded into the batch, so one attention call does them all. A
  distance-only bias needs only its 2w + 1 central table entries (one (H, b, b + 2w) tile shared by every
  block); a content term is the scheme's own hook on the block (queries at ``q_start = w`` of the window).
- :func:`sliding_block_mask`: a flex ``BlockMask`` of the band, so compiled flex skips the tiles outside it.

This file travels as remote code with the modeling files: it imports only torch, transformers and siblings.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers.masking_utils import eager_mask, sliding_window_bidirectional_mask_function

from .position_kernels import PositionMemo, memoized

# Local layers at or under this many keys per query block are cheaper dense (one block is the whole input).
BANDED_MIN_BLOCKS = 2


def band_mask(q_len: int, k_len: int, window: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Additive (1, 1, Lq, Lk) mask: 0 where |i − j| ≤ ``window``, the dtype's minimum elsewhere; queries
    are the last ``q_len`` of ``k_len`` positions."""
    return eager_mask(
        batch_size=1,
        q_length=q_len,
        kv_length=k_len,
        q_offset=k_len - q_len,
        mask_function=sliding_window_bidirectional_mask_function(window),
        attention_mask=None,
        dtype=dtype,
        allow_is_bidirectional_skip=False,
        device=device if device is not None else "cpu",
    )


def with_band(attention_mask, q_len: int, k_len: int, window: int, dtype, device, memo: PositionMemo | None = None):
    """``attention_mask`` (additive, broadcastable to (B, 1, Lq, Lk), or None) restricted to the band; the
    band is built once per forward when a memo is given (every local layer of the forward shares it)."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        memo = None  # symbolic lengths as dict keys would specialise the traced graph to one length
    band = memoized(
        memo, ("band", q_len, k_len, window, dtype, str(device)), lambda: band_mask(q_len, k_len, window, dtype, device)
    )
    if attention_mask is None:
        return band
    # the minimum of two additive masks, not their sum: min + min overflows to −inf (NaN rows in softmax)
    return torch.minimum(attention_mask.to(dtype), band)


def banded_block(window: int) -> int:
    """Query rows per block: 2w rounded up to 16, within [32, 512] (scores per block ≈ 2 × the band's)."""
    return min(512, max(32, -(-2 * window // 16) * 16))


def use_banded(query, key, scheme, window: int | None, block: int | None = None) -> bool:
    """The O(L·w) path: self-attention (Lq = Lk), at least two query blocks, no value-side term (it needs
    every key's probability), outside torch.compile / export / jit tracing (they trace the band mask)."""
    if window is None or scheme.uses_values or query.shape[-2] != key.shape[-2]:
        return False
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False
    return query.shape[-2] >= BANDED_MIN_BLOCKS * (block or banded_block(window))


def _windows(x, window: int, block: int, n_blocks: int):
    """(B, H, L, d) → (B · n_blocks, H, block + 2w, d): block k's keys, positions k·block − w onwards (zero rows
    outside [0, L))."""
    B, H, L, d = x.shape
    span = block + 2 * window
    padded = F.pad(x, (0, 0, window, n_blocks * block - L + window))
    tiles = padded.unfold(2, span, block)  # (B, H, n_blocks, d, span), a view
    return tiles.permute(0, 2, 1, 4, 3).reshape(B * n_blocks, H, span, d)


def _mask_windows(mask, window: int, block: int, n: int):
    """Additive mask (B or 1, 1, 1 or L, L) → where each block's queries may see each key of its window:
    bool (B or 1, n, 1 or block, block + 2w). O(L·w): the windows are strided views of the padded mask."""
    L, span, minimum = mask.shape[-1], block + 2 * window, torch.finfo(mask.dtype).min
    if mask.shape[-2] == 1:  # padding only: one row of keys
        keys = F.pad(mask[:, 0, 0], (window, n * block - L + window), value=minimum)
        return (keys.unfold(-1, span, block) > minimum / 2)[:, :, None, :]
    rows = F.pad(mask[:, 0], (window, n * block - L + window, 0, n * block - L), value=minimum)
    tiles = rows.view(rows.shape[0], n, block, -1).unfold(-1, span, block)  # (B, n, block, n, span)
    return tiles.diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2) > minimum / 2  # block k's rows, window k


def banded_attention(
    query,
    key,
    value,
    attention_mask,
    scaling,
    scheme,
    window: int,
    *,
    dropout: float = 0.0,
    projections=None,
    block: int | None = None,
):
    """Exact local attention in O(L·w). query, key, value (B, H, L, d), already rotated (RoPE) and with the
    scheme's scale in ``scaling``; ``attention_mask`` additive, broadcastable to (B, 1, L, L), or None.
    Returns (B, L, H, d), or None for a bias that is not a function of j − i (the caller runs the band mask)."""
    B, H, L, d = query.shape
    table = scheme.bias_1d(L, L) if scheme.uses_bias else None
    if scheme.uses_bias and table is None:
        return None
    block = block or banded_block(window)
    n = -(-L // block)
    span = block + 2 * window
    q = F.pad(query, (0, 0, 0, n * block - L)).view(B, H, n, block, d).transpose(1, 2).reshape(B * n, H, block, d)
    k, v = _windows(key, window, block, n), _windows(value, window, block, n)

    # key j of window k sits at position k·block − w + j, query i of block k at k·block + i: distance j − w − i
    rows = torch.arange(block, device=query.device)
    cols = torch.arange(span, device=query.device)
    distance = cols[None, :] - window - rows[:, None]  # (block, span), the same for every block
    position = (torch.arange(n, device=query.device) * block - window)[:, None] + cols  # (n, span)
    allowed = (distance.abs() <= window)[None] & ((position >= 0) & (position < L))[:, None, :]  # (n, block, span)
    allowed = allowed[None]
    if attention_mask is not None:
        allowed = allowed & _mask_windows(attention_mask, window, block, n)
    allowed = allowed.expand(B, n, block, span).reshape(B * n, 1, block, span)

    term = None
    if table is not None:  # only the 2w + 1 central entries: one (H, block, span) tile for every block
        reach = min(window, L - 1)
        central = table[:, L - 1 - reach : L + reach]
        term = central[:, distance.clamp(-reach, reach) + reach][None].to(query.dtype)
    if scheme.uses_content:  # the scheme's own hook on each block: its queries sit at q_start = w of the window
        content = scheme.content(q, k, projections=projections, q_start=window).mul_(scaling).to(query.dtype)
        term = content if term is None else content + term
    minimum = torch.finfo(query.dtype).min
    zero = torch.zeros((), dtype=query.dtype, device=query.device)
    mask = torch.where(allowed, zero if term is None else term, minimum)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling)
    out = out.view(B, n, H, block, d).permute(0, 1, 3, 2, 4).reshape(B, n * block, H, d)
    return out[:, :L]


def sliding_block_mask(q_len: int, k_len: int, window: int, device, block: int = 128):
    """A flex ``BlockMask`` of the band |i − j| ≤ ``window`` (queries the last ``q_len``): tiles outside
    it are skipped, the mask_mod masks inside the tiles it keeps."""
    from torch.nn.attention.flex_attention import create_block_mask

    offset = k_len - q_len

    def band(b, h, q_idx, kv_idx):
        return (q_idx + offset - kv_idx).abs() <= window

    return create_block_mask(band, B=None, H=None, Q_LEN=q_len, KV_LEN=k_len, device=device, BLOCK_SIZE=block)
