"""Relative position schemes: one small class each, one interface, one registry.

Attention score for query i and key j, per head (see SCHEMES.md):

    s_ij = (q_i·k_j + c_ij) * scale + b_ij        o_i = Σ_j p_ij (v_j + u_ij)

A scheme contributes through the hooks it declares and nothing else:

- ``rotate(q, k)``           RoPE-like: changes q, k before attention.
- ``bias(q_len, k_len)``     content-free bias b, (H, Lq, Lk).
- ``content(q, k, proj)``    query/key-dependent term c, (B, H, Lq, Lk), computed as q·Tableᵀ over
                             the relative vocabulary then gathered; no (L, L, d) tensor is built.
- ``values(probs)``          value-side term Σ_j p_ij u_ij, (B, H, Lq, d) (eager only).

Queries are always the LAST ``q_len`` of the ``k_len`` positions, so a decoder with a cache needs
no offset argument. This file travels as remote code: it imports only torch and transformers.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init  # init.* skips tensors loaded from a checkpoint

ABSOLUTE_POSITIONS = ("none", "learned", "sinusoidal")

# Defaults of every scheme hyper-parameter; the config classes expose each one as a field.
SCHEME_DEFAULTS = {
    "relative_position": "none",
    "absolute_position": "learned",
    "relative_position_per_layer": None,  # None: the scheme's own default (see `shared_by_default`)
    "max_relative_position": 128,  # clip k of `sinusoidal` and `shaw`
    "relative_value": False,  # Shaw value side a^V
    "relative_attention_num_buckets": 32,  # t5
    "relative_attention_max_distance": 128,  # t5
    "position_buckets": 256,  # deberta
    "max_relative_positions": 512,  # deberta
    "rope_theta": 10000.0,  # rotary
    "fire_mlp_width": 32,
    "fire_init_c": 0.1,
    "fire_init_threshold": 512.0,
}


def _choice_error(field, value, choices):
    return ValueError(f"{field}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


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
    if clip is not None and clip[1] - clip[0] + 1 < min(tile, N) + M - 1:
        lo, hi = clip
        rows = lookup(arange(lo, hi + 1)[None, :]).to(x.dtype)  # (1, K, d) or (H, 1, K, d)
        products = torch.matmul(x, rows[0].transpose(-1, -2) if rows.dim() == 3 else rows[:, 0].transpose(-1, -2))
        delta = (x_start + arange(N))[:, None] - (other_start + arange(M))[None, :]
        return torch.gather(products, -1, (delta.clamp(lo, hi) - lo).expand(B, H, N, M))
    tile = max(1, min(tile, N))
    S = -(-N // tile)
    if S * tile != N:
        x = F.pad(x, (0, 0, 0, S * tile - N))
    W = tile + M - 1
    delta = (x_start + arange(S) * tile - other_start - (M - 1))[:, None] + arange(W)[None, :]  # (S, W)
    rows = lookup(delta).to(x.dtype)
    pattern = "bhsnd,swd->bhsnw" if rows.dim() == 3 else "bhsnd,hswd->bhsnw"
    products = torch.einsum(pattern, x.view(B, H, S, tile, d), rows)  # (B, H, S, tile, W)
    index = arange(tile)[:, None] - arange(M)[None, :] + (M - 1)  # pair (n, m) sits at w = n − m + M − 1
    out = torch.gather(products, -1, index.expand(B, H, S, tile, M))
    return out.reshape(B, H, S * tile, M)[:, :, :N]


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


class RelativePositionScheme(nn.Module):
    """Base class. Subclasses set the ``uses_*`` flags of the hooks they implement.

    Args: ``config`` (any object with the SCHEME_DEFAULTS fields), ``num_heads`` H, ``head_dim`` d,
    ``hidden_size``, ``causal`` (decoder self-attention: the scheme's causal variant).
    """

    name = "none"
    uses_rotate = False
    uses_bias = False
    uses_content = False
    uses_values = False
    shared_by_default = False  # one instance per stack (True) or per layer (False)
    shift_invariant = True  # depends on j − i only
    scale_factor = 1.0  # score scale becomes scale / sqrt(scale_factor) (DeBERTa: 3)

    def __init__(self, config, num_heads: int, head_dim: int, hidden_size: int, causal: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.hidden_size = hidden_size
        self.causal = causal

    def reset_parameters(self, std: float = 0.02):
        """Initialise learned parameters (called by the models' ``_init_weights``)."""

    # Per-forward memo: a scheme shared by all layers computes its bias once per forward.
    def cached_bias(self, q_len, k_len, memo: dict | None):
        if memo is None:
            return self.bias(q_len, k_len)
        key = (id(self), "bias", q_len, k_len)
        if key not in memo:
            memo[key] = self.bias(q_len, k_len)
        return memo[key]

    def rotate(self, q, k):
        return q, k

    def bias(self, q_len: int, k_len: int) -> torch.Tensor:
        raise NotImplementedError

    def bias_1d(self, q_len: int, k_len: int) -> torch.Tensor | None:
        """For schemes whose bias depends only on j − i: (H, Lq + Lk − 1) table indexed by
        j − i + (Lk − 1); lets flex compute the bias in its score_mod without an (L, L) tensor."""
        return None

    def content(self, q, k, projections=None, memo=None, q_start=None) -> torch.Tensor:
        """q (B, H, Lq, d), k (B, H, Lk, d) → c (B, H, Lq, Lk), before scaling. ``projections`` is
        the layer's (query, key) Linear pair, for schemes that project a shared table (DeBERTa).
        ``q_start``: position of the first query when ``q`` is a block (default: the last Lq)."""
        raise NotImplementedError

    def values(self, probs) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self):
        return f"heads={self.num_heads}, head_dim={self.head_dim}, causal={self.causal}"


class NoRelativePosition(RelativePositionScheme):
    """No relative term (absolute embeddings only, or no positions at all)."""

    name = "none"


class _DistanceBias(RelativePositionScheme):
    """A bias b_ij = g(j − i) per head, built from a 1-D table over the distances present."""

    uses_bias = True

    def distance_bias(self, distances: torch.Tensor) -> torch.Tensor:
        """(N,) integer j − i → (H, N) bias."""
        raise NotImplementedError

    def bias_1d(self, q_len, k_len):
        device = self._device()
        # queries are the last positions, so j − i ∈ [−(k_len − 1), q_len − 1]
        distances = torch.arange(-(k_len - 1), q_len, device=device)
        return self.distance_bias(distances)

    def bias(self, q_len, k_len):
        table = self.bias_1d(q_len, k_len)  # (H, Lq + Lk − 1), index j − i + Lk − 1
        index = relative_distance(q_len, k_len, device=table.device) + (k_len - 1)
        return table[:, index]

    def _device(self):
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


class T5RelativePosition(_DistanceBias):
    """T5 bucketed bias (Raffel et al. 2020): b_ij = W[h, bucket(j − i)], W ∈ ℝ^{buckets×H}.

    Parameter named as in HF T5 (``relative_attention_bias``, an Embedding(buckets, H))."""

    name = "t5"
    shared_by_default = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.relative_attention_bias = nn.Embedding(self.num_buckets, num_heads)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.relative_attention_bias.weight, std=std)

    def distance_bias(self, distances):
        buckets = t5_relative_position_bucket(
            distances, bidirectional=not self.causal, num_buckets=self.num_buckets, max_distance=self.max_distance
        )
        return self.relative_attention_bias(buckets).t()


