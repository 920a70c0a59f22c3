"""Local (sliding-window) layers, issue 29: ``layer_types`` / ``sliding_window`` in both families, every scheme and
backend against a naive masked reference (|i − j| ≤ w written plainly), with gradients and padding; the O(L·w)
banded path equal to the dense one; receptive fields; per-layer-type scheme parameters; save/load; compile."""

import pytest
import torch

from hf_relpos import RelPosBertConfig, RelPosBertModel, RelPosT5Config, RelPosT5EncoderModel
from hf_relpos.attention_engine import _dense_position_bias, _scaled_and_rotated, build_attention_mask
from hf_relpos.local_attention import _mask_windows, band_mask, banded_attention, use_banded
from hf_relpos.relative_positions import SCHEMES, build_scheme
from hf_relpos.scheme_config import resolve_scheme_parameters

pytestmark = pytest.mark.usefixtures("one_thread")

H, D = 4, 8
LOCAL3 = ["full_attention", "sliding_attention", "sliding_attention"]
NOT_VALUE_SIDE = [n for n in SCHEMES if n != "none"]


def naive_band(q_len, k_len, window):
    """(Lq, Lk) bool: key j visible to query i (queries the last Lq positions), written plainly."""
    allowed = torch.zeros(q_len, k_len, dtype=torch.bool)
    for i in range(q_len):
        for j in range(k_len):
            allowed[i, j] = abs((k_len - q_len + i) - j) <= window
    return allowed


def scheme_with_weights(name, seed=0, **params):
    torch.manual_seed(seed)
    scheme = build_scheme(
        name, resolve_scheme_parameters(name, params or None), H, D, H * D, max_position_embeddings=128
    ).double()
    for p in scheme.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return scheme


def dense_reference(query, key, value, padding, scheme, scaling, window, projections):
    """softmax(q·kᵀ·scale + position terms + padding, masked to the naive band) · v."""
    q, k, scale = _scaled_and_rotated(query, key, scheme, scaling)
    scores = q @ k.transpose(-1, -2) * scale
    term = _dense_position_bias(q, k, scheme, scale, None, projections)
    if term is not None:
        scores = scores + term
    allowed = naive_band(q.shape[-2], k.shape[-2], window)
    if padding is not None:
        allowed = allowed & padding.bool()[:, None, None, :]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return (torch.softmax(scores, -1) @ value).transpose(1, 2)


@pytest.mark.parametrize("name", NOT_VALUE_SIDE)
@pytest.mark.parametrize("per_query_mask", [False, True])
def test_banded_equals_naive_band_with_gradients(name, per_query_mask):
    """The O(L·w) path (blocks of 16 rows, w = 5, L = 70: a partial last block, padding) == the naive band, outputs and
    the gradients of q, k, v and the scheme's parameters (fp64)."""
    scheme = scheme_with_weights(name)
    torch.manual_seed(1)
    B, L, w = 2, 70, 5
    projections = tuple(torch.nn.Linear(H * D, H * D).double() for _ in range(2))
    q, k, v = (torch.randn(B, H, L, D, dtype=torch.float64, requires_grad=True) for _ in range(3))
    padding = torch.ones(B, L)
    padding[1, 52:] = 0
    if per_query_mask:  # eager_mask's (B, 1, L, L) form, as the models build it
        mask = build_attention_mask(padding, L, L, dtype=torch.float64)
    else:  # the (B, 1, 1, L) padding form
        mask = (1 - padding)[:, None, None, :].double() * torch.finfo(torch.float64).min
    qq, kk, scale = _scaled_and_rotated(q, k, scheme, 0.3)
    out = banded_attention(qq, kk, v, mask, scale, scheme, w, projections=projections, block=16)
    ref = dense_reference(q, k, v, padding, scheme, 0.3, w, projections)
    real = padding.bool()[:, :, None, None].expand_as(ref)  # padded queries' outputs are never read
    assert torch.allclose(out[real], ref[real], atol=1e-10)
    weights = [q, k, v, *scheme.parameters(), *(p for m in projections for p in m.parameters())]
    grad = torch.randn_like(ref) * real
    got = torch.autograd.grad((out * grad).sum(), weights, allow_unused=True, retain_graph=True)
    want = torch.autograd.grad((ref * grad).sum(), weights, allow_unused=True)
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-9), (a - b).abs().max()


