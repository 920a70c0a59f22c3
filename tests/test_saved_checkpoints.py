"""Checkpoints saved by hf_relpos 0.1 (tests/fixtures/v0_1, made by make_v0_1_fixture.py before the
architecture consolidation) load with today's code and give the same outputs: through hf_relpos's own
classes and, re-saved by today's code, through `trust_remote_code` in a process without hf_relpos."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_without_hf_relpos
from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM

import hf_relpos  # noqa: F401  (registers the Auto classes)

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1"
INDEX = json.loads((FIXTURES / "index.json").read_text())
AUTO = {"AutoModelForMaskedLM": AutoModelForMaskedLM, "AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM}
TOL = 1e-5


def _logits(model, expected):
    kwargs = {k: v for k, v in expected.items() if k != "logits"}
    with torch.no_grad():
        return model(**kwargs).logits


def _max_diff(logits, expected) -> float:
    """Over real tokens for an encoder's (B, L, ...) scores: today's relpos_bert skips padding (its padding
    positions are zeros, never read); every position for the decoder's."""
    keep = expected["attention_mask"].bool() if "decoder_input_ids" not in expected else slice(None)
    return (logits[keep] - expected["logits"][keep]).abs().max().item()


@pytest.mark.parametrize("name", sorted(INDEX))
def test_v0_1_checkpoint_loads_with_same_outputs(name):
    folder = FIXTURES / name
    expected = torch.load(folder / "expected.pt")
    model = AUTO[INDEX[name]["auto"]].from_pretrained(folder, dtype=torch.float32).eval()
    assert type(model).__module__.startswith("hf_relpos.")  # today's code, not the folder's copy
    diff = _max_diff(_logits(model, expected), expected)
    assert diff <= TOL, f"{name}: max |Δ| {diff}"
    if hasattr(model.config, "unpad_inputs"):  # and the padded computation, padding positions included
        model.config.unpad_inputs = False
        diff = (_logits(model, expected) - expected["logits"]).abs().max().item()
        assert diff <= TOL, f"{name}: max |Δ| {diff} (padded computation)"


def test_v0_1_checkpoints_resaved_load_as_remote_code(tmp_path):
    """Re-saved by today's code, every fixture loads with trust_remote_code where hf_relpos is absent."""
    for name, info in INDEX.items():
        model = AUTO[info["auto"]].from_pretrained(FIXTURES / name, dtype=torch.float32)
        model.save_pretrained(tmp_path / name)
        shutil.copy(FIXTURES / name / "expected.pt", tmp_path / name / "expected.pt")
    result = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM
        auto = {{"AutoModelForMaskedLM": AutoModelForMaskedLM, "AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM}}
        torch.set_num_threads(1)
        out = {{}}
        for name, info in json.loads({json.dumps(json.dumps(INDEX))}).items():
            folder = {str(tmp_path)!r} + "/" + name
            expected = torch.load(folder + "/expected.pt")
            model = auto[info["auto"]].from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
            kwargs = {{k: v for k, v in expected.items() if k != "logits"}}
            with torch.no_grad():
                logits = model(**kwargs).logits
            keep = expected["attention_mask"].bool() if "decoder_input_ids" not in expected else slice(None)
            out[name] = [type(model).__module__, (logits[keep] - expected["logits"][keep]).abs().max().item()]
        print(json.dumps(out))
        """,
        cwd=tmp_path,
    )
    assert set(result) == set(INDEX)
    for name, (module, diff) in result.items():
        assert "hf_relpos" not in module
        assert diff <= TOL, f"{name}: max |Δ| {diff} through remote code"


@pytest.mark.parametrize("family", ["bert", "t5"])
@pytest.mark.parametrize("scheme", ["alibi", "kerple", "fire"])
def test_configs_saved_before_directional_load_symmetric(tmp_path, family, scheme):
    """A 0.1 config (flat fields, no parameter dict) names no `directional`: it loads as it was saved,
    symmetric, even where a fresh config now defaults to directional."""
    from hf_relpos import RelPosBertConfig, RelPosT5Config

    cls = RelPosBertConfig if family == "bert" else RelPosT5Config
    source = json.loads((FIXTURES / f"{family}_t5" / "config.json").read_text())
    source.pop("relative_position_parameters", None)
    source.update(relative_position=scheme)
    (tmp_path / "config.json").write_text(json.dumps(source))
    assert cls.from_pretrained(tmp_path).relative_position_parameters.get("directional") is False
