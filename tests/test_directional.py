"""Direction-aware distance biases (issue 16): ``directional`` for alibi, kerple and fire.

The per-pair references for both directions live in tests/test_engine.py (``ref_alibi`` etc., run for
every case of ``CASES``, which holds the directional variants); here: what the option means by hand,
old configs loading symmetric, the warning, and the models end to end.
"""

import json
import logging

import pytest
import torch

from hf_relpos import RelPosBertConfig, RelPosBertForMaskedLM, RelPosT5Config, RelPosT5ForConditionalGeneration
from hf_relpos.position_kernels import alibi_slopes
from hf_relpos.relative_positions import SCHEMES, build_scheme, build_stack_schemes
from hf_relpos.scheme_config import resolve_scheme_parameters

pytestmark = pytest.mark.usefixtures("one_thread")

DIRECTIONAL = [n for n, c in SCHEMES.items() if "directional" in c.defaults]
# chosen from benchmarks/reports/extrapolation_directional.json (docs/directional.md): directional by default
# where it helps the position task and costs ≤ 0.02 anywhere; alibi's reversed slopes cost 0.04 at 8×
NEW_DEFAULT = {"alibi": False, "kerple": True, "fire": True}
H = 4
TINY_BERT = dict(
    vocab_size=50,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=H,
    intermediate_size=48,
    max_position_embeddings=32,
)
TINY_T5 = dict(vocab_size=50, d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=H)


def large_scheme_weights(model):
    """Random scheme parameters large enough that the bias matters at BERT's small init."""
    with torch.no_grad():
        for p in model.bert.encoder.relative_position.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model


def scheme(name, directional, causal=False):
    params = resolve_scheme_parameters(name, {"directional": directional}, causal=causal)
    return build_scheme(name, params, H, 8, 32, causal=causal)


def test_the_three_distance_biases_have_the_option_with_the_measured_defaults():
    assert set(DIRECTIONAL) == set(NEW_DEFAULT)
    for name in DIRECTIONAL:
        cls = SCHEMES[name]
        assert cls.defaults["directional"] is NEW_DEFAULT[name] and cls.legacy == {"directional": False}
        assert cls.distance_only and cls.cost == "bias"
        with pytest.raises(ValueError, match=r"relative_position_parameters\['directional'\]='yes'.*True, False"):
            resolve_scheme_parameters(name, {"directional": "yes"})


def test_alibi_by_hand():
    """Keys before the query: −m_h·(i − j); after it: the slopes in reverse head order."""
    m = alibi_slopes(H)
    table = scheme("alibi", True).bias_1d(1, 5)  # the query is the last of 5 positions: j − i ∈ [−4, 0]
    assert torch.allclose(table, -m[:, None] * torch.tensor([4.0, 3, 2, 1, 0]))
    full = scheme("alibi", True).bias(5, 5)  # query 1 (second row), keys 0 and 4
    assert torch.allclose(full[:, 1, 0], -m * 1) and torch.allclose(full[:, 1, 4], -m.flip(0) * 3)
    sym = scheme("alibi", False).bias(5, 5)
    assert torch.allclose(sym[:, 1, 4], -m * 3) and torch.allclose(sym, sym.transpose(1, 2))
    # causal: unchanged whatever the option (only keys before the query count)
    assert torch.equal(
        scheme("alibi", True, causal=True).bias(5, 5).tril(), scheme("alibi", False, causal=True).bias(5, 5).tril()
    )


@pytest.mark.parametrize("name", DIRECTIONAL)
def test_directional_bias_tells_before_from_after_and_symmetric_does_not(name):
    for directional in (False, True):
        torch.manual_seed(0)
        b = scheme(name, directional).bias(9, 9)
        mirror = (b - b.transpose(1, 2)).abs().max().item()  # b(i, j) vs b(j, i): the same |i − j|
        assert (mirror > 1e-4) == directional, (name, directional, mirror)


@pytest.mark.parametrize("name", DIRECTIONAL)
def test_causal_variant_is_unchanged_and_has_no_extra_parameters(name):
    torch.manual_seed(0)
    on = scheme(name, True, causal=True)
    torch.manual_seed(0)
    off = scheme(name, False, causal=True)
    assert [n for n, _ in on.named_parameters()] == [n for n, _ in off.named_parameters()]
    assert torch.equal(on.bias(6, 6).tril(), off.bias(6, 6).tril())


