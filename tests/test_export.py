"""ONNX export (dynamo exporter) run in onnxruntime against PyTorch: every scheme for relpos_bert (a task
head each), one scheme per cost class for relpos_t5's encoder and decoder; lengths and batch sizes other
than the example's (batch 2, length 16), with and without padding. Skipped without the [onnx] extra."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from hf_relpos import (  # noqa: E402
    RelPosBertConfig,
    RelPosBertForMaskedLM,
    RelPosBertForMultipleChoice,
    RelPosBertForQuestionAnswering,
    RelPosBertForSequenceClassification,
    RelPosBertForTokenClassification,
    RelPosBertModel,
    RelPosT5Config,
    RelPosT5ForConditionalGeneration,
)
from hf_relpos.export import export_checkpoint, export_model  # noqa: E402
from hf_relpos.relative_positions import SCHEMES  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4
VOCAB = 99
HEADS = [
    RelPosBertForSequenceClassification,
    RelPosBertForQuestionAnswering,
    RelPosBertForTokenClassification,
    RelPosBertForMaskedLM,
    RelPosBertModel,
]
# (batch, length, padded): none of them the example's (2, 16)
CASES = [(1, 5, False), (3, 23, True), (4, 70, True), (2, 130, False)]
BERT_SCHEMES = sorted(SCHEMES)
# relpos_t5 (slower to export: two graphs): one scheme per cost class, and DeBERTa's shared table
T5_SCHEMES = sorted(set({cls.cost: name for name, cls in sorted(SCHEMES.items())}.values()) | {"t5", "deberta"})


def _inputs(batch, length, padded, seed=0, choices=None):
    g = torch.Generator().manual_seed(seed + length)
    shape = (batch, choices, length) if choices else (batch, length)
    ids = torch.randint(3, VOCAB, shape, generator=g)
    mask = torch.ones_like(ids)
    if padded:
        mask[0, ..., -(length // 3) :] = 0
        mask[-1, ..., -1:] = 0
    return ids, mask


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _bert(name, head, **extra):
    config = RelPosBertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=160,
        relative_position=name,
        absolute_position="learned" if name == "none" else "none",
        num_labels=2 if head is RelPosBertForQuestionAnswering else 3,
        unpad_inputs=False,
        **extra,
    )  # the padded computation, as the graph: every position compares
    torch.manual_seed(0)
    return head(config).eval()


@pytest.mark.parametrize("name", BERT_SCHEMES)
def test_bert_onnx_matches_pytorch(name, tmp_path):
    head = HEADS[BERT_SCHEMES.index(name) % len(HEADS)]
    model = _bert(name, head)
    report = export_model(model, tmp_path, check=False)
    session = _session(tmp_path / report["files"][0])
    outputs = [o.name for o in session.get_outputs()]
    worst = 0.0
    for batch, length, padded in CASES:
        ids, mask = _inputs(batch, length, padded)
        types = torch.zeros_like(ids)
        got = session.run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
        )
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask, token_type_ids=types, return_dict=True)
        for out_name, value in zip(outputs, got):
            worst = max(worst, float(np.abs(value - getattr(ref, out_name).numpy()).max()))
    print(f"onnx max|Δ| relpos_bert {name} ({head.__name__}): {worst:.2e}")
    assert worst <= TOL


def test_bert_multiple_choice_and_shaw_value_side(tmp_path):
    """Multiple choice has (batch, choices, sequence) inputs; Shaw's value side runs the eager backend."""
    model = _bert("shaw", RelPosBertForMultipleChoice, relative_position_parameters={"max_distance": 8, "value": True})
    export_model(model, tmp_path, check=False)
    session = _session(tmp_path / "model.onnx")
    for batch, length, padded in CASES[:3]:
        ids, mask = _inputs(batch, length, padded, choices=3)
        got = session.run(
            None,
            {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": torch.zeros_like(ids).numpy()},
        )[0]
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask).logits.numpy()
        assert np.abs(got - ref).max() <= TOL


