"""The attention core shared by relpos_bert and relpos_t5: scheme hooks + backends.

The models own their projections (BERT's ``query/key/value``, T5's ``q/k/v``) and call the backend
that ``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation)`` returns, with projected
heads and their scheme (a :class:`RelativePositionScheme`; :class:`NoRelativePosition` when the layer
has none, never None). ``ALL_ATTENTION_FUNCTIONS`` is a local ``AttentionInterface`` (transformers'
pattern for a model that brings its own functions, as Doge does) holding only the three backends that
carry every scheme; each owns its fallback rule:

- ``eager``: plain matmul/softmax; carries every hook, returns attention probabilities.
- ``sdpa``: transformers' sdpa function; the scheme's bias and content terms travel as
  ``position_bias`` (folded into sdpa's float mask). On CPU, a distance-only bias from 512² scores per
  head (BERT-base heads) runs :class:`FusedDistanceBiasAttention` (torch's fused flash kernel per query
  block, the bias a strided view of its (H, Lq + Lk − 1) table, whose gradient the backward sums along
  diagonals). Long inputs with a content term or another learned bias go through
  :func:`blocked_relpos_attention`: queries in blocks, no (B, H, L, L) tensor outlives its block; under
  autograd a content term runs :class:`FusedContentAttention` (fused forward, a backward that rebuilds the
  block's term), anything else checkpointed blocks. Falls back to eager when the probabilities are needed
  (Shaw's value side, ``output_attentions``).
- ``flex_attention``: torch flex attention. A distance-only bias is computed inside ``score_mod`` from
  an (H, Lq + Lk − 1) table, so no (B, H, Lq, Lk) bias tensor exists. Compiled on GPU (the tables get
  their gradients through the captured tensors); on CPU compiled for inference on long inputs (see
  :func:`flex_compiled`), else unfused; CPU training (torch has no flex backward there) runs the same
  ``score_mod`` over dense scores (:func:`flex_math`, O(L²) memory). Same eager fallback as sdpa;
  attention dropout is refused.

Every backend is called ``fn(module, query, key, value, attention_mask, *, scaling, dropout, scheme,
memo, projections, output_attentions)`` and returns ``(output (B, Lq, H, d), probs or None)``.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import bidirectional_mask_function, causal_mask_function, eager_mask
from transformers.modeling_utils import AttentionInterface
from transformers.utils import logging

from .compat import flash_attention_backward, flash_attention_forward, has_flash_backward, warn_flash_backward
from .local_attention import banded_attention, sliding_block_mask, use_banded, with_band
from .position_kernels import RELATIVE_TILE, PositionMemo, relative_distance
from .relative_positions import NoRelativePosition, RelativePositionScheme

logger = logging.get_logger(__name__)

NO_RELATIVE_POSITION = NoRelativePosition()  # the null scheme (no parameters, no hooks)


def build_attention_mask(padding_mask, q_len, k_len, causal=False, dtype=torch.float32, device=None):
    """Additive float mask (B or 1, 1, Lq, Lk) from a (B, Lk) 1/0 padding mask, or None when nothing is
    masked. Queries are the last ``q_len`` of ``k_len`` positions (decoder caches).

    Built by ``transformers.masking_utils.eager_mask``: its "skip an all-ones padding mask" shortcut
    reads the mask's values only outside tracing (torch.compile, torch.export/ONNX, jit trace keep the
    mask as a graph input; no Python branch on tensor values there). The additive form, not
    ``create_bidirectional_mask``'s per-backend dispatch (bool for sdpa, BlockMask for flex), because
    every backend here adds the scheme's bias to the mask (sdpa folds ``position_bias`` into it, flex
    adds both in its ``score_mod``, the blocked path slices it by query rows)."""
    if padding_mask is not None and (padding_mask.dim() != 2 or padding_mask.shape[-1] != k_len):
        raise ValueError(
            f"attention_mask must have shape (batch, {k_len}) (key length), got {tuple(padding_mask.shape)}"
        )
    if padding_mask is None and (not causal or q_len == 1):  # a single (last) query may see every key
        return None
    return eager_mask(
        batch_size=1 if padding_mask is None else padding_mask.shape[0],
        q_length=q_len,
        kv_length=k_len,
        # bidirectional: offset 0, as masking_utils' bidirectional function masks queries at negative positions
        # (cross-attention has Lq > Lk when the decoder input is longer than the encoder's)
        q_offset=k_len - q_len if causal else 0,
        mask_function=causal_mask_function if causal else bidirectional_mask_function,
        attention_mask=None if padding_mask is None else padding_mask.bool(),
        dtype=dtype,
        allow_is_bidirectional_skip=not causal,
        device=device if device is not None else (padding_mask.device if padding_mask is not None else "cpu"),
    )


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
        BLOCK_SIZE=block,
        seq_lengths=(q_len, k_len),
    )


def _flex_core(query, key, value, attention_mask, scaling, position_bias=None, bias_1d=None, window=None):
    """Flex attention with the bias computed in ``score_mod``: from ``bias_1d`` (H, Lq + Lk − 1)
    indexed by j − i + Lk − 1 when given, else from a dense ``position_bias`` (B or 1, H, Lq, Lk).
    ``window``: a local layer's half-width, |i − j| ≤ window (in ``score_mod``, and a sliding ``BlockMask``
    where flex runs compiled, so the tiles outside the band are skipped)."""
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
        if window is not None:
            score = torch.where((q_idx + offset - kv_idx).abs() <= window, score, torch.finfo(score.dtype).min)
        return score

    if torch.compiler.is_compiling():
        # inside the caller's torch.compile / torch.export graph: the outer compile fuses flex itself
        output = flex_attention(query, key, value, score_mod=score_mod, scale=scaling)
    elif flex_compiled(query, key, value, position_bias, bias_1d):
        block_mask = (
            full_block_mask(q_len, k_len, query.device)
            if window is None
            else sliding_block_mask(q_len, k_len, window, query.device)
        )
        output = _compiled_flex()(query, key, value, score_mod=score_mod, scale=scaling, block_mask=block_mask)
    elif (
        query.device.type == "cpu"
        and torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in (query, key, value, position_bias, bias_1d))
    ):
        # torch has no flex backward on CPU (compiled or not): the same score_mod over dense scores
        output = flex_math(query, key, value, score_mod, scaling)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
            output = flex_attention(query, key, value, score_mod=score_mod, scale=scaling)
    return output.transpose(1, 2).contiguous(), None


def flex_math(query, key, value, score_mod, scaling):
    """What flex attention computes, without its kernel: ``score_mod`` applied to the dense (B, H, Lq, Lk)
    scores with broadcast index tensors (it only indexes and adds), softmax in fp32, times ``value``.
    Differentiable in everything ``score_mod`` captures (the scheme's tables): the CPU training path of
    ``attn_implementation="flex_attention"``, and the reference the GPU kernel's gradients must match."""
    shape = (query.shape[0], query.shape[1], query.shape[-2], key.shape[-2])

    def index(dim):
        return torch.arange(shape[dim], device=query.device).view([-1 if d == dim else 1 for d in range(4)])

    scores = score_mod(torch.matmul(query, key.transpose(-1, -2)) * scaling, index(0), index(1), index(2), index(3))
    return torch.matmul(torch.softmax(scores.float(), dim=-1).to(value.dtype), value)


# Content schemes under sdpa switch to query blocks when the scores of one layer, B·H·Lq·Lk values,
# would take at least this many bytes, or when Lq·Lk reaches BLOCKED_MIN_SCORES_PER_HEAD whatever the
# head count (a few heads' full scores and content terms would otherwise outweigh what they replace:
# transformers 4.x relative_key_query's (L, L, head_dim) tensor grows with head_dim, not heads; with
# 4 heads at L = 2048 the unblocked peak was 0.129 of it, the target 1/8). Each block then holds about
# BLOCK_SCORE_BYTES of scores.
BLOCKED_MIN_SCORE_BYTES = 128 * 2**20
BLOCKED_MIN_SCORES_PER_HEAD = 2048 * 2048
BLOCK_SCORE_BYTES = 32 * 2**20


def use_blocks(query, key) -> int | None:
    """Query block size for :func:`blocked_relpos_attention`, or None when the scores are small."""
    B, H, q_len, _ = query.shape
    per_query = B * H * key.shape[-2] * query.element_size()
    if q_len * per_query < BLOCKED_MIN_SCORE_BYTES and q_len * key.shape[-2] < BLOCKED_MIN_SCORES_PER_HEAD:
        return None
    block = max(1, BLOCK_SCORE_BYTES // per_query)
    if block > RELATIVE_TILE:  # whole tiles of relative_dot: no padded rows
        block -= block % RELATIVE_TILE
    return block if block < q_len else None


def blocked_relpos_attention(
    query, key, value, attention_mask, scaling, scheme, block, dropout=0.0, projections=None, memo=None
):
    """Attention over query blocks of ``block`` rows, exact; memory O(block · Lk) per layer instead of
    O(Lq · Lk). Under autograd a content term (CPU, fp32/fp64, no dropout, eager) runs
    :class:`FusedContentAttention`; otherwise each block is checkpointed: its scores (and the scheme's
    content term) are rebuilt in the backward pass rather than kept, ~1 extra attention forward.

    query (B, H, Lq, d) are the last Lq of Lk positions. A distance-only bias enters each block as rows
    of its (H, Lq + Lk − 1) table; any other bias is built once and sliced.
    Returns ((B, Lq, H, d), None)."""
    q_len, k_len = query.shape[-2], key.shape[-2]
    offset = k_len - q_len
    mask_rows = attention_mask is not None and attention_mask.shape[-2] > 1
    table = full_bias = None
    if scheme.uses_bias:
        table = scheme.bias_1d(q_len, k_len)
        if table is None:
            full_bias = scheme.cached_bias(q_len, k_len, memo)[None]

    def attend(q, key, value, start):
        scores = torch.matmul(q, key.transpose(-1, -2)) * scaling
        if scheme.uses_content:
            # no memo inside a checkpointed block: what it caches would be replayed outside its region
            scores = scores.add_(scheme.content(q, key, projections=projections, q_start=offset + start), alpha=scaling)
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
        if scheme.uses_values:
            out = out + scheme.values(probs, q_start=offset + start)
        return out

    params = [*scheme.parameters(), *(p for m in (projections or ()) for p in m.parameters())]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value, *params))
    if needs_grad and use_fused_content(query, scheme, dropout):

        def content(q, k, start, memo):  # a memo private to this call, shared by its blocks
            return scheme.content(q, k, projections=projections, memo=memo, q_start=offset + start)

        mask = None if attention_mask is None else attention_mask.to(query.dtype)
        out = FusedContentAttention.apply(
            content, query, key, value, mask, scaling, block, *(p for p in params if p.requires_grad)
        )
        return out.transpose(1, 2).contiguous(), None
    outputs = []
    for start in range(0, q_len, block):
        q = query[:, :, start : start + block]
        if needs_grad:
            outputs.append(checkpoint(attend, q, key, value, start, use_reentrant=False))
        else:
            outputs.append(attend(q, key, value, start))
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def use_fused_content(query, scheme, dropout) -> bool:
    """Whether the query blocks of a content scheme run :class:`FusedContentAttention` (CPU, fp32/fp64, no
    dropout, no value side, eager) instead of checkpointed blocks."""
    return (
        scheme.uses_content
        and not scheme.uses_values
        and not scheme.uses_bias
        and dropout == 0
        and query.device.type == "cpu"
        and query.dtype in (torch.float32, torch.float64)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
    )


