"""Conversion of pretrained checkpoints to the relpos model families.

- ``convert_t5_to_relpos``: an HF ``T5ForConditionalGeneration`` (object or folder) → a
  ``RelPosT5ForConditionalGeneration`` with the ``t5`` scheme; outputs are identical.
- ``convert_bert_to_relpos``: BERT / RoBERTa / XLM-R / CamemBERT / ELECTRA encoders (and their task
  heads) → ``relpos_bert`` with any scheme; transformers 4.x ``relative_key`` / ``relative_key_query``
  BERTs → ``shaw`` / ``shaw_kq``, exactly.
- ``convert_checkpoint``: either of the above, written as a checkpoint folder (weights, code,
  tokenizer, ``conversion.json``); ``hf-relpos convert`` on the command line.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from .configuration_relpos_t5 import RelPosT5Config
from .modeling_relpos_t5 import RelPosT5ForConditionalGeneration

# T5 config fields carried over unchanged
_T5_FIELDS = (
    "vocab_size",
    "d_model",
    "d_kv",
    "d_ff",
    "num_layers",
    "num_decoder_layers",
    "num_heads",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
    "dropout_rate",
    "layer_norm_epsilon",
    "initializer_factor",
    "feed_forward_proj",
    "use_cache",
    "pad_token_id",
    "eos_token_id",
    "decoder_start_token_id",
    "classifier_dropout",
)


def _t5_scales_decoder_output(hf_config) -> bool:
    # transformers ≥ 5.2x keeps `tie_word_embeddings=True` on every T5 and records whether the decoder
    # output is rescaled (the original T5) in `scale_decoder_outputs`; before, the two were one flag
    scale = getattr(hf_config, "scale_decoder_outputs", None)
    return bool(hf_config.tie_word_embeddings if scale is None else scale)


def convert_t5_to_relpos(
    hf_model_or_path,
    *,
    dtype: torch.dtype | None = torch.float32,
    **config_overrides,
) -> RelPosT5ForConditionalGeneration:
    """Convert an HF T5 encoder-decoder to ``relpos_t5`` with the ``t5`` scheme, exactly.

    Args:
        hf_model_or_path: a ``T5ForConditionalGeneration`` (or any T5-architecture model with the same
            parameter names, e.g. ``T5Model`` minus the LM head) or a local folder / Hub name loadable by
            ``T5ForConditionalGeneration.from_pretrained``.
        dtype: dtype of the returned model (``None``: keep the source's dtype).
        **config_overrides: extra ``RelPosT5Config`` fields (e.g. ``dropout_rate=0.0``); position
            fields that would break equivalence are refused.

    The bucket tables ``{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias`` become
    the stack-shared ``{encoder,decoder}.relative_position.relative_attention_bias``. A T5 whose decoder
    output is not rescaled (T5 v1.1, ``tie_word_embeddings=False`` in its original config) becomes an
    untied relpos_t5 whose ``lm_head`` is a copy of T5's LM head.
    """
    from transformers import T5ForConditionalGeneration

    if isinstance(hf_model_or_path, (str, os.PathLike)):
        hf_model = T5ForConditionalGeneration.from_pretrained(hf_model_or_path, dtype=torch.float32)
    else:
        hf_model = hf_model_or_path
    hf_config = hf_model.config
    if getattr(hf_config, "model_type", None) not in ("t5", "mt5"):  # (umt5 has a bucket table per layer)
        raise ValueError(
            f"model_type={getattr(hf_config, 'model_type', None)!r} is not valid for convert_t5_to_relpos; "
            "choose one of: t5, mt5"
        )
    forbidden = {"relative_position", "decoder_relative_position", "absolute_position", "relative_position_per_layer"}
    bad = sorted(forbidden & set(config_overrides))
    if bad:
        raise ValueError(
            f"{bad[0]} cannot be overridden by convert_t5_to_relpos (the converted model uses T5's own 't5' scheme); "
            "convert first, then build a new config if you want another scheme"
        )

    fields = {name: getattr(hf_config, name) for name in _T5_FIELDS if hasattr(hf_config, name)}
    tied = _t5_scales_decoder_output(hf_config)
    config = RelPosT5Config(
        **fields,
        tie_word_embeddings=tied,
        relative_position="t5",
        decoder_relative_position=None,
        absolute_position="none",
        **config_overrides,
    )
    model = RelPosT5ForConditionalGeneration(config)

    source = hf_model.state_dict()
    mapped = {}
    for name, tensor in source.items():
        if name.startswith(("encoder.embed_tokens.", "decoder.embed_tokens.")):
            continue  # tied to `shared`
        if ".EncDecAttention.relative_attention_bias." in name:
            continue  # never used by T5 (cross-attention has no relative term)
        stack, _, rest = name.partition(".")
        if stack in ("encoder", "decoder") and rest.endswith("SelfAttention.relative_attention_bias.weight"):
            if not rest.startswith("block.0."):
                raise ValueError(f"{name}: relative position tables are expected in block 0 only (T5 shares them)")
            mapped[f"{stack}.relative_position.relative_attention_bias.weight"] = tensor
            continue
        mapped[name] = tensor
    if "lm_head.weight" not in mapped or tied:
        mapped.pop("lm_head.weight", None)
        if not tied:
            # an HF T5 without rescaling may still share the head with the input table
            mapped["lm_head.weight"] = source["shared.weight"]
    mapped = {k: v.detach().clone() for k, v in mapped.items()}

    target = model.state_dict()
    missing = sorted(k for k in target if k not in mapped and not (tied and k == "lm_head.weight"))
    unexpected = sorted(k for k in mapped if k not in target)
    if missing or unexpected:
        raise ValueError(f"convert_t5_to_relpos: unmatched parameters; missing={missing}, unexpected={unexpected}")
    for name, tensor in mapped.items():
        if tuple(target[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} does not match {tuple(target[name].shape)}")
    model.load_state_dict(mapped, strict=False)
    if tied:
        model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    if getattr(hf_model, "generation_config", None) is not None:
        model.generation_config = copy.deepcopy(hf_model.generation_config)
    return model.train(hf_model.training)


# ---------------------------------------------------------------------------------------------------
# BERT-family encoders (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA) and legacy 4.x relative_key* → relpos_bert
# ---------------------------------------------------------------------------------------------------

BERT_LIKE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
T5_MODEL_TYPES = ("t5", "mt5")
SUPPORTED_MODEL_TYPES = tuple(sorted(BERT_LIKE_MODEL_TYPES + T5_MODEL_TYPES))
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")
# transformers 4.x `position_embedding_type` → the scheme that reproduces it exactly
LEGACY_RELATIVE = {"relative_key": "shaw", "relative_key_query": "shaw_kq"}
# With absolute embeddings kept, these schemes have an initialisation that adds exactly nothing to the
# scores (zero tables / zero output layer), so the converted model starts equal to the source.
EXACT_FROM_ABSOLUTE = ("none", "t5", "shaw", "shaw_kq", "xl", "fire")
INITS = ("preserve", "random")
HEADS = ("auto", "base")
# config fields a conversion sets itself (from the weights or its own arguments)
_FIXED_FIELDS = (
    "relative_position", "absolute_position", "max_position_embeddings", "vocab_size", "hidden_size",
    "num_hidden_layers", "num_attention_heads", "intermediate_size", "type_vocab_size",
)
# scheme fields that define how a legacy table is mapped
_LEGACY_FIXED_FIELDS = ("max_relative_position", "relative_value", "relative_position_per_layer")
_BERT_CONFIG_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "type_vocab_size", "initializer_range",
    "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id", "classifier_dropout", "problem_type",
)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model")


@dataclass
class _Source:
    """A checkpoint read without transformers' model classes: config.json as a plain dict (so fields
    transformers 5 dropped, like 4.x ``position_embedding_type="relative_key"``, survive) and the raw
    state dict (so ``distance_embedding`` tables survive)."""

    config: dict
    state: dict
    folder: Path | None = None
    model: object = None  # the source model object, when given one

    @property
    def model_type(self):
        return self.config.get("model_type")

    @property
    def legacy(self):
        kind = self.config.get("position_embedding_type", "absolute")
        return kind if kind in LEGACY_RELATIVE else None

    @property
    def architecture(self):
        archs = self.config.get("architectures") or []
        return archs[0] if archs else None


def _read_state_dict(folder: Path) -> dict:
    """Every tensor of a local checkpoint folder: safetensors (single or sharded) or pytorch_model.bin."""
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    for index_name, loader in (
        ("model.safetensors.index.json", load_file),
        ("pytorch_model.bin.index.json", lambda p: torch.load(p, map_location="cpu", weights_only=True)),
    ):
        index = folder / index_name
        if index.is_file():
            state = {}
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                state.update(loader(folder / shard))
            return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ValueError(f"src={str(folder)!r} has no weights; expected one of: {', '.join(_WEIGHT_FILES)}")


def _resolve_folder(src) -> Path:
    """A local folder, or a Hub repo id downloaded with huggingface_hub (config, weights, tokenizer)."""
    path = Path(src)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"src={str(src)!r} is a file; choose a checkpoint folder (with config.json) or a Hub repo id")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(src), allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
        if not any((folder / name).is_file() for name in _WEIGHT_FILES):
            folder = Path(snapshot_download(str(src), allow_patterns=["*.json", "*.bin", "*.txt", "*.model"]))
    except Exception as err:  # offline, unknown repo, bad id...
        raise ValueError(
            f"src={str(src)!r} is neither a local checkpoint folder nor a Hub repo that could be downloaded "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return folder


def _read_config(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"src={str(folder)!r} has no config.json; choose a transformers checkpoint folder")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None


def _load_source(src, read_weights: bool = True) -> _Source:
    if hasattr(src, "state_dict") and hasattr(src, "config"):  # a model object
        config = src.config.to_dict()
        config["architectures"] = [type(src).__name__]  # what the object is, whatever its config says
        return _Source(config=config, state=dict(src.state_dict()), model=src,  # (tensors are shared, not copied)
                       folder=_local_dir(getattr(src, "name_or_path", None)))
    if not isinstance(src, (str, os.PathLike)):
        raise ValueError(f"src={src!r} is not valid; choose a checkpoint folder, a Hub repo id or a transformers model")
    folder = _resolve_folder(src)
    source = _Source(config=_read_config(folder), state={}, folder=folder)
    _check_model_type(source)  # before reading any weights
    if read_weights:
        source.state = _read_state_dict(folder)
    return source


def _local_dir(path):
    return Path(path) if path and Path(path).is_dir() else None


def _check_model_type(source: _Source, allowed=SUPPORTED_MODEL_TYPES):
    if source.model_type not in allowed:
        raise ValueError(
            f"model_type={source.model_type!r} (config.json of the source) is not supported for conversion; "
            f"choose a checkpoint of one of: {', '.join(allowed)}"
        )


def _rename_legacy_norms(name: str) -> str:
    """Old TF-converted BERT checkpoints name LayerNorm parameters gamma/beta."""
    if ".LayerNorm." in name or ".layer_norm." in name:
        name = name.replace(".gamma", ".weight").replace(".beta", ".bias")
    return name


def _split_base(state: dict) -> tuple[dict, dict]:
    """Split a BERT-family state dict into the encoder (keys without their ``bert.``/``roberta.``/
    ``electra.`` prefix) and everything else (task heads)."""
    anchors = [k for k in state if k.endswith("embeddings.word_embeddings.weight")]
    if len(anchors) != 1:
        raise ValueError(
            f"expected one `embeddings.word_embeddings.weight` in the source weights, found {len(anchors)}: {anchors[:4]}"
        )
    prefix = anchors[0][: -len("embeddings.word_embeddings.weight")]
    base, heads = {}, {}
    for name, tensor in state.items():
        name = _rename_legacy_norms(name)
        if prefix and name.startswith(prefix):
            base[name[len(prefix):]] = tensor
        elif not prefix and name.split(".", 1)[0] in ("embeddings", "encoder", "pooler", "embeddings_project"):
            base[name] = tensor
        else:
            heads[name] = tensor
    return base, heads


# target class per source head (architecture suffix); ELECTRA's sequence-classification, pre-training
# (discriminator) and multiple-choice heads use gelu / a sequence summary, which relpos_bert's heads cannot
# represent
_HEAD_SUFFIXES = {
    "Model": "base",
    "ForMaskedLM": "masked_lm",
    "ForPreTraining": "masked_lm",  # BERT: MLM head kept, next-sentence head dropped
    "ForSequenceClassification": "sequence_classification",
    "ForTokenClassification": "token_classification",
    "ForQuestionAnswering": "question_answering",
    "ForMultipleChoice": "multiple_choice",
}


def _target_head(source: _Source, head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not valid; choose one of: {', '.join(HEADS)}")
    if head == "base":
        return "base"
    arch = source.architecture
    if arch is None:
        return "base"
    kind = next((k for suffix, k in _HEAD_SUFFIXES.items() if arch.endswith(suffix)), None)
    unsupported = kind is None or (source.model_type == "electra" and arch in (
        "ElectraForSequenceClassification", "ElectraForPreTraining", "ElectraForMultipleChoice"))
    if unsupported:
        raise ValueError(
            f"architectures={[arch]!r}: this task head has no relpos_bert counterpart; choose head='base' "
            "(--head base) to convert the encoder alone (then fine-tune a new head), or a source whose head is one "
            f"of: {', '.join(s for s in _HEAD_SUFFIXES)}"
        )
    return kind


def _map_heads(source: _Source, kind: str, heads: dict, notes: list) -> dict:
    """Task-head parameters renamed to relpos_bert's (``cls.predictions.*``, ``classifier``, ...)."""
    mt = source.model_type
    out, dropped = {}, []
    for name, tensor in heads.items():
        new = None
        if kind == "masked_lm":
            if mt == "bert" and name.startswith("cls.predictions."):
                new = name
            elif mt in _ROBERTA_LIKE and name.startswith("lm_head."):
                new = (name.replace("lm_head.dense.", "cls.predictions.transform.dense.")
                       .replace("lm_head.layer_norm.", "cls.predictions.transform.LayerNorm.")
                       .replace("lm_head.decoder.", "cls.predictions.decoder.")
                       .replace("lm_head.bias", "cls.predictions.bias"))
            elif mt == "electra" and name.startswith(("generator_predictions.", "generator_lm_head.")):
                new = (name.replace("generator_predictions.dense.", "cls.predictions.transform.dense.")
                       .replace("generator_predictions.LayerNorm.", "cls.predictions.transform.LayerNorm.")
                       .replace("generator_lm_head.weight", "cls.predictions.decoder.weight")
                       .replace("generator_lm_head.bias", "cls.predictions.bias"))
        elif kind in ("sequence_classification", "multiple_choice") and name.startswith("classifier."):
            if mt in _ROBERTA_LIKE and kind == "sequence_classification":
                # RobertaClassificationHead: dense → tanh → out_proj on <s>, i.e. BERT's pooler + classifier
                new = name.replace("classifier.dense.", "bert.pooler.dense.").replace("classifier.out_proj.", "classifier.")
            else:
                new = name
        elif kind == "token_classification" and name.startswith("classifier."):
            new = name
        elif kind == "question_answering" and name.startswith("qa_outputs."):
            new = name
        if new is None:
            dropped.append(name)
        else:
            out[new] = tensor
    if "cls.predictions.bias" in out and "cls.predictions.decoder.bias" not in out:
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    if "cls.predictions.decoder.bias" in out and "cls.predictions.bias" not in out:
        out["cls.predictions.bias"] = out["cls.predictions.decoder.bias"]
    dropped = [d for d in dropped if not d.endswith(("position_ids", "token_type_ids"))]
    if dropped:
        notes.append(f"source parameters without a relpos_bert counterpart, dropped: {', '.join(sorted(dropped))}")
    return out


def _extend_positions(table: torch.Tensor, n: int) -> torch.Tensor:
    """A learned absolute table resized to ``n`` rows: cropped, or extended Longformer-style (Beltagy et al.
    2020): row p ≥ P is a copy of row p mod P. Rows < P are unchanged, so outputs on inputs ≤ P stay the
    same, and each copied block keeps the table's local structure (what attention learned between
    neighbouring positions)."""
    P = table.shape[0]
    if n <= P:
        return table[:n].clone()
    return table[torch.arange(n) % P].clone()


def _resize_distance_table(table: torch.Tensor, P: int, N: int) -> torch.Tensor:
    """``shaw_kq``'s (2P−1, d) table, index i − j + P − 1, as a (2N−1, d) table: the edge rows repeat
    (N > P), which is what clipping i − j at ±(P − 1) computes, or the middle rows are kept (N < P)."""
    d = torch.arange(-(N - 1), N)
    return table[d.clamp(-(P - 1), P - 1) + P - 1].clone()


def _relpos_bert_class(kind):
    from .modeling_relpos_bert import (
        RelPosBertForMaskedLM,
        RelPosBertForMultipleChoice,
        RelPosBertForQuestionAnswering,
        RelPosBertForSequenceClassification,
        RelPosBertForTokenClassification,
        RelPosBertModel,
    )

    return {
        "base": RelPosBertModel,
        "masked_lm": RelPosBertForMaskedLM,
        "sequence_classification": RelPosBertForSequenceClassification,
        "token_classification": RelPosBertForTokenClassification,
        "question_answering": RelPosBertForQuestionAnswering,
        "multiple_choice": RelPosBertForMultipleChoice,
    }[kind]


def _preserve_init(model, scheme: str):
    """Make the new relative parameters add nothing to the scores where the scheme allows it."""
    from .relative_positions import FIRE, KERPLE, Shaw, ShawKeyQuery, T5RelativePosition, TransformerXL

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, T5RelativePosition):
                module.relative_attention_bias.weight.zero_()
            elif isinstance(module, Shaw):
                module.relative_key.weight.zero_()
                if module.relative_value is not None:
                    module.relative_value.weight.zero_()
            elif isinstance(module, ShawKeyQuery):
                module.distance_embedding.weight.zero_()
            elif isinstance(module, TransformerXL):
                module.r_net.weight.zero_()
                module.u.zero_()
                module.v.zero_()
            elif isinstance(module, FIRE):  # zero output layer: bias 0, still trainable (gradient reaches it)
                module.mlp[2].weight.zero_()
                module.mlp[2].bias.zero_()
            elif isinstance(module, KERPLE):
                pass  # softplus-positive r1, r2: no zero that keeps gradients; scheme default init