class ALiBi(_DistanceBias):
    """ALiBi (Press et al. 2022): b_ij = −m_h·|i − j|, symmetric for encoders. For a causal
    decoder the masked j > i never count, so the same formula is the causal one."""

    name = "alibi"
    shared_by_default = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def reset_parameters(self, std=0.02):
        init.copy_(self.slopes, alibi_slopes(self.num_heads))

    def distance_bias(self, distances):
        return -self.slopes.to(distances.device)[:, None] * distances.abs().float()[None, :]


class KERPLE(_DistanceBias):
    """KERPLE log kernel (Chi et al. 2022): b_ij = −r1_h·log(1 + r2_h·|i − j|), r1, r2 > 0 via softplus."""

    name = "kerple"
    shared_by_default = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.r1 = nn.Parameter(torch.empty(num_heads))
        self.r2 = nn.Parameter(torch.empty(num_heads))
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        # r1 = 1 and r2 = ALiBi's geometric slopes: distinct heads from a deterministic start
        init.constant_(self.r1, math.log(math.expm1(1.0)))
        init.copy_(self.r2, torch.log(torch.expm1(alibi_slopes(self.num_heads))))

    def distance_bias(self, distances):
        r1, r2 = F.softplus(self.r1), F.softplus(self.r2)
        return -r1[:, None] * torch.log1p(r2[:, None] * distances.abs().float()[None, :])