def _fully_masked(mask) -> bool:
    """Whether some query row of an additive mask hides every key (padding under a causal mask)."""
    return mask is not None and bool((mask.amax(-1) <= torch.finfo(mask.dtype).min / 2).any())


class _LeafMemo(PositionMemo):
    """A memo whose differentiable entries are cut from their graph: every block reads the same leaf and its
    gradient is summed, then carried through the entry's own graph once (not once per block)."""

    def __init__(self):
        super().__init__()
        self.entries = []  # (original, leaf) in insertion order
        self.sinks = {}  # id(leaf) → its gradient, summed in place by memo_gather

    @property
    def leaves(self):
        return [leaf for _, leaf in self.entries]

    def sink(self, leaf):
        if id(leaf) not in self.sinks:
            self.sinks[id(leaf)] = torch.zeros_like(leaf)
        return self.sinks[id(leaf)]

    def __setitem__(self, key, value):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            leaf = value.detach().requires_grad_(True)
            self.entries.append((value, leaf))
            value = leaf
        super().__setitem__(key, value)


def _accumulate(sums: dict, output, grad, inputs, own=None):
    """Add the gradients of ``output`` (given ``grad``) with respect to each of ``inputs`` that needs one into
    ``sums[id(input)]``; the gradient of ``own`` (a block's queries) is returned instead (None if unused)."""
    chosen = [t for t in inputs if t is not None and t.requires_grad]
    result = None
    for t, g in zip(chosen, torch.autograd.grad(output, chosen, grad, allow_unused=True)):
        if g is None:
            continue
        if t is own:
            result = g
        else:
            sums[id(t)] = g if id(t) not in sums else sums[id(t)].add_(g)
    return result