def test_kerple_directional_adds_one_pair_per_head_and_starts_as_directional_alibi_shape():
    k = scheme("kerple", True)
    assert {n: tuple(p.shape) for n, p in k.named_parameters()} == {
        n: (H,) for n in ("r1", "r2", "r1_after", "r2_after")
    }
    assert sum(p.numel() for p in scheme("fire", True).parameters()) == sum(
        p.numel() for p in scheme("fire", False).parameters()
    )
    # at init r1 = 1, r2 = ALiBi slopes before, reversed after
    b = k.bias_1d(4, 4)  # j − i from −3 to 3
    m = alibi_slopes(H)
    assert torch.allclose(b[:, 0], -torch.log1p(3 * m), atol=1e-6) and torch.allclose(
        b[:, -1], -torch.log1p(3 * m.flip(0)), atol=1e-6
    )


def test_fire_directional_starts_exact_after_zero_init():
    f = scheme("fire", True)
    f.zero_init_()
    assert torch.equal(f.bias(7, 7), torch.zeros(H, 7, 7))
    assert SCHEMES["fire"].exact_from_absolute


# ------------------------------------------------------------------------------------ old configs


@pytest.mark.parametrize("name", DIRECTIONAL)
def test_configs_saved_without_the_key_load_symmetric(tmp_path, name):
    """A config built in code gets the default; a saved config that does not name the key (0.1 flat
    fields, or a complete 0.2 dict) keeps the symmetric behaviour it was trained with."""
    assert (
        RelPosBertConfig(relative_position=name, **TINY_BERT).relative_position_parameters["directional"]
        is NEW_DEFAULT[name]
    )
    config = RelPosBertConfig(relative_position=name, relative_position_parameters={"directional": True}, **TINY_BERT)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["relative_position_parameters"]["directional"] is True  # written out: loads as saved
    assert RelPosBertConfig.from_pretrained(tmp_path).relative_position_parameters["directional"] is True
    del saved["relative_position_parameters"]["directional"]  # what a config saved before the key holds
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert RelPosBertConfig.from_pretrained(tmp_path).relative_position_parameters["directional"] is False


def test_saved_flag_and_shape_guess():
    cls = SCHEMES["fire"]
    complete_old = {"mlp_width": 32, "init_c": 0.1, "init_threshold": 512.0}
    assert cls.saved_before(complete_old, None) and not cls.saved_before({"mlp_width": 16}, None)
    assert cls.saved_before({"mlp_width": 16}, None, saved=True) and not cls.saved_before(
        complete_old, None, saved=False
    )
    assert not cls.saved_before({**complete_old, "directional": True}, None, saved=True)
    v01 = {"fire_mlp_width": 32, "fire_init_c": 0.1, "fire_init_threshold": 5.0}  # 0.1 saved every flat field
    assert cls.saved_before(None, v01) and not cls.saved_before(None, {"fire_mlp_width": 32})
    assert resolve_scheme_parameters("kerple", None, saved=True) == {"directional": False}
    assert resolve_scheme_parameters("kerple", None) == {"directional": True}
    assert resolve_scheme_parameters("kerple", {}) == {"directional": False}  # what 0.2 saved for kerple
    assert not SCHEMES["t5"].saved_before(None, None, saved=True)  # nothing newer to keep out


# ------------------------------------------------------------------------------------ the warning


