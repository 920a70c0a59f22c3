"""``relpos_t5``: a T5-style encoder-decoder whose self-attention uses any relative position scheme.

Parameter names follow HF T5 (``shared``, ``encoder.block.N.layer.0.SelfAttention.q/k/v/o``,
``layer.0.layer_norm``, ``layer.1.EncDecAttention`` in decoder blocks, ``DenseReluDense.wi/wo`` or
``wi_0/wi_1/wo``, ``encoder.final_layer_norm``, ``lm_head``). A scheme shared by the layers of a
stack (the ``t5`` scheme by default, as in T5) lives at ``encoder.relative_position`` /
``decoder.relative_position`` and is handed to each layer at call time; a per-layer scheme lives at
``...SelfAttention.relative_position``. Cross-attention has no relative term (the null scheme).
Both families build their schemes with ``build_stack_schemes`` and run attention through the local
``ALL_ATTENTION_FUNCTIONS`` registry; sdpa is the default backend, and ``output_attentions=True`` runs
that forward's attention eagerly (sdpa and flex never expose probabilities), as in relpos_bert.
Outputs (hidden states, attentions, cross-attentions) are recorded by ``capture_outputs`` as in HF T5.

This file travels as remote code: it imports only torch, transformers and the flat modules beside it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import CrossEntropyLoss
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import PreTrainedModel

try:  # transformers >= 5.23
    from transformers.utils.output_capturing import OutputRecorder, capture_outputs
except ImportError:  # older 5.x: the same hooks lived in check_model_inputs
    from transformers.utils.generic import OutputRecorder
    from transformers.utils.generic import check_model_inputs as capture_outputs

from .attention_engine import ALL_ATTENTION_FUNCTIONS, NO_RELATIVE_POSITION, build_attention_mask
from .compat import pop_cache as _pop_cache
from .configuration_relpos_t5 import RelPosT5Config
from .position_kernels import PositionMemo, sinusoid_table
from .relative_positions import RelativePositionScheme, build_stack_schemes

# transformers 5.24 renamed the cache field of the output classes `past_key_values` -> `cache`
_CACHE_FIELD = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"
_STACK_CACHE_FIELD = (
    "cache" if "cache" in BaseModelOutputWithPastAndCrossAttentions.__dataclass_fields__ else "past_key_values"
)


def _tag(module, role):
    """Mark a parameter-owning module with its T5 initialisation role (see ``_init_weights``)."""
    module._relpos_t5_init = role
    return module


def _own_scheme(scheme):
    """Let every module inside ``scheme`` find it, so that initialising any of them resets the scheme."""
    for sub in scheme.modules():
        if sub is not scheme:
            object.__setattr__(sub, "_relpos_scheme_owner", scheme)  # a plain reference, not a submodule
    return scheme


class RelPosT5LayerNorm(nn.Module):
    """T5's RMS norm: no bias, no mean subtraction, variance accumulated in fp32."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