class FusedContentAttention(torch.autograd.Function):
    """softmax((q·kᵀ + C)·scale + mask)·v over query blocks, C = ``content(q_block, k, start)`` the scheme's
    content term (B, H, n, Lk), exact; no (B, H, Lq, Lk) tensor outlives its block.

    Forward: per block, C without autograd, then torch's fused CPU flash kernel with C·scale + mask as its
    additive mask; keeps the output and its log-sum-exp. Backward, per block: C rebuilt under autograd,
    P = exp(S − logsumexp) (softmax where a row is fully masked), dS = P ∘ (dO·vᵀ − rowsum(dO ∘ O)),
    dQ, dK, dV from dS and P, and dS·scale pushed through C's graph into q, k and ``params`` (the tensors
    C reads: the scheme's tables and projections). Against checkpointed blocks this skips the replayed
    P·V product and softmax backward, and the forward runs the fused kernel instead of the math path."""

    @staticmethod
    def forward(ctx, content, query, key, value, mask, scaling, block, *params):
        q_len = query.shape[-2]
        out = query.new_empty(*query.shape[:-1], value.shape[-1])
        lse = query.new_empty(query.shape[:-1])
        mask_rows = mask is not None and mask.shape[-2] > 1
        memo = PositionMemo()
        for start in range(0, q_len, block):
            rows = slice(start, start + block)
            bias = content(query[:, :, rows], key, start, memo).mul_(scaling)
            if mask is not None:
                bias = bias.add_(mask[:, :, rows] if mask_rows else mask)
            out[:, :, rows], lse[:, :, rows] = flash_attention_forward(
                query[:, :, rows], key, value, attn_mask=bias, scale=scaling
            )
        ctx.save_for_backward(query, key, value, mask, out, lse, *params)
        ctx.content, ctx.scaling, ctx.block, ctx.fully_masked = content, scaling, block, _fully_masked(mask)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        query, key, value, mask, out, lse, *params = ctx.saved_tensors
        scaling, block, q_len = ctx.scaling, ctx.block, query.shape[-2]
        need_q, need_k, need_v = ctx.needs_input_grad[1:4]
        grad_out = grad_out.contiguous()
        delta = (grad_out * out).sum(-1, keepdim=True)  # rowsum(dO ∘ O)
        mask_rows = mask is not None and mask.shape[-2] > 1
        dq = torch.empty_like(query) if need_q else None
        dk = torch.zeros_like(key) if need_k else None
        dv = torch.zeros_like(value) if need_v else None
        k_leaf = key.detach().requires_grad_(need_k)
        memo = _LeafMemo()
        sums = {}  # id(tensor) → gradient summed over the blocks: k_leaf, the memo's leaves, params
        kt, vt = key.transpose(-1, -2), value.transpose(-1, -2)
        for start in range(0, q_len, block):
            rows = slice(start, start + block)
            q, do = query[:, :, rows], grad_out[:, :, rows]
            q_leaf = q.detach().requires_grad_(need_q)
            with torch.enable_grad():
                term = ctx.content(q_leaf, k_leaf, start, memo)
            scores = torch.matmul(q, kt).add_(term.detach()).mul_(scaling)
            if mask is not None:
                scores.add_(mask[:, :, rows] if mask_rows else mask)
            if ctx.fully_masked:  # eager's softmax (uniform rows where every key is masked)
                probs = torch.softmax(scores, dim=-1)
            else:
                probs = _shifted_exp(scores.sub_(lse[:, :, rows, None]))  # no subnormal P or dS (padding, far keys)
            if need_v:
                dv += torch.matmul(probs.transpose(-1, -2), do)
            ds = probs.mul_(torch.matmul(do, vt).sub_(delta[:, :, rows])).mul_(scaling)  # dS·scale
            if need_k:
                dk += torch.matmul(ds.transpose(-1, -2), q)
            dq_term = _accumulate(sums, term, ds, [q_leaf, k_leaf, *memo.leaves, *params], own=q_leaf)
            if need_q:
                dq[:, :, rows] = torch.matmul(ds, key) if dq_term is None else torch.matmul(ds, key).add_(dq_term)
        # each memo entry's summed gradient through its own graph once, latest first (it may read earlier ones)
        for original, leaf in reversed(memo.entries):
            grad, sunk = sums.pop(id(leaf), None), memo.sinks.pop(id(leaf), None)
            grad = sunk if grad is None else grad if sunk is None else grad.add_(sunk)
            if grad is not None:
                _accumulate(sums, original, grad, [k_leaf, *memo.leaves, *params])
        if need_k and id(k_leaf) in sums:
            dk += sums[id(k_leaf)]
        return (None, dq, dk, dv, None, None, None, *(sums.get(id(p)) for p in params))