def _check_scheme(scheme, choices=None):
    from .relative_positions import SCHEMES

    choices = choices or tuple(SCHEMES)
    if scheme not in choices:
        raise ValueError(f"scheme={scheme!r} is not valid; choose one of: {', '.join(choices)}")


def _plan_bert(source: _Source, scheme, keep_absolute, max_position_embeddings, exact, init, config_overrides):
    """Validate the options against the source; return (scheme, keep_absolute). Raises ValueError."""
    _check_model_type(source, BERT_LIKE_MODEL_TYPES)
    cfg = source.config
    if init not in INITS:
        raise ValueError(f"init={init!r} is not valid; choose one of: {', '.join(INITS)}")
    if cfg.get("model_type") == "electra" and cfg.get("embedding_size", cfg.get("hidden_size")) != cfg.get("hidden_size"):
        raise ValueError(
            f"embedding_size={cfg.get('embedding_size')} differs from hidden_size={cfg.get('hidden_size')} "
            "(an ELECTRA-small-like checkpoint projects its embeddings with `embeddings_project`, which relpos_bert "
            "does not have); choose an ELECTRA whose embedding_size equals hidden_size (ELECTRA base/large)"
        )
    if max_position_embeddings is not None and (
        not isinstance(max_position_embeddings, int) or isinstance(max_position_embeddings, bool) or max_position_embeddings < 1
    ):
        raise ValueError(f"max_position_embeddings={max_position_embeddings!r} is not valid; choose a positive integer")
    bad = sorted(set(config_overrides) & set(_FIXED_FIELDS))
    if bad:
        raise ValueError(
            f"{bad[0]} cannot be overridden in a conversion (it comes from the source weights or from the scheme / "
            "keep_absolute / max_position_embeddings arguments)"
        )
    legacy = source.legacy
    if legacy:
        expected = LEGACY_RELATIVE[legacy]
        scheme = expected if scheme is None else scheme
        _check_scheme(scheme)
        if scheme != expected:
            raise ValueError(
                f"scheme={scheme!r} is not valid for a transformers 4.x position_embedding_type={legacy!r} checkpoint; "
                f"choose: {expected} (it reproduces {legacy} exactly)"
            )
        if keep_absolute:
            raise ValueError(
                f"keep_absolute=True is not valid for a position_embedding_type={legacy!r} checkpoint: 4.x never added its "
                "position_embeddings table (it stayed at its random initialisation); leave keep_absolute unset"
            )
        bad = sorted(set(config_overrides) & set(_LEGACY_FIXED_FIELDS))
        if bad:
            raise ValueError(f"{bad[0]} cannot be overridden when converting a {legacy} checkpoint (it fixes the table mapping)")
        P = cfg.get("max_position_embeddings", 512)
        if legacy == "relative_key_query" and max_position_embeddings is not None and max_position_embeddings < P and exact:
            raise ValueError(
                f"max_position_embeddings={max_position_embeddings} is smaller than the checkpoint's {P}: the relative "
                f"table would be cropped and outputs change past that distance; choose ≥ {P} or drop exact"
            )
        return scheme, False
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"position_embedding_type={cfg.get('position_embedding_type')!r} (config.json) is not valid; "
            f"choose a checkpoint with one of: absolute, {', '.join(LEGACY_RELATIVE)}"
        )
    if scheme is None:
        from .relative_positions import SCHEMES

        raise ValueError(f"scheme=None: an absolute-position source needs a scheme; choose one of: {', '.join(SCHEMES)}")
    _check_scheme(scheme)
    keep_absolute = True if keep_absolute is None else bool(keep_absolute)
    if exact:
        if not keep_absolute:
            raise ValueError(
                "keep_absolute=False (--drop-absolute) cannot reproduce an absolute-position source exactly (its "
                "positions live in the dropped table); choose keep_absolute=True or drop exact"
            )
        if scheme not in EXACT_FROM_ABSOLUTE or init != "preserve":
            raise ValueError(
                f"scheme={scheme!r} with init={init!r} cannot reproduce the source exactly (it changes the attention scores "
                f"from the start); with exact=True choose one of: {', '.join(EXACT_FROM_ABSOLUTE)} (init='preserve')"
            )
    return scheme, keep_absolute