class RelPosT5DenseActDense(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wi = _tag(nn.Linear(config.d_model, config.d_ff, bias=False), "wi")
        self.wo = _tag(nn.Linear(config.d_ff, config.d_model, bias=False), "wo")
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = ACT2FN[config.dense_act_fn]

    def forward(self, hidden_states):
        hidden_states = self.dropout(self.act(self.wi(hidden_states)))
        if hidden_states.dtype != self.wo.weight.dtype and self.wo.weight.dtype != torch.int8:
            hidden_states = hidden_states.to(self.wo.weight.dtype)
        return self.wo(hidden_states)


class RelPosT5DenseGatedActDense(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wi_0 = _tag(nn.Linear(config.d_model, config.d_ff, bias=False), "wi")
        self.wi_1 = _tag(nn.Linear(config.d_model, config.d_ff, bias=False), "wi")
        self.wo = _tag(nn.Linear(config.d_ff, config.d_model, bias=False), "wo")
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = ACT2FN[config.dense_act_fn]

    def forward(self, hidden_states):
        hidden_states = self.dropout(self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states))
        if hidden_states.dtype != self.wo.weight.dtype and self.wo.weight.dtype != torch.int8:
            hidden_states = hidden_states.to(self.wo.weight.dtype)
        return self.wo(hidden_states)


class RelPosT5LayerFF(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.DenseReluDense = (
            RelPosT5DenseGatedActDense(config) if config.is_gated_act else RelPosT5DenseActDense(config)
        )
        self.layer_norm = RelPosT5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, hidden_states):
        return hidden_states + self.dropout(self.DenseReluDense(self.layer_norm(hidden_states)))


class RelPosT5Attention(nn.Module):
    """T5 attention (no score scaling) on the relpos engine.

    ``scheme`` is registered here as ``relative_position`` when ``owns_scheme`` (one per layer); a
    stack-shared scheme lives on the stack. Either way the scheme is passed to ``forward``
    (cross-attention: the null scheme). ``sliding_window``: a local encoder layer's half-width (keys
    |i − j| ≤ w), None for a full layer."""

    def __init__(
        self,
        config,
        layer_idx=None,
        is_cross_attention=False,
        scheme=NO_RELATIVE_POSITION,
        owns_scheme=False,
        sliding_window=None,
    ):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_cross_attention = is_cross_attention
        self.n_heads = config.num_heads
        self.key_value_proj_dim = config.d_kv
        self.inner_dim = config.num_heads * config.d_kv
        self.dropout = config.dropout_rate
        self.scaling = 1.0  # T5 folds the 1/sqrt(d) into its initialisation
        self.is_causal = False  # causality travels in the explicit mask
        self.q = _tag(nn.Linear(config.d_model, self.inner_dim, bias=False), "q")
        self.k = _tag(nn.Linear(config.d_model, self.inner_dim, bias=False), "k")
        self.v = _tag(nn.Linear(config.d_model, self.inner_dim, bias=False), "v")
        self.o = _tag(nn.Linear(self.inner_dim, config.d_model, bias=False), "o")
        self.sliding_window = sliding_window
        if owns_scheme:
            self.relative_position = scheme

    def forward(
        self,
        hidden_states,
        mask=None,
        key_value_states=None,
        cache=None,
        scheme=NO_RELATIVE_POSITION,
        memo=None,
        **kwargs,
    ):
        batch, q_len = hidden_states.shape[:2]
        query = self.q(hidden_states).view(batch, q_len, -1, self.key_value_proj_dim).transpose(1, 2)

        is_cross = key_value_states is not None
        is_updated = False
        if isinstance(cache, EncoderDecoderCache):
            is_updated = bool(cache.is_updated.get(self.layer_idx, False)) if is_cross else False
            layer_cache = cache.cross_attention_cache if is_cross else cache.self_attention_cache
        else:
            layer_cache = cache

        if is_cross and cache is not None and is_updated:
            # the encoder's keys/values were cached on the first decoding step
            key = layer_cache.layers[self.layer_idx].keys
            value = layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross else hidden_states
            kv_shape = (source.shape[0], source.shape[1], -1, self.key_value_proj_dim)
            key = self.k(source).view(kv_shape).transpose(1, 2)
            value = self.v(source).view(kv_shape).transpose(1, 2)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True

        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation or "sdpa")
        output, probs = attention_interface(
            self,
            query,
            key,
            value,
            mask,
            scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0,
            scheme=scheme,
            memo=memo,
            projections=(self.q, self.k),
            output_attentions=kwargs.get("output_attentions", False),
            sliding_window=self.sliding_window,
        )
        output = self.o(output.reshape(batch, q_len, -1))
        return output, probs


class RelPosT5LayerSelfAttention(nn.Module):
    def __init__(self, config, layer_idx=None, scheme=NO_RELATIVE_POSITION, owns_scheme=False, sliding_window=None):
        super().__init__()
        self.SelfAttention = RelPosT5Attention(
            config, layer_idx=layer_idx, scheme=scheme, owns_scheme=owns_scheme, sliding_window=sliding_window
        )
        self.layer_norm = RelPosT5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, hidden_states, attention_mask=None, cache=None, scheme=NO_RELATIVE_POSITION, memo=None, **kwargs):
        output, probs = self.SelfAttention(
            self.layer_norm(hidden_states), mask=attention_mask, cache=cache, scheme=scheme, memo=memo, **kwargs
        )
        return hidden_states + self.dropout(output), probs


