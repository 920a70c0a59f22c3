"""Relative position schemes: one class each, the single source of everything known about a scheme.

Attention score for query i and key j, per head (see docs/schemes.md):

    s_ij = (q_i·k_j + c_ij) * scale + b_ij        o_i = Σ_j p_ij (v_j + u_ij)

A scheme contributes through the hooks of its ``cost`` class and nothing else:

- ``rotate(q, k)``           RoPE-like: changes q, k before attention                    (cost "rotate")
- ``bias(q_len, k_len)``     content-free bias b, (H, Lq, Lk); ``bias_1d`` for distance-only
                             schemes, an (H, Lq + Lk − 1) table (flex score_mod)          (cost "bias")
- ``content(q, k, proj)``    query/key-dependent term c, (B, H, Lq, Lk), computed as q·Tableᵀ over
                             the relative vocabulary then gathered; no (L, L, d) tensor  (cost "content")
- ``values(probs)``          value-side term Σ_j p_ij u_ij, (B, H, Lq, d) (eager only; ``uses_values``)

Besides its hooks a scheme class declares its paper and summary (model cards, README), its
hyper-parameters (``defaults``, checked by ``validate``; the configs keep them in one dict field),
whether it is shared by the layers of a stack, distance-only, and whether ``zero_init_`` lets a
converted absolute checkpoint start exactly where it was. Adding a scheme = one class here, added
to ``SCHEMES``, plus one naive reference in tests/test_engine.py.

Queries are always the LAST ``q_len`` of the ``k_len`` positions, so a decoder with a cache needs
no offset argument. The attention-math kernels the hooks use live in ``position_kernels.py``; the
configs' flat 0.1 fields and checks in ``scheme_config.py``. This file travels as remote code: it imports
only torch, transformers and ``position_kernels``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init  # init.* skips tensors loaded from a checkpoint

from .position_kernels import (
    alibi_slopes,
    bucket_dot,
    deberta_log_bucket,
    distance_span,
    memo_gather,
    memoized,
    query_start,
    relative_distance,
    relative_dot,
    sinusoid_table,
    t5_relative_position_bucket,
)

ABSOLUTE_POSITIONS = ("none", "learned", "sinusoidal")
COSTS = ("none", "bias", "rotate", "content")
# The flat scheme fields an hf_relpos 0.1 config saved (all of them, always): such a config has no parameter dict.
V0_1_FLAT_FIELDS = (
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
    "max_relative_position",
    "relative_value",
    "position_buckets",
    "max_relative_positions",
    "rope_theta",
    "fire_mlp_width",
    "fire_init_c",
    "fire_init_threshold",
)


def choice_error(field, value, choices):
    return ValueError(f"{field}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RelativePositionScheme(nn.Module):
    """Base class and interface of a scheme.

    Class attributes (what the rest of the package reads; nothing else names a scheme):
        name: the registry key (``SCHEMES``) and the value of the configs' ``relative_position``.
        paper, paper_url: citation and link (None for "none"); summary: two sentences for cards/README.
        defaults: the scheme's hyper-parameters and their defaults (the config's
            ``relative_position_parameters`` dict holds exactly these keys).
        legacy: hyper-parameters added after configs that lack them were saved, with the value that keeps
            such a config behaving as when it was saved (see ``resolve``); e.g. ``{"directional": False}``.
        aliases: flat config field of hf_relpos 0.1 → key of ``defaults`` (old configs still load).
        cost: "none" | "bias" | "rotate" | "content": which hook it uses (sets ``uses_*``).
        distance_only: its bias in one forward depends on j − i only (flex gets a 1-D table).
        shared_by_default: one instance per stack (True) or per layer (False).
        exact_from_absolute: ``zero_init_`` makes it add nothing, so a converted absolute checkpoint
            starts exact; False when no such start exists (fixed terms, or none that keeps gradients).
        shift_invariant: outputs do not change when the whole sequence is shifted.
        length_dependent: the bias depends on the input's length itself (FIRE normalises by it), so a padded
            text's outputs depend on its padding; relpos_bert then keeps the padded computation (no unpadding),
            so checkpoints give what they gave.
        scale_factor: the score scale becomes scale / √scale_factor (DeBERTa: 3).

    Instances: ``Scheme(params, num_heads, head_dim, hidden_size, causal=False,
    max_position_embeddings=512)``; ``params`` holds ``defaults``' keys (missing ones take the default).
    ``causal``: decoder self-attention (the scheme's causal variant).
    """

    name = "none"
    paper: str | None = None
    paper_url: str | None = None
    summary = ""
    defaults: dict = {}
    legacy: dict = {}
    aliases: dict = {}
    cost = "none"
    distance_only = False
    length_dependent = False
    shared_by_default = False
    exact_from_absolute = True
    shift_invariant = True
    scale_factor = 1.0
    uses_rotate = uses_bias = uses_content = uses_values = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.cost not in COSTS:
            raise TypeError(f"{cls.__name__}.cost={cls.cost!r} is not valid; choose one of: {', '.join(COSTS)}")
        cls.uses_rotate = cls.cost == "rotate"
        cls.uses_bias = cls.cost == "bias"
        cls.uses_content = cls.cost == "content"

    def __init__(
        self,
        params: dict | None = None,
        num_heads: int = 1,
        head_dim: int = 1,
        hidden_size: int = 1,
        causal: bool = False,
        max_position_embeddings: int = 512,
    ):
        super().__init__()
        self.params = {**self.defaults, **(params or {})}
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.hidden_size = hidden_size
        self.causal = causal

    # --- hyper-parameters -------------------------------------------------------------------------
    @classmethod
    def field(cls, key: str, value, prefix: str = "") -> str:
        """How messages name a hyper-parameter and its value: ``flat=value (dict entry)`` when the key
        has a 0.1 flat name (the name most configs spell it with), else ``dict entry=value``."""
        where = f"{prefix}relative_position_parameters[{key!r}]"
        flat = [f for f, k in cls.aliases.items() if k == key]
        return f"{flat[0]}={value!r} (= {where})" if flat else f"{where}={value!r}"

    @classmethod
    def validate(cls, params: dict, prefix: str = "", *, causal: bool = False, head_dim: int | None = None) -> None:
        """Raise ValueError naming the field, the value and the valid choices, for anything this
        scheme's forward cannot run with. ``params`` may omit keys (they take the defaults);
        ``causal``: checked for the decoder variant; ``head_dim``: checked when the size is known."""
        if not isinstance(params, dict):
            raise ValueError(
                f"{prefix}relative_position_parameters={params!r} is not valid; choose a dict with keys "
                f"among: {', '.join(cls.defaults) or '(none)'}"
            )
        unknown = [k for k in params if k not in cls.defaults]
        if unknown:
            raise ValueError(
                f"{prefix}relative_position_parameters has key(s) {', '.join(map(repr, unknown))} that "
                f"relative_position={cls.name!r} does not use; choose among: {', '.join(cls.defaults) or '(none)'}"
            )
        cls._check({**cls.defaults, **params}, prefix, causal=causal, head_dim=head_dim)

    @classmethod
    def _check(cls, p: dict, prefix: str, causal: bool, head_dim: int | None) -> None:
        """Per-scheme checks of a complete parameter dict (override)."""

    @classmethod
    def _require(cls, ok: bool, p: dict, key: str, prefix: str, valid: str) -> None:
        if not ok:
            raise ValueError(
                f"{cls.field(key, p[key], prefix)} is not valid for relative_position={cls.name!r}; choose {valid}"
            )

    @classmethod
    def saved_before(cls, params: dict | None, flat: dict | None, saved: bool | None = None) -> bool:
        """Whether (params, flat) is a saved config that predates the ``legacy`` keys, so that they take
        their ``legacy`` values rather than the defaults.

        ``saved``: whether the config comes from a file (a config's ``__init__`` knows: a saved config.json
        carries ``transformers_version``). True: legacy when its dict (or the absence of one) names none of
        the legacy keys. False: never. None (unknown), a guess from the shape of what was saved: an hf_relpos
        0.1 config (no parameter dict, and every 0.1 flat field, or every flat field of this scheme: 0.1
        saved them all), or a dict holding every other key of ``defaults`` (configs save the complete dict)
        and none of the legacy ones."""
        if not cls.legacy or saved is False:
            return False
        keys = {cls.aliases.get(k, k) for k in params} if isinstance(params, dict) else set()
        if keys & set(cls.legacy) or (params is not None and not isinstance(params, dict)):
            return False
        if saved:
            return True
        if params is None:
            flat = set(flat or ())
            return flat >= set(V0_1_FLAT_FIELDS) or bool(cls.aliases) and flat >= set(cls.aliases)
        return keys >= set(cls.defaults) - set(cls.legacy)

    @classmethod
    def direction_blind(cls, params: dict, causal: bool = False) -> bool:
        """True for a bidirectional bias of |i − j| only (``directional`` False): without absolute
        positions such an encoder cannot tell a key before the query from one after it."""
        return cls.distance_only and not causal and params.get("directional", True) is False

    @classmethod
    def resolve(
        cls,
        params: dict | None = None,
        flat: dict | None = None,
        prefix: str = "",
        *,
        saved: bool | None = None,
        **context,
    ) -> dict:
        """The complete, validated parameter dict: the defaults (with the ``legacy`` values instead when
        ``saved_before(params, flat, saved)``), updated by 0.1 flat fields (``flat``, those this scheme has an
        alias for; None values ignored), then by ``params`` (whose keys may also be flat names)."""
        if params is not None and not isinstance(params, dict):
            cls.validate(params, prefix)  # raises, naming the field
        out = dict(cls.defaults)
        if cls.saved_before(params, flat, saved):
            out.update(cls.legacy)
        for name, value in (flat or {}).items():
            if name in cls.aliases and value is not None:
                out[cls.aliases[name]] = value
        for key, value in (params or {}).items():
            out[cls.aliases.get(key, key)] = value
        cls.validate(out, prefix, **context)
        return out

    # --- weights ----------------------------------------------------------------------------------
    def reset_parameters(self, std: float = 0.02):
        """Initialise learned parameters and buffers (called by the models' ``_init_weights``)."""

    @torch.no_grad()
    def zero_init_(self) -> None:
        """Make the scheme add nothing to the scores where it can (``exact_from_absolute``), while its
        parameters still receive gradients. A scheme without such a start leaves its init as it is."""

    # --- hooks ------------------------------------------------------------------------------------
    # Per-forward memo: a scheme shared by all layers computes its bias once per forward.
    def cached_bias(self, q_len, k_len, memo: dict | None):
        if memo is None:
            return self.bias(q_len, k_len)
        # keyed without the lengths (hashing a symbolic length under torch.compile(dynamic=True) would
        # specialise it), which are checked on a hit: a memo serves one forward of one stack
        key = (id(self), "bias")
        hit = memo.get(key)
        if hit is None or hit[0] != q_len or hit[1] != k_len:
            memo[key] = hit = (q_len, k_len, self.bias(q_len, k_len))
        return hit[2]

    def rotate(self, q, k):
        return q, k

    def bias(self, q_len: int, k_len: int) -> torch.Tensor:
        raise NotImplementedError

    def bias_1d(self, q_len: int, k_len: int) -> torch.Tensor | None:
        """For distance-only schemes: (H, Lq + Lk − 1) table indexed by j − i + (Lk − 1); lets flex
        compute the bias in its score_mod without an (L, L) tensor. None otherwise."""
        return None

    def content(self, q, k, projections=None, memo=None, q_start=None) -> torch.Tensor:
        """q (B, H, Lq, d), k (B, H, Lk, d) → c (B, H, Lq, Lk), before scaling. ``projections`` is
        the layer's (query, key) Linear pair, for schemes that project a shared table (DeBERTa).
        ``q_start``: position of the first query when ``q`` is a block (default: the last Lq)."""
        raise NotImplementedError

    def values(self, probs, q_start=None) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self):
        return f"heads={self.num_heads}, head_dim={self.head_dim}, causal={self.causal}"


class NoRelativePosition(RelativePositionScheme):
    """No relative term (absolute embeddings only, or no positions at all): the null scheme passed
    wherever a layer has no relative term (never None)."""

    name = "none"
    summary = (
        "No relative term is added to the attention scores. Position information comes only from the absolute "
        "embeddings, if any, so this is the plain BERT/T5 baseline."
    )


class _DistanceBias(RelativePositionScheme):
    """A bias b_ij = g(j − i) per head, built from a 1-D table over the distances present."""

    cost = "bias"
    distance_only = True

    def distance_bias(self, distances: torch.Tensor) -> torch.Tensor:
        """(N,) integer j − i → (H, N) bias."""
        raise NotImplementedError

    def bias_1d(self, q_len, k_len):
        # queries are the last positions, so j − i ∈ [−(k_len − 1), q_len − 1]
        distances = torch.arange(-(k_len - 1), q_len, device=self._device())
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
    paper = "Raffel et al. 2020, Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer"
    paper_url = "https://arxiv.org/abs/1910.10683"
    summary = (
        "Each head learns one scalar bias per bucket of the signed distance j − i, added to the attention scores. "
        "Buckets are exact for short distances and log-spaced up to relative_attention_max_distance, and one table "
        "is shared by all layers."
    )
    defaults = {"num_buckets": 32, "max_distance": 128}
    aliases = {"relative_attention_num_buckets": "num_buckets", "relative_attention_max_distance": "max_distance"}
    shared_by_default = True

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        buckets = p["num_buckets"]
        cls._require(
            is_int(buckets) and buckets >= 4 and buckets % 2 == 0,
            p,
            "num_buckets",
            prefix,
            "an even integer ≥ 4 (half the buckets per direction, each with ≥ 1 exact distance)",
        )
        # distances below `exact` get one bucket each; the log-spaced rest must reach beyond them, or the
        # bucket formula divides by log(1) = 0 / goes negative (ZeroDivisionError, IndexError at forward)
        exact = buckets // 2 if causal else buckets // 4
        cls._require(
            is_int(p["max_distance"]) and p["max_distance"] > exact,
            p,
            "max_distance",
            prefix,
            f"an integer > {exact} (num_buckets={buckets}: the exact range is num_buckets/"
            f"{'2 in a causal decoder' if causal else '4'}, and the log-spaced buckets must reach beyond it)",
        )

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.num_buckets = self.params["num_buckets"]
        self.max_distance = self.params["max_distance"]
        self.relative_attention_bias = nn.Embedding(self.num_buckets, num_heads)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.relative_attention_bias.weight, std=std)

    @torch.no_grad()
    def zero_init_(self):
        self.relative_attention_bias.weight.zero_()

    def distance_bias(self, distances):
        buckets = t5_relative_position_bucket(
            distances, bidirectional=not self.causal, num_buckets=self.num_buckets, max_distance=self.max_distance
        )
        return self.relative_attention_bias(buckets).t()