def _convert_bert(src, scheme=None, keep_absolute=None, *, max_position_embeddings=None, exact=False, head="auto",
                  init="preserve", dtype=torch.float32, source=None, **config_overrides):
    """(model, info): the conversion behind convert_bert_to_relpos / convert_checkpoint."""
    from .configuration_relpos_bert import RelPosBertConfig

    source = source or _load_source(src)
    scheme, keep_absolute = _plan_bert(source, scheme, keep_absolute, max_position_embeddings, exact, init,
                                       config_overrides)
    kind = _target_head(source, head)
    cfg, notes = source.config, []
    legacy = source.legacy
    base, heads = _split_base(source.state)

    # --- absolute positions: RoBERTa's table starts at padding_idx + 1 (rows below belong to padding) ---
    offset = cfg.get("pad_token_id", 1) + 1 if source.model_type in _ROBERTA_LIKE else 0
    P_source = cfg.get("max_position_embeddings", 512) - offset
    distance_tables = sorted(n for n in base if n.endswith("attention.self.distance_embedding.weight"))
    if legacy:
        if len(distance_tables) != cfg.get("num_hidden_layers"):
            raise ValueError(
                f"position_embedding_type={legacy!r} but the source has {len(distance_tables)} distance_embedding tables "
                f"for num_hidden_layers={cfg.get('num_hidden_layers')}; the checkpoint is incomplete"
            )
        P_source = (base[distance_tables[0]].shape[0] + 1) // 2  # 4.x sized it 2·max_position_embeddings − 1
    P = max_position_embeddings or P_source
    table = base.pop("embeddings.position_embeddings.weight", None)
    for buffer in ("embeddings.position_ids", "embeddings.token_type_ids"):
        base.pop(buffer, None)
    if keep_absolute:
        if table is None:
            raise ValueError("the source has no embeddings.position_embeddings.weight; choose keep_absolute=False")
        table = table[offset:]
        if P != P_source:
            notes.append(
                f"learned absolute table resized {P_source} → {P} rows"
                + (" (rows ≥ %d copy row p mod %d, Longformer-style)" % (P_source, P_source) if P > P_source else " (cropped)")
            )
        base["embeddings.position_embeddings.weight"] = _extend_positions(table, P)
    elif legacy:
        notes.append(f"embeddings.position_embeddings dropped: 4.x never added it with position_embedding_type={legacy!r}")
    elif table is not None:
        notes.append("absolute position table dropped: the model is purely relative and runs at any length")

    # --- config ---
    fields = {k: cfg[k] for k in _BERT_CONFIG_FIELDS if cfg.get(k) is not None}
    fields.setdefault("hidden_act", "gelu")
    if kind != "base" and kind != "masked_lm":
        if cfg.get("id2label"):
            fields["id2label"] = {int(k): v for k, v in cfg["id2label"].items()}
            fields["label2id"] = dict(cfg.get("label2id") or {v: int(k) for k, v in cfg["id2label"].items()})
        elif cfg.get("num_labels"):
            fields["num_labels"] = cfg["num_labels"]
    if kind == "masked_lm" and source.model_type != "bert" and fields["hidden_act"] != "gelu":
        raise ValueError(
            f"hidden_act={fields['hidden_act']!r}: the {source.model_type} MLM head applies gelu, relpos_bert's applies "
            "hidden_act; choose head='base' to convert the encoder alone"
        )
    scheme_fields = {}
    if legacy == "relative_key":
        scheme_fields = {"max_relative_position": P_source - 1, "relative_value": False}
    config = RelPosBertConfig(
        **fields,
        max_position_embeddings=P,
        relative_position=scheme,
        absolute_position="learned" if keep_absolute else "none",
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        **scheme_fields,
        **config_overrides,
    )

    # --- legacy relative tables ---
    for name in distance_tables:
        tensor = base.pop(name)
        stem = name[: -len("distance_embedding.weight")] + "relative_position."
        if legacy == "relative_key_query":
            base[stem + "distance_embedding.weight"] = _resize_distance_table(tensor, P_source, P)
        elif legacy == "relative_key":
            # 4.x: q_i·e[i − j + P − 1]; shaw: q_i·a[j − i + k], k = P − 1 → a = e reversed
            base[stem + "relative_key.weight"] = tensor.flip(0).clone()
        else:
            notes.append(f"{name} dropped (position_embedding_type is absolute)")

    # --- weights ---
    prefix = "" if kind == "base" else "bert."
    mapped = {prefix + k: v for k, v in base.items()}
    mapped.update(_map_heads(source, kind, heads, notes))
    model = _relpos_bert_class(kind)(config)
    if init == "preserve":
        _preserve_init(model, scheme)
    target = model.state_dict()
    pooler = [k for k in mapped if k.startswith(prefix + "pooler.") and k not in target]
    if pooler:  # e.g. BertForPreTraining's pooler feeds the dropped next-sentence head
        notes.append(f"pooler dropped ({type(model).__name__} has none): {', '.join(pooler)}")
        for k in pooler:
            mapped.pop(k)
    unexpected = sorted(k for k in mapped if k not in target)
    if unexpected:
        raise ValueError(f"source parameters the converted model has no place for: {', '.join(unexpected[:8])}")
    for name, tensor in mapped.items():
        if tuple(target[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: source shape {tuple(tensor.shape)} does not match relpos_bert's {tuple(target[name].shape)}")
    tied = config.tie_word_embeddings and kind == "masked_lm"
    if tied:
        mapped.pop("cls.predictions.decoder.weight", None)
    missing = sorted(k for k in target if k not in mapped and not (tied and k == "cls.predictions.decoder.weight"))
    model.load_state_dict({k: v.detach().to(target[k].dtype).clone() for k, v in mapped.items()}, strict=False)
    if tied:
        model.tie_weights()
    new_relative = [k for k in missing if ".relative_position." in k or k.startswith(("relative_position.", "encoder.relative_position."))]
    other_new = [k for k in missing if k not in new_relative]
    if other_new:
        notes.append(f"newly initialised (not in the source): {', '.join(other_new)}")
    model = model.to(dtype if dtype is not None else base["embeddings.word_embeddings.weight"].dtype)
    model.eval()

    if legacy:  # a cropped shaw_kq table changes distances past the new size
        exact_result = legacy == "relative_key" or P >= P_source
    else:
        exact_result = bool(keep_absolute and init == "preserve" and scheme in EXACT_FROM_ABSOLUTE)
    info = {
        "source_model_type": source.model_type,
        "source_architecture": source.architecture,
        "source_position_embedding_type": cfg.get("position_embedding_type", "absolute"),
        "model_class": type(model).__name__,
        "relative_position": scheme,
        "absolute_position": config.absolute_position,
        "max_position_embeddings": P,
        "init": init,
        "exact": exact_result,
        "new_relative_parameters": new_relative,
        "notes": notes,
    }
    return model, info


def convert_bert_to_relpos(
    src,
    scheme: str | None = None,
    keep_absolute: bool | None = None,
    *,
    max_position_embeddings: int | None = None,
    exact: bool = False,
    head: str = "auto",
    init: str = "preserve",
    dtype: torch.dtype | None = torch.float32,
    **config_overrides,
):
    """Convert a BERT-family encoder to ``relpos_bert`` with the relative scheme ``scheme``.

    Args:
        src: a local checkpoint folder, a Hub repo id, or a transformers model object. Supported: BERT,
            RoBERTa, XLM-RoBERTa, CamemBERT and ELECTRA (embedding_size == hidden_size) encoders with
            their task heads (``*Model``, ``*ForMaskedLM``, ``BertForPreTraining`` (NSP head dropped),
            ``*ForSequenceClassification``, ``*ForTokenClassification``, ``*ForQuestionAnswering``,
            ``*ForMultipleChoice``), and transformers 4.x checkpoints with
            ``position_embedding_type="relative_key"`` / ``"relative_key_query"`` (read from config.json and
            the raw weights, since transformers 5 drops them).
        scheme: the relative scheme (``relative_positions.SCHEMES``). Legacy checkpoints: ``None`` or
            their exact counterpart (``relative_key`` → ``shaw`` with clip P − 1 and the table reversed,
            ``relative_key_query`` → ``shaw_kq`` with the table as is).
        keep_absolute: keep the learned absolute table (default for absolute sources) or drop it
            (purely relative, any length). Legacy checkpoints never used theirs: leave it ``None``.
        max_position_embeddings: resize the absolute table (Longformer-style copies past the source's
            length, exact on shorter inputs) / size ``shaw_kq``'s table. Default: the source's
            (RoBERTa: ``max_position_embeddings − padding_idx − 1``, its table shifted accordingly).
        exact: refuse (ValueError) options that cannot reproduce the source's outputs.
        head: ``"auto"`` (the source's task head) or ``"base"`` (encoder only).
        init: ``"preserve"`` (zero the new relative parameters where that makes them add nothing:
            t5, shaw, shaw_kq, xl, fire) or ``"random"`` (each scheme's own initialisation).
        dtype: dtype of the returned model (``None``: the source's).
        **config_overrides: further ``RelPosBertConfig`` fields (scheme hyper-parameters, dropouts).

    Returns a ``RelPosBert*`` model in eval mode.
    """
    model, _ = _convert_bert(src, scheme, keep_absolute, max_position_embeddings=max_position_embeddings, exact=exact,
                             head=head, init=init, dtype=dtype, **config_overrides)
    return model


def _probe_ids(vocab_size: int, length: int, avoid: set) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, max(6, min(vocab_size, 1000)), (2, length), generator=generator)
    for token in avoid:
        ids[ids == token] = 5 if token != 5 else 6
    return ids


def _probe_drift(source: _Source, model) -> dict | None:
    """max/mean |Δ| of the last hidden state, converted vs source (run by transformers), on random ids with
    right padding. None where transformers 5 cannot run the source (legacy relative_key checkpoints)."""
    if source.legacy:
        return None
    from transformers import AutoModel

    if source.model is not None:
        reference = source.model.base_model
    else:
        reference = AutoModel.from_pretrained(source.folder, dtype=torch.float32)
    reference = reference.float().eval()
    base = model.base_model.float()
    length = min(32, base.config.max_position_embeddings)
    ids = _probe_ids(base.config.vocab_size, length, {source.config.get("pad_token_id", 0)})
    mask = torch.ones_like(ids)
    mask[1, length // 2:] = 0
    ids[1, length // 2:] = source.config.get("pad_token_id", 0) or 0
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = base(input_ids=ids, attention_mask=mask).last_hidden_state
    diff = (expected - got).abs()[mask.bool()]
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "probe_length": int(length)}


# ---------------------------------------------------------------------------------------------------
# A converted checkpoint folder
# ---------------------------------------------------------------------------------------------------


def _check_out(out) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out={str(out)!r} already exists and is not an empty folder; choose a new or empty folder")
    return out


def _tokenizer_source(source: _Source, tokenizer, no_tokenizer):
    if no_tokenizer:
        return None
    if tokenizer is not None:
        return tokenizer
    folder = source.folder
    if folder is not None and any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return str(folder)
    raise ValueError(
        f"tokenizer=None: the source ({str(folder) if folder else type(source.model).__name__}) has no tokenizer files "
        f"({', '.join(_TOKENIZER_FILES)}); pass tokenizer=<folder or Hub id> (--tokenizer), or no_tokenizer=True "
        "(--no-tokenizer) to write a checkpoint without one"
    )


def convert_checkpoint(
    src,
    out,
    scheme: str | None = None,
    *,
    keep_absolute: bool | None = None,
    max_position_embeddings: int | None = None,
    exact: bool = False,
    head: str = "auto",
    init: str = "preserve",
    tokenizer=None,
    no_tokenizer: bool = False,
    check: bool = True,
    dtype: torch.dtype | None = torch.float32,
    **config_overrides,
) -> dict:
    """Convert ``src`` and write a ``relpos_bert`` / ``relpos_t5`` checkpoint folder ``out``.

    The source family comes from its config.json ``model_type``: BERT-family encoders and legacy 4.x
    ``relative_key*`` BERTs go through :func:`convert_bert_to_relpos` (see it for every argument); T5 /
    mT5 through :func:`convert_t5_to_relpos` (scheme ``t5``, exact; ``keep_absolute`` and
    ``max_position_embeddings`` do not apply). ``out`` gets safetensors weights, config.json with
    ``auto_map``, the modeling code (loadable with ``trust_remote_code=True`` without hf_relpos), the
    tokenizer (from the source or ``tokenizer``; a source without one fails unless ``no_tokenizer``) and
    ``conversion.json`` (what was done, and with ``check`` the measured drift against the source on a
    probe input). Everything is written into a temporary folder beside ``out`` and renamed at the end:
    a failure leaves no partial ``out``, which must not exist or be empty.

    Returns the conversion report (also written to ``conversion.json``).
    """
    out = _check_out(out)
    source = _load_source(src, read_weights=False)
    _check_model_type(source)
    is_t5 = source.model_type in T5_MODEL_TYPES
    if is_t5:
        if scheme not in (None, "t5"):
            _check_scheme(scheme)
            raise ValueError(f"scheme={scheme!r} is not valid for a {source.model_type} source; choose: t5 (exact)")
        for name, value in (("keep_absolute", keep_absolute), ("max_position_embeddings", max_position_embeddings)):
            if value:
                raise ValueError(f"{name}={value!r} does not apply to a T5 source (T5 has no absolute positions); leave it unset")
        if head not in HEADS:
            raise ValueError(f"head={head!r} is not valid; choose one of: {', '.join(HEADS)}")
        if init not in INITS:
            raise ValueError(f"init={init!r} is not valid; choose one of: {', '.join(INITS)}")
    else:
        _plan_bert(source, scheme, keep_absolute, max_position_embeddings, exact, init, config_overrides)
        _target_head(source, head)
        if source.model is None:
            source.state = _read_state_dict(source.folder)
    tokenizer_src = _tokenizer_source(source, tokenizer, no_tokenizer)
    tok = None
    if tokenizer_src is not None:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(tokenizer_src)
        except Exception as err:
            raise ValueError(f"tokenizer={str(tokenizer_src)!r} could not be loaded ({type(err).__name__}: {err})") from None

    if is_t5:
        model = convert_t5_to_relpos(source.model if source.model is not None else str(source.folder), dtype=dtype,
                                     **config_overrides)
        info = {"source_model_type": source.model_type, "source_architecture": source.architecture,
                "model_class": type(model).__name__, "relative_position": "t5", "absolute_position": "none",
                "exact": True, "notes": []}
    else:
        model, info = _convert_bert(src, scheme, keep_absolute, max_position_embeddings=max_position_embeddings,
                                    exact=exact, head=head, init=init, dtype=dtype, source=source, **config_overrides)
        if check:
            info["check"] = _probe_drift(source, model)
            if info["check"] is None:
                info["notes"].append("no drift check: transformers 5 cannot run a legacy relative_key checkpoint")
            elif exact and info["check"]["max_abs_diff"] > 1e-4:
                raise ValueError(
                    f"exact=True but the converted model differs from the source by {info['check']['max_abs_diff']:.3g} "
                    "(max |Δ| of the last hidden state on a probe input); nothing was written"
                )
    info["source"] = str(src) if isinstance(src, (str, os.PathLike)) else type(src).__name__
    info["tokenizer"] = str(tokenizer_src) if tokenizer_src is not None else None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.converting-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # (not mkdtemp: its 0700 mode would stick to the renamed folder)
    try:
        model.save_pretrained(tmp)
        if tok is not None:
            if max_position_embeddings:
                tok.model_max_length = max_position_embeddings
            tok.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        _check_out(out)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info["output_dir"] = str(out)
    return info


__all__ = ["convert_bert_to_relpos", "convert_checkpoint", "convert_t5_to_relpos"]