class FIRE(RelativePositionScheme):
    """FIRE (Li et al. 2023): b_ij = f_θ(ψ(|i − j|) / ψ(max(L_thr, n_i))), ψ(x) = log(c·x + 1),
    f_θ an MLP 1→width→H. n_i is the query position (causal) or the key length (bidirectional),
    so the bias is not shift-invariant by design. Parameters as in the paper's reference code:
    ``c``, ``L_multiplier`` (threshold = |L_multiplier · init_L|)."""

    name = "fire"
    uses_bias = True
    shared_by_default = True
    shift_invariant = False

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.mlp = nn.Sequential(nn.Linear(1, config.fire_mlp_width), nn.ReLU(), nn.Linear(config.fire_mlp_width, num_heads))
        self.init_c = float(config.fire_init_c)
        self.init_L = float(config.fire_init_threshold)
        self.c = nn.Parameter(torch.tensor(self.init_c))
        self.L_multiplier = nn.Parameter(torch.tensor(1.0))
        self.eps = 1e-6
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        for layer in (self.mlp[0], self.mlp[2]):
            init.normal_(layer.weight, std=max(std, 0.2))  # f_θ must start non-flat to rank distances
            init.zeros_(layer.bias)
        init.constant_(self.c, self.init_c)
        init.constant_(self.L_multiplier, 1.0)

    def _psi(self, x):
        return torch.log(torch.abs(self.c * x) + 1)

    def bias(self, q_len, k_len):
        device = self.c.device
        threshold = torch.abs(self.L_multiplier * self.init_L)
        if self.causal:
            # normaliser per query position: (Lq, Lk) inputs to the MLP
            q_pos = torch.arange(k_len - q_len, k_len, device=device, dtype=torch.float32)
            dist = relative_distance(q_len, k_len, device).abs().float()
            norm = self._psi(torch.maximum(q_pos, threshold))[:, None] + self.eps
            return self.mlp((self._psi(dist) / norm).unsqueeze(-1)).permute(2, 0, 1)
        table = self.bias_1d(q_len, k_len)
        index = relative_distance(q_len, k_len, device) + (k_len - 1)
        return table[:, index]

    def bias_1d(self, q_len, k_len):
        if self.causal:
            return None
        device = self.c.device
        threshold = torch.abs(self.L_multiplier * self.init_L)
        dist = torch.arange(-(k_len - 1), q_len, device=device).abs().float()
        norm = self._psi(torch.maximum(torch.tensor(float(k_len), device=device), threshold)) + self.eps
        return self.mlp((self._psi(dist) / norm).unsqueeze(-1)).t()


