"""Mimetic initialisation of attention (Trockman & Kolter, "Mimetic Initialization of Self-Attention
Layers", ICML 2023) for models trained from scratch on little data.

Pretrained attention heads have ``W_q^T W_k ≈ α₁Z₁ + β₁I`` (a token attends to tokens like itself) and
``W_v^T W_o^T ≈ α₂Z₂ − β₂I``; setting each head's projections to the best rank-``head_dim`` factorisation
of those matrices at initialisation, instead of independent noise, lets a small model match a token with
its copies elsewhere in the input from the first step, which random weights have to discover by gradient
descent over the whole vocabulary (e.g. finding the entry a QA question names: an identifier seen in
only a handful of training questions).
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION_INITS = ("default", "mimetic")


def _factor(target: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of shapes (rank, d): the best rank-``rank`` factorisation ``A^T B ≈ target`` (d, d)
    (rows past d are zero when rank > d)."""
    u, s, vh = torch.linalg.svd(target)
    r = min(rank, s.numel())
    a, b = target.new_zeros(rank, target.shape[0]), target.new_zeros(rank, target.shape[1])
    root = s[:r].sqrt()
    a[:r], b[:r] = root[:, None] * u[:, :r].T, root[:, None] * vh[:r]
    return a, b


@torch.no_grad()
def mimetic_init_(model: nn.Module, qk=(0.7, 0.7), vo=(0.4, 0.4), generator: torch.Generator | None = None) -> int:
    """Re-initialises every attention block of a relpos_bert or relpos_t5 model in place; returns how many.

    Per head h (``head_dim`` rows of the query/key/value projections, columns of the output projection):
    ``W_q,h^T W_k,h ≈ s·(α₁Z + β₁I)`` and ``W_v,h^T W_o,h^T ≈ α₂Z' − β₂I`` with Z, Z' ~ N(0, 1/d) drawn per
    head, ``qk = (α₁, β₁)``, ``vo = (α₂, β₂)`` (the paper's values). ``s`` = 1/√head_dim for T5, whose
    scores are not divided by √head_dim (1 for BERT), so both families start with the same attention
    logits. Biases are left as they are (zeros in BERT; T5 has none). Cross-attention blocks are included:
    "attend to the source token like the one I hold" is the copying summarisation needs."""
    from .modeling_relpos_bert import RelPosBertAttention
    from .modeling_relpos_t5 import RelPosT5Attention

    count = 0
    for module in model.modules():
        if isinstance(module, RelPosBertAttention):
            q, k, v, o = module.self.query, module.self.key, module.self.value, module.output.dense
            heads, head_dim, scale = module.self.num_attention_heads, module.self.attention_head_size, 1.0
        elif isinstance(module, RelPosT5Attention):
            q, k, v, o = module.q, module.k, module.v, module.o
            heads, head_dim = module.n_heads, module.key_value_proj_dim
            scale = head_dim**-0.5
        else:
            continue
        d = q.in_features
        eye = torch.eye(d, dtype=torch.float32)
        for h in range(heads):
            rows = slice(h * head_dim, (h + 1) * head_dim)
            z = torch.randn(d, d, generator=generator) / d**0.5
            a, b = _factor((qk[0] * z + qk[1] * eye) * scale, head_dim)
            q.weight[rows] = a.to(q.weight.dtype)
            k.weight[rows] = b.to(k.weight.dtype)
            z = torch.randn(d, d, generator=generator) / d**0.5
            a, b = _factor(vo[0] * z - vo[1] * eye, head_dim)
            v.weight[rows] = a.to(v.weight.dtype)
            o.weight[:, rows] = b.T.to(o.weight.dtype)
        count += 1
    return count