class RelPosT5LayerCrossAttention(nn.Module):
    def __init__(self, config, layer_idx=None):
        super().__init__()
        self.EncDecAttention = RelPosT5Attention(config, layer_idx=layer_idx, is_cross_attention=True)
        self.layer_norm = RelPosT5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, hidden_states, key_value_states, attention_mask=None, cache=None, **kwargs):
        output, probs = self.EncDecAttention(
            self.layer_norm(hidden_states),
            mask=attention_mask,
            key_value_states=key_value_states,
            cache=cache,
            **kwargs,
        )
        return hidden_states + self.dropout(output), probs


def _clamp_fp16(hidden_states):
    if hidden_states.dtype == torch.float16:
        clamp_value = torch.where(
            torch.isinf(hidden_states).any(),
            torch.finfo(hidden_states.dtype).max - 1000,
            torch.finfo(hidden_states.dtype).max,
        )
        hidden_states = torch.clamp(hidden_states, min=-clamp_value, max=clamp_value)
    return hidden_states


class RelPosT5Block(GradientCheckpointingLayer):
    def __init__(self, config, is_decoder, layer_idx, scheme=NO_RELATIVE_POSITION, owns_scheme=False):
        super().__init__()
        self.is_decoder = is_decoder
        # local encoder layers (config.encoder_layer_types); the decoder's self-attention stays full
        local = not is_decoder and config.encoder_layer_types[layer_idx] == "sliding_attention"
        self.layer = nn.ModuleList(
            [
                RelPosT5LayerSelfAttention(
                    config,
                    layer_idx=layer_idx,
                    scheme=scheme,
                    owns_scheme=owns_scheme,
                    sliding_window=config.encoder_sliding_window if local else None,
                )
            ]
        )
        if is_decoder:
            self.layer.append(RelPosT5LayerCrossAttention(config, layer_idx=layer_idx))
        self.layer.append(RelPosT5LayerFF(config))

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache=None,
        scheme=NO_RELATIVE_POSITION,
        memo=None,
        **kwargs,
    ):
        hidden_states, _ = self.layer[0](
            hidden_states, attention_mask=attention_mask, cache=cache, scheme=scheme, memo=memo, **kwargs
        )
        hidden_states = _clamp_fp16(hidden_states)
        if self.is_decoder and encoder_hidden_states is not None:
            hidden_states, _ = self.layer[1](
                hidden_states, encoder_hidden_states, attention_mask=encoder_attention_mask, cache=cache, **kwargs
            )
            hidden_states = _clamp_fp16(hidden_states)
        return _clamp_fp16(self.layer[-1](hidden_states))