class Rotary(RelativePositionScheme):
    """RoPE (Su et al. 2021), HF Llama's rotate_half layout over the full head size."""

    name = "rotary"
    uses_rotate = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        if head_dim % 2:
            raise ValueError(f"relative_position='rotary' needs an even head size, got head_dim={head_dim}")
        self.theta = float(config.rope_theta)

    def cos_sin(self, positions: torch.Tensor, dtype):
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, device=positions.device).float() / self.head_dim))
        freqs = positions.float()[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def rotate(self, q, k):
        q_len, k_len = q.shape[-2], k.shape[-2]
        cos, sin = self.cos_sin(torch.arange(k_len, device=q.device), q.dtype)
        k = k * cos + self.rotate_half(k) * sin
        cq, sq = cos[k_len - q_len :], sin[k_len - q_len :]
        q = q * cq + self.rotate_half(q) * sq
        return q, k


class SinusoidalRelative(RelativePositionScheme):
    """Fixed sinusoidal table of the clipped distance on the key side (Vaswani-style table applied
    to i − j): c_ij = q_i·R[clip(i − j, −k, k)], R[r, 2t] = sin(r/10000^(2t/d)), R[r, 2t+1] = cos."""

    name = "sinusoidal"
    uses_content = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.clip = config.max_relative_position

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        start = query_start(q_len, k_len, q_start)
        lo, hi = max(-(k_len - 1) + start, -self.clip), min(start + q_len - 1, self.clip)  # i − j present, clipped
        table = sinusoid_table(torch.arange(lo, hi + 1, device=q.device), self.head_dim)
        return relative_dot(q, lambda delta: table[delta.clamp(lo, hi) - lo], start, 0, k_len, clip=(lo, hi))


class Shaw(RelativePositionScheme):
    """Shaw et al. 2018: c_ij = q_i·a^K[clip(j − i, −k, k)], optional u_ij = a^V[clip(j − i, −k, k)].
    Tables ∈ ℝ^{(2k+1)×d}, shared by the heads of a layer."""

    name = "shaw"
    uses_content = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.clip = config.max_relative_position
        self.relative_key = nn.Embedding(2 * self.clip + 1, head_dim)
        self.relative_value = nn.Embedding(2 * self.clip + 1, head_dim) if config.relative_value else None
        self.uses_values = self.relative_value is not None
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.relative_key.weight, std=std)
        if self.relative_value is not None:
            init.normal_(self.relative_value.weight, std=std)

    def _index(self, q_len, k_len, device, q_start=None):
        d = relative_distance(q_len, k_len, device, q_start)
        lo, hi = max(int(d.min()), -self.clip), min(int(d.max()), self.clip)
        return d.clamp(lo, hi) - lo, lo + self.clip, hi + self.clip + 1

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        table = self.relative_key.weight  # row r ↔ j − i = r − clip; relative_dot's δ is i − j
        return relative_dot(q, lambda delta: table[(-delta).clamp(-self.clip, self.clip) + self.clip],
                            query_start(q_len, k_len, q_start), 0, k_len, clip=(-self.clip, self.clip))

    def values(self, probs, q_start=None):
        # Σ_j p_ij a^V[idx_ij] = Σ_r (Σ_{j: idx_ij = r} p_ij) a^V[r]: bucket the probabilities first
        index, start, stop = self._index(probs.shape[-2], probs.shape[-1], probs.device, q_start)
        buckets = probs.new_zeros(*probs.shape[:-1], stop - start)
        buckets.scatter_add_(-1, index.expand_as(probs), probs)
        return torch.matmul(buckets, self.relative_value.weight[start:stop].to(probs.dtype))


class ShawKeyQuery(RelativePositionScheme):
    """Huang et al. 2020 / transformers 4.x ``relative_key_query``: c_ij = q_i·e[i − j] + k_j·e[i − j],
    e ∈ ℝ^{(2P−1)×d} (``distance_embedding``, index i − j + P − 1). 4.x had no clipping (index error
    past P); here i − j is clipped to ±(P − 1) so longer inputs run, equal to 4.x wherever 4.x runs."""

    name = "shaw_kq"
    uses_content = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.max_positions = config.max_position_embeddings
        self.distance_embedding = nn.Embedding(2 * self.max_positions - 1, head_dim)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.distance_embedding.weight, std=std)

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        P, table, start = self.max_positions, self.distance_embedding.weight, query_start(q_len, k_len, q_start)
        clip = (-(P - 1), P - 1)
        query_term = relative_dot(q, lambda delta: table[delta.clamp(*clip) + P - 1], start, 0, k_len, clip=clip)
        # k_j · e[i − j]: the same product seen from the keys (δ = j − i there), transposed
        key_term = relative_dot(k, lambda delta: table[(-delta).clamp(*clip) + P - 1], 0, start, q_len, clip=clip)
        return query_term + key_term.transpose(-1, -2)


