"""Configuration of ``relpos_t5``: a T5-style encoder-decoder with any relative position scheme.

The encoder's self-attention uses ``relative_position`` with ``relative_position_parameters``; the
decoder's causal self-attention uses ``decoder_relative_position`` with
``decoder_relative_position_parameters`` — or, when ``decoder_relative_position`` is None, the
encoder's scheme and parameter dict, in its causal variant. Cross-attention has no relative term, as
in T5. This file travels as remote code: it imports only transformers and the flat
``relative_positions`` module.
"""

from __future__ import annotations

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

from .scheme_config import (
    FLAT_SCHEME_FIELDS,
    SCHEMES,
    add_flat_scheme_fields,
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


@add_flat_scheme_fields
class RelPosT5Config(PreTrainedConfig):
    r"""Configuration of a :class:`RelPosT5Model` / :class:`RelPosT5ForConditionalGeneration`.

    T5's fields keep T5's names and defaults (``d_model``, ``d_kv``, ``d_ff``, ``num_layers``,
    ``num_decoder_layers``, ``num_heads``, ``feed_forward_proj`` "relu" or "gated-<act>", ...).
    Position fields:

    - ``relative_position`` (default ``"t5"``): the encoder self-attention scheme, a key of ``SCHEMES``.
    - ``relative_position_parameters`` (dict, optional): its hyper-parameters, keyed as its class's
      ``defaults`` (missing keys take the defaults; stored complete and validated by the class).
    - ``decoder_relative_position`` (default ``None`` = same as the encoder): the decoder
      self-attention scheme (its causal variant is used).
    - ``decoder_relative_position_parameters`` (dict, optional): the decoder scheme's hyper-parameters,
      only when ``decoder_relative_position`` is set (None otherwise: the decoder shares the encoder's dict).
    - ``absolute_position`` (default ``"none"``): "none", "learned" or "sinusoidal" embeddings added
      to the input embeddings of both stacks (``max_position_embeddings`` bounds "learned").
    - the flat scheme fields of hf_relpos 0.1 (``relative_attention_num_buckets``,
      ``relative_attention_max_distance`` — T5's own names, used by conversion from HF T5 —,
      ``max_relative_position``, ``relative_value``, ...) are still accepted as keyword arguments and
      readable as attributes: each is an alias of one scheme's key and applies to both dicts.
    - ``encoder_layer_types`` (list, optional): one per encoder layer, ``"full_attention"`` or
      ``"sliding_attention"`` (a local layer: token i sees the keys j with |i − j| ≤ ``encoder_sliding_window``);
      None = all full (every checkpoint saved before local layers). ``encoder_sliding_window`` (default 64) is the
      half-width w, ModernBERT's convention (its ``local_attention`` is the whole window, 2w);
      ``encoder_local_relative_position_parameters`` (dict, optional) the local layers' scheme parameters that
      differ from the encoder's. Named for the encoder: transformers builds the decoder's cache from a config's
      ``layer_types`` / ``sliding_window``, and the decoder's self-attention stays full.
    - ``tie_word_embeddings`` (default True): tie ``lm_head`` to ``shared``; as in T5, a tied model
      rescales the decoder output by ``d_model ** -0.5`` before the LM head.
    """

    model_type = "relpos_t5"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_layers",
        "head_dim": "d_kv",
    }

    def __init__(
        self,
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=None,
        num_heads=8,
        relative_attention_num_buckets=None,
        relative_attention_max_distance=None,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        initializer_factor=1.0,
        feed_forward_proj="relu",
        is_encoder_decoder=True,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=True,
        relative_position="t5",
        decoder_relative_position=None,
        absolute_position="none",
        relative_position_per_layer=None,
        relative_position_parameters=None,
        decoder_relative_position_parameters=None,
        max_position_embeddings=512,
        encoder_layer_types=None,
        encoder_sliding_window=64,
        encoder_local_relative_position_parameters=None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.d_kv = d_kv
        self.d_ff = d_ff
        self.num_layers = num_layers
        self.num_decoder_layers = num_decoder_layers if num_decoder_layers is not None else num_layers
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_factor = initializer_factor
        self.feed_forward_proj = feed_forward_proj
        self.use_cache = use_cache
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.relative_position = relative_position
        self.decoder_relative_position = decoder_relative_position
        self.absolute_position = absolute_position
        self.relative_position_per_layer = relative_position_per_layer
        self.max_position_embeddings = max_position_embeddings
        depth_ok = isinstance(num_layers, int) and num_layers > 0  # else validate_relpos names num_layers
        self.encoder_layer_types = (
            resolve_layer_types(encoder_layer_types, num_layers, "encoder_layer_types")
            if depth_ok
            else encoder_layer_types
        )
        self.encoder_sliding_window = encoder_sliding_window
        self.encoder_local_relative_position_parameters = encoder_local_relative_position_parameters
        kwargs.pop("classifier_dropout", None)  # written by 0.1, never used by any relpos_t5 model
        # the schemes' hyper-parameters: the given dicts, else 0.1 flat fields (shared by both), else defaults
        flat = {name: kwargs.pop(name) for name in FLAT_SCHEME_FIELDS if name in kwargs}
        flat.update(
            relative_attention_num_buckets=relative_attention_num_buckets,
            relative_attention_max_distance=relative_attention_max_distance,
        )
        names = [scheme_class(relative_position).name]
        if decoder_relative_position is not None:
            names.append(scheme_class(decoder_relative_position, "decoder_relative_position").name)
        # a saved config (it carries transformers_version) keeps what it was saved with for keys added later
        saved = "transformers_version" in kwargs
        for switch in [f for f, v in flat.items() if v is True and not any(f in SCHEMES[n].aliases for n in names)]:
            resolve_scheme_parameters(relative_position, None, {switch: True})  # ValueError naming the field
        self.relative_position_parameters = resolve_scheme_parameters(
            relative_position,
            relative_position_parameters,
            {k: v for k, v in flat.items() if k in SCHEMES[relative_position].aliases},
            saved=saved,
        )
        if decoder_relative_position is None:
            if decoder_relative_position_parameters is not None:
                raise ValueError(
                    "decoder_relative_position_parameters is only valid with decoder_relative_position set; choose "
                    "a decoder scheme, or put the parameters in relative_position_parameters (shared by both stacks)"
                )
            self.decoder_relative_position_parameters = None
        else:
            self.decoder_relative_position_parameters = resolve_scheme_parameters(
                decoder_relative_position,
                decoder_relative_position_parameters,
                {k: v for k, v in flat.items() if k in SCHEMES[decoder_relative_position].aliases},
                "decoder_",
                causal=True,
                saved=saved,
            )
        # derived from feed_forward_proj; never serialised
        kwargs.pop("dense_act_fn", None)
        kwargs.pop("is_gated_act", None)
        warn_misspelt_fields(type(self), kwargs)
        if "auto_map" not in kwargs:
            # one checkpoint serves every Auto class (the code files travel with save_pretrained)
            kwargs["auto_map"] = {
                "AutoConfig": "configuration_relpos_t5.RelPosT5Config",
                "AutoModel": "modeling_relpos_t5.RelPosT5Model",
                "AutoModelForSeq2SeqLM": "modeling_relpos_t5.RelPosT5ForConditionalGeneration",
                "AutoModelForTextEncoding": "modeling_relpos_t5.RelPosT5EncoderModel",
            }
        super().__init__(is_encoder_decoder=is_encoder_decoder, **kwargs)
        self.validate_relpos()

    # ----------------------------------------------------------------------------------------------
    @property
    def is_gated_act(self) -> bool:
        return self.feed_forward_proj.split("-")[0] == "gated"

    @property
    def dense_act_fn(self) -> str:
        if self.feed_forward_proj == "gated-gelu":  # T5 v1.1's historical name for gelu_new
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    @property
    def decoder_scheme_name(self) -> str:
        return self.relative_position if self.decoder_relative_position is None else self.decoder_relative_position

    def scheme_roles(self):
        """(scheme name, its parameter dict) of the encoder, then of the decoder self-attention."""
        return [self.encoder_scheme(), self.decoder_scheme()]

    def encoder_scheme(self):
        return self.relative_position, self.relative_position_parameters

    def decoder_scheme(self):
        if self.decoder_relative_position is None:
            return self.relative_position, self.relative_position_parameters
        return self.decoder_relative_position, self.decoder_relative_position_parameters

    def validate(self):
        """Run on save_pretrained: our checks, then transformers' own class validators."""
        self.validate_relpos()
        parent = getattr(super(), "validate", None)
        if parent is not None:
            parent()

    def validate_relpos(self):
        """Raise ValueError naming the field, the bad value and the valid choices."""
        for field in (
            "vocab_size",
            "d_model",
            "d_kv",
            "d_ff",
            "num_layers",
            "num_decoder_layers",
            "num_heads",
            "max_position_embeddings",
        ):
            check_positive_int(field, getattr(self, field))
        proj = self.feed_forward_proj
        parts = proj.split("-") if isinstance(proj, str) else []
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or parts[-1] not in ACT2FN:
            raise ValueError(
                f"feed_forward_proj={proj!r} is not valid; choose '<act>' or 'gated-<act>' (e.g. 'relu', "
                f"'gated-gelu') with <act> one of: {', '.join(sorted(ACT2FN))}"
            )
        check_probability("dropout_rate", self.dropout_rate)
        for field in ("layer_norm_epsilon", "initializer_factor"):
            check_positive_number(field, getattr(self, field))
        scheme_class(self.relative_position)
        if self.decoder_relative_position is not None:
            scheme_class(self.decoder_relative_position, "decoder_relative_position")
        validate_absolute_position(self.absolute_position)
        validate_per_layer(self.relative_position_per_layer)
        name, params = self.encoder_scheme()
        self.relative_position_parameters = resolve_scheme_parameters(name, params, head_dim=self.d_kv)
        name, params = self.decoder_scheme()
        prefix = "" if self.decoder_relative_position is None else "decoder_"
        params = resolve_scheme_parameters(name, params, prefix=prefix, causal=True, head_dim=self.d_kv)
        if self.decoder_relative_position is not None:
            self.decoder_relative_position_parameters = params
        types = self.encoder_layer_types
        if len(types or ()) != self.num_layers and set(types or ()) <= {"full_attention"}:
            types = None  # the default of another depth (num_layers set after __init__)
        self.encoder_layer_types = resolve_layer_types(types, self.num_layers, "encoder_layer_types")
        check_sliding_window(self.encoder_sliding_window, "encoder_sliding_window")
        self.encoder_local_scheme_parameters()

    def encoder_local_scheme_parameters(self) -> dict | None:
        """The complete parameters of the encoder's local layers' scheme, or None when they use the encoder's."""
        return resolve_local_parameters(
            self.relative_position,
            self.relative_position_parameters,
            self.encoder_local_relative_position_parameters,
            "encoder_local_relative_position_parameters",
            head_dim=self.d_kv,
        )

    def get_text_config(self, decoder=None, encoder=None):
        text_config = super().get_text_config(decoder=decoder, encoder=encoder)
        if decoder and not encoder and text_config is not self:
            # the decoder's config (used e.g. by generate to size its cache) has num_decoder_layers layers
            text_config.num_layers = text_config.num_decoder_layers
        return text_config


__all__ = ["RelPosT5Config"]