# ------------------------------------------------------------------------------------------------
# fused distance-bias attention (CPU): the per-distance table's gradient straight from the backward

# Query rows per block: 128, fewer where one block's scores would pass 32 MiB. Measured (fwd+bwd of the
# attention alone, H = 12, 1 thread): 96–256 rows form a plateau at L = 1,024–4,096, 10–25 % faster than
# 32–64 rows (small GEMMs) and than 512 (blocks that leave the cache).
FUSED_BLOCK_ROWS = 128
FUSED_BLOCK_SCORE_BYTES = 32 * 2**20
# The fused path runs where it measured at least as fast as sdpa with a dense bias (1 BERT-base layer,
# fwd+bwd, 1 thread: a tie at L = 256–512, 0.84× (t5) / 0.95× (alibi) at 1,024): at least this many
# scores per layer (B·H·Lq·Lk); README "Scaling with length".
FUSED_MIN_SCORES = 12 * 512 * 512


def _reversed_rows(x, start, n):
    """Rows ``start … start + n − 1`` of x (…, L, d) in reverse order (a copy of n × d values)."""
    return x[:, :, start : start + n].flip(2)


class flushed_denormals:
    """Flush-to-zero / denormals-are-zero on the calling thread inside the block, as it was afterwards.

    Probabilities exp(S − logsumexp) below finfo.tiny (fp32: S − lse < −87.3, reached by ALiBi-like biases
    that fall with distance) are subnormal, and x86 arithmetic on subnormals takes microcode assists: on
    BERT-base shapes torch's CPU flash backward ran 3× slower on ALiBi's bias than on a random one (issue 29).
    Values below finfo.tiny are far under any gradient's resolution. The state is per thread (MXCSR): an
    OpenMP worker keeps its own, so the backward also zeroes such probabilities itself where it can."""

    def __enter__(self):
        # a subnormal stays non-zero unless FTZ/DAZ is already on
        self.was_on = bool(torch.tensor(2.0**-140, dtype=torch.float32).mul(1.0) == 0)
        if not self.was_on:
            torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc):
        if not self.was_on:
            torch.set_flush_denormal(False)
        return False


def _shifted_exp(shifted):
    """exp of S − logsumexp in place, exactly 0 where P < tiny·e^8.5 (``finfo.tiny``; fp32 5.8e-35): no subnormal
    reaches dS or the GEMMs, and exp never sees a very negative input (torch's vectorized exp takes a slow
    path below ~−87, −inf and masked scores included: 20–70× its normal cost here)."""
    floor = math.log(torch.finfo(shifted.dtype).tiny) + 8.0
    return F.threshold_(shifted.clamp_min_(floor).exp_(), math.exp(floor + 0.5), 0.0)