class RelPosT5PreTrainedModel(PreTrainedModel):
    config_class = RelPosT5Config
    config: RelPosT5Config
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["RelPosT5Block"]
    _keep_in_fp32_modules = ["wo"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = False
    _can_record_outputs = {
        "hidden_states": RelPosT5Block,
        "attentions": OutputRecorder(RelPosT5LayerSelfAttention, index=1),
        "cross_attentions": OutputRecorder(RelPosT5LayerCrossAttention, index=1),
    }

    def _init_weights(self, module):
        """T5's initialisation; relative position schemes reset their own parameters.

        Dispatch is on the modules that own the parameters (tagged at construction with their T5 role):
        for custom code, transformers skips container modules without parameters of their own."""
        super()._init_weights(module)
        config = self.config
        factor = config.initializer_factor
        role = getattr(module, "_relpos_t5_init", None)
        if role is not None:
            std = {
                "embedding": 1.0,  # shared, lm_head, learned absolute positions
                "q": (config.d_model * config.d_kv) ** -0.5,
                "k": config.d_model**-0.5,
                "v": config.d_model**-0.5,
                "o": (config.num_heads * config.d_kv) ** -0.5,
                "wi": config.d_model**-0.5,
                "wo": config.d_ff**-0.5,
            }[role]
            if not (getattr(module, "_relpos_t5_is_lm_head", False) and config.tie_word_embeddings):
                init.normal_(module.weight, mean=0.0, std=factor * std)
        elif isinstance(module, RelPosT5LayerNorm):
            init.constant_(module.weight, factor * 1.0)
        owner = module if isinstance(module, RelativePositionScheme) else getattr(module, "_relpos_scheme_owner", None)
        if owner is not None:
            # T5's std for its bucket table; the other schemes take the same scale
            owner.reset_parameters(std=factor * config.d_model**-0.5)

    def _shift_right(self, input_ids):
        decoder_start_token_id = self.config.decoder_start_token_id
        pad_token_id = self.config.pad_token_id
        if decoder_start_token_id is None:
            raise ValueError(
                "decoder_start_token_id=None is not valid for shifting labels right; set config.decoder_start_token_id "
                "(T5 uses the pad token id, 0)"
            )
        if pad_token_id is None:
            raise ValueError("pad_token_id=None is not valid for shifting labels right; set config.pad_token_id")
        shifted = input_ids.new_zeros(input_ids.shape)
        shifted[..., 1:] = input_ids[..., :-1].clone()
        shifted[..., 0] = decoder_start_token_id
        shifted.masked_fill_(shifted == -100, pad_token_id)  # ignored label positions become padding
        return shifted


class RelPosT5Stack(RelPosT5PreTrainedModel):
    """The encoder or decoder stack. The token embedding is the model's ``shared`` table, held by
    reference (it is registered once, on the model). A ``PreTrainedModel`` as in HF T5, so that
    ``capture_outputs`` records each stack's hidden states and attentions; initialised by the model."""

    main_input_name = "input_ids"

    def __init__(self, config, embed_tokens, is_decoder):
        super().__init__(config)
        self.is_decoder = is_decoder
        object.__setattr__(self, "embed_tokens", embed_tokens)  # not a submodule: `shared` owns it
        num_layers = config.num_decoder_layers if is_decoder else config.num_layers
        name, params = config.decoder_scheme() if is_decoder else config.encoder_scheme()

        def stack(params):
            return build_stack_schemes(
                name,
                params,
                config.relative_position_per_layer,
                num_layers,
                config.num_heads,
                config.d_kv,
                config.d_model,
                causal=is_decoder,
                max_position_embeddings=config.max_position_embeddings,
                absolute_position=config.absolute_position,
            )

        schemes, shared = stack(params)
        local = [not is_decoder and config.encoder_layer_types[i] == "sliding_attention" for i in range(num_layers)]
        local_params = None if is_decoder else config.encoder_local_scheme_parameters()
        if local_params is not None:  # local layers with their own hyper-parameters (ModernBERT's rope theta)
            local_schemes, _ = stack(local_params)
            schemes = [local_schemes[i] if local[i] else schemes[i] for i in range(num_layers)]
        for scheme in set(schemes):
            _own_scheme(scheme)
        self.block = nn.ModuleList(
            [
                RelPosT5Block(config, is_decoder, layer_idx=i, scheme=schemes[i], owns_scheme=not shared)
                for i in range(num_layers)
            ]
        )
        if shared:
            if not all(local) or local_params is None:
                self.relative_position = schemes[local.index(False) if False in local else 0]
            if local_params is not None and any(local):
                self.local_relative_position = schemes[local.index(True)]
        self._schemes = schemes  # block i's scheme (registered here or in block i), passed at call time
        self.final_layer_norm = RelPosT5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.embed_positions = (
            _tag(nn.Embedding(config.max_position_embeddings, config.d_model), "embedding")
            if config.absolute_position == "learned"
            else None
        )

    def set_input_embeddings(self, new_embeddings):
        object.__setattr__(self, "embed_tokens", new_embeddings)

    def get_input_embeddings(self):
        return self.embed_tokens

    def _absolute_positions(self, inputs_embeds, past_length):
        kind = self.config.absolute_position
        if kind == "none":
            return inputs_embeds
        seq_len = inputs_embeds.shape[1]
        positions = torch.arange(past_length, past_length + seq_len, device=inputs_embeds.device)
        if kind == "learned":
            limit = self.config.max_position_embeddings
            if past_length + seq_len > limit:
                raise ValueError(
                    f"{'decoder' if self.is_decoder else 'encoder'} input of length {past_length + seq_len} exceeds "
                    f"max_position_embeddings={limit} (absolute_position='learned'); shorten the input, raise "
                    "max_position_embeddings or choose absolute_position='none' or 'sinusoidal'"
                )
            return inputs_embeds + self.embed_positions(positions)[None].to(inputs_embeds.dtype)
        table = sinusoid_table(positions, self.config.d_model)
        return inputs_embeds + table[None].to(inputs_embeds.dtype)

    @capture_outputs
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        inputs_embeds=None,
        cache=None,
        use_cache=None,
        **kwargs,
    ):
        cache = _pop_cache(kwargs, cache)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)

        checkpointing = self.training and torch.is_grad_enabled() and any(b.gradient_checkpointing for b in self.block)
        if not self.is_decoder or checkpointing:
            # an encoder has no cache; under gradient checkpointing the layers are replayed, so no cache either
            use_cache, cache = False, None
        elif use_cache is None:
            use_cache = self.config.use_cache
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        elif use_cache and not isinstance(cache, EncoderDecoderCache):
            # a plain cache holds the self-attention states; cross-attention gets its own
            cache = EncoderDecoderCache(cache, DynamicCache(config=self.config))
        if not use_cache:
            cache = None

        batch, seq_len = inputs_embeds.shape[:2]
        self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        past_length = self_cache.get_seq_length(0) if self_cache is not None else 0
        if isinstance(past_length, torch.Tensor):
            past_length = int(past_length)
        k_len = past_length + seq_len
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] == seq_len < k_len:
            # a mask over the new tokens only: the cached ones were real tokens
            attention_mask = torch.cat([attention_mask.new_ones(batch, past_length), attention_mask], dim=-1)
        dtype = inputs_embeds.dtype
        self_mask = build_attention_mask(
            attention_mask, seq_len, k_len, causal=self.is_decoder, dtype=dtype, device=inputs_embeds.device
        )
        cross_mask = None
        if self.is_decoder and encoder_hidden_states is not None:
            cross_mask = build_attention_mask(
                encoder_attention_mask,
                seq_len,
                encoder_hidden_states.shape[1],
                causal=False,
                dtype=dtype,
                device=inputs_embeds.device,
            )

        # per-forward memo: a shared scheme computes its bias once for all layers. Under gradient
        # checkpointing each layer recomputes it, so the replayed layers see tensors with a graph.
        memo = None if checkpointing else PositionMemo()
        hidden_states = self.dropout(self._absolute_positions(inputs_embeds, past_length))
        for block, scheme in zip(self.block, self._schemes):
            hidden_states = block(
                hidden_states,
                self_mask,
                encoder_hidden_states,
                cross_mask,
                cache=cache,
                scheme=scheme,
                memo=memo,
                **kwargs,
            )
        hidden_states = self.dropout(self.final_layer_norm(hidden_states))
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, **{_STACK_CACHE_FIELD: cache})