def test_bert_segment_match_embedding(tmp_path):
    """The exact-match bit is computed in the graph from input_ids, token_type_ids and attention_mask."""
    model = _bert("t5", RelPosBertForQuestionAnswering, segment_match_embedding=True)
    export_model(model, tmp_path, check=False)
    session = _session(tmp_path / "model.onnx")
    for batch, length, padded in CASES:
        ids, mask = _inputs(batch, length, padded)
        ids = ids % 9 + 3  # few distinct ids: many matches across the segments
        types = torch.zeros_like(ids)
        types[:, length // 3 :] = 1
        got = session.run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
        )
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        assert np.abs(got[0] - ref.start_logits.numpy()).max() <= TOL
        assert np.abs(got[1] - ref.end_logits.numpy()).max() <= TOL


def _t5(name):
    config = RelPosT5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_position=name,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    return RelPosT5ForConditionalGeneration(config).eval()


@pytest.mark.parametrize("name", T5_SCHEMES)
def test_t5_encoder_decoder_onnx_match_pytorch(name, tmp_path):
    model = _t5(name)
    report = export_model(model, tmp_path, check=False)
    encoder, decoder = _session(tmp_path / "encoder_model.onnx"), _session(tmp_path / "decoder_model.onnx")
    worst = 0.0
    for batch, length, padded in CASES[:3]:
        ids, mask = _inputs(batch, length, padded)
        hidden = encoder.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad():
            ref_hidden = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        worst = max(worst, float(np.abs(hidden - ref_hidden.numpy()).max()))
        for dec_len in (report["decoder_min_length"], 6):
            dec = torch.randint(3, VOCAB, (batch, dec_len), generator=torch.Generator().manual_seed(dec_len))
            logits = decoder.run(
                None,
                {
                    "decoder_input_ids": dec.numpy(),
                    "encoder_hidden_states": hidden,
                    "encoder_attention_mask": mask.numpy(),
                },
            )[0]
            with torch.no_grad():
                ref = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=False).logits
            worst = max(worst, float(np.abs(logits - ref.numpy()).max()))
    print(f"onnx max|Δ| relpos_t5 {name}: {worst:.2e}")
    assert worst <= TOL


def test_cli_export_folder(tmp_path):
    """`hf-relpos export CHECKPOINT OUT --format onnx`: the graph, config and report; OUT is never overwritten."""
    model = _bert("alibi", RelPosBertForSequenceClassification)
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "hf_relpos.cli", "export", str(tmp_path / "ckpt"), str(out), "--format", "onnx"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "export_report.json").read_text())
    assert report["max_abs_diff"]["model.onnx"] <= TOL
    assert (out / "model.onnx").is_file() and (out / "config.json").is_file()
    assert not (tmp_path / "onnx.partial").exists()
    with pytest.raises(ValueError, match="not empty"):
        export_checkpoint(tmp_path / "ckpt", out)
    with pytest.raises(ValueError, match="format='torchscript' is not valid"):
        export_checkpoint(tmp_path / "ckpt", tmp_path / "other", format="torchscript")


@pytest.mark.parametrize("name", ["t5", "rotary", "deberta"])
def test_bert_local_layers_onnx_matches_pytorch(name, tmp_path):
    """Local layers (layer_types, ±3) export through the band mask and match PyTorch, padded inputs included."""
    model = _bert(
        name, RelPosBertForTokenClassification, layer_types=["full_attention", "sliding_attention"], sliding_window=3
    )
    export_model(model, tmp_path, check=False)
    session = _session(tmp_path / "model.onnx")
    for batch, length, padded in CASES:
        ids, mask = _inputs(batch, length, padded)
        got = session.run(
            None,
            {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": torch.zeros_like(ids).numpy()},
        )[0]
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask).logits.numpy()
        real = mask.bool().numpy()  # a padded query far from real tokens sees no key at all: its output is undefined
        assert np.abs(got - ref)[real].max() <= TOL
