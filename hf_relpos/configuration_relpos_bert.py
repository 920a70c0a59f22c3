"""Configuration of ``relpos_bert``: a BERT encoder whose position information comes from a relative
position scheme (one of ``relative_positions.SCHEMES``) and, optionally, absolute embeddings.

This file travels as remote code with every ``save_pretrained`` folder: it imports only
transformers and the flat sibling module ``relative_positions``.
"""

from __future__ import annotations

from transformers import EncoderDecoderConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .scheme_config import (
    FLAT_SCHEME_FIELDS,
    add_flat_scheme_fields,
    check_head_size,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_sliding_window,
    resolve_layer_types,
    resolve_local_parameters,
    resolve_scheme_parameters,
    scheme_class,
    validate_absolute_position,
    validate_per_layer,
    warn_misspelt_fields,
)

# Every Auto class one relpos_bert checkpoint can be loaded with (``trust_remote_code=True``).
RELPOS_BERT_AUTO_MAP = {
    "AutoConfig": "configuration_relpos_bert.RelPosBertConfig",
    "AutoModel": "modeling_relpos_bert.RelPosBertModel",
    "AutoModelForMaskedLM": "modeling_relpos_bert.RelPosBertForMaskedLM",
    "AutoModelForCausalLM": "modeling_relpos_bert.RelPosBertLMHeadModel",
    "AutoModelForSequenceClassification": "modeling_relpos_bert.RelPosBertForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_relpos_bert.RelPosBertForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_relpos_bert.RelPosBertForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_relpos_bert.RelPosBertForMultipleChoice",
}