def _check_directional(cls, p, prefix):
    cls._require(isinstance(p["directional"], bool), p, "directional", prefix, "one of: True, False")


def _before_after(distances: torch.Tensor, dtype):
    """(N,) signed j − i → (i − j for keys before the query else 0, j − i for keys after it else 0), (1, N) each."""
    d = distances.to(dtype)[None, :]
    return (-d).clamp(min=0), d.clamp(min=0)


class ALiBi(_DistanceBias):
    """ALiBi (Press et al. 2022), a fixed linear penalty per head, slopes m_h = 2^(−8h/H) (``alibi_slopes``).

    Bidirectional attention, ``directional=False`` (symmetric, as MosaicBERT / Jina-BERT encoders; the default):
        b_ij = −m_h · |i − j|
    Bidirectional attention, ``directional=True``:
        b_ij = −m_h · (i − j)            for keys before the query (j ≤ i)
        b_ij = −m_{H+1−h} · (j − i)      for keys after it (j > i)
    The keys after the query get the same geometric set of slopes in reverse head order: every head
    is asymmetric (head 1 is the most local to the left and the most global to the right), each
    direction still spans the whole set of slopes, and nothing is learned. (For odd H the middle head
    stays symmetric.) Measured (benchmarks/reports/extrapolation_directional.json, docs/directional.md):
    it sees direction (position task 0.23 → 0.28 at the training length) but its gentle-sided heads
    gather more and more keys on that side as inputs grow (0.19 vs 0.23 at 8×), so the default stays
    symmetric and a model built that way without absolute positions gets a warning.
    Causal attention: b_ij = −m_h · (i − j), j ≤ i, whatever ``directional`` (the masked j > i never count).

    Configs saved before ``directional`` existed load as symmetric (``legacy``), as do checkpoints
    converted from symmetric ALiBi encoders when they say ``directional=False``."""

    name = "alibi"
    paper = "Press et al. 2022, Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation"
    paper_url = "https://arxiv.org/abs/2108.12409"
    summary = (
        "Attention scores get a fixed penalty −m·|i − j|, linear in the distance, with one geometric slope m per "
        "head (optionally another slope for keys after the query). Nothing is learned, and the penalty extends "
        "to any length, which helps extrapolation."
    )
    defaults = {"directional": False}
    legacy = {"directional": False}
    shared_by_default = True
    exact_from_absolute = False  # a fixed, non-zero bias

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        _check_directional(cls, p, prefix)

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.directional = bool(self.params["directional"]) and not causal
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)
        self.register_buffer("slopes_after", self._after_slopes(), persistent=False)

    def _after_slopes(self):
        slopes = alibi_slopes(self.num_heads)
        return slopes.flip(0) if self.directional else slopes

    def reset_parameters(self, std=0.02):
        init.copy_(self.slopes, alibi_slopes(self.num_heads))
        init.copy_(self.slopes_after, self._after_slopes())

    def distance_bias(self, distances):
        before, after = _before_after(distances, self.slopes.dtype)
        return -self.slopes[:, None] * before - self.slopes_after[:, None] * after

    def extra_repr(self):
        return super().extra_repr() + f", directional={self.directional}"