# The frozen-table backward (ALiBi, a table without gradient) runs torch's fused flash backward (one call over
# all rows without a padding mask, else per block), or the recomputing backward, whichever measured faster per
# query row on the first backward of its shape class in this process (dtype, threads, B·H, rows, Lk, masked):
# that call's first block recomputed, the next rows by the kernel, both kept. On one thread the kernel wins
# (with FTZ on the calling thread; ALiBi, 12 heads, L = 2,048: 1.09× sdpa without bias vs 1.34× recomputing);
# with more threads its OpenMP workers keep their own FTZ state and may meet subnormals the recomputing path
# zeroes. HF_RELPOS_FUSED_BACKWARD=kernel|recompute fixes the choice.
_BACKWARD_CHOICE: dict = {}


def fused_backward_mode() -> str:
    mode = os.environ.get("HF_RELPOS_FUSED_BACKWARD", "auto")
    if mode not in ("auto", "kernel", "recompute"):
        raise ValueError(f"HF_RELPOS_FUSED_BACKWARD={mode!r} is not valid; choose one of: auto, kernel, recompute")
    return mode


def _block_bias(windows, mask, start, n):
    """Bias (+ mask) of query rows ``start … start + n − 1`` in reverse order, (1 or B, H, n, Lk): without a
    mask a strided view of the table's windows (row w = Lq − 1 − i), nothing copied."""
    lo = windows.shape[1] - start - n
    bias = windows[None, :, lo : lo + n]
    if mask is None:
        return bias
    return bias + (_reversed_rows(mask, start, n) if mask.shape[-2] > 1 else mask)