def _output_flags(output_attentions, output_hidden_states):
    """The output flags that were given (None: the stack's ``capture_outputs`` reads the config)."""
    flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
    return {k: v for k, v in flags.items() if v is not None}


def _encoder_output(encoder_outputs):
    if isinstance(encoder_outputs, BaseModelOutput) or (
        hasattr(encoder_outputs, "last_hidden_state") and not isinstance(encoder_outputs, (tuple, list))
    ):
        return encoder_outputs
    return BaseModelOutput(
        last_hidden_state=encoder_outputs[0],
        hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
        attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
    )


class _RelPosT5EncoderDecoderBase(RelPosT5PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model_dim = config.d_model
        self.shared = _tag(nn.Embedding(config.vocab_size, config.d_model), "embedding")
        self.encoder = RelPosT5Stack(self.config, self.shared, is_decoder=False)
        self.decoder = RelPosT5Stack(self.config, self.shared, is_decoder=True)

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, new_embeddings):
        self.shared = new_embeddings
        self.encoder.set_input_embeddings(new_embeddings)
        self.decoder.set_input_embeddings(new_embeddings)

    def get_encoder(self, *args, **kwargs):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    def _run(
        self,
        input_ids,
        attention_mask,
        decoder_input_ids,
        decoder_attention_mask,
        encoder_outputs,
        cache,
        inputs_embeds,
        decoder_inputs_embeds,
        use_cache,
        output_attentions,
        output_hidden_states,
    ):
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                **_output_flags(output_attentions, output_hidden_states),
                return_dict=True,
            )
        else:
            encoder_outputs = _encoder_output(encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            cache=cache,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            use_cache=use_cache,
            **_output_flags(output_attentions, output_hidden_states),
            return_dict=True,
        )
        return encoder_outputs, decoder_outputs