class KERPLE(_DistanceBias):
    """KERPLE log kernel (Chi et al. 2022), r1, r2 > 0 per head (kept positive through softplus).

    Bidirectional attention, ``directional=False`` (symmetric):
        b_ij = −r1_h · log(1 + r2_h · |i − j|)
    Bidirectional attention, ``directional=True`` (the default for new configs): one (r1, r2) pair per
    direction and head,
        b_ij = −r1_h · log(1 + r2_h · (i − j))                  for keys before the query (j ≤ i)
        b_ij = −r1_after_h · log(1 + r2_after_h · (j − i))      for keys after it (j > i)
    started like ALiBi's directional slopes (r1 = r1_after = 1, r2 = m_h, r2_after = m_{H+1−h}).
    Causal attention: the first line over j ≤ i only; no after-side parameters exist there.
    Configs saved before ``directional`` existed load as symmetric (``legacy``)."""

    name = "kerple"
    paper = "Chi et al. 2022, KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation"
    paper_url = "https://arxiv.org/abs/2205.09921"
    summary = (
        "Attention scores get a learned logarithmic penalty −r1·log(1 + r2·distance) per head, with r1, r2 > 0 "
        "(in an encoder, by default one pair for keys before and one for keys after the query). The kernel "
        "decays smoothly with the distance and extends to any length."
    )
    defaults = {"directional": True}
    legacy = {"directional": False}
    shared_by_default = True
    exact_from_absolute = False  # softplus-positive r1, r2: no zero that keeps gradients

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        _check_directional(cls, p, prefix)

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.directional = bool(self.params["directional"]) and not causal
        self.r1 = nn.Parameter(torch.empty(num_heads))
        self.r2 = nn.Parameter(torch.empty(num_heads))
        if self.directional:
            self.r1_after = nn.Parameter(torch.empty(num_heads))
            self.r2_after = nn.Parameter(torch.empty(num_heads))
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        # r1 = 1 and r2 = ALiBi's geometric slopes: distinct heads from a deterministic start
        slopes = alibi_slopes(self.num_heads)
        init.constant_(self.r1, math.log(math.expm1(1.0)))
        init.copy_(self.r2, torch.log(torch.expm1(slopes)))
        if self.directional:
            init.constant_(self.r1_after, math.log(math.expm1(1.0)))
            init.copy_(self.r2_after, torch.log(torch.expm1(slopes.flip(0))))

    def distance_bias(self, distances):
        r1, r2 = F.softplus(self.r1)[:, None], F.softplus(self.r2)[:, None]
        if not self.directional:
            return -r1 * torch.log1p(r2 * distances.abs().to(r2.dtype)[None, :])
        r1_after, r2_after = F.softplus(self.r1_after)[:, None], F.softplus(self.r2_after)[:, None]
        before, after = _before_after(distances, r2.dtype)  # one of them is 0 at each distance: log1p(0) = 0
        return -r1 * torch.log1p(r2 * before) - r1_after * torch.log1p(r2_after * after)

    def extra_repr(self):
        return super().extra_repr() + f", directional={self.directional}"


