"""Conversion of pretrained checkpoints to the relpos model families.

``convert_t5_to_relpos`` maps an HF ``T5ForConditionalGeneration`` (object or folder) onto a
``RelPosT5ForConditionalGeneration`` with the ``t5`` scheme; outputs are identical.
"""

from __future__ import annotations

import copy
import os

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


__all__ = ["convert_t5_to_relpos"]
