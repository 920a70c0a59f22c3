"""The attention core shared by relpos_bert and relpos_t5: scheme hooks + backend dispatch.

The models own their projections (BERT's ``query/key/value``, T5's ``q/k/v``) and call
:func:`relpos_attention` with projected heads. It applies the scheme's hooks and runs the backend
named by ``config._attn_implementation``:

- ``eager``: plain matmul/softmax; carries every hook, returns attention probabilities.
- ``sdpa``: transformers' sdpa function; the scheme's bias and content terms travel as
  ``position_bias`` (folded into sdpa's float mask).
- ``flex_attention``: torch flex attention. A scheme whose bias depends only on j − i (t5, alibi,
  kerple, bidirectional fire) is computed inside ``score_mod`` from an (H, Lq + Lk − 1) table, so
  no (B, H, Lq, Lk) bias tensor exists. Compiled on GPU; on CPU compiled for inference on long
  inputs (see :func:`flex_compiled`), else unfused (exact and differentiable, but O(L²) memory).

Shaw's value side (``relative_value=True``) needs the probabilities, which sdpa and flex never
expose: under those backends the layer falls back to eager with one warning.

Long inputs with a content scheme (sinusoidal, shaw, shaw_kq, xl, deberta) or a learned bias (t5,
kerple, fire) under sdpa go through :func:`blocked_relpos_attention`: queries in blocks, each block's scores built, used and (under
autograd) recomputed in the backward pass, so no (B, H, L, L) tensor outlives its block.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.utils import logging

from .relative_positions import RELATIVE_TILE, relative_distance

logger = logging.get_logger(__name__)

SUPPORTED_IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")


def build_attention_mask(padding_mask, q_len, k_len, causal=False, dtype=torch.float32, device=None):
    """Additive float mask (B or 1, 1, Lq, Lk) from a (B, Lk) 1/0 padding mask, or None when no
    position is masked. Queries are the last ``q_len`` of ``k_len`` positions (decoder caches)."""
    allowed = None
    if padding_mask is not None:
        if padding_mask.dim() != 2 or padding_mask.shape[-1] != k_len:
            raise ValueError(
                f"attention_mask must have shape (batch, {k_len}) (key length), got {tuple(padding_mask.shape)}"
            )
        if not bool(padding_mask.all()):
            allowed = padding_mask[:, None, None, :].bool()
    if causal and q_len > 1:  # a single (last) query may see every key
        q_pos = torch.arange(k_len - q_len, k_len, device=device)
        causal_allowed = (torch.arange(k_len, device=device)[None, :] <= q_pos[:, None])[None, None]
        allowed = causal_allowed if allowed is None else allowed & causal_allowed
    if allowed is None:
        return None
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def eager_relpos_attention(query, key, value, attention_mask, scaling, dropout=0.0, position_bias=None, scheme=None):
    """q (B, H, Lq, d), k/v (B, H, Lk, d) → ((B, Lq, H, d), probs (B, H, Lq, Lk))."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    output = torch.matmul(probs, value)
    if scheme is not None and scheme.uses_values:
        output = output + scheme.values(probs)
    return output.transpose(1, 2).contiguous(), probs


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


# Compiling flex on CPU costs ~10–30 s per new shape and inductor's CPU kernel has no backward, so
# by default it is used for inference on inputs of at least this many scores per head (1024²).
FLEX_CPU_COMPILE_MIN_SCORES = 1 << 20


def flex_compiled(query, key, *tensors) -> bool:
    """Whether flex attention runs compiled: always on CUDA; on CPU when no input needs a gradient
    and Lq·Lk ≥ FLEX_CPU_COMPILE_MIN_SCORES. ``HF_RELPOS_FLEX_COMPILE=always|never`` overrides the CPU
    length rule (``always`` still needs grad-free inputs)."""
    if query.device.type == "cuda":
        return True
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (query, key, *tensors))
    mode = os.environ.get("HF_RELPOS_FLEX_COMPILE", "auto")
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"HF_RELPOS_FLEX_COMPILE={mode!r} is not valid; choose one of: auto, always, never")
    if needs_grad or mode == "never" or query.device.type != "cpu":
        return False
    return mode == "always" or query.shape[-2] * key.shape[-2] >= FLEX_CPU_COMPILE_MIN_SCORES