class FusedDistanceBiasAttention(torch.autograd.Function):
    """softmax(q·kᵀ·scale + T[j − i + Lq − 1] + mask)·v with T an (H, Lq + Lk − 1) table, exact.

    Row i of the bias is the table window starting at Lq − 1 − i (``windows = table.unfold(-1, Lk, 1)``),
    so a block of query rows taken in reverse order has a plain strided slice of ``windows`` as its bias:
    each block runs on its reversed query rows (an n × d copy) and the bias is never copied or gathered.

    Forward: torch's fused CPU flash kernel per block; keeps the output and its log-sum-exp. Backward,
    when the table needs no gradient (ALiBi, a frozen table) and no query row is fully masked: the same
    kernel's fused backward per block or the recomputing one, whichever measured faster for the shape
    class (``_BACKWARD_CHOICE``). Otherwise the recomputing one, block by block: P = exp(S − logsumexp)
    (softmax(S) where a row is fully masked; subnormal P as 0), dV += Pᵀ·dO, dS = P ∘ (dO·vᵀ − rowsum(dO ∘ O)),
    dQ = dS·k·scale, dK += dSᵀ·q·scale, and the table's gradient as the sums of dS along its diagonals
    (j − i, anti-diagonals of the reversed block): dS is written into a buffer whose rows are padded so
    that a sheared view (row stride − 1) puts each of them in one column, summed over the rows.
    No (B, H, Lq, Lk) tensor is ever held."""

    @staticmethod
    def forward(ctx, query, key, value, table, mask, scaling, block):
        B, H, q_len, d = query.shape
        k_len = key.shape[-2]
        windows = table.unfold(-1, k_len, 1)  # (H, Lq, Lk) view
        out = query.new_empty(B, H, q_len, value.shape[-1])
        lse = query.new_empty(B, H, q_len)
        # (in blocks: one call over all rows measured no faster here, and raised a 2-layer t5 model's peak at
        # L = 2,048 by 100 MB)
        with flushed_denormals():
            for start in range(0, q_len, block):
                n = min(block, q_len - start)
                o, l = flash_attention_forward(
                    _reversed_rows(query, start, n),
                    key,
                    value,
                    attn_mask=_block_bias(windows, mask, start, n),
                    scale=scaling,
                )
                out[:, :, start : start + n] = o.flip(2)
                lse[:, :, start : start + n] = l.flip(2)
        ctx.save_for_backward(query, key, value, table, mask, out, lse)
        ctx.scaling, ctx.block = scaling, block
        # a query whose every key is masked (padding under a causal mask) gets eager's uniform row forward,
        # but the kernel's backward differs there: such inputs take the recomputing backward
        ctx.fully_masked = _fully_masked(mask)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        query, key, value, table, mask, out, lse = ctx.saved_tensors
        scaling, block = ctx.scaling, ctx.block
        B, H, q_len, d = query.shape
        k_len = key.shape[-2]
        grad_out = grad_out.contiguous()
        need_q, need_k, need_v, need_table = ctx.needs_input_grad[:4]
        windows = table.unfold(-1, k_len, 1)
        mask_rows = mask is not None and mask.shape[-2] > 1
        dq = torch.empty_like(query) if need_q else None
        dk = torch.zeros_like(key) if need_k else None
        dv = torch.zeros_like(value) if need_v else None
        dtable = torch.zeros_like(table) if need_table else None
        delta = (grad_out * out).sum(-1, keepdim=True)  # rowsum(dO ∘ O)
        kt, vt = key.transpose(-1, -2), value.transpose(-1, -2)
        buffers = {}

        def kernel_block(start, n, keep=True):
            """dq, dk, dv of one block by torch's fused flash backward (frozen table, no fully masked row)."""
            gq, gk, gv = flash_attention_backward(
                _reversed_rows(grad_out, start, n),
                _reversed_rows(query, start, n),
                key,
                value,
                _reversed_rows(out, start, n),
                _reversed_rows(lse[..., None], start, n)[..., 0],
                attn_mask=_block_bias(windows, mask, start, n),
                scale=scaling,
            )
            if keep and need_q:
                dq[:, :, start : start + n] = gq.flip(2)
            if keep and need_k:
                dk.add_(gk)
            if keep and need_v:
                dv.add_(gv)

        def recompute_block(start, n):
            """One block of the recomputing backward (every case; the only one with the table's gradient)."""
            lo = q_len - start - n
            if n not in buffers:  # per block size (the last block may be shorter), reused by the blocks: fresh
                # (n, Lk) tensors per block cost page faults on first touch, about a GEMM's time at Lk = 2,048
                buffers[n] = {"scores": query.new_empty(B, H, n, k_len), "dp": query.new_empty(B, H, n, k_len)}
                if need_table:  # padding stays zero
                    width = k_len + n - 1
                    plane = n * width + n  # one (b, h): n rows of `width`, dS at columns n − 1 …, then n zeros
                    padded = query.new_zeros(B, H, plane)
                    buffers[n]["ds"] = padded.as_strided((B, H, n, k_len), (H * plane, plane, width, 1), n - 1)
                    # column c of row u: dS[u, c − u] (zero outside 0 … Lk − 1), one j − i per column
                    buffers[n]["diagonals"] = padded.as_strided(
                        (B, H, n, width), (H * plane, plane, width - 1, 1), n - 1
                    )
            buf = buffers[n]
            q, do = _reversed_rows(query, start, n).mul_(scaling), _reversed_rows(grad_out, start, n)  # q·scale
            scores = torch.matmul(q, kt, out=buf["scores"]).add_(windows[:, lo : lo + n])
            if mask is not None:
                scores.add_(_reversed_rows(mask, start, n) if mask_rows else mask)
            if ctx.fully_masked:
                # softmax recomputed as eager computes it (a log-sum-exp near finfo.min would not give a fully
                # masked row, e.g. a padding query under a causal mask, its uniform probabilities)
                probs = torch.softmax(scores, dim=-1)
            else:  # P = exp(S − logsumexp) from the forward's kernel: one pass instead of softmax's three
                scores.sub_(_reversed_rows(lse[..., None], start, n))
                probs = _shifted_exp(scores)
            if need_v:
                dv.add_(torch.matmul(probs.transpose(-1, -2), do))
            dp = torch.matmul(do, vt, out=buf["dp"]).sub_(_reversed_rows(delta, start, n))
            if need_table:
                ds = torch.mul(probs, dp, out=buf["ds"])  # dS
                # column c holds every dS entry with j − i = c − (start + n − 1): table index lo + c
                dtable[:, lo : lo + k_len + n - 1] += buf["diagonals"].sum(dim=(0, 2))
            else:
                ds = probs.mul_(dp)
            if need_q:
                dq[:, :, start : start + n] = torch.matmul(ds, key).mul_(scaling).flip(2)
            if need_k:
                dk.add_(torch.matmul(ds.transpose(-1, -2), q))  # q already carries the scale

        use_kernel = calibrate = False
        if not (need_table or ctx.fully_masked):
            mode = fused_backward_mode()
            if not has_flash_backward():
                warn_flash_backward()
            elif mode != "auto":
                use_kernel = mode == "kernel"
            else:
                shape_class = (query.dtype, torch.get_num_threads(), B * H, min(block, q_len), k_len, mask is None)
                calibrate = shape_class not in _BACKWARD_CHOICE
                use_kernel = _BACKWARD_CHOICE.get(shape_class) == "kernel"
        starts = range(0, q_len, block)
        with flushed_denormals():
            if calibrate and q_len > block:  # this call's first block recomputed, the next rows by the kernel
                t0 = time.perf_counter()
                recompute_block(0, block)
                t1 = time.perf_counter()
                rest = q_len - block if mask is None else min(block, q_len - block)  # as the kernel path runs
                kernel_block(block, rest)
                t2 = time.perf_counter()
                use_kernel = (t2 - t1) / rest < (t1 - t0) / block  # time per query row
                _BACKWARD_CHOICE[shape_class] = "kernel" if use_kernel else "recompute"
                starts = range(block + rest, q_len, block)
            elif calibrate:  # one block: the kernel's results dropped
                kernel_block(0, q_len, keep=False)  # warm-up
                t0 = time.perf_counter()
                recompute_block(0, q_len)
                t1 = time.perf_counter()
                kernel_block(0, q_len, keep=False)
                t2 = time.perf_counter()
                _BACKWARD_CHOICE[shape_class] = "kernel" if t2 - t1 < t1 - t0 else "recompute"
                starts = ()
            # without a padding mask the bias of every row is a view of the table: the kernel (which tiles itself)
            # takes the remaining rows in one call, 1.4× faster than blocks of 128 at L = 2,048 (fwd+bwd)
            if use_kernel and mask is None:
                if len(starts):
                    kernel_block(starts[0], q_len - starts[0])
            else:
                for start in starts:
                    n = min(block, q_len - start)
                    (kernel_block if use_kernel else recompute_block)(start, n)
        return dq, dk, dv, dtable, None, None, None


