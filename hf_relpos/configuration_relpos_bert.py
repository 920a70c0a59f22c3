"""Configuration of ``relpos_bert``: a BERT encoder whose position information comes from a relative
position scheme (see ``relative_positions.SCHEMES``) and, optionally, absolute embeddings.

This file travels as remote code with every ``save_pretrained`` folder: it imports only
transformers and the flat sibling module ``relative_positions``.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

from .relative_positions import SCHEME_DEFAULTS, validate_scheme_config

# Every Auto class one relpos_bert checkpoint can be loaded with (``trust_remote_code=True``).
RELPOS_BERT_AUTO_MAP = {
    "AutoConfig": "configuration_relpos_bert.RelPosBertConfig",
    "AutoModel": "modeling_relpos_bert.RelPosBertModel",
    "AutoModelForMaskedLM": "modeling_relpos_bert.RelPosBertForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_relpos_bert.RelPosBertForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_relpos_bert.RelPosBertForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_relpos_bert.RelPosBertForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_relpos_bert.RelPosBertForMultipleChoice",
}

# The defaults of a purely relative encoder: T5 buckets, no absolute embeddings.
_BERT_SCHEME_DEFAULTS = {**SCHEME_DEFAULTS, "relative_position": "t5", "absolute_position": "none"}


def _check_positive_int(field, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{field}={value!r} is not valid; choose a positive integer (≥ 1)")


def _check_probability(field, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{field}={value!r} is not valid; choose a probability in [0, 1]")


class RelPosBertConfig(PreTrainedConfig):
    r"""Configuration of a [`RelPosBertModel`]: the fields of `BertConfig` plus the relative position
    scheme fields.

    Args (beyond BERT's usual ones):
        relative_position (`str`, defaults to `"t5"`): the scheme, one of `relative_positions.SCHEMES`
            (`none`, `sinusoidal`, `shaw`, `shaw_kq`, `t5`, `alibi`, `rotary`, `xl`, `deberta`, `fire`, `kerple`).
        absolute_position (`str`, defaults to `"none"`): `"learned"` (BERT's table, inputs limited to
            `max_position_embeddings`), `"sinusoidal"` (fixed, any length) or `"none"`.
        relative_position_per_layer (`bool`, *optional*): one scheme per layer (True) or one shared by all
            layers (False); None takes the scheme's own default (t5, alibi, kerple, fire, deberta: shared).
        max_relative_position (`int`, defaults to 128): clip distance of `sinusoidal` and `shaw`.
        relative_value (`bool`, defaults to False): Shaw's value-side term (eager attention only).
        relative_attention_num_buckets / relative_attention_max_distance: `t5` buckets (32 / 128).
        position_buckets / max_relative_positions: `deberta` log buckets (256 / 512).
        rope_theta: `rotary` base (10000). fire_mlp_width / fire_init_c / fire_init_threshold: `fire`.

    `shaw_kq` sizes its table with `max_position_embeddings` (clipped past it, so longer inputs run).

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
        relative_position=_BERT_SCHEME_DEFAULTS["relative_position"],
        absolute_position=_BERT_SCHEME_DEFAULTS["absolute_position"],
        relative_position_per_layer=_BERT_SCHEME_DEFAULTS["relative_position_per_layer"],
        max_relative_position=_BERT_SCHEME_DEFAULTS["max_relative_position"],
        relative_value=_BERT_SCHEME_DEFAULTS["relative_value"],
        relative_attention_num_buckets=_BERT_SCHEME_DEFAULTS["relative_attention_num_buckets"],
        relative_attention_max_distance=_BERT_SCHEME_DEFAULTS["relative_attention_max_distance"],
        position_buckets=_BERT_SCHEME_DEFAULTS["position_buckets"],
        max_relative_positions=_BERT_SCHEME_DEFAULTS["max_relative_positions"],
        rope_theta=_BERT_SCHEME_DEFAULTS["rope_theta"],
        fire_mlp_width=_BERT_SCHEME_DEFAULTS["fire_mlp_width"],
        fire_init_c=_BERT_SCHEME_DEFAULTS["fire_init_c"],
        fire_init_threshold=_BERT_SCHEME_DEFAULTS["fire_init_threshold"],
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
        self.max_relative_position = max_relative_position
        self.relative_value = relative_value
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.position_buckets = position_buckets
        self.max_relative_positions = max_relative_positions
        self.rope_theta = rope_theta
        self.fire_mlp_width = fire_mlp_width
        self.fire_init_c = fire_init_c
        self.fire_init_threshold = fire_init_threshold

        # one checkpoint serves every Auto class, with or without hf_relpos installed
        if kwargs.get("auto_map") is None:
            kwargs["auto_map"] = dict(RELPOS_BERT_AUTO_MAP)
        super().__init__(**kwargs)
        self._validate()

    def _validate(self):
        for field in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            _check_positive_int(field, getattr(self, field))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} does not divide hidden_size={self.hidden_size}; "
                f"choose a number of heads that divides it (e.g. "
                f"{', '.join(str(h) for h in range(1, self.hidden_size + 1) if self.hidden_size % h == 0 and h <= 64)})"
            )
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            _check_probability(field, getattr(self, field))
        if self.classifier_dropout is not None:
            _check_probability("classifier_dropout", self.classifier_dropout)
        for field in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{field}={value!r} is not valid; choose a positive number")
        if self.pad_token_id is not None and (
            not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size
        ):
            raise ValueError(
                f"pad_token_id={self.pad_token_id!r} is not valid; choose None or an integer in [0, {self.vocab_size - 1}]"
            )
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(f"tie_word_embeddings={self.tie_word_embeddings!r} is not valid; choose one of: True, False")
        validate_scheme_config(self)
        if self.relative_position == "rotary" and (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"relative_position='rotary' needs an even head size, but hidden_size={self.hidden_size} / "
                f"num_attention_heads={self.num_attention_heads} = {self.hidden_size // self.num_attention_heads}; "
                "choose sizes giving an even head size"
            )


__all__ = ["RelPosBertConfig"]