class TransformerXL(RelativePositionScheme):
    """Transformer-XL (Dai et al. 2019): c_ij = (q_i + v_h)·r_{i−j} + u_h·k_j, r_δ = W_R·R_δ with R
    the [sin | cos] sinusoid of width hidden_size; u, v ∈ ℝ^{H×d} and W_R per layer. Bidirectional
    δ ∈ [−(Lk−1), Lk−1]."""

    name = "xl"
    uses_content = True

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.r_net = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.u = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.v = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.r_net.weight, std=std)
        init.normal_(self.u, std=std)
        init.normal_(self.v, std=std)

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        start = query_start(q_len, k_len, q_start)
        lo, hi = start - (k_len - 1), start + q_len - 1  # i − j present
        R = sinusoid_table(torch.arange(lo, hi + 1, device=q.device), self.hidden_size, interleave=False)
        r = self.r_net(R.to(self.r_net.weight.dtype)).view(-1, self.num_heads, self.head_dim).transpose(0, 1)  # (H, K, d)
        # tiles padded past the last query ask for δ > hi: clamp (their rows are dropped)
        position_term = relative_dot(q + self.v[:, None, :].to(q.dtype), lambda delta: r[:, delta.clamp(lo, hi) - lo],
                                     start, 0, k_len)
        content_bias = torch.matmul(k, self.u[:, :, None].to(k.dtype)).transpose(-1, -2)  # (B, H, 1, Lk)
        return position_term + content_bias


class DeBERTa(RelativePositionScheme):
    """DeBERTa disentangled attention (He et al. 2021): c_ij = q_i·k^r[δ] + k_j·q^r[δ] (c2p + p2c),
    δ = log_bucket(i − j) + b, k^r/q^r = the layer's own key/query projections of a relative
    embedding table P ∈ ℝ^{2b×hidden} (+ LayerNorm) shared by the layers (``share_att_key``).
    Scores are scaled by 1/√(3d)."""

    name = "deberta"
    uses_content = True
    shared_by_default = True
    scale_factor = 3.0

    def __init__(self, config, num_heads, head_dim, hidden_size, causal=False):
        super().__init__(config, num_heads, head_dim, hidden_size, causal)
        self.position_buckets = config.position_buckets
        self.max_relative_positions = config.max_relative_positions
        self.rel_embeddings = nn.Embedding(2 * self.position_buckets, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=getattr(config, "layer_norm_eps", 1e-7) or 1e-7)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.rel_embeddings.weight, std=std)
        init.ones_(self.LayerNorm.weight)
        init.zeros_(self.LayerNorm.bias)

    def relative_index(self, q_len, k_len, device, q_start=None):
        d = -relative_distance(q_len, k_len, device, q_start)  # i − j
        b = self.position_buckets
        return (deberta_log_bucket(d, b, self.max_relative_positions) + b).clamp(0, 2 * b - 1)

    def content(self, q, k, projections=None, memo=None, q_start=None):
        if projections is None:
            raise ValueError("relative_position='deberta' needs the attention layer's (query, key) projections")
        query_proj, key_proj = projections
        key = (id(self), "rel_embeddings")
        if memo is None or key not in memo:
            rel = self.LayerNorm(self.rel_embeddings.weight)
            if memo is not None:
                memo[key] = rel
        else:
            rel = memo[key]
        q_len, k_len = q.shape[-2], k.shape[-2]
        start = query_start(q_len, k_len, q_start)
        b = self.position_buckets
        lo, hi = start - (k_len - 1), start + q_len - 1  # i − j present
        bucket = (deberta_log_bucket(torch.arange(lo, hi + 1, device=q.device), b, self.max_relative_positions) + b).clamp(0, 2 * b - 1)
        used, local = torch.unique(bucket, return_inverse=True)  # only the buckets these lengths reach
        rel = rel[used].to(query_proj.weight.dtype)
        pos_key = key_proj(rel).view(-1, self.num_heads, self.head_dim).transpose(0, 1)  # (H, K, d)
        pos_query = query_proj(rel).view(-1, self.num_heads, self.head_dim).transpose(0, 1)
        c2p = relative_dot(q, lambda delta: pos_key[:, local[delta.clamp(lo, hi) - lo]], start, 0, k_len)
        p2c = relative_dot(k, lambda delta: pos_query[:, local[(-delta).clamp(lo, hi) - lo]], 0, start, q_len)
        return c2p + p2c.transpose(-1, -2)