def full_block_mask(q_len, k_len, device, block=128):
    """A BlockMask of every (block × block) tile. Without one, flex uses a single tile of the whole
    (Lq, Lk) grid, and inductor's CPU kernel then holds an Lq × Lk score buffer per thread (O(L²))."""
    from torch.nn.attention.flex_attention import BlockMask

    nq, nk = -(-q_len // block), -(-k_len // block)
    return BlockMask.from_kv_blocks(
        kv_num_blocks=torch.full((1, 1, nq), nk, dtype=torch.int32, device=device),
        kv_indices=torch.arange(nk, dtype=torch.int32, device=device).expand(1, 1, nq, nk).contiguous(),
        BLOCK_SIZE=block, seq_lengths=(q_len, k_len),
    )


def flex_relpos_attention(query, key, value, attention_mask, scaling, position_bias=None, bias_1d=None):
    """Flex attention with the bias computed in ``score_mod``: from ``bias_1d`` (H, Lq + Lk − 1)
    indexed by j − i + Lk − 1 when given, else from a dense ``position_bias`` (B or 1, H, Lq, Lk)."""
    from torch.nn.attention.flex_attention import flex_attention

    q_len, k_len = query.shape[-2], key.shape[-2]
    offset = k_len - q_len  # query i sits at position offset + i
    mask_batched = attention_mask is not None and attention_mask.shape[0] > 1
    mask_per_query = attention_mask is not None and attention_mask.shape[-2] > 1  # else (B, 1, 1, Lk) padding
    bias_batched = position_bias is not None and position_bias.shape[0] > 1

    def score_mod(score, b, h, q_idx, kv_idx):
        if attention_mask is not None:
            score = score + attention_mask[b if mask_batched else 0, 0, q_idx if mask_per_query else 0, kv_idx]
        if bias_1d is not None:
            score = score + bias_1d[h, kv_idx - q_idx - offset + k_len - 1]
        elif position_bias is not None:
            score = score + position_bias[b if bias_batched else 0, h, q_idx, kv_idx]
        return score

    if flex_compiled(query, key, value, position_bias, bias_1d):
        output = _compiled_flex()(query, key, value, score_mod=score_mod, scale=scaling,
                                  block_mask=full_block_mask(q_len, k_len, query.device))
    else:
        # compiled flex on CPU is inference-only; the unfused path is exact and differentiable
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
            output = flex_attention(query, key, value, score_mod=score_mod, scale=scaling)
    return output.transpose(1, 2).contiguous(), None


# Content schemes under sdpa switch to query blocks when the scores of one layer, B·H·Lq·Lk values,
# would take at least this many bytes; each block then holds about BLOCK_SCORE_BYTES of scores.
BLOCKED_MIN_SCORE_BYTES = 128 * 2**20
BLOCK_SCORE_BYTES = 32 * 2**20


def use_blocks(query, key) -> int | None:
    """Query block size for :func:`blocked_relpos_attention`, or None when the scores are small."""
    B, H, q_len, _ = query.shape
    per_query = B * H * key.shape[-2] * query.element_size()
    if q_len * per_query < BLOCKED_MIN_SCORE_BYTES:
        return None
    block = max(1, BLOCK_SCORE_BYTES // per_query)
    if block > RELATIVE_TILE:  # whole tiles of relative_dot: no padded rows
        block -= block % RELATIVE_TILE
    return block if block < q_len else None


def blocked_relpos_attention(query, key, value, attention_mask, scaling, scheme, block, dropout=0.0,
                             projections=None, memo=None):
    """Attention over query blocks of ``block`` rows, exact; memory O(block · Lk) per layer instead of
    O(Lq · Lk). Under autograd each block is checkpointed: its scores (and the scheme's content term)
    are rebuilt in the backward pass rather than kept, trading ~1 extra attention forward for memory.

    query (B, H, Lq, d) are the last Lq of Lk positions. A distance-only bias enters each block as rows
    of its (H, Lq + Lk − 1) table; any other bias is built once and sliced.
    Returns ((B, Lq, H, d), None)."""
    q_len, k_len = query.shape[-2], key.shape[-2]
    offset = k_len - q_len
    mask_rows = attention_mask is not None and attention_mask.shape[-2] > 1
    table = full_bias = None
    if scheme is not None and scheme.uses_bias:
        table = scheme.bias_1d(q_len, k_len)
        if table is None:
            full_bias = scheme.cached_bias(q_len, k_len, memo)[None]

    def attend(q, key, value, start):
        scores = torch.matmul(q, key.transpose(-1, -2)) * scaling
        if scheme is not None and scheme.uses_content:
            # no memo inside a checkpointed block: what it caches would be replayed outside its region
            scores = scores + scheme.content(q, key, projections=projections, q_start=offset + start) * scaling
        if table is not None:
            rows = relative_distance(q.shape[-2], k_len, q.device, q_start=offset + start) + (k_len - 1)
            scores = scores + table[:, rows][None].to(scores.dtype)
        elif full_bias is not None:
            scores = scores + full_bias[..., start : start + q.shape[-2], :].to(scores.dtype)
        if attention_mask is not None:
            scores = scores + (attention_mask[..., start : start + q.shape[-2], :] if mask_rows else attention_mask)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        probs = F.dropout(probs, p=dropout, training=dropout > 0)
        out = torch.matmul(probs, value)
        if scheme is not None and scheme.uses_values:
            out = out + scheme.values(probs, q_start=offset + start)
        return out

    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (query, key, value, *(() if scheme is None else scheme.parameters()))
    )
    outputs = []
    for start in range(0, q_len, block):
        q = query[:, :, start : start + block]
        if needs_grad:
            outputs.append(checkpoint(attend, q, key, value, start, use_reentrant=False))
        else:
            outputs.append(attend(q, key, value, start))
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def relpos_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    *,
    scheme,
    scaling,
    dropout=0.0,
    memo=None,
    projections=None,
    implementation="sdpa",
):
    """Attention with a relative position scheme.

    Args:
        module: the calling attention module (for transformers' sdpa function).
        query: (B, H, Lq, d); key, value: (B, H, Lk, d). Queries are the last Lq positions.
        attention_mask: additive float mask (B or 1, 1, Lq, Lk) or None (see build_attention_mask).
        scheme: a RelativePositionScheme or None.
        scaling: the model's score scale (1/√d BERT, 1.0 T5); divided by √scheme.scale_factor.
        memo: per-forward dict, so a scheme shared by all layers computes its bias once.
        projections: the layer's (query, key) Linear pair (DeBERTa projects its table with them).
        implementation: "eager", "sdpa" or "flex_attention".

    Returns: (output (B, Lq, H, d), attention probabilities (B, H, Lq, Lk) or None).
    """
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation={implementation!r} is not supported; choose one of: {', '.join(SUPPORTED_IMPLEMENTATIONS)}"
        )
    q_len, k_len = query.shape[-2], key.shape[-2]
    if scheme is not None:
        scaling = scaling / scheme.scale_factor**0.5
        if scheme.uses_rotate:
            query, key = scheme.rotate(query, key)
    if scheme is not None and scheme.uses_values and implementation != "eager":
        logger.warning_once(
            f"relative_value=True (Shaw value side) needs the attention probabilities, which "
            f"{implementation} does not expose; these layers run eager attention instead."
        )
        implementation = "eager"

    bias_1d = None
    position_bias = None
    # sdpa has a fused kernel for a fixed bias (alibi) but none for one that needs a gradient or content
    learned_bias = scheme is not None and scheme.uses_bias and torch.is_grad_enabled() and any(
        p.requires_grad for p in scheme.parameters())
    if implementation == "sdpa" and scheme is not None and (scheme.uses_content or learned_bias):
        block = use_blocks(query, key)
        if block is not None:
            return blocked_relpos_attention(query, key, value, attention_mask, scaling, scheme, block,
                                            dropout=dropout, projections=projections, memo=memo)
    if scheme is not None and scheme.uses_content:
        position_bias = scheme.content(query, key, projections=projections, memo=memo) * scaling
    if scheme is not None and scheme.uses_bias:
        if implementation == "flex_attention" and position_bias is None:
            bias_1d = scheme.bias_1d(q_len, k_len)
        if bias_1d is None:
            bias = scheme.cached_bias(q_len, k_len, memo)[None]
            position_bias = bias if position_bias is None else position_bias + bias
    if position_bias is not None:
        position_bias = position_bias.to(query.dtype)
    if bias_1d is not None:
        bias_1d = bias_1d.to(query.dtype)

    if implementation == "eager":
        return eager_relpos_attention(
            query, key, value, attention_mask, scaling, dropout=dropout, position_bias=position_bias, scheme=scheme
        )
    if implementation == "sdpa":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=False,
            position_bias=position_bias,
        )
    if dropout > 0:
        raise ValueError(
            "attn_implementation='flex_attention' does not support attention dropout; set the attention dropout "
            "probability to 0 or call model.eval()"
        )
    return flex_relpos_attention(query, key, value, attention_mask, scaling, position_bias=position_bias, bias_1d=bias_1d)