def test_band_mask_is_the_naive_band_and_mask_windows_read_it():
    for q_len, k_len, w in ((9, 9, 2), (4, 11, 3)):
        band = band_mask(q_len, k_len, w) == 0
        assert torch.equal(band[0, 0], naive_band(q_len, k_len, w))
    L, w, block = 23, 3, 8
    n = -(-L // block)
    mask = torch.zeros(1, 1, L, L)
    mask[..., 5, 7] = torch.finfo(mask.dtype).min  # one hidden pair
    keep = _mask_windows(mask, w, block, n)  # (1, n, block, block + 2w)
    assert keep.shape == (1, n, block, block + 2 * w)
    # block 0, row 5, key 7 sits at window column 7 + w
    assert not keep[0, 0, 5, 7 + w] and keep[0, 0, 5, 6 + w] and keep[0, 0, 4, 7 + w]


def tiny_bert(name="t5", layer_types=LOCAL3, window=4, **extra):
    return RelPosBertConfig(
        vocab_size=60,
        hidden_size=H * D,
        num_hidden_layers=len(layer_types),
        num_attention_heads=H,
        intermediate_size=48,
        relative_position=name,
        layer_types=layer_types,
        sliding_window=window,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=128,
        **extra,
    )


def _run(config, impl, ids, mask, seed=0):
    torch.manual_seed(seed)
    model = RelPosBertModel(config).eval()
    model.config._attn_implementation = impl
    return model, model(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("name", list(SCHEMES))
def test_backends_agree_on_local_layers(name):
    """eager (band mask), sdpa (banded blocks: L = 300 ≥ 2 blocks of 32) and flex give one model's numbers."""
    config = tiny_bert(
        name,
        window=6,
        relative_position_parameters={"directional": True} if "directional" in SCHEMES[name].defaults else None,
    )
    torch.manual_seed(3)
    ids = torch.randint(5, 60, (2, 300))
    mask = torch.ones(2, 300, dtype=torch.long)
    mask[1, 250:] = 0
    outs = {impl: _run(config, impl, ids, mask)[1] for impl in ("eager", "sdpa", "flex_attention")}
    for impl in ("sdpa", "flex_attention"):
        assert torch.allclose(outs[impl][0], outs["eager"][0], atol=2e-5), (
            impl,
            (outs[impl] - outs["eager"]).abs().max(),
        )
        assert torch.allclose(outs[impl][1, :250], outs["eager"][1, :250], atol=2e-5)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_receptive_field_of_local_layers(impl):
    """Two local layers of w = 4: the output at i depends on the inputs within 8 positions, not beyond (the
    first layer is full in LOCAL3, so it is left out here)."""
    config = tiny_bert("t5", layer_types=["sliding_attention", "sliding_attention"], window=4)
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (1, 300))
    model, base = _run(config, impl, ids, None)
    changed = ids.clone()
    changed[0, 150] = 4 if ids[0, 150] != 4 else 5
    after = model(input_ids=changed).last_hidden_state
    moved = (after - base).abs().amax(-1)[0] > 1e-6
    assert moved[142:159].all() and not moved[:142].any() and not moved[159:].any()


def test_window_covering_the_input_is_full_attention():
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (2, 40))
    full = _run(tiny_bert("deberta", layer_types=["full_attention"] * 3), "sdpa", ids, None)[1]
    local = _run(tiny_bert("deberta", window=40), "sdpa", ids, None)[1]
    assert torch.allclose(full, local, atol=1e-6)
    narrow = _run(tiny_bert("deberta", window=3), "sdpa", ids, None)[1]
    assert not torch.allclose(full, narrow, atol=1e-3)