SCHEMES = {
    cls.name: cls
    for cls in (
        NoRelativePosition,
        SinusoidalRelative,
        Shaw,
        ShawKeyQuery,
        T5RelativePosition,
        ALiBi,
        Rotary,
        TransformerXL,
        DeBERTa,
        FIRE,
        KERPLE,
    )
}

# Schemes whose decoder (causal) variant differs from the encoder one.
CAUSAL_VARIANTS = {"t5", "fire"}


def validate_scheme_config(config, prefix: str = "") -> None:
    """Raise ValueError naming the field, the value and the valid choices for any bad scheme field.

    ``prefix`` names the field in messages when one config holds several scheme choices (T5)."""
    rel = config.relative_position
    if rel not in SCHEMES:
        raise _choice_error(prefix + "relative_position", rel, SCHEMES)
    absolute = config.absolute_position
    if absolute not in ABSOLUTE_POSITIONS:
        raise _choice_error(prefix + "absolute_position", absolute, ABSOLUTE_POSITIONS)
    per_layer = config.relative_position_per_layer
    if per_layer not in (None, True, False):
        raise _choice_error(prefix + "relative_position_per_layer", per_layer, (None, True, False))
    positive_ints = {
        "max_relative_position": "sinusoidal, shaw",
        "relative_attention_num_buckets": "t5",
        "relative_attention_max_distance": "t5",
        "position_buckets": "deberta",
        "max_relative_positions": "deberta",
        "fire_mlp_width": "fire",
    }
    for field, used_by in positive_ints.items():
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{prefix}{field}={value!r} is not valid ({used_by}); choose a positive integer (≥ 1)")
    if config.relative_attention_num_buckets < 2 or config.relative_attention_num_buckets % 2:
        if rel == "t5":
            raise ValueError(
                f"{prefix}relative_attention_num_buckets={config.relative_attention_num_buckets} is not valid; "
                "choose an even integer ≥ 2 (half the buckets per direction)"
            )
    if rel == "deberta" and config.position_buckets < 2:
        raise ValueError(f"{prefix}position_buckets={config.position_buckets} is not valid; choose an integer ≥ 2")
    for field in ("rope_theta", "fire_init_threshold"):
        value = getattr(config, field)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{prefix}{field}={value!r} is not valid; choose a positive number")
    if not isinstance(config.relative_value, bool):
        raise _choice_error(prefix + "relative_value", config.relative_value, (True, False))
    if config.relative_value and rel != "shaw":
        raise ValueError(
            f"{prefix}relative_value=True is only valid with relative_position='shaw', not {rel!r}; choose shaw or set it False"
        )


def scheme_is_shared(config) -> bool:
    cls = SCHEMES[config.relative_position]
    per_layer = config.relative_position_per_layer
    return cls.shared_by_default if per_layer is None else not per_layer


def build_relative_position(config, num_heads, head_dim, hidden_size, causal=False) -> RelativePositionScheme:
    """Instantiate the scheme named by ``config.relative_position``."""
    validate_scheme_config(config)
    return SCHEMES[config.relative_position](config, num_heads, head_dim, hidden_size, causal=causal)


def scheme_fields(config, **overrides) -> "SchemeFields":
    """The scheme fields of ``config`` (missing ones at their defaults), with ``overrides`` applied:
    e.g. the T5 decoder's scheme is ``scheme_fields(config, relative_position=decoder_choice)``."""
    fields = {name: getattr(config, name, default) for name, default in SCHEME_DEFAULTS.items()}
    fields["max_position_embeddings"] = getattr(config, "max_position_embeddings", 512)
    fields["layer_norm_eps"] = getattr(config, "layer_norm_eps", 1e-7)
    fields.update(overrides)
    return SchemeFields(**fields)


class SchemeFields:
    """A plain namespace with every scheme field (defaults filled in), e.g. for the T5 decoder whose
    fields carry a ``decoder_`` prefix in its config."""

    def __init__(self, **fields):
        for name, default in SCHEME_DEFAULTS.items():
            setattr(self, name, fields.pop(name, default))
        for name, value in fields.items():
            setattr(self, name, value)
