"""The RPE engine against naive references written plainly from docs/schemes.md.

Each reference builds explicit per-pair terms (loops over i, j or (Lq, Lk, d) tensors); the
library computes the same through tables, gathers and backends. float32, max abs diff ≤ 1e-5.
"""

import math
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hf_relpos.attention_engine import build_attention_mask, relpos_attention
from hf_relpos.position_kernels import alibi_slopes
from hf_relpos.relative_positions import SCHEMES, NoRelativePosition, build_scheme, is_shared
from hf_relpos.scheme_config import SchemeFields, build_relative_position, resolve_scheme_parameters

H, D = 4, 8
HIDDEN = H * D
TOL = 1e-5
P = 10  # max_position_embeddings of the host (shaw_kq's table)

# Small hyper-parameters (0.1 flat names) so clipping, log buckets and thresholds are reached at L ≤ 24.
SMALL = dict(
    max_relative_position=3,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=12,
    position_buckets=6,
    max_relative_positions=20,
    fire_init_threshold=5.0,
    rope_theta=100.0,
)
# every scheme with its switches off, plus the variants they turn on (Shaw's value side; the direction-aware
# alibi, kerple and fire)
SWITCHED = [n for n, c in SCHEMES.items() if any(isinstance(v, bool) for v in c.defaults.values())]
CASES = [(name, False) for name in SCHEMES] + [(name, True) for name in SWITCHED]


def make_scheme(name, causal=False, value=False, seed=0):
    """(resolved params, scheme with large random weights, the layer's (query, key) projections);
    ``value``: every boolean hyper-parameter (switch) of the scheme."""
    torch.manual_seed(seed)
    switches = {key: value for key, default in SCHEMES[name].defaults.items() if isinstance(default, bool)}
    params = resolve_scheme_parameters(name, switches, flat=SMALL, causal=causal)
    scheme = build_scheme(name, params, H, D, HIDDEN, causal=causal, max_position_embeddings=P)
    with torch.no_grad():  # large random weights, so every term matters
        for p in scheme.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    projections = (nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN))
    return params, scheme, projections


def has_parameters(name):
    return any(True for _ in make_scheme(name)[1].parameters())


# ----------------------------------------------------------------------------------------------
# naive references: one function per scheme, (Lq, Lk) loops, positions written out
# ----------------------------------------------------------------------------------------------