def test_banded_path_is_taken_for_long_local_layers(monkeypatch):
    import hf_relpos.attention_engine as engine

    calls = []
    real = engine.banded_attention
    monkeypatch.setattr(engine, "banded_attention", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    torch.manual_seed(0)
    _run(tiny_bert("alibi", window=8), "sdpa", torch.randint(5, 60, (1, 200)), None)
    assert len(calls) == 2  # the two local layers; the full one is not banded
    scheme = scheme_with_weights("t5")
    q = torch.zeros(1, H, 200, D)
    assert use_banded(q, q, scheme, 8) and not use_banded(q, q[:, :, :50], scheme, 8)
    assert not use_banded(q[:, :, :40], q[:, :, :40], scheme, 8)  # one block: dense is cheaper


@pytest.mark.parametrize("name", list(SCHEMES))
def test_training_gradients_equal_across_backends(name):
    """eager (band mask) and sdpa (banded blocks at L = 120) give the same gradient for every parameter."""
    config = tiny_bert(name, window=5)
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (2, 120))
    grads = {}
    for impl in ("eager", "sdpa"):
        torch.manual_seed(0)
        model = RelPosBertModel(config).train()
        model.config._attn_implementation = impl
        model(input_ids=ids).last_hidden_state.square().mean().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for n, g in grads["eager"].items():
        assert torch.allclose(g, grads["sdpa"][n], atol=1e-5), n


def test_local_scheme_parameters_per_layer_type(tmp_path):
    """ModernBERT's pattern: rotary theta 160k on global layers, 10k on local ones; t5 shared by layers gets a second
    shared table for the local layers only when asked; the config round-trips."""
    config = tiny_bert(
        "rotary",
        relative_position_parameters={"theta": 160000.0},
        local_relative_position_parameters={"theta": 10000.0},
    )
    model = RelPosBertModel(config)
    layers = model.encoder.layer
    thetas = [model.encoder._schemes[i].params["theta"] for i in range(3)]
    assert thetas == [160000.0, 10000.0, 10000.0] and layers[1].attention.self.sliding_window == 4
    assert layers[0].attention.self.sliding_window is None
    shared = RelPosBertModel(tiny_bert("t5", local_relative_position_parameters={"max_distance": 16}))
    names = {n.split(".")[0] for n, _ in shared.encoder.named_parameters() if "relative_position" in n}
    assert names == {"relative_position", "local_relative_position"}
    model.save_pretrained(tmp_path)
    loaded = RelPosBertConfig.from_pretrained(tmp_path)
    assert loaded.layer_types == LOCAL3 and loaded.local_relative_position_parameters == {"theta": 10000.0}
    with pytest.raises(ValueError, match="local_relative_position_parameters has 'thetaa'"):
        tiny_bert("rotary", local_relative_position_parameters={"thetaa": 1.0})
    with pytest.raises(ValueError, match=r"layer_types\[1\]='local'"):
        tiny_bert("t5", layer_types=["full_attention", "local", "full_attention"])
    with pytest.raises(ValueError, match="sliding_window=0"):
        tiny_bert("t5", window=0)


def test_default_is_all_full_and_old_configs_load_full():
    config = RelPosBertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=48)
    assert config.layer_types == ["full_attention"] * 2
    config.num_hidden_layers = 3  # the default follows the depth
    config.validate()
    assert config.layer_types == ["full_attention"] * 3
    old = {k: v for k, v in config.to_dict().items() if k not in ("layer_types", "sliding_window")}
    assert RelPosBertConfig.from_dict(old).layer_types == ["full_attention"] * 3