def fused_block(query, key) -> int:
    """Query rows per block of :class:`FusedDistanceBiasAttention`."""
    B, H, q_len, _ = query.shape
    per_row = B * H * key.shape[-2] * query.element_size()
    block = min(FUSED_BLOCK_ROWS, max(16, FUSED_BLOCK_SCORE_BYTES // per_row))
    return min(q_len, block - block % 16 if block >= 32 else block)


def use_fused_bias(query, key, scheme, dropout) -> bool:
    """Shape/dtype/device-only rule for the fused distance-bias path: a distance-only bias with a 1-D
    table, no attention dropout, CPU, fp32/fp64, outside torch.compile / export (which trace the
    plain path), and at least FUSED_MIN_SCORES scores."""
    if not (scheme.uses_bias and scheme.distance_only) or dropout > 0 or query.device.type != "cpu":
        return False
    if query.dtype not in (torch.float32, torch.float64) or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    B, H, q_len, _ = query.shape
    return B * H * q_len * key.shape[-2] >= FUSED_MIN_SCORES


def fused_bias_attention(query, key, value, attention_mask, scaling, table, block=None):
    """(B, Lq, H, d) output of :class:`FusedDistanceBiasAttention`."""
    block = fused_block(query, key) if block is None else block
    mask = None if attention_mask is None else attention_mask.to(query.dtype)
    output = FusedDistanceBiasAttention.apply(query, key, value, table.to(query.dtype), mask, scaling, block)
    return output.transpose(1, 2).contiguous(), None


# ------------------------------------------------------------------------------------------------
# backends


def _scaled_and_rotated(query, key, scheme: RelativePositionScheme, scaling):
    """The scheme's score scale (DeBERTa: 1/√3 more) and rotation (RoPE), applied to q, k."""
    query, key = scheme.rotate(query, key)
    return query, key, scaling / scheme.scale_factor**0.5


def _dense_position_bias(query, key, scheme, scaling, memo, projections):
    """The scheme's scaled content term or its bias, (B or 1, H, Lq, Lk) in the query dtype; None
    for a scheme with neither."""
    if scheme.uses_content:
        return scheme.content(query, key, projections=projections, memo=memo).mul_(scaling).to(query.dtype)
    if scheme.uses_bias:
        return scheme.cached_bias(query.shape[-2], key.shape[-2], memo)[None].to(query.dtype)
    return None


def _needs_eager(implementation, scheme, output_attentions) -> bool:
    """sdpa and flex never expose the attention probabilities; Shaw's value side and
    ``output_attentions`` need them, so those forwards run eagerly (one warning)."""
    # no logging inside a torch.compile graph (a logger call is a graph break there)
    warn = logger.warning_once if not torch.compiler.is_compiling() else (lambda message: None)
    if scheme.uses_values:
        warn(
            f"relative_value=True (Shaw value side) needs the attention probabilities, which {implementation} does "
            "not expose; these layers run eager attention instead."
        )
        return True
    if output_attentions:
        warn(
            f"output_attentions=True needs the attention probabilities, which {implementation} does not expose; "
            "the attention of this forward runs eagerly."
        )
        return True
    return False


def eager_relpos_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    *,
    scaling,
    dropout=0.0,
    scheme: RelativePositionScheme = NO_RELATIVE_POSITION,
    memo=None,
    projections=None,
    sliding_window=None,
    **kwargs,
):
    """q (B, H, Lq, d), k/v (B, H, Lk, d) → ((B, Lq, H, d), probs (B, H, Lq, Lk)). Carries every hook;
    a local layer (``sliding_window`` w) adds the band |i − j| ≤ w to its mask."""
    if sliding_window is not None:
        attention_mask = with_band(
            attention_mask, query.shape[-2], key.shape[-2], sliding_window, query.dtype, query.device, memo
        )
    query, key, scaling = _scaled_and_rotated(query, key, scheme, scaling)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    position_bias = _dense_position_bias(query, key, scheme, scaling, memo, projections)
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    output = torch.matmul(probs, value)
    if scheme.uses_values:
        output = output + scheme.values(probs)
    return output.transpose(1, 2).contiguous(), probs


def sdpa_relpos_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    *,
    scaling,
    dropout=0.0,
    scheme: RelativePositionScheme = NO_RELATIVE_POSITION,
    memo=None,
    projections=None,
    output_attentions=False,
    sliding_window=None,
    **kwargs,
):
    """transformers' sdpa with the scheme's terms as ``position_bias``; query blocks for long inputs
    whose term is content or a learned bias (sdpa has a fused kernel for a fixed bias such as ALiBi,
    none for one that needs a gradient or content)."""
    if _needs_eager("sdpa", scheme, output_attentions):
        return eager_relpos_attention(
            module,
            query,
            key,
            value,
            attention_mask,
            scaling=scaling,
            dropout=dropout,
            scheme=scheme,
            memo=memo,
            projections=projections,
            sliding_window=sliding_window,
        )
    query, key, scaling = _scaled_and_rotated(query, key, scheme, scaling)
    if sliding_window is not None:  # a local layer: O(L·w) blocks where they pay, else the band as a mask
        if use_banded(query, key, scheme, sliding_window):
            output = banded_attention(
                query,
                key,
                value,
                attention_mask,
                scaling,
                scheme,
                sliding_window,
                dropout=dropout,
                projections=projections,
            )
            if output is not None:
                return output, None
        attention_mask = with_band(
            attention_mask, query.shape[-2], key.shape[-2], sliding_window, query.dtype, query.device, memo
        )
    if use_fused_bias(query, key, scheme, dropout):
        table = scheme.bias_1d(query.shape[-2], key.shape[-2])
        if table is not None:  # FIRE's causal form has no 1-D table
            return fused_bias_attention(query, key, value, attention_mask, scaling, table)
    learned_bias = scheme.uses_bias and torch.is_grad_enabled() and any(p.requires_grad for p in scheme.parameters())
    if scheme.uses_content or learned_bias:
        block = use_blocks(query, key)
        if block is not None:
            return blocked_relpos_attention(
                query,
                key,
                value,
                attention_mask,
                scaling,
                scheme,
                block,
                dropout=dropout,
                projections=projections,
                memo=memo,
            )
    position_bias = _dense_position_bias(query, key, scheme, scaling, memo, projections)
    output, _ = sdpa_attention_forward(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        is_causal=False,
        position_bias=position_bias,
    )
    if torch.compiler.is_exporting():
        # torch.export records CPU sdpa's output as already (B, Lq, H, d)-contiguous, but the ONNX exporter's
        # decomposition of sdpa is not, and the caller's reshape then fails as a view: copy explicitly
        output = output.clone(memory_format=torch.contiguous_format)
    return output, None