def hf_t5_bucket(rel, bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    return T5Attention._relative_position_bucket(
        torch.tensor(rel), bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    ).item()


def hf_deberta_bucket(rel, bucket_size, max_position):
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    return int(make_log_bucket_position(torch.tensor([rel]), bucket_size, max_position).item())


def sin_vec(r, dim):
    """Interleaved sinusoid of one scalar position r: [sin(r/10000^(0/d)), cos(...), sin(r/10000^(2/d)), ...]."""
    out = torch.zeros(dim)
    for t in range(dim // 2):
        out[2 * t] = math.sin(r / 10000 ** (2 * t / dim))
        out[2 * t + 1] = math.cos(r / 10000 ** (2 * t / dim))
    return out


def xl_vec(r, dim):
    """Transformer-XL's [sin | cos] sinusoid of one scalar position r."""
    freqs = [r / 10000 ** (2 * t / dim) for t in range(dim // 2)]
    return torch.tensor([math.sin(f) for f in freqs] + [math.cos(f) for f in freqs])


def rotate_naive(x, positions, theta):
    """RoPE per position and per (t, t + d/2) pair, written out."""
    out = x.clone()
    half = x.shape[-1] // 2
    for n, p in enumerate(positions):
        for t in range(half):
            a = p * theta ** (-2 * t / x.shape[-1])
            x1, x2 = x[..., n, t], x[..., n, t + half]
            out[..., n, t] = x1 * math.cos(a) - x2 * math.sin(a)
            out[..., n, t + half] = x2 * math.cos(a) + x1 * math.sin(a)
    return out


# One reference per scheme: ``ref(scheme, p, projections, q, k, q_pos, causal)`` with q (B, H, Lq, d),
# k (B, H, Lk, d), q_pos the absolute positions of the queries, p the scheme's parameters; it returns
# the terms it adds, written per pair: "c" (B, H, Lq, Lk, before scaling), "b" (H, Lq, Lk), "u"
# (Lq, Lk, d), or rotated "q"/"k", and "scale" (the factor dividing the score scale's square).
REFERENCES = {}


def reference(name, uses_projections=False):
    def register(fn):
        fn.uses_projections = uses_projections
        REFERENCES[name] = fn
        return fn

    return register


def pairs(q, k, q_pos):
    return [(i, I, j) for i, I in enumerate(q_pos) for j in range(k.shape[2])]


@reference("none")
def ref_none(scheme, p, projections, q, k, q_pos, causal):
    return {}


@reference("sinusoidal")
def ref_sinusoidal(scheme, p, projections, q, k, q_pos, causal):
    c, kclip = torch.zeros(q.shape[0], H, len(q_pos), k.shape[2]), p["max_distance"]
    for i, I, j in pairs(q, k, q_pos):
        c[:, :, i, j] = q[:, :, i] @ sin_vec(min(max(I - j, -kclip), kclip), D)
    return {"c": c}


@reference("shaw")
def ref_shaw(scheme, p, projections, q, k, q_pos, causal):
    c, u, kclip = (
        torch.zeros(q.shape[0], H, len(q_pos), k.shape[2]),
        torch.zeros(len(q_pos), k.shape[2], D),
        p["max_distance"],
    )
    for i, I, j in pairs(q, k, q_pos):
        r = min(max(j - I, -kclip), kclip) + kclip
        c[:, :, i, j] = q[:, :, i] @ scheme.relative_key.weight[r]
        if p["value"]:
            u[i, j] = scheme.relative_value.weight[r]
    return {"c": c, "u": u}


@reference("shaw_kq")
def ref_shaw_kq(scheme, p, projections, q, k, q_pos, causal):
    c = torch.zeros(q.shape[0], H, len(q_pos), k.shape[2])
    for i, I, j in pairs(q, k, q_pos):
        e = scheme.distance_embedding.weight[min(max(I - j, -(P - 1)), P - 1) + P - 1]
        c[:, :, i, j] = q[:, :, i] @ e + k[:, :, j] @ e
    return {"c": c}


@reference("t5")
def ref_t5(scheme, p, projections, q, k, q_pos, causal):
    b = torch.zeros(H, len(q_pos), k.shape[2])
    for i, I, j in pairs(q, k, q_pos):
        b[:, i, j] = scheme.relative_attention_bias.weight[
            hf_t5_bucket(j - I, not causal, p["num_buckets"], p["max_distance"])
        ]
    return {"b": b}


def two_sided(p, causal):
    """The direction-aware form applies: bidirectional attention with ``directional`` on."""
    return p["directional"] and not causal


@reference("alibi")
def ref_alibi(scheme, p, projections, q, k, q_pos, causal):
    b, m = torch.zeros(H, len(q_pos), k.shape[2]), alibi_slopes(H)
    after = [m[H - 1 - h] for h in range(H)] if two_sided(p, causal) else list(m)  # head h ↔ slope of head H+1−h
    for i, I, j in pairs(q, k, q_pos):
        for h in range(H):
            b[h, i, j] = -m[h] * (I - j) if j <= I else -after[h] * (j - I)
    return {"b": b}


@reference("kerple")
def ref_kerple(scheme, p, projections, q, k, q_pos, causal):
    b, r1, r2 = torch.zeros(H, len(q_pos), k.shape[2]), F.softplus(scheme.r1), F.softplus(scheme.r2)
    for i, I, j in pairs(q, k, q_pos):
        if j > I and two_sided(p, causal):  # a key after the query: its own pair
            b[:, i, j] = -F.softplus(scheme.r1_after) * torch.log(1 + F.softplus(scheme.r2_after) * (j - I))
        else:
            b[:, i, j] = -r1 * torch.log(1 + r2 * abs(I - j))
    return {"b": b}


@reference("fire")
def ref_fire(scheme, p, projections, q, k, q_pos, causal):
    b, cc = torch.zeros(H, len(q_pos), k.shape[2]), scheme.c
    thr = abs(scheme.L_multiplier * p["init_threshold"])
    psi = lambda x: torch.log(torch.abs(cc * x) + 1)  # noqa: E731
    for i, I, j in pairs(q, k, q_pos):
        n = I if causal else k.shape[2]
        x = psi(torch.tensor(float(abs(I - j)))) / (psi(torch.maximum(torch.tensor(float(n)), thr)) + 1e-6)
        if two_sided(p, causal) and j < I:  # the signed distance: keys before the query are negative
            x = -x
        b[:, i, j] = scheme.mlp(x.reshape(1, 1)).reshape(H)
    return {"b": b}


@reference("rotary")
def ref_rotary(scheme, p, projections, q, k, q_pos, causal):
    return {"q": rotate_naive(q, q_pos, p["theta"]), "k": rotate_naive(k, list(range(k.shape[2])), p["theta"])}


@reference("xl")
def ref_xl(scheme, p, projections, q, k, q_pos, causal):
    c, Wr = torch.zeros(q.shape[0], H, len(q_pos), k.shape[2]), scheme.r_net.weight
    for i, I, j in pairs(q, k, q_pos):
        r = (Wr @ xl_vec(I - j, HIDDEN)).view(H, D)
        for h in range(H):
            c[:, h, i, j] = (q[:, h, i] + scheme.v[h]) @ r[h] + k[:, h, j] @ scheme.u[h]
    return {"c": c}


@reference("deberta", uses_projections=True)
def ref_deberta(scheme, p, projections, q, k, q_pos, causal):
    c, bsz = torch.zeros(q.shape[0], H, len(q_pos), k.shape[2]), p["position_buckets"]
    rel_table = F.layer_norm(
        scheme.rel_embeddings.weight, (HIDDEN,), scheme.LayerNorm.weight, scheme.LayerNorm.bias, 1e-7
    )
    for i, I, j in pairs(q, k, q_pos):
        delta = min(max(hf_deberta_bucket(I - j, bsz, p["max_relative_positions"]) + bsz, 0), 2 * bsz - 1)
        kr = projections[1](rel_table[delta]).view(H, D)
        qr = projections[0](rel_table[delta]).view(H, D)
        for h in range(H):
            c[:, h, i, j] = q[:, h, i] @ kr[h] + k[:, h, j] @ qr[h]
    return {"c": c, "scale": 3.0}


def naive_attention(name, p, scheme, projections, q, k, v, padding, causal, base_scale):
    B, _, Lq, d = q.shape
    Lk = k.shape[2]
    q_pos = [Lk - Lq + i for i in range(Lq)]  # queries are the last positions
    terms = REFERENCES[name](scheme, p, projections, q, k, q_pos, causal)
    q, k = terms.get("q", q), terms.get("k", k)
    scale = base_scale / math.sqrt(terms.get("scale", 1.0))
    scores = (q @ k.transpose(-1, -2) + terms.get("c", 0)) * scale + terms.get("b", torch.zeros(H, Lq, Lk))
    allowed = torch.ones(B, 1, Lq, Lk, dtype=torch.bool)
    if padding is not None:
        allowed &= padding[:, None, None, :].bool()
    if causal:
        for i in range(Lq):
            allowed[:, :, i, q_pos[i] + 1 :] = False
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = scores.softmax(-1)
    out = probs @ v + torch.einsum("bhij,ijd->bhid", probs, terms.get("u", torch.zeros(Lq, Lk, d)))
    return out.transpose(1, 2)


def test_every_registered_scheme_has_a_reference_and_describes_itself():
    assert set(REFERENCES) == set(SCHEMES)
    for name, cls in SCHEMES.items():
        assert cls.name == name and cls.summary.count(". ") >= 1
        assert (cls.paper is None) == (cls.paper_url is None) == (cls.cost == "none")
        assert set(cls.aliases.values()) <= set(cls.defaults)
        cls.validate(cls.defaults)  # the defaults are valid, encoder and decoder variant
        cls.validate(cls.defaults, causal=True)


def run(scheme, projections, q, k, v, padding, causal, impl, scale, memo=None):
    mask = build_attention_mask(padding, q.shape[2], k.shape[2], causal=causal, dtype=q.dtype)
    out, _ = relpos_attention(
        nn.Module(),
        q,
        k,
        v,
        mask,
        scheme=scheme,
        scaling=scale,
        memo={} if memo is None else memo,
        projections=projections,
        implementation=impl,
    )
    return out


def inputs(Lq, Lk, seed=1, B=2):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, generator=g) for L in (Lq, Lk, Lk))
    padding = torch.ones(B, Lk)
    if B > 1:
        padding[1, : max(1, Lk // 4)] = 0  # left-padded second row
    return q, k, v, padding


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,value", CASES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Lq,Lk", [(7, 7), (15, 15), (24, 24), (5, 13), (1, 9)])
def test_scheme_equals_naive_reference(name, value, causal, Lq, Lk):
    cfg, scheme, projections = make_scheme(name, causal=causal, value=value)
    q, k, v, padding = inputs(Lq, Lk)
    with torch.no_grad():
        got = run(scheme, projections, q, k, v, padding, causal, "eager", D**-0.5)
        want = naive_attention(name, cfg, scheme, projections, q, k, v, padding, causal, D**-0.5)
    assert (got - want).abs().max().item() <= TOL


@pytest.mark.parametrize("name,value", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_backends_agree(name, value, causal):
    """eager == sdpa == flex (unfused flex on CPU), also with q_len < k_len and T5's scale 1."""
    _, scheme, projections = make_scheme(name, causal=causal, value=value)
    for Lq, Lk, scale in [(11, 11, D**-0.5), (4, 10, 1.0)]:
        q, k, v, padding = inputs(Lq, Lk, seed=3)
        with torch.no_grad():
            outs = {
                impl: run(scheme, projections, q, k, v, padding, causal, impl, scale)
                for impl in ("eager", "sdpa", "flex_attention")
            }
        assert (outs["eager"] - outs["sdpa"]).abs().max().item() <= TOL
        assert (outs["eager"] - outs["flex_attention"]).abs().max().item() <= TOL


def test_flex_uses_score_mod_table_for_distance_biases():
    """Pure distance biases reach flex as an (H, Lq + Lk − 1) table, not an (H, Lq, Lk) tensor."""
    distance_only = [n for n, c in SCHEMES.items() if c.distance_only]
    assert distance_only and all(SCHEMES[n].cost == "bias" for n in distance_only)
    for name in distance_only:
        for causal in (False, True):
            _, scheme, _ = make_scheme(name, causal=causal)
            table = scheme.bias_1d(6, 9)
            if table is None:  # a causal variant may depend on the query position too (FIRE)
                assert causal
                continue
            assert table.shape == (H, 6 + 9 - 1)
            full = scheme.bias(6, 9)
            index = torch.arange(9)[None, :] - torch.arange(3, 9)[:, None] + 8
            assert torch.allclose(full, table[:, index])


@pytest.mark.parametrize("name,value", [c for c in CASES if SCHEMES[c[0]].cost != "none"])
def test_gradients_reach_every_scheme_parameter(name, value):
    _, scheme, projections = make_scheme(name, value=value)
    q, k, v, padding = inputs(9, 9)
    q.requires_grad_(True)
    out = run(scheme, projections, q, k, v, padding, False, "eager", D**-0.5)
    (out**2).sum().backward()
    params = dict(scheme.named_parameters())
    for pname, p in params.items():
        if pname == "L_multiplier":  # FIRE's threshold only matters once n exceeds it
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    assert q.grad.abs().sum() > 0
    if REFERENCES[name].uses_projections:  # a shared table projected by the layer's own q/k projections
        assert projections[0].weight.grad.abs().sum() > 0 and projections[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_gradients_match_across_backends(impl):
    for name in [n for n in SCHEMES if has_parameters(n)]:
        grads = {}
        for backend in ("eager", impl):
            _, scheme, projections = make_scheme(name, seed=5)
            q, k, v, padding = inputs(8, 8)
            out = run(scheme, projections, q, k, v, padding, False, backend, D**-0.5)
            out.sum().backward()
            grads[backend] = [p.grad.clone() for p in scheme.parameters()]
        for a, b in zip(grads["eager"], grads[impl]):
            assert (a - b).abs().max() <= 1e-4 * max(1.0, b.abs().max().item()), name  # fp32 sums, as the blocked test


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Lq,Lk", [(8, 8), (5, 12)])
def test_flex_score_mod_tables_receive_the_eager_gradients(causal, Lq, Lk):
    """Flex's score_mod reads the scheme's learnable (H, Lq + Lk − 1) table as a captured tensor: backward
    through flex (uncompiled on CPU; compiled on GPU, where flex supports captured tensors that need grad)
    gives the scheme parameters and q/k/v the eager gradients, padded, causal, and with q_len < k_len."""
    names = [n for n in SCHEMES if SCHEMES[n].distance_only and has_parameters(n)]
    assert {"t5", "kerple", "fire"} <= set(names)
    for name in names:
        grads = {}
        for backend in ("eager", "flex_attention"):
            _, scheme, projections = make_scheme(name, causal=causal, seed=5)
            q, k, v, padding = inputs(Lq, Lk)
            for t in (q, k, v):
                t.requires_grad_(True)
            out = run(scheme, projections, q, k, v, padding, causal, backend, D**-0.5)
            weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
            (out * weight).sum().backward()
            grads[backend] = {
                **{n: p.grad.clone() for n, p in scheme.named_parameters() if p.grad is not None},
                "q": q.grad,
                "k": k.grad,
                "v": v.grad,
            }
        assert grads["flex_attention"].keys() == grads["eager"].keys(), name
        assert any(g.abs().sum() > 0 for n, g in grads["eager"].items() if n not in "qkv"), name
        for key, want in grads["eager"].items():
            got = grads["flex_attention"][key]
            assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item()), (name, key)


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize(
    "N,M,x_start,other_start,tile", [(13, 13, 0, 0, 4), (5, 17, 12, 0, 3), (17, 5, 0, 12, 64), (9, 9, 0, 0, 1)]
)
def test_relative_dot_tiled_and_clipped_paths_equal_naive(per_head, N, M, x_start, other_start, tile):
    """out[n, m] = x_n · T(p_n − o_m), through tiles (any tile size, ragged last tile) and through the
    clipped path (one product with the K clamped rows), against a per-pair loop."""
    from hf_relpos.position_kernels import relative_dot

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, H, N, D, generator=g)
    lo, hi = -6, 4
    table = torch.randn(H, hi - lo + 1, D, generator=g) if per_head else torch.randn(hi - lo + 1, D, generator=g)
    lookup = (
        (lambda delta: table[:, delta.clamp(lo, hi) - lo])
        if per_head
        else (lambda delta: table[delta.clamp(lo, hi) - lo])
    )
    want = torch.zeros(2, H, N, M)
    for n in range(N):
        for m in range(M):
            row = min(max((x_start + n) - (other_start + m), lo), hi) - lo
            want[:, :, n, m] = (x[:, :, n] * (table[:, row] if per_head else table[row])).sum(-1)
    tiled = relative_dot(x, lookup, x_start, other_start, M, tile=tile)
    clipped = relative_dot(x, lookup, x_start, other_start, M, tile=max(tile, 64), clip=(lo, hi))
    assert (tiled - want).abs().max() <= TOL
    assert (clipped - want).abs().max() <= TOL
    # gradients (x and the table) of both paths against autograd through the per-pair rows
    x.requires_grad_(True)
    table.requires_grad_(True)
    row = ((x_start + torch.arange(N))[:, None] - (other_start + torch.arange(M))[None, :]).clamp(lo, hi) - lo
    reference = (x[:, :, :, None] * (table[:, row] if per_head else table[row])).sum(-1)
    weight = torch.randn(want.shape, generator=g)
    expected = torch.autograd.grad((reference * weight).sum(), (x, table))
    for out in (
        relative_dot(x, lookup, x_start, other_start, M, tile=tile),
        relative_dot(x, lookup, x_start, other_start, M, tile=max(tile, 64), clip=(lo, hi)),
    ):
        for a, b in zip(torch.autograd.grad((out * weight).sum(), (x, table)), expected):
            assert (a - b).abs().max() <= 10 * TOL  # sums of up to N·M products


# sdpa takes query blocks for long inputs with a content term or a learned bias
BLOCKED = [n for n, c in SCHEMES.items() if c.cost == "content" or (c.cost == "bias" and has_parameters(n))]


@pytest.mark.parametrize("name", BLOCKED)
@pytest.mark.parametrize("causal", [False, True])
def test_blocked_sdpa_path_equals_reference_with_gradients(name, causal, monkeypatch):
    """Long inputs of content and learned-bias schemes go through query blocks (FusedContentAttention for a
    content term, checkpointed blocks otherwise): same outputs as the naive reference, same gradients of
    q, k, v and the scheme's parameters as eager, blocks not dividing Lq, q_len < k_len, padding."""
    engine = sys.modules["hf_relpos.attention_engine"]
    monkeypatch.setattr(engine, "BLOCKED_MIN_SCORE_BYTES", 1)  # every input counts as long here
    monkeypatch.setattr(engine, "BLOCK_SCORE_BYTES", 2 * H * 13 * 4 * 16)  # blocks of 16 rows (Lk = 13)
    cfg, scheme, projections = make_scheme(name, causal=causal, seed=7)
    q, k, _, _ = inputs(13, 13)
    assert engine.use_blocks(q, k) is None  # one block would hold every query: no blocking
    monkeypatch.setattr(engine, "BLOCK_SCORE_BYTES", 2 * H * 24 * 4 * 5)  # 5 rows: blocks 5, 5, ... (Lk = 24)
    real_checkpoint, real_fused = engine.checkpoint, engine.FusedContentAttention.apply
    fused = engine.use_fused_content(q, scheme, 0.0)
    assert fused == (scheme.uses_content and not scheme.uses_values)
    for Lq, Lk in [(24, 24), (11, 24)]:
        q, k, v, padding = inputs(Lq, Lk)
        assert engine.use_blocks(q, k) is not None
        with torch.no_grad():
            want = naive_attention(name, cfg, scheme, projections, q, k, v, padding, causal, D**-0.5)
        grads = {}
        calls = []
        monkeypatch.setattr(
            engine, "checkpoint", lambda *a, **kw: calls.append("checkpoint") or real_checkpoint(*a, **kw)
        )
        monkeypatch.setattr(engine.FusedContentAttention, "apply", lambda *a: calls.append("fused") or real_fused(*a))
        for impl in ("eager", "sdpa"):  # sdpa takes the blocked path, eager never does
            scheme.zero_grad(set_to_none=True)
            for module in projections or ():
                module.zero_grad(set_to_none=True)
            leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
            out = run(scheme, projections, *leaves, padding, causal, impl, D**-0.5)
            assert (out.detach() - want).abs().max().item() <= TOL, impl
            (out**2 * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
            grads[impl] = [t.grad for t in leaves] + [p.grad for p in scheme.parameters()]
            grads[impl] += [p.grad for m in projections or () for p in m.parameters()]
            if impl == "eager":
                assert calls == []
            else:  # one fused call, or one checkpointed region per block
                assert calls == (["fused"] if fused else ["checkpoint"] * -(-Lq // 5))
        for a, b in zip(grads["eager"], grads["sdpa"], strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert (a - b).abs().max() <= 1e-4


SHIFT_INVARIANT = [c for c in CASES if SCHEMES[c[0]].shift_invariant]


@pytest.mark.parametrize("name,value", SHIFT_INVARIANT)
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_left_padding_shift_does_not_change_real_tokens(name, value, impl):
    """Prepending masked positions moves every real token's absolute index; j − i is unchanged."""
    _, scheme, projections = make_scheme(name, value=value)
    q, k, v, _ = inputs(10, 10, B=1)
    pad = 5
    q2, k2, v2 = (torch.cat([torch.randn(1, H, pad, D), t], dim=2) for t in (q, k, v))
    padding = torch.cat([torch.zeros(1, pad), torch.ones(1, 10)], dim=1)
    with torch.no_grad():
        base = run(scheme, projections, q, k, v, None, False, impl, D**-0.5)
        shifted = run(scheme, projections, q2, k2, v2, padding, False, impl, D**-0.5)[:, pad:]
    assert (base - shifted).abs().max().item() <= TOL


@pytest.mark.parametrize("name,value", CASES)
def test_right_padding_does_not_change_real_tokens(name, value):
    """FIRE normalises by max(threshold, key length): below the threshold padding is invisible."""
    cfg, scheme, projections = make_scheme(name, value=value)
    if hasattr(scheme, "L_multiplier"):
        with torch.no_grad():
            scheme.L_multiplier.fill_(4.0)  # threshold 20 ≥ padded length
    q, k, v, _ = inputs(10, 10, B=1)
    q2, k2, v2 = (torch.cat([t, torch.randn(1, H, 6, D)], dim=2) for t in (q, k, v))
    padding = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], dim=1)
    with torch.no_grad():
        base = run(scheme, projections, q, k, v, None, False, "eager", D**-0.5)
        padded = run(scheme, projections, q2, k2, v2, padding, False, "eager", D**-0.5)[:, :10]
    assert (base - padded).abs().max().item() <= TOL


@pytest.mark.parametrize("name", [n for n, c in SCHEMES.items() if c.cost != "none"])
def test_sequences_longer_than_every_table(name):
    """No index errors past max_position_embeddings, clip or bucket ranges (HF issue #17026)."""
    _, scheme, projections = make_scheme(name)
    q, k, v, padding = inputs(60, 60)  # max_position_embeddings=10, clip 3, max distance 12/20
    with torch.no_grad():
        out = run(scheme, projections, q, k, v, padding, False, "sdpa", D**-0.5)
    assert out.shape == (2, 60, H, D) and torch.isfinite(out).all()


def test_shared_bias_is_computed_once_per_forward():
    _, scheme, _ = make_scheme("t5")
    calls = []
    original = scheme.bias
    scheme.bias = lambda *a: calls.append(a) or original(*a)
    memo = {}
    q, k, v, padding = inputs(8, 8)
    for _ in range(3):  # three layers sharing one scheme
        run(scheme, None, q, k, v, padding, False, "sdpa", D**-0.5, memo=memo)
    assert len(calls) == 1


def test_shaw_kq_equals_v4_formula_inside_range():
    """transformers 4.x relative_key_query: einsum over an explicit (L, L, d) distance tensor."""
    cfg, scheme, _ = make_scheme("shaw_kq")
    L = 9  # < max_position_embeddings = 10, where 4.x runs
    q, k, _, _ = inputs(L, L)
    pos = torch.arange(L)
    distance = pos[:, None] - pos[None, :]
    emb = scheme.distance_embedding(distance + P - 1)
    want = torch.einsum("bhld,lrd->bhlr", q, emb) + torch.einsum("bhrd,lrd->bhlr", k, emb)
    assert (scheme.content(q, k) - want).abs().max() <= TOL


def test_alibi_slopes_non_power_of_two():
    # H = 6: slopes of 4 heads, then every other slope of 8 heads (Press et al.'s reference code)
    want = [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
    assert torch.allclose(alibi_slopes(6), torch.tensor(want))
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** (-(h + 1)) for h in range(8)]))


def test_shared_by_default_and_override():
    for name, cls in SCHEMES.items():
        assert is_shared(name, None) == cls.shared_by_default
        assert not is_shared(name, True) and is_shared(name, False)
    assert any(c.shared_by_default for c in SCHEMES.values()) and not all(c.shared_by_default for c in SCHEMES.values())


@pytest.mark.parametrize("name", list(SCHEMES))
def test_zero_init_makes_exact_schemes_add_nothing(name):
    """A scheme that declares ``exact_from_absolute`` adds nothing after ``zero_init_`` (a converted
    absolute checkpoint starts exact), and its parameters still get gradients."""
    _, scheme, projections = make_scheme(name, value=name in SWITCHED)
    scheme.zero_init_()
    q, k, v, padding = inputs(9, 9)
    with torch.no_grad():
        got = run(scheme, projections, q, k, v, padding, False, "eager", D**-0.5)
        plain = run(NoRelativePosition(), projections, q, k, v, padding, False, "eager", D**-0.5)
    exact = (got - plain).abs().max().item() <= TOL
    assert exact == SCHEMES[name].exact_from_absolute, (name, exact)
    if exact and any(True for _ in scheme.parameters()):
        run(scheme, projections, q.requires_grad_(True), k, v, padding, False, "eager", D**-0.5).sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in scheme.parameters())


@pytest.mark.parametrize(
    "fields,needle",
    [
        (dict(relative_position="relative_key"), "relative_position='relative_key'"),
        (dict(absolute_position="rope"), "absolute_position='rope'"),
        (dict(relative_position="t5", relative_attention_num_buckets=-4), "relative_attention_num_buckets=-4"),
        (dict(relative_position="t5", relative_attention_num_buckets=7), "relative_attention_num_buckets=7"),
        (dict(relative_position="shaw", max_relative_position=0), "max_relative_position=0"),
        (dict(relative_position="rotary", rope_theta=0), "rope_theta=0"),
        (dict(relative_position="t5", relative_value=True), "relative_value=True"),
        (dict(relative_position_per_layer="yes"), "relative_position_per_layer='yes'"),
    ],
)
def test_bad_configuration_names_field_value_and_choices(fields, needle):
    with pytest.raises(ValueError) as err:
        build_relative_position(SchemeFields(**fields), H, D, HIDDEN)
    message = str(err.value)
    assert needle in message
    if needle.startswith("relative_position="):
        assert "shaw_kq" in message and "alibi" in message  # lists the valid choices


def test_unknown_backend_is_rejected():
    _, scheme, _ = make_scheme("t5")
    q, k, v, _ = inputs(4, 4)
    with pytest.raises(ValueError, match="attn_implementation='flash'.*eager, sdpa, flex_attention"):
        relpos_attention(nn.Module(), q, k, v, None, scheme=scheme, scaling=1.0, implementation="flash")


def test_value_side_under_sdpa_falls_back_to_eager_with_same_numbers():
    _, scheme, projections = make_scheme("shaw", value=True)
    q, k, v, padding = inputs(8, 8)
    with torch.no_grad():
        eager = run(scheme, projections, q, k, v, padding, False, "eager", D**-0.5)
        sdpa = run(scheme, projections, q, k, v, padding, False, "sdpa", D**-0.5)
    assert torch.equal(eager, sdpa)


@pytest.mark.parametrize(
    "flat,causal,needle",
    [  # each crashed at the first forward before (ZeroDivisionError, IndexError), naming no field
        (dict(relative_attention_num_buckets=2), False, "relative_attention_num_buckets=2"),
        (
            dict(relative_attention_num_buckets=8, relative_attention_max_distance=2),
            False,
            "relative_attention_max_distance=2",
        ),
        (
            dict(relative_attention_num_buckets=8, relative_attention_max_distance=4),
            True,
            "relative_attention_max_distance=4",
        ),
    ],
)
def test_t5_buckets_that_crashed_the_forward_are_rejected_when_configured(flat, causal, needle):
    from hf_relpos import RelPosBertConfig, RelPosT5Config

    with pytest.raises(ValueError, match="choose an") as err:
        resolve_scheme_parameters("t5", flat=flat, causal=causal)
    assert needle in str(err.value)
    with pytest.raises(ValueError, match=needle):  # the T5 decoder uses the causal variant
        RelPosT5Config(d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=4, **flat)
    if not causal:
        with pytest.raises(ValueError, match=needle):
            RelPosBertConfig(hidden_size=32, num_attention_heads=4, relative_position="t5", **flat)


@pytest.mark.parametrize("causal", [False, True])
def test_smallest_accepted_t5_buckets_run_and_equal_the_reference(causal):
    params = resolve_scheme_parameters("t5", {"num_buckets": 4, "max_distance": 3 if causal else 2}, causal=causal)
    scheme = build_scheme("t5", params, H, D, HIDDEN, causal=causal)
    q, k, v, padding = inputs(20, 20)
    with torch.no_grad():
        got = run(scheme, None, q, k, v, padding, causal, "sdpa", D**-0.5)
        want = naive_attention("t5", params, scheme, None, q, k, v, padding, causal, D**-0.5)
    assert (got - want).abs().max().item() <= TOL
