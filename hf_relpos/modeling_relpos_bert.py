"""PyTorch ``relpos_bert``: a BERT encoder with any relative position scheme, plus BERT's task heads.

Parameter names follow transformers' ``modeling_bert.py`` exactly (``embeddings.word_embeddings``,
``encoder.layer.N.attention.self.query`` …, ``cls.predictions.decoder``), so a HF ``BertModel``
state dict loads by name and PEFT target modules ``query``/``value`` work. The relative scheme
lives at ``encoder.layer.N.attention.self.relative_position`` (per layer) or at
``encoder.relative_position`` (one scheme shared by every layer, e.g. T5 buckets, ALiBi); a shared
scheme is handed to the layers at call time, never registered in them.

Attention (see ``attention_engine.py``): eager, sdpa (the default) and flex_attention all carry every
scheme, looked up in the local ``ALL_ATTENTION_FUNCTIONS`` registry. ``output_attentions=True``
returns the per-layer probabilities; since sdpa and flex never expose them, a forward that asks for
them runs its attention eagerly (one warning) — the same rule as relpos_t5.

This file travels as remote code with every ``save_pretrained`` folder: it imports only torch,
transformers and its flat sibling modules (``from .x import y``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import PreTrainedModel
from transformers.models.encoder_decoder.modeling_encoder_decoder import EncoderDecoderModel
from transformers.utils import is_tracing, logging
from transformers.utils.generic import can_return_tuple

try:  # transformers >= 5.23
    from transformers.utils.output_capturing import capture_outputs
except ImportError:  # older 5.x: the same hooks lived in check_model_inputs
    from transformers.utils.generic import check_model_inputs as capture_outputs

from .attention_engine import ALL_ATTENTION_FUNCTIONS, NO_RELATIVE_POSITION, build_attention_mask
from .compat import pop_cache as _pop_cache
from .configuration_relpos_bert import RelPosBertConfig, RelPosBertEncoderDecoderConfig
from .position_kernels import PositionMemo, sinusoid_table
from .relative_positions import RelativePositionScheme, build_stack_schemes

logger = logging.get_logger(__name__)

# transformers 5.24 renamed the cache argument and output field `past_key_values` -> `cache`
_CACHE_FIELD = (
    "cache" if "cache" in BaseModelOutputWithPoolingAndCrossAttentions.__dataclass_fields__ else "past_key_values"
)


def segment_match(input_ids, token_type_ids, attention_mask=None):
    """(B, L) long: 1 where the token's id also occurs in another segment (a different token type) among the
    unpadded tokens, else 0 — DrQA's exact-match feature (Chen et al., 2017). Compares all pairs, (B, L, L)
    booleans: no data-dependent shapes, so it traces and exports."""
    pairs = (input_ids[:, :, None] == input_ids[:, None, :]) & (
        token_type_ids[:, :, None] != token_type_ids[:, None, :]
    )
    if attention_mask is not None and attention_mask.dim() == 2:  # a 4-D mask says nothing about padding alone
        pairs = pairs & attention_mask[:, None, :].bool()
    return pairs.any(dim=-1).long()


class RelPosBertEmbeddings(nn.Module):
    """Word + token type (+ absolute position, per ``config.absolute_position``) (+ segment match, per
    ``config.segment_match_embedding``) embeddings, LayerNorm, dropout."""

    def __init__(self, config):
        super().__init__()
        self.absolute_position = config.absolute_position
        self.max_position_embeddings = config.max_position_embeddings
        self.hidden_size = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.absolute_position == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.segment_match = config.segment_match_embedding
        if self.segment_match:
            self.segment_match_embeddings = nn.Embedding(2, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        attention_mask=None,
        past_length=0,
    ):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch_size, seq_length = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.segment_match:
            if input_ids is None:
                # token ids are what is matched; embeddings alone cannot say which tokens are equal
                raise ValueError("segment_match_embedding=True needs input_ids, not inputs_embeds")
            embeddings = embeddings + self.segment_match_embeddings(
                segment_match(input_ids, token_type_ids, attention_mask)
            )

        if self.absolute_position != "none":
            given = position_ids is not None
            if not given:  # a decoder's new tokens follow the ``past_length`` cached ones
                position_ids = torch.arange(past_length, past_length + seq_length, device=device)[None, :]
            if self.absolute_position == "learned":
                # packed rows restart position_ids per text: given ids are checked by value below
                if not given and past_length + seq_length > self.max_position_embeddings:
                    raise ValueError(
                        f"input length {past_length + seq_length} exceeds max_position_embeddings={self.max_position_embeddings} "
                        "(absolute_position='learned' has one embedding per position); truncate the input, or use "
                        "absolute_position='none' or 'sinusoidal' with a relative scheme for longer inputs"
                    )
                # value check in eager mode only: reading tensor values would break a compiled/exported graph
                if (
                    given
                    and not is_tracing(position_ids)
                    and (int(position_ids.max()) >= self.max_position_embeddings or int(position_ids.min()) < 0)
                ):
                    raise ValueError(
                        f"position_ids must lie in [0, max_position_embeddings={self.max_position_embeddings}), got "
                        f"[{int(position_ids.min())}, {int(position_ids.max())}]"
                    )
                embeddings = embeddings + self.position_embeddings(position_ids)
            else:  # fixed sinusoids of any length
                table = sinusoid_table(position_ids.reshape(-1), self.hidden_size)
                embeddings = embeddings + table.view(*position_ids.shape, self.hidden_size).to(embeddings.dtype)

        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


class RelPosBertSelfAttention(nn.Module):
    """BERT self-attention (``query``/``key``/``value``) with the relative scheme's hooks.

    ``scheme``: this layer's scheme; registered here as ``relative_position`` when ``owns_scheme`` (one
    per layer), else owned by the encoder (shared) and only used. Returns ``(context (B, L, hidden),
    probabilities (B, H, L, L) or None)``. In a decoder (``config.is_decoder``) the causal mask comes from
    the model and ``cache`` (a ``DynamicCache``, or an ``EncoderDecoderCache``'s self-attention half) holds
    the past keys and values: the new queries are the last of the cached + new positions, which is what
    every scheme's hooks assume."""

    def __init__(self, config, scheme: RelativePositionScheme, owns_scheme: bool, layer_idx=None):
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.scaling = self.attention_head_size**-0.5
        self.is_causal = False
        self.layer_idx = layer_idx
        # a local layer sees the keys |i − j| ≤ sliding_window (config.layer_types); a full layer all of them
        local = layer_idx is not None and config.layer_types[layer_idx] == "sliding_attention"
        self.sliding_window = config.sliding_window if local else None

        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout_prob = config.attention_probs_dropout_prob
        if owns_scheme:
            self.relative_position = scheme

    def forward(self, hidden_states, attention_mask=None, scheme=None, memo=None, cache=None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        query = self.query(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.key(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.value(hidden_states).view(hidden_shape).transpose(1, 2)
        if cache is not None:
            layer_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
            key, value = layer_cache.update(key, value, self.layer_idx)

        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation or "sdpa")

        def attend(query, key, value, mask):
            return attention_interface(
                self,
                query,
                key,
                value,
                mask,
                scaling=self.scaling,
                dropout=self.dropout_prob if self.training else 0.0,
                scheme=scheme,
                memo=memo,
                projections=(self.query, self.key),
                output_attentions=kwargs.get("output_attentions", False),
                sliding_window=self.sliding_window,
            )

        segments = kwargs.get("segments")
        if segments is None:
            context, probs = attend(query, key, value, attention_mask)
        else:  # unpadded / packed texts in one row: each attends to itself only, at its own length
            parts = [attend(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None)[0] for a, b in segments]
            context, probs = torch.cat(parts, dim=1), None
        context = context.reshape(*input_shape, -1).contiguous()
        return context, probs


class RelPosBertCrossAttention(nn.Module):
    """A decoder layer's attention to the encoder's outputs (``query`` from the decoder, ``key``/``value`` from
    ``encoder_hidden_states``), no position scheme: HF BERT's ``crossattention.self``. Initialised fresh when
    a decoder is warm-started from an encoder checkpoint. With an ``EncoderDecoderCache`` the encoder's keys
    and values are projected once, on the first decoding step."""

    def __init__(self, config, layer_idx=None):
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.scaling = self.attention_head_size**-0.5
        self.is_causal = False
        self.layer_idx = layer_idx
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(self, hidden_states, encoder_hidden_states, attention_mask=None, cache=None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        query = self.query(hidden_states).view(*input_shape, -1, self.attention_head_size).transpose(1, 2)
        cross_cache = cache.cross_attention_cache if isinstance(cache, EncoderDecoderCache) else None
        if cross_cache is not None and cache.is_updated.get(self.layer_idx, False):
            key = cross_cache.layers[self.layer_idx].keys
            value = cross_cache.layers[self.layer_idx].values
        else:
            kv_shape = (*encoder_hidden_states.shape[:-1], -1, self.attention_head_size)
            key = self.key(encoder_hidden_states).view(kv_shape).transpose(1, 2)
            value = self.value(encoder_hidden_states).view(kv_shape).transpose(1, 2)
            if cross_cache is not None:
                key, value = cross_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation or "sdpa")
        context, probs = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.dropout_prob if self.training else 0.0,
            scheme=NO_RELATIVE_POSITION,
            memo=None,
            projections=(self.query, self.key),
            output_attentions=kwargs.get("output_attentions", False),
            sliding_window=None,
        )
        return context.reshape(*input_shape, -1).contiguous(), probs


class RelPosBertSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class RelPosBertAttention(nn.Module):
    def __init__(self, config, scheme, owns_scheme, layer_idx=None):
        super().__init__()
        self.self = RelPosBertSelfAttention(config, scheme, owns_scheme, layer_idx=layer_idx)
        self.output = RelPosBertSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None, scheme=None, memo=None, **kwargs):
        context, probs = self.self(hidden_states, attention_mask, scheme=scheme, memo=memo, **kwargs)
        return self.output(context, hidden_states), probs


class RelPosBertCrossAttentionBlock(nn.Module):
    """``crossattention``: attention to the encoder + BERT's residual output block (HF BERT's names)."""

    def __init__(self, config, layer_idx=None):
        super().__init__()
        self.self = RelPosBertCrossAttention(config, layer_idx=layer_idx)
        self.output = RelPosBertSelfOutput(config)

    def forward(self, hidden_states, encoder_hidden_states, attention_mask=None, cache=None, **kwargs):
        context, probs = self.self(hidden_states, encoder_hidden_states, attention_mask, cache=cache, **kwargs)
        return self.output(context, hidden_states), probs


class RelPosBertIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = (
            ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        )

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class RelPosBertOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class RelPosBertLayer(GradientCheckpointingLayer):
    def __init__(self, config, scheme, owns_scheme, layer_idx=None):
        super().__init__()
        self.attention = RelPosBertAttention(config, scheme, owns_scheme, layer_idx=layer_idx)
        if getattr(config, "add_cross_attention", False):
            self.crossattention = RelPosBertCrossAttentionBlock(config, layer_idx=layer_idx)
        self.intermediate = RelPosBertIntermediate(config)
        self.output = RelPosBertOutput(config)

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        scheme=None,
        memo=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache=None,
        **kwargs,
    ):
        attention_output, _ = self.attention(
            hidden_states, attention_mask, scheme=scheme, memo=memo, cache=cache, **kwargs
        )
        if encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError(
                    "encoder_hidden_states were given, but this relpos_bert has no cross-attention layers; build it "
                    "with is_decoder=True, add_cross_attention=True"
                )
            attention_output, _ = self.crossattention(
                attention_output, encoder_hidden_states, encoder_attention_mask, cache=cache, **kwargs
            )
        return self.output(self.intermediate(attention_output), attention_output)


class RelPosBertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config

        def stack(params):
            return build_stack_schemes(
                config.relative_position,
                params,
                config.relative_position_per_layer,
                config.num_hidden_layers,
                config.num_attention_heads,
                config.hidden_size // config.num_attention_heads,
                config.hidden_size,
                causal=bool(getattr(config, "is_decoder", False)),
                max_position_embeddings=config.max_position_embeddings,
                absolute_position=config.absolute_position,
            )

        schemes, shared = stack(config.relative_position_parameters)
        local_params = config.local_scheme_parameters()
        local = [kind == "sliding_attention" for kind in config.layer_types]
        if local_params is not None:  # local layers with their own hyper-parameters (ModernBERT's rope theta)
            local_schemes, _ = stack(local_params)
            schemes = [local_schemes[i] if local[i] else schemes[i] for i in range(config.num_hidden_layers)]
        self.layer = nn.ModuleList(
            [RelPosBertLayer(config, schemes[i], not shared, layer_idx=i) for i in range(config.num_hidden_layers)]
        )
        if shared:
            if not all(local) or local_params is None:
                self.relative_position = schemes[local.index(False) if False in local else 0]
            if local_params is not None and any(local):
                self.local_relative_position = schemes[local.index(True)]
        self._schemes = schemes  # layer i's scheme (registered here or in layer i), passed at call time

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        # One memo per forward: a shared scheme computes its bias once for all layers. Under gradient
        # checkpointing each layer must rebuild what it uses inside its own checkpointed region (a value
        # made inside layer 0's region and reused by layer 1 cannot be replayed), so no memo then.
        checkpointing = (
            self.training and torch.is_grad_enabled() and any(layer.gradient_checkpointing for layer in self.layer)
        )
        memo = None if checkpointing else PositionMemo()
        for layer, scheme in zip(self.layer, self._schemes):
            hidden_states = layer(hidden_states, attention_mask, scheme=scheme, memo=memo, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class RelPosBertPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class RelPosBertPredictionHeadTransform(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class RelPosBertLMPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transform = RelPosBertPredictionHeadTransform(config)
        # weights tied to the input embeddings; an output-only bias per token
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class RelPosBertOnlyMLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.predictions = RelPosBertLMPredictionHead(config)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)


class RelPosBertPreTrainedModel(PreTrainedModel):
    config_class = RelPosBertConfig
    config: RelPosBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _no_split_modules = ["RelPosBertEmbeddings", "RelPosBertLayer"]
    # losses are plain means; let the Trainer handle gradient-accumulation averaging
    accepts_loss_kwargs = False
    _can_record_outputs = {
        "hidden_states": RelPosBertLayer,
        "attentions": RelPosBertSelfAttention,
        "cross_attentions": RelPosBertCrossAttention,
    }

    def _init_weights(self, module):
        """BERT's initialisation; schemes initialise their own parameters and buffers (ALiBi slopes are
        non-persistent: recreated here after meta-device loading). ``init.*`` skips loaded tensors."""
        super()._init_weights(module)
        if isinstance(module, RelativePositionScheme):
            module.reset_parameters(self.config.initializer_range)
        elif isinstance(module, RelPosBertLMPredictionHead):
            init.zeros_(module.bias)


class RelPosBertModel(RelPosBertPreTrainedModel):
    """The bare encoder: embeddings → N layers (with the relative scheme) → optional pooler."""

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config)
        self.config = config
        self.embeddings = RelPosBertEmbeddings(config)
        self.encoder = RelPosBertEncoder(config)
        self.pooler = RelPosBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache=None,
        use_cache=None,
        **kwargs,
    ):
        r"""
        input_ids (B, L), attention_mask (B, L) with 1 for real tokens and 0 for padding, token_type_ids (B, L),
        position_ids (B or 1, L): absolute positions, used by ``absolute_position`` "learned"/"sinusoidal" only
        (relative schemes see the distances j − i of the input as given). Also accepts ``output_attentions``,
        ``output_hidden_states`` and ``return_dict``.

        A decoder (``config.is_decoder``) also takes ``encoder_hidden_states`` (B, S, hidden) with
        ``encoder_attention_mask`` (B, S) (``config.add_cross_attention``), ``cache`` (``past_key_values`` before
        5.24; a ``DynamicCache``, or an ``EncoderDecoderCache`` with cross-attention) and ``use_cache``;
        ``attention_mask`` then covers the cached + new tokens, or the new ones only.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if getattr(self.config, "is_decoder", False):
            return self._decode(
                input_ids,
                attention_mask,
                token_type_ids,
                position_ids,
                inputs_embeds,
                encoder_hidden_states,
                encoder_attention_mask,
                _pop_cache(kwargs, cache),
                use_cache,
                kwargs,
            )
        _pop_cache(kwargs)
        if encoder_hidden_states is not None:
            raise ValueError(
                "encoder_hidden_states were given to a relpos_bert encoder; build the model with is_decoder=True, "
                "add_cross_attention=True to attend to them"
            )
        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
        )
        batch, seq_length = embedding_output.shape[:2]
        unpad = self._unpadding(attention_mask, position_ids, batch, seq_length, kwargs)
        if unpad is not None:  # the layers run on the real tokens only, one row of texts
            index, segments = unpad
            hidden = embedding_output.reshape(batch * seq_length, -1)[index][None]
            packed = self.encoder(hidden, None, segments=segments, **kwargs).last_hidden_state[0]
            sequence_output = packed.new_zeros(batch * seq_length, packed.shape[-1]).index_copy(0, index, packed)
            sequence_output = sequence_output.view(batch, seq_length, -1)
        else:
            mask = build_attention_mask(
                attention_mask,
                seq_length,
                seq_length,
                causal=False,
                dtype=embedding_output.dtype,
                device=embedding_output.device,
            )
            sequence_output = self.encoder(embedding_output, mask, **kwargs).last_hidden_state
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output, pooler_output=pooled_output
        )

    def _decode(
        self,
        input_ids,
        attention_mask,
        token_type_ids,
        position_ids,
        inputs_embeds,
        encoder_hidden_states,
        encoder_attention_mask,
        cache,
        use_cache,
        kwargs,
    ):
        """The decoder's forward: causal self-attention (each scheme's causal form), cross-attention to
        ``encoder_hidden_states``, a KV cache; never unpadded (the cache keeps the padded layout)."""
        checkpointing = (
            self.training
            and torch.is_grad_enabled()
            and any(layer.gradient_checkpointing for layer in self.encoder.layer)
        )
        if use_cache is None:
            use_cache = getattr(self.config, "use_cache", True)
        if checkpointing:  # the layers are replayed: no cache
            use_cache = False
        cross = encoder_hidden_states is not None
        if use_cache and cache is None:
            cache = (
                EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
                if cross
                else DynamicCache(config=self.config)
            )
        elif use_cache and cross and not isinstance(cache, EncoderDecoderCache):
            cache = EncoderDecoderCache(cache, DynamicCache(config=self.config))
        if not use_cache:
            cache = None
        self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        past_length = self_cache.get_seq_length(0) if self_cache is not None else 0
        if isinstance(past_length, torch.Tensor):
            past_length = int(past_length)

        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_length=past_length,
        )
        batch, seq_length = embedding_output.shape[:2]
        k_len = past_length + seq_length
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] == seq_length < k_len:
            # a mask over the new tokens only: the cached ones were real tokens
            attention_mask = torch.cat([attention_mask.new_ones(batch, past_length), attention_mask], dim=-1)
        dtype, device = embedding_output.dtype, embedding_output.device
        mask = build_attention_mask(attention_mask, seq_length, k_len, causal=True, dtype=dtype, device=device)
        cross_mask = None
        if cross:
            cross_mask = build_attention_mask(
                encoder_attention_mask,
                seq_length,
                encoder_hidden_states.shape[1],
                causal=False,
                dtype=dtype,
                device=device,
            )
        sequence_output = self.encoder(
            embedding_output,
            mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=cross_mask,
            cache=cache,
            **kwargs,
        ).last_hidden_state
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output, pooler_output=pooled_output, **{_CACHE_FIELD: cache}
        )

    def _unpadding(self, attention_mask, position_ids, batch, seq_length, kwargs):
        """(index of the real tokens in the flattened (B·L) batch, [(start, end) of each text in that row]) when
        the layers can skip the padding, else None. Two inputs qualify, in eager mode (no tracing: the lengths
        are read from the tensors) and without per-layer outputs (they would come out packed):

        - a right-padded batch (each ``attention_mask`` row ones then zeros) with at least 10% padding: the
          texts then cost what their own tokens cost, and each text's outputs are those of the padded batch;
        - texts packed into rows, ``position_ids`` restarting at 0 for each (transformers'
          ``DataCollatorWithFlattening``; the mlm recipes' ``document_attention``): each text attends to itself
          only. Relative schemes need no position reset; absolute embeddings read the restarted ``position_ids``."""
        if (
            not getattr(self.config, "unpad_inputs", True)
            or torch.compiler.is_compiling()
            or is_tracing(attention_mask if attention_mask is not None else position_ids)
        ):
            return None
        if any(scheme.length_dependent for scheme in self.encoder._schemes):
            return None  # FIRE: a text's outputs depend on the padded length; keep what the padded batch gives
        if (
            kwargs.get("output_attentions")
            or kwargs.get("output_hidden_states")
            or self.config.output_attentions
            or self.config.output_hidden_states
        ):
            return None
        packed = (
            position_ids is not None and position_ids.dim() == 2 and tuple(position_ids.shape) == (batch, seq_length)
        )
        if packed and bool((position_ids[:, 1:] == 0).any()):  # texts packed into rows (restarting position_ids)
            if attention_mask is not None and not bool(attention_mask.bool().all()):
                return None  # packed and padded at once: the padded computation
            flat = position_ids.reshape(-1)
            starts = torch.cat([(flat == 0).nonzero().flatten(), torch.arange(batch, device=flat.device) * seq_length])
            bounds = [*sorted(set(starts.tolist())), batch * seq_length]
            return torch.arange(batch * seq_length, device=flat.device), list(zip(bounds[:-1], bounds[1:]))
        if attention_mask is not None and attention_mask.dim() == 2 and batch > 1:
            lengths = attention_mask.sum(-1)
            real = int(lengths.sum())
            right_padded = bool(
                (attention_mask == (torch.arange(seq_length, device=lengths.device) < lengths[:, None])).all()
            )
            if not right_padded or real > 0.9 * batch * seq_length or int(lengths.min()) == 0:
                return None
            starts = torch.arange(batch, device=lengths.device)[:, None] * seq_length
            index = (starts + torch.arange(seq_length, device=lengths.device))[attention_mask.bool()]
            ends = lengths.cumsum(0).tolist()
            return index, list(zip([0, *ends[:-1]], ends))
        return None


class RelPosBertForMaskedLM(RelPosBertPreTrainedModel):
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config):
        super().__init__(config)
        self.bert = RelPosBertModel(config, add_pooling_layer=False)
        self.cls = RelPosBertOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ):
        r"""labels (B, L): token ids to predict, -100 where no loss is taken."""
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        prediction_scores = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(prediction_scores.view(-1, self.config.vocab_size), labels.view(-1))
        return MaskedLMOutput(
            loss=loss, logits=prediction_scores, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class RelPosBertLMHeadModel(RelPosBertPreTrainedModel, GenerationMixin):
    """relpos_bert as a left-to-right decoder (``config.is_decoder=True``): causal self-attention with each
    scheme's causal form, a KV cache, ``generate()``; with ``config.add_cross_attention=True`` it attends to an
    encoder's outputs (``encoder_hidden_states``), as the decoder of ``EncoderDecoderModel`` (BERT2BERT, Rothe
    et al., TACL 2020). Parameter names are HF ``BertLMHeadModel``'s, so its weights load by name; a decoder
    warm-started from an encoder checkpoint gets fresh ``crossattention`` layers (and a fresh LM-head
    transform when the checkpoint has none). The decoder never unpads its inputs, and local
    (``sliding_attention``) layers are for encoders only."""

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config):
        super().__init__(config)
        if not getattr(config, "is_decoder", False):
            logger.warning("RelPosBertLMHeadModel is a decoder: build it with is_decoder=True")
        self.bert = RelPosBertModel(config, add_pooling_layer=False)
        self.cls = RelPosBertOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        cache=None,
        use_cache=None,
        logits_to_keep=0,
        **kwargs,
    ):
        r"""labels (B, L): the input ids themselves (shifted inside: position i predicts token i + 1), -100 where
        no loss is taken. ``cache`` (``past_key_values`` before 5.24), ``use_cache``, ``encoder_hidden_states`` and
        ``encoder_attention_mask`` as in [`RelPosBertModel`]."""
        cache = _pop_cache(kwargs, cache)
        if labels is not None:
            use_cache = False
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.cls(hidden_states)
        loss = None
        if labels is not None:
            shifted = logits[:, :-1].reshape(-1, self.config.vocab_size)
            loss = CrossEntropyLoss()(shifted.float(), labels[:, 1:].reshape(-1))
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
            **{_CACHE_FIELD: getattr(outputs, _CACHE_FIELD, None)},
        )


class RelPosBertForSequenceClassification(RelPosBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.config = config
        self.bert = RelPosBertModel(config)
        classifier_dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ):
        r"""labels (B,) class ids (single label), (B, num_labels) floats (multi-label), or (B,) floats when
        num_labels == 1 (regression); ``config.problem_type`` is inferred as in BERT when not set."""
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))

        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif self.num_labels > 1 and labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                if self.num_labels == 1:
                    loss = MSELoss()(logits.squeeze(), labels.squeeze().to(logits.dtype))
                else:
                    loss = MSELoss()(logits, labels.to(logits.dtype))
            elif self.config.problem_type == "single_label_classification":
                loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
            elif self.config.problem_type == "multi_label_classification":
                loss = BCEWithLogitsLoss()(logits, labels.to(logits.dtype))

        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class RelPosBertForMultipleChoice(RelPosBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.bert = RelPosBertModel(config)
        classifier_dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ):
        r"""input_ids / attention_mask / token_type_ids (B, C, L) for C choices; labels (B,) the right choice."""
        num_choices = input_ids.shape[1] if input_ids is not None else inputs_embeds.shape[1]

        def flat(x):
            return x.view(-1, x.size(-1)) if x is not None else None

        inputs_embeds = (
            inputs_embeds.view(-1, inputs_embeds.size(-2), inputs_embeds.size(-1))
            if inputs_embeds is not None
            else None
        )
        outputs = self.bert(
            flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        reshaped_logits = logits.view(-1, num_choices)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(reshaped_logits, labels)
        return MultipleChoiceModelOutput(
            loss=loss, logits=reshaped_logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class RelPosBertForTokenClassification(RelPosBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = RelPosBertModel(config, add_pooling_layer=False)
        classifier_dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ):
        r"""labels (B, L): class id per token, -100 where no loss is taken."""
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class RelPosBertForQuestionAnswering(RelPosBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = RelPosBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        **kwargs,
    ):
        r"""start_positions / end_positions (B,): answer span token indices; out-of-range ones are ignored."""
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = logits.split(1, dim=-1)
        start_logits = start_logits.squeeze(-1).contiguous()
        end_logits = end_logits.squeeze(-1).contiguous()

        total_loss = None
        if start_positions is not None and end_positions is not None:
            if start_positions.dim() > 1:
                start_positions = start_positions.squeeze(-1)
            if end_positions.dim() > 1:
                end_positions = end_positions.squeeze(-1)
            ignored_index = start_logits.size(1)
            start_positions = start_positions.clamp(0, ignored_index)
            end_positions = end_positions.clamp(0, ignored_index)
            loss_fct = CrossEntropyLoss(ignore_index=ignored_index)
            total_loss = (loss_fct(start_logits, start_positions) + loss_fct(end_logits, end_positions)) / 2

        return QuestionAnsweringModelOutput(
            loss=total_loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class RelPosBertEncoderDecoderModel(EncoderDecoderModel):
    """BERT2BERT with relative positions (Rothe, Narayan and Severyn, TACL 2020): transformers'
    `EncoderDecoderModel` with a [`RelPosBertModel`] encoder and a [`RelPosBertLMHeadModel`] decoder, warm-started
    from relpos_bert checkpoints by `from_encoder_decoder_pretrained(encoder, decoder)` (the decoder's
    `crossattention` layers start fresh).

    A class of its own rather than the plain `EncoderDecoderModel` because a saved model must load where hf_relpos
    is not installed: `EncoderDecoderConfig` resolves its sub-configs through transformers' static mapping only
    (see [`RelPosBertEncoderDecoderConfig`]), and `EncoderDecoderModel.__init__` builds missing halves with
    `AutoModel.from_config` (which needs the registration). This class builds both halves directly and is
    registered for `AutoModelForSeq2SeqLM`, so a save carries its code and `trust_remote_code=True` loads it
    anywhere. (With hf_relpos installed, the plain `EncoderDecoderModel.from_encoder_decoder_pretrained` works
    too; its saves load only where hf_relpos is.)"""

    config_class = RelPosBertEncoderDecoderConfig

    def __init__(self, config=None, encoder=None, decoder=None):
        if config is None and encoder is not None and decoder is not None:
            config = RelPosBertEncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config)
        if config is not None and not isinstance(config, RelPosBertEncoderDecoderConfig):
            # remote code: transformers may import the config's file twice (AutoConfig, then this file's relative
            # import), so the class it built differs from the one named here; EncoderDecoderModel checks the type
            if type(config).__name__ == RelPosBertEncoderDecoderConfig.__name__:
                config = RelPosBertEncoderDecoderConfig.from_dict(config.to_dict())
        if config is not None:
            if encoder is None:
                encoder = RelPosBertModel(config.encoder)
            if decoder is None:
                decoder = RelPosBertLMHeadModel(config.decoder)
        super().__init__(config=config, encoder=encoder, decoder=decoder)

    @classmethod
    def from_encoder_decoder_pretrained(
        cls, encoder_pretrained_model_name_or_path=None, decoder_pretrained_model_name_or_path=None, *args, **kwargs
    ):
        """Both halves from relpos_bert checkpoints (the same folder twice for BERT2BERT), as
        `EncoderDecoderModel.from_encoder_decoder_pretrained` takes them (`encoder_*` / `decoder_*` keyword
        arguments go to each half; the others, e.g. `decoder_start_token_id`, to the composite config)."""
        composite = ("decoder_start_token_id",)  # a field of the composite config despite its prefix
        shared = {
            k: kwargs.pop(k) for k in list(kwargs) if k in composite or not k.startswith(("encoder_", "decoder_"))
        }
        plain = EncoderDecoderModel.from_encoder_decoder_pretrained(
            encoder_pretrained_model_name_or_path, decoder_pretrained_model_name_or_path, *args, **kwargs
        )
        for half, name in ((plain.encoder, "encoder"), (plain.decoder, "decoder")):
            if not isinstance(half.config, RelPosBertConfig):
                raise ValueError(
                    f"{name} checkpoint is a {type(half.config).__name__} (model_type {half.config.model_type!r}); "
                    "RelPosBertEncoderDecoderModel takes relpos_bert checkpoints (`hf-relpos convert` makes one "
                    "from a BERT)"
                )
        config = RelPosBertEncoderDecoderConfig.from_encoder_decoder_configs(
            plain.encoder.config, plain.decoder.config, **shared
        )
        return cls(config=config, encoder=plain.encoder, decoder=plain.decoder)


__all__ = [
    "RelPosBertForMaskedLM",
    "RelPosBertForMultipleChoice",
    "RelPosBertForQuestionAnswering",
    "RelPosBertForSequenceClassification",
    "RelPosBertForTokenClassification",
    "RelPosBertEncoderDecoderModel",
    "RelPosBertLMHeadModel",
    "RelPosBertLayer",
    "RelPosBertModel",
    "RelPosBertPreTrainedModel",
]