class FIRE(RelativePositionScheme):
    """FIRE (Li et al. 2023): b_ij = f_θ(x_ij), f_θ an MLP 1→width→H, ψ(x) = log(|c·x| + 1),

        causal:                                 x_ij = ψ(i − j) / ψ(max(L_thr, i)),            j ≤ i
        bidirectional, ``directional=False``:   x_ij = ψ(|j − i|) / ψ(max(L_thr, L_k))
        bidirectional, ``directional=True``:    x_ij = sign(j − i) · ψ(|j − i|) / ψ(max(L_thr, L_k))

    (i the query position, L_k the key length). The directional form (the default for new configs)
    feeds the MLP the signed distance, so keys after the query (x > 0) and before it (x < 0) get
    their own bias; it has no extra parameters, and ``zero_init_`` still starts it at 0. The
    normaliser makes the bias not shift-invariant by design (in one bidirectional forward it depends
    on j − i only). Parameters as in the paper's reference code: ``c``, ``L_multiplier`` (threshold =
    |L_multiplier · init_threshold|). Configs saved before ``directional`` existed load as symmetric."""

    name = "fire"
    paper = "Li et al. 2023, Functional Interpolation for Relative Positions Improves Long Context Transformers"
    paper_url = "https://arxiv.org/abs/2310.04418"
    summary = (
        "A small learned MLP maps a log-transformed distance, normalised by the sequence length, to one bias per "
        "head. The normalisation is meant to let the learned bias shape generalise to longer inputs."
    )
    defaults = {"mlp_width": 32, "init_c": 0.1, "init_threshold": 512.0, "directional": True}
    legacy = {"directional": False}
    aliases = {"fire_mlp_width": "mlp_width", "fire_init_c": "init_c", "fire_init_threshold": "init_threshold"}
    cost = "bias"
    distance_only = True  # bidirectional; the causal variant has no 1-D table (bias_1d is None)
    length_dependent = True  # normalised by max(Lk, threshold)
    shared_by_default = True
    shift_invariant = False

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        cls._require(is_int(p["mlp_width"]) and p["mlp_width"] >= 1, p, "mlp_width", prefix, "a positive integer (≥ 1)")
        for key in ("init_c", "init_threshold"):
            cls._require(is_number(p[key]) and p[key] > 0, p, key, prefix, "a positive number")
        _check_directional(cls, p, prefix)

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        width = self.params["mlp_width"]
        self.mlp = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, num_heads))
        self.init_c = float(self.params["init_c"])
        self.init_L = float(self.params["init_threshold"])
        self.directional = bool(self.params["directional"]) and not causal
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

    @torch.no_grad()
    def zero_init_(self):
        # zero output layer: bias 0, still trainable (the gradient reaches it)
        self.mlp[2].weight.zero_()
        self.mlp[2].bias.zero_()

    def _psi(self, x):
        return torch.log(torch.abs(self.c * x) + 1)

    def bias(self, q_len, k_len):
        if not self.causal:
            table = self.bias_1d(q_len, k_len)
            return table[:, relative_distance(q_len, k_len, table.device) + (k_len - 1)]
        # normaliser per query position: (Lq, Lk) inputs to the MLP, in the parameters' dtype
        device, dtype = self.c.device, self.c.dtype
        threshold = torch.abs(self.L_multiplier * self.init_L)
        q_pos = torch.arange(k_len - q_len, k_len, device=device).to(dtype)
        dist = relative_distance(q_len, k_len, device).abs().to(dtype)
        norm = self._psi(torch.maximum(q_pos, threshold))[:, None] + self.eps
        return self.mlp((self._psi(dist) / norm).unsqueeze(-1)).permute(2, 0, 1)

    def bias_1d(self, q_len, k_len):
        if self.causal:
            return None
        device, dtype = self.c.device, self.c.dtype
        threshold = torch.abs(self.L_multiplier * self.init_L)
        signed = torch.arange(-(k_len - 1), q_len, device=device).to(dtype)
        # new_ones(()) * k_len, not torch.tensor(float(k_len)): a symbolic length stays symbolic under export
        norm = self._psi(torch.maximum(threshold.new_ones(()) * k_len, threshold)) + self.eps
        x = self._psi(signed.abs()) / norm
        if self.directional:
            x = torch.sign(signed) * x
        return self.mlp(x.unsqueeze(-1)).t()

    def extra_repr(self):
        return super().extra_repr() + f", directional={self.directional}"