def test_t5_encoder_local_layers_and_decoder_cache_unaffected():
    config = RelPosT5Config(
        vocab_size=60,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=3,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        encoder_layer_types=LOCAL3,
        encoder_sliding_window=4,
    )
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (1, 200))
    outs = {}
    for impl in ("eager", "sdpa", "flex_attention"):
        torch.manual_seed(0)
        model = RelPosT5EncoderModel(config).eval()
        model.config._attn_implementation = impl
        outs[impl] = model(input_ids=ids).last_hidden_state
    assert torch.allclose(outs["eager"], outs["sdpa"], atol=2e-5)
    assert torch.allclose(outs["eager"], outs["flex_attention"], atol=2e-5)
    assert not hasattr(config, "layer_types")  # transformers would build sliding decoder caches from it
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    assert all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)


def test_compile_traces_local_layers_without_graph_breaks():
    config = tiny_bert("alibi", window=8, relative_position_parameters={"directional": True})
    torch.manual_seed(0)
    model = RelPosBertModel(config).eval()
    ids = torch.randint(5, 60, (1, 200))
    with torch.no_grad():
        eager = model(input_ids=ids).last_hidden_state
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(input_ids=ids).last_hidden_state
    assert torch.allclose(eager, compiled, atol=1e-5)


def test_local_layers_scheme_parameters_join_the_position_learning_rate_group():
    from hf_relpos.training.trainer import is_position_parameter

    model = RelPosBertModel(tiny_bert("t5", local_relative_position_parameters={"max_distance": 16}))
    position = sorted(n for n, _ in model.named_parameters() if is_position_parameter(n))
    assert position == [
        "encoder.local_relative_position.relative_attention_bias.weight",
        "encoder.relative_position.relative_attention_bias.weight",
    ]


def test_local_layers_travel_as_remote_code(tmp_path):
    """A saved checkpoint with local layers carries local_attention.py and loads where hf_relpos is absent, with the
    same outputs on the banded path (L = 200)."""
    from helpers import run_without_hf_relpos

    config = tiny_bert("rotary", local_relative_position_parameters={"theta": 500.0})
    torch.manual_seed(0)
    model = RelPosBertModel(config).eval()
    model.save_pretrained(tmp_path / "local")
    assert {"local_attention.py", "compat.py"} <= {p.name for p in (tmp_path / "local").iterdir()}
    ids = torch.randint(5, 60, (1, 200))
    with torch.no_grad():
        expected = model(input_ids=ids).last_hidden_state
    result = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "local")!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            out = model(input_ids=torch.tensor({ids.tolist()!r})).last_hidden_state
        print(json.dumps({{"out": out.tolist(), "module": type(model).__module__}}))
        """,
        cwd=tmp_path,
    )
    assert "transformers_modules" in result["module"]
    assert torch.allclose(torch.tensor(result["out"]), expected, atol=1e-5)


@pytest.mark.parametrize("impl", ["eager", "sdpa", "flex_attention"])
@pytest.mark.parametrize("name", ["t5", "deberta", "rotary"])
def test_fewer_queries_than_keys_take_the_band_at_their_positions(impl, name):
    """Queries the last Lq of Lk positions (a decoder step with a cache): the band is |i + Lk − Lq − j| ≤ w."""
    from hf_relpos.attention_engine import relpos_attention

    scheme = scheme_with_weights(name)
    torch.manual_seed(2)
    q = torch.randn(1, H, 6, D, dtype=torch.float64)
    k, v = (torch.randn(1, H, 20, D, dtype=torch.float64) for _ in range(2))
    projections = tuple(torch.nn.Linear(H * D, H * D).double() for _ in range(2))
    out, _ = relpos_attention(
        None, q, k, v, None, scheme=scheme, scaling=0.3, projections=projections, implementation=impl, sliding_window=3
    )
    ref = dense_reference(q, k, v, None, scheme, 0.3, 3, projections)
    assert torch.allclose(out, ref, atol=1e-10)