class RelPosT5Model(_RelPosT5EncoderDecoderBase):
    """Bare encoder-decoder returning the decoder's last hidden states."""

    def __init__(self, config: RelPosT5Config):
        super().__init__(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        cache = _pop_cache(kwargs, cache)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        encoder_outputs, decoder_outputs = self._run(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            cache,
            inputs_embeds,
            decoder_inputs_embeds,
            use_cache,
            output_attentions,
            output_hidden_states,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            **{_CACHE_FIELD: getattr(decoder_outputs, _STACK_CACHE_FIELD)},
        )
        return output if return_dict else output.to_tuple()


class RelPosT5ForConditionalGeneration(_RelPosT5EncoderDecoderBase, GenerationMixin):
    """Encoder-decoder with a language-modelling head; supports ``generate`` (greedy, beam, sampling)."""

    _tied_weights_keys = {"lm_head.weight": "shared.weight"}

    def __init__(self, config: RelPosT5Config):
        super().__init__(config)
        self.lm_head = _tag(nn.Linear(config.d_model, config.vocab_size, bias=False), "embedding")
        self.lm_head._relpos_t5_is_lm_head = True
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        cache = _pop_cache(kwargs, cache)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._shift_right(labels)
        encoder_outputs, decoder_outputs = self._run(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            cache,
            inputs_embeds,
            decoder_inputs_embeds,
            use_cache,
            output_attentions,
            output_hidden_states,
        )
        sequence_output = decoder_outputs.last_hidden_state
        if self.config.tie_word_embeddings:
            # T5 rescales before the tied projection onto the vocabulary
            sequence_output = sequence_output * (self.model_dim**-0.5)
        logits = self.lm_head(sequence_output)

        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            flat_logits, flat_labels = logits.view(-1, logits.size(-1)).float(), labels.view(-1)
            if num_items_in_batch is not None:
                loss = CrossEntropyLoss(ignore_index=-100, reduction="sum")(flat_logits, flat_labels)
                if isinstance(num_items_in_batch, torch.Tensor):
                    num_items_in_batch = num_items_in_batch.to(loss.device)
                loss = loss / num_items_in_batch
            else:
                loss = CrossEntropyLoss(ignore_index=-100)(flat_logits, flat_labels)

        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            **{_CACHE_FIELD: getattr(decoder_outputs, _STACK_CACHE_FIELD)},
        )
        return output if return_dict else output.to_tuple()

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor):
        return self._shift_right(labels)


class RelPosT5EncoderModel(RelPosT5PreTrainedModel):
    """The encoder stack alone (``AutoModelForTextEncoding``)."""

    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^lm_head\."]

    def __init__(self, config: RelPosT5Config):
        super().__init__(config)
        self.shared = _tag(nn.Embedding(config.vocab_size, config.d_model), "embedding")
        self.encoder = RelPosT5Stack(self.config, self.shared, is_decoder=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, new_embeddings):
        self.shared = new_embeddings
        self.encoder.set_input_embeddings(new_embeddings)

    def get_encoder(self, *args, **kwargs):
        return self.encoder

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            **_output_flags(output_attentions, output_hidden_states),
            return_dict=True,
        )
        output = BaseModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "RelPosT5PreTrainedModel",
    "RelPosT5Model",
    "RelPosT5ForConditionalGeneration",
    "RelPosT5EncoderModel",
]