class Rotary(RelativePositionScheme):
    """RoPE (Su et al. 2021), HF Llama's rotate_half layout over the full head size."""

    name = "rotary"
    paper = "Su et al. 2021, RoFormer: Enhanced Transformer with Rotary Position Embedding"
    paper_url = "https://arxiv.org/abs/2104.09864"
    summary = (
        "Queries and keys are rotated by angles proportional to their positions (RoPE), so their dot product "
        "depends on the distance only. It adds no parameters and keeps the fused attention kernels."
    )
    defaults = {"theta": 10000.0}
    aliases = {"rope_theta": "theta"}
    cost = "rotate"
    exact_from_absolute = False  # the rotation changes every score

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        cls._require(is_number(p["theta"]) and p["theta"] > 0, p, "theta", prefix, "a positive number")
        if head_dim is not None and head_dim % 2:
            raise ValueError(
                f"relative_position='rotary' needs an even head size, got head_dim={head_dim}; choose "
                "sizes giving an even head size"
            )

    def __init__(self, params=None, num_heads=1, head_dim=2, hidden_size=2, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        if head_dim % 2:
            raise ValueError(f"relative_position='rotary' needs an even head size, got head_dim={head_dim}")
        self.theta = float(self.params["theta"])

    def cos_sin(self, positions: torch.Tensor, dtype):
        inv_freq = 1.0 / (
            self.theta ** (torch.arange(0, self.head_dim, 2, device=positions.device).float() / self.head_dim)
        )
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
    paper = "Vaswani et al. 2017, Attention Is All You Need"
    paper_url = "https://arxiv.org/abs/1706.03762"
    summary = (
        "Each query is dotted with a fixed sinusoidal encoding of the clipped distance i − j, added to the "
        "attention score next to q·k. Nothing is learned, and the clip (max_relative_position) lets any length run."
    )
    defaults = {"max_distance": 128}
    aliases = {"max_relative_position": "max_distance"}
    cost = "content"
    exact_from_absolute = False  # a fixed, non-zero term

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        cls._require(
            is_int(p["max_distance"]) and p["max_distance"] >= 1, p, "max_distance", prefix, "a positive integer (≥ 1)"
        )

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.clip = self.params["max_distance"]

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        start = query_start(q_len, k_len, q_start)
        # i − j present, clipped (sym_max/sym_min: no branch on the length under torch.export)
        lo, hi = torch.sym_max(-(k_len - 1) + start, -self.clip), torch.sym_min(start + q_len - 1, self.clip)
        table = sinusoid_table(torch.arange(lo, hi + 1, device=q.device), self.head_dim)
        return relative_dot(q, lambda delta: table[delta.clamp(lo, hi) - lo], start, 0, k_len, clip=(lo, hi))


class Shaw(RelativePositionScheme):
    """Shaw et al. 2018: c_ij = q_i·a^K[clip(j − i, −k, k)], optional u_ij = a^V[clip(j − i, −k, k)].
    Tables ∈ ℝ^{(2k+1)×d}, shared by the heads of a layer."""

    name = "shaw"
    paper = "Shaw et al. 2018, Self-Attention with Relative Position Representations"
    paper_url = "https://arxiv.org/abs/1803.02155"
    summary = (
        "Every attention layer learns an embedding for each clipped distance j − i and dots it with the query "
        "(optionally also adding one to the values). Distances beyond max_relative_position share the edge embedding."
    )
    defaults = {"max_distance": 128, "value": False}
    aliases = {"max_relative_position": "max_distance", "relative_value": "value"}
    cost = "content"

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        cls._require(
            is_int(p["max_distance"]) and p["max_distance"] >= 1, p, "max_distance", prefix, "a positive integer (≥ 1)"
        )
        cls._require(isinstance(p["value"], bool), p, "value", prefix, "one of: True, False")

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.clip = self.params["max_distance"]
        self.relative_key = nn.Embedding(2 * self.clip + 1, head_dim)
        self.relative_value = nn.Embedding(2 * self.clip + 1, head_dim) if self.params["value"] else None
        self.uses_values = self.relative_value is not None
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.relative_key.weight, std=std)
        if self.relative_value is not None:
            init.normal_(self.relative_value.weight, std=std)

    @torch.no_grad()
    def zero_init_(self):
        self.relative_key.weight.zero_()
        if self.relative_value is not None:
            self.relative_value.weight.zero_()

    def _index(self, q_len, k_len, device, q_start=None):
        d = relative_distance(q_len, k_len, device, q_start)
        start = query_start(q_len, k_len, q_start)  # j − i spans [−(start + Lq − 1), Lk − 1 − start]: no tensor read
        lo, hi = torch.sym_max(-(start + q_len - 1), -self.clip), torch.sym_min(k_len - 1 - start, self.clip)
        return d.clamp(lo, hi) - lo, lo + self.clip, hi + self.clip + 1

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        table = self.relative_key.weight  # row r ↔ j − i = r − clip; relative_dot's δ is i − j
        return relative_dot(
            q,
            lambda delta: table[(-delta).clamp(-self.clip, self.clip) + self.clip],
            query_start(q_len, k_len, q_start),
            0,
            k_len,
            clip=(-self.clip, self.clip),
        )

    def values(self, probs, q_start=None):
        # Σ_j p_ij a^V[idx_ij] = Σ_r (Σ_{j: idx_ij = r} p_ij) a^V[r]: bucket the probabilities first
        index, start, stop = self._index(probs.shape[-2], probs.shape[-1], probs.device, q_start)
        buckets = probs.new_zeros(*probs.shape[:-1], stop - start)
        buckets.scatter_add_(-1, index.expand_as(probs), probs)
        return torch.matmul(buckets, self.relative_value.weight[start:stop].to(probs.dtype))


