"""Configuration of ``relpos_t5``: a T5-style encoder-decoder with any relative position scheme.

The encoder's self-attention uses ``relative_position``; the decoder's causal self-attention uses
``decoder_relative_position`` (``None``: the same scheme as the encoder), in its causal variant.
Cross-attention has no relative term, as in T5. This file travels as remote code: it imports only
transformers and the flat ``relative_positions`` module.
"""

from __future__ import annotations

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

from .relative_positions import ABSOLUTE_POSITIONS, SCHEMES, scheme_fields, validate_scheme_config


def _positive_int(field, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{field}={value!r} is not valid; choose a positive integer (≥ 1)")


class RelPosT5Config(PreTrainedConfig):
    r"""Configuration of a :class:`RelPosT5Model` / :class:`RelPosT5ForConditionalGeneration`.

    T5's fields keep T5's names and defaults (``d_model``, ``d_kv``, ``d_ff``, ``num_layers``,
    ``num_decoder_layers``, ``num_heads``, ``feed_forward_proj`` "relu" or "gated-<act>", ...).
    Position fields:

    - ``relative_position`` (default ``"t5"``): the encoder self-attention scheme, one of ``SCHEMES``.
    - ``decoder_relative_position`` (default ``None`` = same as the encoder): the decoder
      self-attention scheme (its causal variant is used).
    - ``absolute_position`` (default ``"none"``): "none", "learned" or "sinusoidal" embeddings added
      to the input embeddings of both stacks (``max_position_embeddings`` bounds "learned").
    - the scheme hyper-parameters of ``SCHEME_DEFAULTS`` (``relative_attention_num_buckets``,
      ``relative_attention_max_distance``, ``max_relative_position``, ``relative_value``, ...).
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
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
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
        max_relative_position=128,
        relative_value=False,
        position_buckets=256,
        max_relative_positions=512,
        rope_theta=10000.0,
        fire_mlp_width=32,
        fire_init_c=0.1,
        fire_init_threshold=512.0,
        max_position_embeddings=512,
        classifier_dropout=0.0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.d_kv = d_kv
        self.d_ff = d_ff
        self.num_layers = num_layers
        self.num_decoder_layers = num_decoder_layers if num_decoder_layers is not None else num_layers
        self.num_heads = num_heads
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
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
        self.max_relative_position = max_relative_position
        self.relative_value = relative_value
        self.position_buckets = position_buckets
        self.max_relative_positions = max_relative_positions
        self.rope_theta = rope_theta
        self.fire_mlp_width = fire_mlp_width
        self.fire_init_c = fire_init_c
        self.fire_init_threshold = fire_init_threshold
        self.max_position_embeddings = max_position_embeddings
        self.classifier_dropout = classifier_dropout
        # derived from feed_forward_proj; never serialised
        kwargs.pop("dense_act_fn", None)
        kwargs.pop("is_gated_act", None)
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

    def encoder_scheme_fields(self):
        """Scheme fields of the encoder self-attention (``relative_position``)."""
        return scheme_fields(self, relative_value=bool(self.relative_value) and self.relative_position == "shaw")

    def decoder_scheme_fields(self):
        """Scheme fields of the decoder self-attention (``decoder_relative_position``)."""
        choice = self.decoder_scheme_name
        return scheme_fields(self, relative_position=choice, relative_value=bool(self.relative_value) and choice == "shaw")

    def validate(self):
        """Run on save_pretrained: our checks, then transformers' own class validators."""
        self.validate_relpos()
        parent = getattr(super(), "validate", None)
        if parent is not None:
            parent()

    def validate_relpos(self):
        """Raise ValueError naming the field, the bad value and the valid choices."""
        for field in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                      "max_position_embeddings"):
            _positive_int(field, getattr(self, field))
        proj = self.feed_forward_proj
        parts = proj.split("-") if isinstance(proj, str) else []
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or parts[-1] not in ACT2FN:
            raise ValueError(
                f"feed_forward_proj={proj!r} is not valid; choose '<act>' or 'gated-<act>' (e.g. 'relu', "
                f"'gated-gelu') with <act> one of: {', '.join(sorted(ACT2FN))}"
            )
        for field in ("dropout_rate", "classifier_dropout"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise ValueError(f"{field}={value!r} is not valid; choose a probability in [0, 1)")
        for field in ("layer_norm_epsilon", "initializer_factor"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{field}={value!r} is not valid; choose a positive number")
        if self.relative_position not in SCHEMES:
            raise ValueError(
                f"relative_position={self.relative_position!r} is not valid; choose one of: {', '.join(SCHEMES)}"
            )
        if self.decoder_relative_position is not None and self.decoder_relative_position not in SCHEMES:
            raise ValueError(
                f"decoder_relative_position={self.decoder_relative_position!r} is not valid; choose one of: "
                f"None (same as relative_position), {', '.join(SCHEMES)}"
            )
        if self.absolute_position not in ABSOLUTE_POSITIONS:
            raise ValueError(
                f"absolute_position={self.absolute_position!r} is not valid; choose one of: {', '.join(ABSOLUTE_POSITIONS)}"
            )
        if not isinstance(self.relative_value, bool):
            raise ValueError(f"relative_value={self.relative_value!r} is not valid; choose one of: True, False")
        if self.relative_value and "shaw" not in (self.relative_position, self.decoder_scheme_name):
            raise ValueError(
                f"relative_value=True is only valid when relative_position or decoder_relative_position is 'shaw' "
                f"(got {self.relative_position!r} / {self.decoder_scheme_name!r}); choose shaw or set it False"
            )
        validate_scheme_config(self.encoder_scheme_fields())
        validate_scheme_config(self.decoder_scheme_fields(), prefix="decoder_")

    def get_text_config(self, decoder=None, encoder=None):
        text_config = super().get_text_config(decoder=decoder, encoder=encoder)
        if decoder and not encoder and text_config is not self:
            # the decoder's config (used e.g. by generate to size its cache) has num_decoder_layers layers
            text_config.num_layers = text_config.num_decoder_layers
        return text_config


__all__ = ["RelPosT5Config"]
