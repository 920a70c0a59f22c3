"""ONNX export of relpos checkpoints (optional extra: ``pip install "hf-relpos[onnx]"``).

    hf-relpos export CHECKPOINT OUT --format onnx

Through torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``) with dynamic batch and sequence
axes; no legacy (TorchScript) fallback is needed. What is written:

- ``relpos_bert``: ``model.onnx``, the checkpoint's own architecture (task head included): inputs
  ``input_ids``, ``attention_mask``, ``token_type_ids`` (batch, sequence) — (batch, choices, sequence) for
  multiple choice — outputs as the head names them (``logits``; ``start_logits``/``end_logits`` for QA;
  ``last_hidden_state``/``pooler_output`` for the bare model).
- ``relpos_t5``: ``encoder_model.onnx`` (``input_ids``, ``attention_mask`` → ``last_hidden_state``) and
  ``decoder_model.onnx`` (``decoder_input_ids``, ``encoder_hidden_states``, ``encoder_attention_mask`` →
  ``logits``), the decoder WITHOUT past key values: each generation step re-reads the whole prefix.
  A decoder-with-past graph is not exported (transformers' cache objects are not graph inputs).

Beside the graphs: config.json and the tokenizer files, so ``OUT`` serves as a tokenizer folder too.
Every graph is checked in onnxruntime against PyTorch at a batch and length other than the example's,
with padding; the report gives the max |Δ|. OUT must not exist or be empty (nothing is overwritten);
the graphs are written to ``OUT.partial`` and renamed when complete.

Minimum lengths: sequence axes start at 2 (the exporter's guards); the T5 decoder axis at 1 (at 2 for xl,
whose graph the exporter's guard solver refuses at 1: ``decoder_min_length`` in the report).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

FORMATS = ("onnx",)
EXTRA_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "tokenizer.model",
)
TOLERANCE = 1e-4  # fp32 max |Δ| between onnxruntime and PyTorch


def _require_onnx():
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f'ONNX export needs {", ".join(missing)}: pip install "hf-relpos[onnx]"')


class _BertGraph(torch.nn.Module):
    """The head's forward with positional tensor inputs and a tuple of tensor outputs."""

    def __init__(self, model, outputs):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids, attention_mask, token_type_ids):
        result = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        )
        return tuple(getattr(result, name) for name in self.outputs)


class _T5Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


class _T5Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask):
        return self.model(
            encoder_outputs=(encoder_hidden_states,),
            attention_mask=encoder_attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
            return_dict=True,
        ).logits


def _bert_outputs(model) -> tuple[str, ...]:
    name = type(model).__name__
    if name.endswith("ForQuestionAnswering"):
        return ("start_logits", "end_logits")
    if name == "RelPosBertModel":
        return ("last_hidden_state",) + (("pooler_output",) if model.pooler is not None else ())
    return ("logits",)