class ShawKeyQuery(RelativePositionScheme):
    """Huang et al. 2020 / transformers 4.x ``relative_key_query``: c_ij = q_i·e[i − j] + k_j·e[i − j],
    e ∈ ℝ^{(2P−1)×d} (``distance_embedding``, index i − j + P − 1), P = the host config's
    ``max_position_embeddings``. 4.x had no clipping (index error past P); here i − j is clipped to
    ±(P − 1) so longer inputs run, equal to 4.x wherever 4.x runs."""

    name = "shaw_kq"
    paper = "Huang et al. 2020, Improve Transformer Models with Better Relative Position Embeddings"
    paper_url = "https://arxiv.org/abs/2009.13658"
    summary = (
        "Learned distance embeddings interact with both the query and the key of every pair, as transformers "
        "4.x `relative_key_query`. Distances are clipped to the position table, so longer inputs still run."
    )
    cost = "content"

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.max_positions = max_position_embeddings
        self.distance_embedding = nn.Embedding(2 * self.max_positions - 1, head_dim)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.distance_embedding.weight, std=std)

    @torch.no_grad()
    def zero_init_(self):
        self.distance_embedding.weight.zero_()

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        P, table, start = self.max_positions, self.distance_embedding.weight, query_start(q_len, k_len, q_start)
        clip = (-(P - 1), P - 1)
        query_term = relative_dot(q, lambda delta: table[delta.clamp(*clip) + P - 1], start, 0, k_len, clip=clip)
        # k_j · e[i − j]: the same product seen from the keys (δ = j − i there), transposed
        key_term = relative_dot(k, lambda delta: table[(-delta).clamp(*clip) + P - 1], 0, start, q_len, clip=clip)
        return query_term.add_(key_term.transpose(-1, -2))  # in place: no fresh (B, H, Lq, Lk) buffer