@add_flat_scheme_fields
class RelPosBertConfig(PreTrainedConfig):
    r"""Configuration of a [`RelPosBertModel`]: the fields of `BertConfig` plus the relative position
    scheme fields.

    Args (beyond BERT's usual ones):
        relative_position (`str`, defaults to `"t5"`): the scheme, a key of `relative_positions.SCHEMES`
            (each class there documents itself: paper, summary, hyper-parameters).
        relative_position_parameters (`dict`, *optional*): the scheme's hyper-parameters, keyed as its class's
            `defaults` (missing keys take those defaults; the config stores the complete dict, validated by the
            class). The flat fields of hf_relpos 0.1 (`max_relative_position`, `relative_value`,
            `relative_attention_num_buckets`, `relative_attention_max_distance`, `position_buckets`,
            `max_relative_positions`, `rope_theta`, `fire_*`) are still accepted as keyword arguments (saved 0.1
            configs load) and readable as attributes: each is an alias of one scheme's key (the classes' `aliases`).
        absolute_position (`str`, defaults to `"none"`): `"learned"` (BERT's table, inputs limited to
            `max_position_embeddings`), `"sinusoidal"` (fixed, any length) or `"none"`.
        relative_position_per_layer (`bool`, *optional*): one scheme per layer (True) or one shared by all
            layers (False); None takes the scheme's own default (its class's `shared_by_default`).
        segment_match_embedding (`bool`, defaults to `False`): add a learned embedding of one bit per token: does
            the same token id occur in the other segment (other `token_type_ids`, unpadded)? The "exact match"
            feature of DrQA (Chen et al., 2017, "Reading Wikipedia to Answer Open-Domain Questions"): it hands a
            model trained from scratch the question/context overlap it would otherwise have to learn to find.
        layer_types (`list[str]`, *optional*): one per layer, `"full_attention"` (every token sees every token) or
            `"sliding_attention"` (a local layer: token i sees the keys j with |i − j| ≤ `sliding_window`); None =
            all full, what every checkpoint saved before local layers existed means. ModernBERT's pattern is
            one full layer then two local ones: `["full_attention", "sliding_attention", "sliding_attention", ...]`.
        sliding_window (`int`, defaults to 64): the half-width w of a local layer's window (2w + 1 keys). The same
            convention as transformers' `sliding_window_bidirectional_overlay` and ModernBERT's `sliding_window`
            property; ModernBERT's `local_attention` (128) is the whole window, 2w.
        local_relative_position_parameters (`dict`, *optional*): hyper-parameters of the local layers' scheme
            that differ from `relative_position_parameters` (e.g. `{"theta": 10000.0}` for rotary with a global
            theta of 160,000, as ModernBERT). None: local layers use the global layers' scheme (and share it when
            the scheme is shared by layers).
        unpad_inputs (`bool`, defaults to `True`): in eager mode, a right-padded batch (≥ 10% padding) runs on its
            real tokens only, and one row packed by `DataCollatorWithFlattening` (restarting `position_ids`)
            attends within each text: each text's outputs are those of the padded batch, and padding positions
            come out as zeros. False keeps the padded computation everywhere (what an exported graph computes).
            A decoder never unpads.
        is_decoder (`bool`, defaults to `False`): a left-to-right decoder ([`RelPosBertLMHeadModel`]): causal
            self-attention with each scheme's causal form, a KV cache, `generate()`. Full layers only.
        add_cross_attention (`bool`, defaults to `False`): with `is_decoder`, each layer also attends to an
            encoder's outputs (`crossattention`, HF BERT's names): the decoder of an `EncoderDecoderModel`.

    Example:

    ```python
    >>> from hf_relpos import RelPosBertConfig, RelPosBertForSequenceClassification
    >>> config = RelPosBertConfig(relative_position="alibi", hidden_size=256, num_hidden_layers=4,
    ...                           num_attention_heads=4, intermediate_size=1024)
    >>> model = RelPosBertForSequenceClassification(config)
    ```
    """

    model_type = "relpos_bert"

    def __init__(
        self,
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        classifier_dropout=None,
        tie_word_embeddings=True,
        relative_position="t5",
        absolute_position="none",
        relative_position_per_layer=None,
        relative_position_parameters=None,
        segment_match_embedding=False,
        layer_types=None,
        sliding_window=64,
        local_relative_position_parameters=None,
        unpad_inputs=True,
        is_decoder=False,
        add_cross_attention=False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.pad_token_id = pad_token_id
        self.classifier_dropout = classifier_dropout
        self.tie_word_embeddings = tie_word_embeddings

        self.relative_position = relative_position
        self.absolute_position = absolute_position
        self.relative_position_per_layer = relative_position_per_layer
        self.segment_match_embedding = segment_match_embedding
        # a bad depth is reported by _validate (naming num_hidden_layers), not by transformers' layer_types check
        depth_ok = isinstance(num_hidden_layers, int) and num_hidden_layers > 0
        self.layer_types = resolve_layer_types(layer_types, num_hidden_layers) if depth_ok else layer_types
        self.sliding_window = sliding_window
        self.local_relative_position_parameters = local_relative_position_parameters
        self.unpad_inputs = unpad_inputs
        self.is_decoder = is_decoder
        self.add_cross_attention = add_cross_attention
        # the scheme's hyper-parameters: the given dict, else 0.1 flat fields, else the class defaults
        flat = {name: kwargs.pop(name) for name in FLAT_SCHEME_FIELDS if name in kwargs}
        scheme_class(relative_position)  # ValueError naming the field and the choices
        # a saved config (it carries transformers_version) keeps what it was saved with for keys added later
        self.relative_position_parameters = resolve_scheme_parameters(
            relative_position, relative_position_parameters, flat, saved="transformers_version" in kwargs
        )

        warn_misspelt_fields(type(self), kwargs)
        # one checkpoint serves every Auto class, with or without hf_relpos installed
        if kwargs.get("auto_map") is None:
            kwargs["auto_map"] = dict(RELPOS_BERT_AUTO_MAP)
        super().__init__(**kwargs)
        self._validate()

    def scheme_roles(self):
        """(scheme name, its parameter dict) of each scheme this config uses: one for relpos_bert."""
        return [(self.relative_position, self.relative_position_parameters)]

    def validate(self):
        """Run on save_pretrained: our checks, then transformers' own class validators."""
        self._validate()
        parent = getattr(super(), "validate", None)
        if parent is not None:
            parent()

    def _validate(self):
        """ValueError naming the field, the bad value and the valid choices."""
        for field in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            check_positive_int(field, getattr(self, field))
        check_head_size(self.hidden_size, self.num_attention_heads)
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_probability(field, getattr(self, field))
        if self.classifier_dropout is not None:
            check_probability("classifier_dropout", self.classifier_dropout)
        for field in ("initializer_range", "layer_norm_eps"):
            check_positive_number(field, getattr(self, field))
        if self.pad_token_id is not None and (
            not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size
        ):
            raise ValueError(
                f"pad_token_id={self.pad_token_id!r} is not valid; choose None or an integer in [0, {self.vocab_size - 1}]"
            )
        is_decoder = getattr(self, "is_decoder", False)
        if getattr(self, "add_cross_attention", False) and not is_decoder:
            raise ValueError("add_cross_attention=True needs is_decoder=True (cross-attention is a decoder's)")
        if is_decoder and "sliding_attention" in (self.layer_types or ()):
            raise ValueError(
                f"is_decoder=True with layer_types={self.layer_types!r} is not valid: local (sliding_attention) "
                "layers are for encoders; choose layer_types=None (all full_attention) for a decoder"
            )
        for field in (
            "tie_word_embeddings",
            "segment_match_embedding",
            "unpad_inputs",
            "is_decoder",
            "add_cross_attention",
        ):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field}={getattr(self, field)!r} is not valid; choose one of: True, False")
        validate_absolute_position(self.absolute_position)
        validate_per_layer(self.relative_position_per_layer)
        self.relative_position_parameters = resolve_scheme_parameters(
            self.relative_position,
            self.relative_position_parameters,
            head_dim=self.hidden_size // self.num_attention_heads,
        )
        if len(self.layer_types or ()) != self.num_hidden_layers and set(self.layer_types or ()) <= {"full_attention"}:
            self.layer_types = None  # the default of another depth (num_hidden_layers set after __init__)
        self.layer_types = resolve_layer_types(self.layer_types, self.num_hidden_layers)
        check_sliding_window(self.sliding_window)
        self.local_scheme_parameters()

    def local_scheme_parameters(self) -> dict | None:
        """The complete parameters of the local layers' scheme, or None when they use the global one."""
        return resolve_local_parameters(
            self.relative_position,
            self.relative_position_parameters,
            self.local_relative_position_parameters,
            "local_relative_position_parameters",
            head_dim=self.hidden_size // self.num_attention_heads,
        )