def _example(shape, vocab, seed):
    """Random ids and a mask whose first row is right-padded by a third (every graph sees padding)."""
    ids = torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[0, ..., -(shape[-1] // 3) :] = 0
    return ids, mask


def _export(module, args, path, input_names, output_names, dynamic_shapes, opset):
    program = torch.onnx.export(
        module.eval(),  # the graph wrapper itself, not only the model it holds (no training-mode warning)
        args,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=input_names,
        output_names=output_names,
        opset_version=opset,
        verbose=False,
    )
    program.save(str(path))


def _max_diff(path, feeds: dict, expected) -> float:
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    return max(float(np.abs(out - exp.detach().numpy()).max()) for out, exp in zip(outputs, expected))


def _load(checkpoint):
    from transformers import AutoConfig

    from . import modeling_relpos_bert, modeling_relpos_t5  # noqa: F401  (importing hf_relpos registers them)

    config = AutoConfig.from_pretrained(checkpoint)
    if config.model_type == "relpos_bert":
        arch = (config.architectures or ["RelPosBertModel"])[0]
        cls = getattr(modeling_relpos_bert, arch, None)
        if cls is None:
            raise ValueError(f"architectures[0]={arch!r} in {checkpoint}/config.json is not a relpos_bert class")
    elif config.model_type == "relpos_t5":
        cls = modeling_relpos_t5.RelPosT5ForConditionalGeneration
    else:
        raise ValueError(f"model_type={config.model_type!r} in {checkpoint}: export supports relpos_bert, relpos_t5")
    return cls.from_pretrained(checkpoint, dtype=torch.float32).eval()


def export_model(model, out, *, opset: int = 18, check: bool = True) -> dict:
    """Export a loaded relpos model into the folder ``out`` (which must be empty or absent); returns a report
    ``{"files": [...], "max_abs_diff": {graph: |Δ|}}``."""
    _require_onnx()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    config = model.config
    # the graph is the padded computation (tracing never unpads): so is the reference it is checked against
    unpad = getattr(config, "unpad_inputs", None)
    if unpad is not None:
        config.unpad_inputs = False
    try:
        return _export_model(model, out, config, opset, check)
    finally:
        if unpad is not None:
            config.unpad_inputs = unpad


def _export_model(model, out, config, opset, check) -> dict:
    from torch.export import Dim

    vocab = config.vocab_size
    report = {"files": [], "max_abs_diff": {}}
    batch = Dim("batch", min=1, max=4096)
    with torch.no_grad():
        if config.model_type == "relpos_bert":
            names = _bert_outputs(model)
            graph = _BertGraph(model, names)
            choices = type(model).__name__.endswith("MultipleChoice")
            seq = Dim("sequence", min=2, max=1 << 20)
            axes = {0: batch, 1: Dim("choices", min=2, max=1024), 2: seq} if choices else {0: batch, 1: seq}
            inputs = ("input_ids", "attention_mask", "token_type_ids")
            shape = (2, 2, 16) if choices else (2, 16)
            ids, mask = _example(shape, vocab, 0)
            path = out / "model.onnx"
            _export(
                graph,
                (ids, mask, torch.zeros_like(ids)),
                path,
                list(inputs),
                list(names),
                {name: axes for name in inputs},
                opset,
            )
            report["files"].append(path.name)
            if check:
                ids, mask = _example((3, 2, 23) if choices else (3, 23), vocab, 1)
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
                report["max_abs_diff"][path.name] = _max_diff(path, feeds, graph(*feeds.values()))
        else:
            enc_seq = Dim("encoder_sequence", min=2, max=1 << 20)
            ids, mask = _example((2, 16), vocab, 0)
            encoder = _T5Encoder(model)
            path = out / "encoder_model.onnx"
            _export(
                encoder,
                (ids, mask),
                path,
                ["input_ids", "attention_mask"],
                ["last_hidden_state"],
                {"input_ids": {0: batch, 1: enc_seq}, "attention_mask": {0: batch, 1: enc_seq}},
                opset,
            )
            report["files"].append(path.name)
            hidden = encoder(ids, mask)
            decoder = _T5Decoder(model)
            dec_ids = torch.randint(3, vocab, (2, 5), generator=torch.Generator().manual_seed(2))
            path = out / "decoder_model.onnx"
            # decoder inputs from length 1 (the first generation step); a scheme whose graph needs length ≥ 2
            # (the exporter's guard solver refuses 1 for xl) gets a decoder from length 2, said in the report
            for min_length in (1, 2):
                try:
                    dec_seq = Dim("decoder_sequence", min=min_length, max=1 << 20)
                    _export(
                        decoder,
                        (dec_ids, hidden, mask),
                        path,
                        ["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask"],
                        ["logits"],
                        {
                            "decoder_input_ids": {0: batch, 1: dec_seq},
                            "encoder_hidden_states": {0: batch, 1: enc_seq},
                            "encoder_attention_mask": {0: batch, 1: enc_seq},
                        },
                        opset,
                    )
                    break
                except Exception:
                    if min_length == 2:
                        raise
            report["files"].append(path.name)
            report["decoder_min_length"] = min_length
            if check:
                ids, mask = _example((3, 29), vocab, 1)
                report["max_abs_diff"]["encoder_model.onnx"] = _max_diff(
                    out / "encoder_model.onnx", {"input_ids": ids, "attention_mask": mask}, (encoder(ids, mask),)
                )
                hidden = encoder(ids, mask)
                worst = 0.0
                for length in (min_length, 7):
                    dec_ids = torch.randint(3, vocab, (3, length), generator=torch.Generator().manual_seed(length))
                    feeds = {
                        "decoder_input_ids": dec_ids,
                        "encoder_hidden_states": hidden,
                        "encoder_attention_mask": mask,
                    }
                    worst = max(worst, _max_diff(path, feeds, (decoder(*feeds.values()),)))
                report["max_abs_diff"][path.name] = worst
    return report


def export_checkpoint(checkpoint, out, *, format: str = "onnx", opset: int = 18, check: bool = True) -> dict:
    """``hf-relpos export``: the checkpoint folder (or Hub name) → ``out`` with the graphs, config and
    tokenizer files. Raises ValueError when ``out`` holds files, when the check exceeds TOLERANCE."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not valid; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out={str(out)!r} exists and is not empty; choose a new folder (nothing is overwritten)")
    _require_onnx()
    model = _load(checkpoint)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    report = export_model(model, partial, opset=opset, check=check)
    source = Path(checkpoint)
    for name in EXTRA_FILES:
        if source.is_dir() and (source / name).is_file():
            shutil.copy2(source / name, partial / name)
            report["files"].append(name)
    bad = {k: v for k, v in report["max_abs_diff"].items() if not v <= TOLERANCE}
    (partial / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if bad:
        raise ValueError(f"exported graphs differ from PyTorch by more than {TOLERANCE}: {bad}; left in {partial}")
    if out.exists():
        out.rmdir()
    partial.rename(out)
    report["out"] = str(out)
    return report