class TransformerXL(RelativePositionScheme):
    """Transformer-XL (Dai et al. 2019): c_ij = (q_i + v_h)·r_{i−j} + u_h·k_j, r_δ = W_R·R_δ with R
    the [sin | cos] sinusoid of width hidden_size; u, v ∈ ℝ^{H×d} and W_R per layer. Bidirectional
    δ ∈ [−(Lk−1), Lk−1]."""

    name = "xl"
    paper = "Dai et al. 2019, Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context"
    paper_url = "https://arxiv.org/abs/1901.02860"
    summary = (
        "Sinusoids of the distance i − j are projected per layer and scored against the query, with global content "
        "and position biases u and v. This is the relative attention of Transformer-XL."
    )
    cost = "content"

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.r_net = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.u = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.v = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.r_net.weight, std=std)
        init.normal_(self.u, std=std)
        init.normal_(self.v, std=std)

    @torch.no_grad()
    def zero_init_(self):
        self.r_net.weight.zero_()
        self.u.zero_()
        self.v.zero_()

    def content(self, q, k, projections=None, memo=None, q_start=None):
        q_len, k_len = q.shape[-2], k.shape[-2]
        start = query_start(q_len, k_len, q_start)
        # shared by the blocks of one call: r_net costs (Lq + Lk)·hidden² per call, not per block
        shared, lo, hi = distance_span(q_len, k_len, q_start, memo)

        def project():
            R = sinusoid_table(torch.arange(lo, hi + 1, device=q.device), self.hidden_size, interleave=False)
            return self.r_net(R.to(self.r_net.weight.dtype)).view(-1, self.num_heads, self.head_dim).transpose(0, 1)

        r = memoized(memo if shared else None, (id(self), lo, hi, "r"), project)  # (H, K, d)
        # tiles padded past the last query ask for δ > hi: clamp (their rows are dropped)
        position_term = relative_dot(
            q + self.v[:, None, :].to(q.dtype), lambda delta: r[:, delta.clamp(lo, hi) - lo], start, 0, k_len
        )
        content_bias = torch.matmul(k, self.u[:, :, None].to(k.dtype)).transpose(-1, -2)  # (B, H, 1, Lk)
        return position_term.add_(content_bias)