class RelPosBertEncoderDecoderConfig(EncoderDecoderConfig):
    r"""Configuration of a [`RelPosBertEncoderDecoderModel`]: transformers' `EncoderDecoderConfig` whose two
    sub-configs are always [`RelPosBertConfig`] (the decoder with `is_decoder=True, add_cross_attention=True`).

    Why a class of its own: `EncoderDecoderConfig` builds its sub-configs by looking their `model_type` up in
    transformers' static config mapping (`SubConfigSpec.get_config_class`), never through `auto_map`; where
    hf_relpos is not installed "relpos_bert" is not in that mapping, so a saved BERT2BERT could not load with
    `trust_remote_code=True`. This class names its sub-config class directly and travels as remote code with
    every save (model_type `relpos_bert_encoder_decoder`)."""

    model_type = "relpos_bert_encoder_decoder"
    sub_configs_defaults = {
        "encoder": SubConfigSpec(config_class=RelPosBertConfig),
        "decoder": SubConfigSpec(
            config_class=RelPosBertConfig, init_kwargs={"is_decoder": True, "add_cross_attention": True}
        ),
    }

    # what cards and tables read from a relpos config, answered by the halves (read-only, never saved)
    @property
    def relative_position(self):
        return self.encoder.relative_position

    @property
    def decoder_relative_position(self):
        return self.decoder.relative_position

    @property
    def absolute_position(self):
        return self.encoder.absolute_position


__all__ = ["RelPosBertConfig", "RelPosBertEncoderDecoderConfig"]