@pytest.fixture
def warnings_seen(caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("hf_relpos.relative_positions").warning_once.cache_clear()
    hf_logging.enable_propagation()
    with caplog.at_level(logging.WARNING):
        yield lambda: [r.getMessage() for r in caplog.records if "direction" in r.getMessage()]
    hf_logging.disable_propagation()


@pytest.mark.parametrize("name", DIRECTIONAL)
def test_warning_names_the_fix_for_a_direction_blind_encoder(name, warnings_seen):
    params = resolve_scheme_parameters(name, {"directional": False})
    build_stack_schemes(name, params, None, 2, H, 8, 32, causal=False, absolute_position="none")
    build_stack_schemes(name, params, None, 2, H, 8, 32, causal=False, absolute_position="none")
    messages = warnings_seen()
    assert len(messages) == 1, messages  # once
    assert f"relative_position={name!r}" in messages[0]
    assert 'relative_position_parameters={"directional": True}' in messages[0]


@pytest.mark.parametrize(
    "name,params,causal,absolute",
    [
        ("alibi", {"directional": True}, False, "none"),  # sees direction
        ("alibi", {"directional": False}, True, "none"),  # a decoder: causal attention has one direction
        ("alibi", {"directional": False}, False, "learned"),  # absolute positions carry the order
        ("kerple", {"directional": False}, False, "sinusoidal"),
        ("t5", {}, False, "none"),  # signed buckets
        ("rotary", {}, False, "none"),
    ],
)
def test_no_warning_where_direction_is_seen(name, params, causal, absolute, warnings_seen):
    params = resolve_scheme_parameters(name, params, causal=causal)
    build_stack_schemes(name, params, None, 2, H, 8, 32, causal=causal, absolute_position=absolute)
    assert warnings_seen() == []


def _models_pass_absolute_position():
    import inspect

    from hf_relpos import modeling_relpos_bert, modeling_relpos_t5

    return all(
        "absolute_position=config.absolute_position" in inspect.getsource(m)
        for m in (modeling_relpos_bert, modeling_relpos_t5)
    )


@pytest.mark.skipif(
    not _models_pass_absolute_position(), reason="the models do not pass absolute_position to build_stack_schemes yet"
)
def test_models_warn_once_when_built_direction_blind(warnings_seen):
    RelPosBertForMaskedLM(
        RelPosBertConfig(
            relative_position="alibi",
            relative_position_parameters={"directional": False},
            absolute_position="none",
            **TINY_BERT,
        )
    )
    RelPosT5ForConditionalGeneration(
        RelPosT5Config(
            relative_position="kerple",
            absolute_position="none",
            relative_position_parameters={"directional": False},
            **TINY_T5,
        )
    )
    assert len(warnings_seen()) == 2
    RelPosBertForMaskedLM(RelPosBertConfig(relative_position="fire", absolute_position="none", **TINY_BERT))
    assert len(warnings_seen()) == 2  # directional by default: silent


# ------------------------------------------------------------------------------------ models


@pytest.mark.parametrize("name", DIRECTIONAL)
def test_bert_model_backends_agree_and_reload_through_remote_code(tmp_path, name):
    from helpers import run_without_hf_relpos

    torch.manual_seed(0)
    config = RelPosBertConfig(
        relative_position=name,
        absolute_position="none",
        relative_position_parameters={"directional": True},
        **TINY_BERT,
    )
    model = large_scheme_weights(RelPosBertForMaskedLM(config).eval())
    ids = torch.randint(1, 50, (2, 11))
    outs = {}
    for impl in ("eager", "sdpa", "flex_attention"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            outs[impl] = model(input_ids=ids).logits
    assert (outs["eager"] - outs["sdpa"]).abs().max() <= 1e-5
    assert (outs["eager"] - outs["flex_attention"]).abs().max() <= 1e-5
    # reversing the input is not a symmetry of a directional encoder (it is for a symmetric one)
    with torch.no_grad():
        flipped = model(input_ids=ids.flip(1)).logits.flip(1)
    assert (flipped - outs["eager"]).abs().max() > 1e-4  # a symmetric one: ≤ 1e-5 (below)
    model.save_pretrained(tmp_path / "m")
    torch.save({"input_ids": ids, "logits": outs["eager"]}, tmp_path / "m" / "expected.pt")
    result = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModelForMaskedLM
        folder = {str(tmp_path / "m")!r}
        expected = torch.load(folder + "/expected.pt")
        model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(input_ids=expected["input_ids"]).logits
        print(json.dumps({{"directional": model.config.relative_position_parameters["directional"],
                          "diff": (logits - expected["logits"]).abs().max().item()}}))
        """,
        cwd=tmp_path,
    )
    assert result["directional"] is True and result["diff"] <= 1e-5


@pytest.mark.parametrize("name", DIRECTIONAL)
def test_symmetric_encoder_is_reversal_equivariant(name):
    """What the warning is about: with directional=False and no absolute positions, reversing the input
    reverses the output (fire's bias too depends on |j − i| and the length only)."""
    torch.manual_seed(0)
    config = RelPosBertConfig(
        relative_position=name,
        absolute_position="none",
        relative_position_parameters={"directional": False},
        **TINY_BERT,
    )
    model = large_scheme_weights(RelPosBertForMaskedLM(config).eval())
    ids = torch.randint(1, 50, (2, 11))
    with torch.no_grad():
        base, flipped = model(input_ids=ids).logits, model(input_ids=ids.flip(1)).logits.flip(1)
    assert (flipped - base).abs().max() <= 1e-5