class DeBERTa(RelativePositionScheme):
    """DeBERTa disentangled attention (He et al. 2021): c_ij = q_i·k^r[δ] + k_j·q^r[δ] (c2p + p2c),
    δ = log_bucket(i − j) + b, k^r/q^r = the layer's own key/query projections of a relative
    embedding table P ∈ ℝ^{2b×hidden} (+ LayerNorm, eps 1e-7 as HF DebertaV2) shared by the layers
    (``share_att_key``). Scores are scaled by 1/√(3d)."""

    name = "deberta"
    paper = "He et al. 2021, DeBERTa: Decoding-enhanced BERT with Disentangled Attention"
    paper_url = "https://arxiv.org/abs/2006.03654"
    summary = (
        "Attention adds disentangled content-to-position and position-to-content terms, computed from a shared "
        "table of log-bucketed distances. It is DeBERTa-v2's attention, with scale 1/√(3d)."
    )
    defaults = {"position_buckets": 256, "max_relative_positions": 512}
    aliases = {"position_buckets": "position_buckets", "max_relative_positions": "max_relative_positions"}
    cost = "content"
    shared_by_default = True
    exact_from_absolute = False  # the 1/√(3d) scale and the projected LayerNorm bias change every score
    scale_factor = 3.0
    layer_norm_eps = 1e-7  # HF DebertaV2Config's default, whatever the host model's own LayerNorm epsilon

    @classmethod
    def _check(cls, p, prefix, causal, head_dim):
        cls._require(
            is_int(p["position_buckets"]) and p["position_buckets"] >= 2,
            p,
            "position_buckets",
            prefix,
            "an integer ≥ 2",
        )
        cls._require(
            is_int(p["max_relative_positions"]) and p["max_relative_positions"] >= 1,
            p,
            "max_relative_positions",
            prefix,
            "a positive integer (≥ 1)",
        )

    def __init__(self, params=None, num_heads=1, head_dim=1, hidden_size=1, causal=False, max_position_embeddings=512):
        super().__init__(params, num_heads, head_dim, hidden_size, causal)
        self.position_buckets = self.params["position_buckets"]
        self.max_relative_positions = self.params["max_relative_positions"]
        self.rel_embeddings = nn.Embedding(2 * self.position_buckets, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=self.layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        init.normal_(self.rel_embeddings.weight, std=std)
        init.ones_(self.LayerNorm.weight)
        init.zeros_(self.LayerNorm.bias)

    def content(self, q, k, projections=None, memo=None, q_start=None):
        if projections is None:
            raise ValueError("relative_position='deberta' needs the attention layer's (query, key) projections")
        query_proj, key_proj = projections
        q_len, k_len = q.shape[-2], k.shape[-2]
        start = query_start(q_len, k_len, q_start)
        b = self.position_buckets
        # shared by the blocks of one call: the bucket rows of every i − j and the keys' products with them
        shared, lo, hi = distance_span(q_len, k_len, q_start, memo)
        cache, tables = (memo if shared else None), (id(self), id(query_proj), lo, hi)

        def buckets():
            bucket = (
                deberta_log_bucket(torch.arange(lo, hi + 1, device=q.device), b, self.max_relative_positions) + b
            ).clamp(0, 2 * b - 1)
            if torch.compiler.is_compiling() or torch.jit.is_tracing():
                # torch.unique has a data-dependent size (a graph break, no export): project the whole table
                return torch.arange(2 * b, device=q.device), bucket
            return torch.unique(bucket, return_inverse=True)  # only the buckets these lengths reach

        used, local = memoized(cache, (*tables, "buckets"), buckets)
        rel = memoized(memo, (id(self), "rel_embeddings"), lambda: self.LayerNorm(self.rel_embeddings.weight))

        def project(proj):
            rows = rel[used].to(query_proj.weight.dtype)
            return proj(rows).view(-1, self.num_heads, self.head_dim).transpose(0, 1)  # (H, K, d)

        pos_key = memoized(cache, (*tables, "pos_key"), lambda: project(key_proj))
        pos_query = memoized(cache, (*tables, "pos_query"), lambda: project(query_proj))
        # ≤ 2b distinct buckets: each query/key times the K projected rows (HF DeBERTa's form), then a gather;
        # cheaper than relative_dot's per-distance tiles once L exceeds b (K ≤ 2b, distances 2L − 1)
        index = local[relative_distance(q_len, k_len, q.device, q_start=start).neg_() - lo]  # bucket of i − j
        c2p = bucket_dot(q, pos_key, index)
        if shared:
            keys = memoized(cache, (*tables, "p2c"), lambda: torch.matmul(k, pos_query.to(k.dtype).transpose(-1, -2)))
            p2c = memo_gather(memo, keys, index.transpose(0, 1).expand(*k.shape[:2], k_len, q_len))
        else:
            p2c = bucket_dot(k, pos_query, index.transpose(0, 1))
        return c2p.add_(p2c.transpose(-1, -2))


SCHEMES: dict[str, type[RelativePositionScheme]] = {
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


def scheme_class(name, field: str = "relative_position") -> type[RelativePositionScheme]:
    """The class registered as ``name``; ValueError naming ``field`` and the choices otherwise."""
    if not isinstance(name, str) or name not in SCHEMES:
        raise choice_error(field, name, SCHEMES)
    return SCHEMES[name]


def is_shared(name: str, per_layer: bool | None) -> bool:
    """One scheme instance per stack (True) or one per layer; ``per_layer`` None = the scheme's default."""
    return SCHEMES[name].shared_by_default if per_layer is None else not per_layer


def build_scheme(
    name, params, num_heads, head_dim, hidden_size, causal=False, max_position_embeddings=512
) -> RelativePositionScheme:
    """One instance of scheme ``name`` with the (resolved) hyper-parameters ``params``."""
    return scheme_class(name)(
        params, num_heads, head_dim, hidden_size, causal=causal, max_position_embeddings=max_position_embeddings
    )


def warn_if_direction_blind(name, params, causal: bool, absolute_position: str | None) -> None:
    """One warning (per message) when a stack is built that cannot see word-order direction: a
    symmetric distance-only bias (``direction_blind``), bidirectional attention, no absolute positions."""
    if absolute_position == "none" and scheme_class(name).direction_blind(params, causal):
        from transformers.utils import logging

        logging.get_logger(__name__).warning_once(
            f"relative_position={name!r} with directional=False and absolute_position='none': this bidirectional "
            f"encoder's bias depends on |i − j| only, so it cannot tell a token before another from one after it "
            f'(it sees no word-order direction). Set relative_position_parameters={{"directional": True}} to fix '
            f"it (or use absolute positions); keep directional=False only for a checkpoint trained symmetric."
        )


def build_stack_schemes(
    name,
    params,
    per_layer,
    num_layers,
    num_heads,
    head_dim,
    hidden_size,
    causal=False,
    max_position_embeddings=512,
    absolute_position: str | None = None,
) -> tuple[list[RelativePositionScheme], bool]:
    """The schemes of a stack's ``num_layers`` self-attention layers, for both model families:
    ``(schemes, shared)``, with the same instance repeated when ``shared`` (the stack registers it as
    ``relative_position``; else each layer registers its own under that name). ``absolute_position``
    (the config's, when the caller passes it): warns when the stack cannot see direction
    (``warn_if_direction_blind``)."""
    warn_if_direction_blind(name, params, causal, absolute_position)
    make = functools.partial(
        build_scheme, name, params, num_heads, head_dim, hidden_size, causal, max_position_embeddings
    )
    shared = is_shared(name, per_layer)
    if shared:
        return [make()] * num_layers, True
    return [make() for _ in range(num_layers)], False