def flex_relpos_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    *,
    scaling,
    dropout=0.0,
    scheme: RelativePositionScheme = NO_RELATIVE_POSITION,
    memo=None,
    projections=None,
    output_attentions=False,
    sliding_window=None,
    **kwargs,
):
    """Flex attention; a distance-only bias enters ``score_mod`` as its 1-D table, a local layer's band
    its ``score_mod`` and (compiled) a sliding ``BlockMask``."""
    if _needs_eager("flex_attention", scheme, output_attentions):
        return eager_relpos_attention(
            module,
            query,
            key,
            value,
            attention_mask,
            scaling=scaling,
            dropout=dropout,
            scheme=scheme,
            memo=memo,
            projections=projections,
            sliding_window=sliding_window,
        )
    if dropout > 0:
        raise ValueError(
            "attn_implementation='flex_attention' does not support attention dropout; set the attention dropout "
            "probability to 0 or call model.eval()"
        )
    query, key, scaling = _scaled_and_rotated(query, key, scheme, scaling)
    bias_1d = scheme.bias_1d(query.shape[-2], key.shape[-2]) if scheme.uses_bias else None
    if bias_1d is not None:
        return _flex_core(
            query, key, value, attention_mask, scaling, bias_1d=bias_1d.to(query.dtype), window=sliding_window
        )
    position_bias = _dense_position_bias(query, key, scheme, scaling, memo, projections)
    return _flex_core(query, key, value, attention_mask, scaling, position_bias=position_bias, window=sliding_window)


class RelPosAttentionInterface(AttentionInterface):
    """transformers' ``AttentionInterface`` holding only the backends that carry relative schemes (the
    library-wide flash/paged functions would silently drop the scheme's terms)."""

    _global_mapping = {
        "eager": eager_relpos_attention,
        "sdpa": sdpa_relpos_attention,
        "flex_attention": flex_relpos_attention,
    }

    def get_interface(self, attn_implementation, default=None):
        if attn_implementation not in self:
            raise ValueError(
                f"attn_implementation={attn_implementation!r} is not supported; choose one of: {', '.join(self)}"
            )
        return self[attn_implementation]


# The local registry (named as transformers' global one, the pattern of models that bring their own
# attention functions): models look their backend up here by ``config._attn_implementation``.
ALL_ATTENTION_FUNCTIONS = RelPosAttentionInterface()


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
    **kwargs,
):
    """Attention with a relative position scheme through the backend named ``implementation``.

    Args:
        module: the calling attention module (for transformers' sdpa function).
        query: (B, H, Lq, d); key, value: (B, H, Lk, d). Queries are the last Lq positions.
        attention_mask: additive float mask (B or 1, 1, Lq, Lk) or None (see build_attention_mask).
        scheme: a RelativePositionScheme (None is read as NoRelativePosition, for 0.1 callers).
        scaling: the model's score scale (1/√d BERT, 1.0 T5); divided by √scheme.scale_factor.
        memo: per-forward dict, so a scheme shared by all layers computes its bias once.
        projections: the layer's (query, key) Linear pair (DeBERTa projects its table with them).
        implementation: "eager", "sdpa" or "flex_attention".
        sliding_window (keyword, optional): a local layer's half-width w: query i sees the keys |i − j| ≤ w.

    Returns: (output (B, Lq, H, d), attention probabilities (B, H, Lq, Lk) or None).
    """
    backend = ALL_ATTENTION_FUNCTIONS.get_interface(implementation)
    return backend(
        module,
        query,
        key,
        value,
        attention_mask,
        scaling=scaling,
        dropout=dropout,
        scheme=NO_RELATIVE_POSITION if scheme is None else scheme,
        memo=memo,
        projections=projections,
        **kwargs,
    )
