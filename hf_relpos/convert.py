"""Conversion of pretrained checkpoints to the relpos model families.

- ``convert_t5_to_relpos``: an HF ``T5ForConditionalGeneration`` (object or folder) → a
  ``RelPosT5ForConditionalGeneration`` with T5's own bucket scheme; outputs are identical.
- ``convert_bert_to_relpos``: BERT / RoBERTa / XLM-R / CamemBERT / ELECTRA encoders (and their task
  heads) → ``relpos_bert`` with any scheme of ``relative_positions.SCHEMES``; transformers 4.x
  ``relative_key`` / ``relative_key_query`` BERTs → the Shaw schemes that reproduce them, exactly.
- ``convert_checkpoint``: either of the above, written as a checkpoint folder (weights, code,
  tokenizer, ``conversion.json``); ``hf-relpos convert`` on the command line.

Every entry point is the same pipeline: :class:`ConvertOptions` (validated once, without looking at the
source) → :func:`_plan` (the options checked against the source: family, scheme, target head) →
:func:`_build` (the converted model and its report) → :func:`_probe_drift` (measured distance to the
source) → :func:`_write` (a complete folder, or none). What a scheme can do at conversion (start from an
absolute checkpoint adding nothing, ``zero_init_``) is asked of its class, never of its name.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configuration_relpos_t5 import RelPosT5Config
from .modeling_relpos_t5 import RelPosT5ForConditionalGeneration
from .pipeline_files import add_pipelines
from .relative_positions import SCHEMES, RelativePositionScheme, Shaw, ShawKeyQuery, T5RelativePosition
from .tokenization import finalize_tokenizer_files

BERT_LIKE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
T5_MODEL_TYPES = ("t5", "mt5")
SUPPORTED_MODEL_TYPES = tuple(sorted(BERT_LIKE_MODEL_TYPES + T5_MODEL_TYPES))
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")
# transformers 4.x `position_embedding_type` → the scheme that reproduces it exactly (its table mapped in
# _legacy_tables)
LEGACY_RELATIVE = {"relative_key": Shaw.name, "relative_key_query": ShawKeyQuery.name}
# With absolute embeddings kept, these schemes have an initialisation (``zero_init_``) that adds exactly
# nothing to the scores, so the converted model starts equal to the source.
EXACT_FROM_ABSOLUTE = tuple(name for name, cls in SCHEMES.items() if cls.exact_from_absolute)
INITS = ("preserve", "random")
HEADS = ("auto", "base")
# config fields a BERT conversion sets itself (from the weights or its own arguments)
_FIXED_FIELDS = (
    "relative_position",
    "absolute_position",
    "max_position_embeddings",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "type_vocab_size",
)
# scheme fields that define how a legacy table is mapped
_LEGACY_FIXED_FIELDS = ("max_relative_position", "relative_value", "relative_position_per_layer")
# position fields a T5 conversion fixes (T5's own scheme, no absolute positions)
_T5_FIXED_FIELDS = (
    "relative_position",
    "decoder_relative_position",
    "absolute_position",
    "relative_position_per_layer",
)
_BERT_CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "classifier_dropout",
    "problem_type",
)
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
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
_TMP_MARK = ".converting-"  # temporary folder beside OUT: .<OUT name>.converting-<pid>


def _choices(field_name, value, choices):
    return ValueError(f"{field_name}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


# ---------------------------------------------------------------------------------------------------
# Options: validated once, before the source is read
# ---------------------------------------------------------------------------------------------------


@dataclass
class ConvertOptions:
    """The options of a conversion (see :func:`convert_bert_to_relpos` for each), validated on construction:
    a bad value raises ValueError naming the field, the value and the valid choices. Checks that need the
    source (which scheme a legacy checkpoint allows, which fields it fixes) happen in :func:`_plan`."""

    scheme: str | None = None
    keep_absolute: bool | None = None
    max_position_embeddings: int | None = None
    exact: bool = False
    head: str = "auto"
    init: str = "preserve"
    dtype: torch.dtype | None = torch.float32
    config_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise _choices("scheme", self.scheme, SCHEMES)
        if self.head not in HEADS:
            raise _choices("head", self.head, HEADS)
        if self.init not in INITS:
            raise _choices("init", self.init, INITS)
        if self.keep_absolute not in (None, True, False):
            raise _choices("keep_absolute", self.keep_absolute, (None, True, False))
        if self.exact not in (True, False):
            raise _choices("exact", self.exact, (True, False))
        n = self.max_position_embeddings
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"max_position_embeddings={n!r} is not valid; choose a positive integer")
        if self.dtype is not None and not isinstance(self.dtype, torch.dtype):
            raise ValueError(f"dtype={self.dtype!r} is not valid; choose a torch.dtype (e.g. torch.float32) or None")
        if not isinstance(self.config_overrides, dict):
            raise ValueError(f"config_overrides={self.config_overrides!r} is not valid; choose a dict of config fields")

    @classmethod
    def from_kwargs(cls, **kwargs) -> ConvertOptions:
        """Option fields by name; every other keyword is a config override."""
        names = set(cls.__dataclass_fields__) - {"config_overrides"}
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        return cls(**options, config_overrides=kwargs)


# ---------------------------------------------------------------------------------------------------
# The source: config.json and raw weights, read without transformers' model classes
# ---------------------------------------------------------------------------------------------------


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

    @property
    def is_t5(self):
        return self.model_type in T5_MODEL_TYPES

    def read_weights(self):
        if not self.state and self.model is None:
            self.state = _read_state_dict(self.folder)


def _load_weight_file(path: Path, loader) -> dict:
    try:
        return loader(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (named by the checkpoint's index); the checkpoint is incomplete") from None
    except Exception as err:  # safetensors / pickle / zip errors of a damaged file
        detail = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"{path}: not a readable weights file ({type(err).__name__}: {detail}); "
            "the checkpoint is damaged, download or save it again"
        ) from None


def _read_state_dict(folder: Path) -> dict:
    """Every tensor of a local checkpoint folder: safetensors (single or sharded) or pytorch_model.bin.
    A damaged file raises ValueError naming it."""
    from safetensors.torch import load_file

    def load_bin(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    if (folder / "model.safetensors").is_file():
        return _load_weight_file(folder / "model.safetensors", load_file)
    for index_name, loader in (("model.safetensors.index.json", load_file), ("pytorch_model.bin.index.json", load_bin)):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                raise ValueError(f"{index}: not a valid weight index ({type(err).__name__}: {err})") from None
            state = {}
            for shard in shards:
                state.update(_load_weight_file(folder / shard, loader))
            return state
    if (folder / "pytorch_model.bin").is_file():
        return _load_weight_file(folder / "pytorch_model.bin", load_bin)
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
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: not a JSON object of config fields")
    return config


def _load_source(src, read_weights: bool = True) -> _Source:
    if hasattr(src, "state_dict") and hasattr(src, "config"):  # a model object
        config = src.config.to_dict()
        config["architectures"] = [type(src).__name__]  # what the object is, whatever its config says
        return _Source(
            config=config,
            state=dict(src.state_dict()),
            model=src,  # (tensors are shared, not copied)
            folder=_local_dir(getattr(src, "name_or_path", None)),
        )
    if not isinstance(src, (str, os.PathLike)):
        raise ValueError(f"src={src!r} is not valid; choose a checkpoint folder, a Hub repo id or a transformers model")
    folder = _resolve_folder(src)
    source = _Source(config=_read_config(folder), state={}, folder=folder)
    _check_model_type(source)  # before reading any weights
    if read_weights:
        source.read_weights()
    return source


def _local_dir(path):
    return Path(path) if path and Path(path).is_dir() else None


def _check_model_type(source: _Source, allowed=SUPPORTED_MODEL_TYPES):
    if source.model_type not in allowed:
        raise ValueError(
            f"model_type={source.model_type!r} (config.json of the source) is not supported for conversion; "
            f"choose a checkpoint of one of: {', '.join(allowed)}"
        )


# ---------------------------------------------------------------------------------------------------
# Plan: the options checked against the source
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    source: _Source
    options: ConvertOptions
    scheme: str
    keep_absolute: bool
    kind: str  # target head: "base", "masked_lm", ..., "seq2seq_lm"


def _plan(source: _Source, options: ConvertOptions) -> _Plan:
    """Validate the options against the source (ValueError naming field, value, choices); read nothing."""
    _check_model_type(source)
    return _plan_t5(source, options) if source.is_t5 else _plan_bert(source, options)


def _plan_t5(source: _Source, options: ConvertOptions) -> _Plan:
    own = T5RelativePosition.name
    if options.scheme not in (None, own):
        raise ValueError(
            f"scheme={options.scheme!r} is not valid for a {source.model_type} source; choose: {own} (exact)"
        )
    for name in ("keep_absolute", "max_position_embeddings"):
        value = getattr(options, name)
        if value:
            raise ValueError(
                f"{name}={value!r} does not apply to a T5 source (T5 has no absolute positions); leave it unset"
            )
    if options.init != "preserve":
        raise ValueError(
            f"init={options.init!r} does not apply to a T5 source (its relative tables are copied, nothing starts new); "
            "choose: preserve"
        )
    bad = sorted(set(options.config_overrides) & set(_T5_FIXED_FIELDS))
    if bad:
        raise ValueError(
            f"{bad[0]} cannot be overridden when converting a T5 (the converted model uses T5's own {own!r} scheme); "
            "convert first, then build a new config if you want another scheme"
        )
    kind = "base" if options.head == "base" else "seq2seq_lm"
    return _Plan(source, options, own, False, kind)


def _plan_bert(source: _Source, options: ConvertOptions) -> _Plan:
    cfg = source.config
    if source.model_type == "electra" and cfg.get("embedding_size", cfg.get("hidden_size")) != cfg.get("hidden_size"):
        raise ValueError(
            f"embedding_size={cfg.get('embedding_size')} differs from hidden_size={cfg.get('hidden_size')} "
            "(an ELECTRA-small-like checkpoint projects its embeddings with `embeddings_project`, which relpos_bert "
            "does not have); choose an ELECTRA whose embedding_size equals hidden_size (ELECTRA base/large)"
        )
    bad = sorted(set(options.config_overrides) & set(_FIXED_FIELDS))
    if bad:
        raise ValueError(
            f"{bad[0]} cannot be overridden in a conversion (it comes from the source weights or from the scheme / "
            "keep_absolute / max_position_embeddings arguments)"
        )
    if source.legacy:
        scheme, keep_absolute = _plan_legacy(source, options), False
    else:
        scheme, keep_absolute = _plan_absolute(source, options)
    return _Plan(source, options, scheme, keep_absolute, _target_head(source, options.head))


def _plan_legacy(source: _Source, options: ConvertOptions) -> str:
    legacy, expected = source.legacy, LEGACY_RELATIVE[source.legacy]
    scheme = expected if options.scheme is None else options.scheme
    if scheme != expected:
        raise ValueError(
            f"scheme={scheme!r} is not valid for a transformers 4.x position_embedding_type={legacy!r} checkpoint; "
            f"choose: {expected} (it reproduces {legacy} exactly)"
        )
    if options.keep_absolute:
        raise ValueError(
            f"keep_absolute=True is not valid for a position_embedding_type={legacy!r} checkpoint: 4.x never added its "
            "position_embeddings table (it stayed at its random initialisation); leave keep_absolute unset"
        )
    bad = sorted(set(options.config_overrides) & set(_LEGACY_FIXED_FIELDS))
    if bad:
        raise ValueError(
            f"{bad[0]} cannot be overridden when converting a {legacy} checkpoint (it fixes the table mapping)"
        )
    P, n = source.config.get("max_position_embeddings", 512), options.max_position_embeddings
    if legacy == "relative_key_query" and n is not None and n < P and options.exact:
        raise ValueError(
            f"max_position_embeddings={n} is smaller than the checkpoint's {P}: the relative "
            f"table would be cropped and outputs change past that distance; choose ≥ {P} or drop exact"
        )
    return scheme


def _plan_absolute(source: _Source, options: ConvertOptions) -> tuple[str, bool]:
    kind = source.config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"position_embedding_type={kind!r} (config.json) is not valid; "
            f"choose a checkpoint with one of: absolute, {', '.join(LEGACY_RELATIVE)}"
        )
    scheme = options.scheme
    if scheme is None:
        raise ValueError(
            f"scheme=None: an absolute-position source needs a scheme; choose one of: {', '.join(SCHEMES)}"
        )
    keep_absolute = options.keep_absolute is not False
    if options.exact:
        if not keep_absolute:
            raise ValueError(
                "keep_absolute=False (--drop-absolute) cannot reproduce an absolute-position source exactly (its "
                "positions live in the dropped table); choose keep_absolute=True or drop exact"
            )
        if scheme not in EXACT_FROM_ABSOLUTE or options.init != "preserve":
            raise ValueError(
                f"scheme={scheme!r} with init={options.init!r} cannot reproduce the source exactly (it changes the attention "
                f"scores from the start); with exact=True choose one of: {', '.join(EXACT_FROM_ABSOLUTE)} (init='preserve')"
            )
    return scheme, keep_absolute


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
    arch = source.architecture
    if head == "base" or arch is None:
        return "base"
    kind = next((k for suffix, k in _HEAD_SUFFIXES.items() if arch.endswith(suffix)), None)
    unsupported = kind is None or (
        source.model_type == "electra"
        and arch in ("ElectraForSequenceClassification", "ElectraForPreTraining", "ElectraForMultipleChoice")
    )
    if unsupported:
        raise ValueError(
            f"architectures={[arch]!r}: this task head has no relpos_bert counterpart; choose head='base' "
            "(--head base) to convert the encoder alone (then fine-tune a new head), or a source whose head is one "
            f"of: {', '.join(s for s in _HEAD_SUFFIXES)}"
        )
    return kind


# ---------------------------------------------------------------------------------------------------
# Build: the converted model and its report
# ---------------------------------------------------------------------------------------------------


def _build(plan: _Plan):
    """(model, info) for a plan; reads the source's weights if not read yet."""
    plan.source.read_weights()
    return _build_t5(plan) if plan.source.is_t5 else _build_bert(plan)


def _load_mapped(model, mapped: dict, tied_key: str | None) -> list:
    """Load ``mapped`` into ``model`` after checking names and shapes; returns the model's parameters the
    source did not provide. ``tied_key``: the output embedding tied to the input table (not loaded)."""
    target = model.state_dict()
    unexpected = sorted(k for k in mapped if k not in target)
    if unexpected:
        raise ValueError(f"source parameters the converted model has no place for: {', '.join(unexpected[:8])}")
    for name, tensor in mapped.items():
        if tuple(target[name].shape) != tuple(tensor.shape):
            raise ValueError(
                f"{name}: source shape {tuple(tensor.shape)} does not match {type(model).__name__}'s {tuple(target[name].shape)}"
            )
    mapped.pop(tied_key, None)
    missing = sorted(k for k in target if k not in mapped and k != tied_key)
    model.load_state_dict({k: v.detach().to(target[k].dtype).clone() for k, v in mapped.items()}, strict=False)
    if tied_key is not None:
        model.tie_weights()
    return missing


def _zero_init(model):
    """Make the new relative parameters add nothing to the scores where the scheme allows it."""
    for module in model.modules():
        if isinstance(module, RelativePositionScheme):
            module.zero_init_()


# --- T5 / mT5 → relpos_t5 ---------------------------------------------------------------------------


def _t5_hf_config(source: _Source):
    if source.model is not None:
        return source.model.config
    from transformers import CONFIG_MAPPING

    return CONFIG_MAPPING[source.model_type].from_dict(source.config)


def _t5_scales_decoder_output(hf_config) -> bool:
    # transformers ≥ 5.2x keeps `tie_word_embeddings=True` on every T5 and records whether the decoder
    # output is rescaled (the original T5) in `scale_decoder_outputs`; before, the two were one flag
    scale = getattr(hf_config, "scale_decoder_outputs", None)
    return bool(hf_config.tie_word_embeddings if scale is None else scale)


def _map_t5_state(state: dict, kind: str, tied: bool) -> dict:
    """T5 parameter names → relpos_t5's: the block-0 bucket tables become the stack-shared
    ``{encoder,decoder}.relative_position.relative_attention_bias``."""
    mapped = {}
    for name, tensor in state.items():
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
    if "shared.weight" not in mapped and "encoder.embed_tokens.weight" in state:
        mapped["shared.weight"] = state["encoder.embed_tokens.weight"]
    if kind == "base":
        mapped.pop("lm_head.weight", None)
    elif not tied and "lm_head.weight" not in mapped:
        mapped["lm_head.weight"] = mapped["shared.weight"]  # an HF T5 without rescaling may still share the head
    return mapped


def _build_t5(plan: _Plan):
    from .modeling_relpos_t5 import RelPosT5Model

    source, options = plan.source, plan.options
    hf_config = _t5_hf_config(source)
    tied = _t5_scales_decoder_output(hf_config)
    fields = {name: getattr(hf_config, name) for name in _T5_FIELDS if hasattr(hf_config, name)}
    config = RelPosT5Config(
        **fields,
        tie_word_embeddings=tied,
        relative_position=plan.scheme,
        decoder_relative_position=None,
        absolute_position="none",
        **options.config_overrides,
    )
    model = (RelPosT5Model if plan.kind == "base" else RelPosT5ForConditionalGeneration)(config)
    notes = (
        ["lm_head dropped (head='base')"]
        if plan.kind == "base" and "ForConditional" in str(source.architecture)
        else []
    )
    mapped = _map_t5_state(source.state, plan.kind, tied)
    tied_key = "lm_head.weight" if tied and plan.kind != "base" else None
    missing = _load_mapped(model, mapped, tied_key)
    if missing:
        raise ValueError(f"the source has no weights for: {', '.join(missing[:8])}; the T5 checkpoint is incomplete")
    model = model.to(options.dtype if options.dtype is not None else mapped["shared.weight"].dtype)
    _copy_generation_config(source, model)
    model.train(bool(getattr(source.model, "training", False)))
    info = {
        "source_model_type": source.model_type,
        "source_architecture": source.architecture,
        "model_class": type(model).__name__,
        "relative_position": plan.scheme,
        "absolute_position": "none",
        "init": options.init,
        "exact": True,
        "notes": notes,
    }
    return model, info


def _copy_generation_config(source: _Source, model):
    if not hasattr(model, "generation_config"):
        return
    if getattr(source.model, "generation_config", None) is not None:
        model.generation_config = copy.deepcopy(source.model.generation_config)
    elif source.folder is not None and (source.folder / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(source.folder)


# --- BERT family → relpos_bert ----------------------------------------------------------------------


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
            base[name[len(prefix) :]] = tensor
        elif not prefix and name.split(".", 1)[0] in ("embeddings", "encoder", "pooler", "embeddings_project"):
            base[name] = tensor
        else:
            heads[name] = tensor
    return base, heads


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
                new = (
                    name.replace("lm_head.dense.", "cls.predictions.transform.dense.")
                    .replace("lm_head.layer_norm.", "cls.predictions.transform.LayerNorm.")
                    .replace("lm_head.decoder.", "cls.predictions.decoder.")
                    .replace("lm_head.bias", "cls.predictions.bias")
                )
            elif mt == "electra" and name.startswith(("generator_predictions.", "generator_lm_head.")):
                new = (
                    name.replace("generator_predictions.dense.", "cls.predictions.transform.dense.")
                    .replace("generator_predictions.LayerNorm.", "cls.predictions.transform.LayerNorm.")
                    .replace("generator_lm_head.weight", "cls.predictions.decoder.weight")
                    .replace("generator_lm_head.bias", "cls.predictions.bias")
                )
        elif kind in ("sequence_classification", "multiple_choice") and name.startswith("classifier."):
            if mt in _ROBERTA_LIKE and kind == "sequence_classification":
                # RobertaClassificationHead: dense → tanh → out_proj on <s>, i.e. BERT's pooler + classifier
                new = name.replace("classifier.dense.", "bert.pooler.dense.").replace(
                    "classifier.out_proj.", "classifier."
                )
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
    """The key-query Shaw scheme's (2P−1, d) table, index i − j + P − 1, as a (2N−1, d) table: the edge rows
    repeat (N > P), which is what clipping i − j at ±(P − 1) computes, or the middle rows are kept (N < P)."""
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


def _source_positions(source: _Source, base: dict) -> tuple[int, int, list]:
    """(offset, P_source, legacy distance tables): RoBERTa's table starts at padding_idx + 1 (rows below
    belong to padding); a legacy checkpoint's length is read from its distance tables."""
    cfg = source.config
    offset = cfg.get("pad_token_id", 1) + 1 if source.model_type in _ROBERTA_LIKE else 0
    P_source = cfg.get("max_position_embeddings", 512) - offset
    tables = sorted(n for n in base if n.endswith("attention.self.distance_embedding.weight"))
    if source.legacy:
        if len(tables) != cfg.get("num_hidden_layers"):
            raise ValueError(
                f"position_embedding_type={source.legacy!r} but the source has {len(tables)} distance_embedding tables "
                f"for num_hidden_layers={cfg.get('num_hidden_layers')}; the checkpoint is incomplete"
            )
        P_source = (base[tables[0]].shape[0] + 1) // 2  # 4.x sized it 2·max_position_embeddings − 1
    return offset, P_source, tables


def _absolute_table(plan: _Plan, base: dict, offset: int, P_source: int, P: int, notes: list):
    """Keep (shifted, resized) or drop the learned absolute table, in place in ``base``."""
    table = base.pop("embeddings.position_embeddings.weight", None)
    for buffer in ("embeddings.position_ids", "embeddings.token_type_ids"):
        base.pop(buffer, None)
    legacy = plan.source.legacy
    if plan.keep_absolute:
        if table is None:
            raise ValueError("the source has no embeddings.position_embeddings.weight; choose keep_absolute=False")
        if P != P_source:
            notes.append(
                f"learned absolute table resized {P_source} → {P} rows"
                + (
                    " (rows ≥ %d copy row p mod %d, Longformer-style)" % (P_source, P_source)
                    if P > P_source
                    else " (cropped)"
                )
            )
        base["embeddings.position_embeddings.weight"] = _extend_positions(table[offset:], P)
    elif legacy:
        notes.append(
            f"embeddings.position_embeddings dropped: 4.x never added it with position_embedding_type={legacy!r}"
        )
    elif table is not None:
        notes.append("absolute position table dropped: the model is purely relative and runs at any length")


def _legacy_tables(legacy, base: dict, tables: list, P_source: int, P: int, notes: list):
    """4.x ``distance_embedding`` tables → the Shaw schemes' tables, in place in ``base``."""
    for name in tables:
        tensor = base.pop(name)
        stem = name[: -len("distance_embedding.weight")] + "relative_position."
        if legacy == "relative_key_query":
            base[stem + "distance_embedding.weight"] = _resize_distance_table(tensor, P_source, P)
        elif legacy == "relative_key":
            # 4.x: q_i·e[i − j + P − 1]; shaw: q_i·a[j − i + k], k = P − 1 → a = e reversed
            base[stem + "relative_key.weight"] = tensor.flip(0).clone()
        else:
            notes.append(f"{name} dropped (position_embedding_type is absolute)")


def _bert_config(plan: _Plan, P_source: int, P: int):
    from .configuration_relpos_bert import RelPosBertConfig

    source, cfg = plan.source, plan.source.config
    fields = {k: cfg[k] for k in _BERT_CONFIG_FIELDS if cfg.get(k) is not None}
    fields.setdefault("hidden_act", "gelu")
    if plan.kind not in ("base", "masked_lm"):
        if cfg.get("id2label"):
            fields["id2label"] = {int(k): v for k, v in cfg["id2label"].items()}
            fields["label2id"] = dict(cfg.get("label2id") or {v: int(k) for k, v in cfg["id2label"].items()})
        elif cfg.get("num_labels"):
            fields["num_labels"] = cfg["num_labels"]
    if plan.kind == "masked_lm" and source.model_type != "bert" and fields["hidden_act"] != "gelu":
        raise ValueError(
            f"hidden_act={fields['hidden_act']!r}: the {source.model_type} MLM head applies gelu, relpos_bert's applies "
            "hidden_act; choose head='base' to convert the encoder alone"
        )
    if source.legacy == "relative_key":  # 4.x clipped at P − 1 and had no value-side table
        fields.update(max_relative_position=P_source - 1, relative_value=False)
    fields.update(plan.options.config_overrides)  # e.g. dropouts: the caller's choice over the source's
    return RelPosBertConfig(
        **fields,
        max_position_embeddings=P,
        relative_position=plan.scheme,
        absolute_position="learned" if plan.keep_absolute else "none",
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
    )


def _build_bert(plan: _Plan):
    source, options, kind, notes = plan.source, plan.options, plan.kind, []
    base, heads = _split_base(source.state)
    offset, P_source, tables = _source_positions(source, base)
    P = options.max_position_embeddings or P_source
    _absolute_table(plan, base, offset, P_source, P, notes)
    _legacy_tables(source.legacy, base, tables, P_source, P, notes)
    config = _bert_config(plan, P_source, P)

    prefix = "" if kind == "base" else "bert."
    mapped = {prefix + k: v for k, v in base.items()}
    mapped.update(_map_heads(source, kind, heads, notes))
    model = _relpos_bert_class(kind)(config)
    if options.init == "preserve":
        _zero_init(model)
    pooler = [k for k in mapped if k.startswith(prefix + "pooler.") and k not in model.state_dict()]
    if pooler:  # e.g. BertForPreTraining's pooler feeds the dropped next-sentence head
        notes.append(f"pooler dropped ({type(model).__name__} has none): {', '.join(pooler)}")
        for k in pooler:
            mapped.pop(k)
    tied = config.tie_word_embeddings and kind == "masked_lm"
    missing = _load_mapped(model, mapped, "cls.predictions.decoder.weight" if tied else None)
    new_relative = [
        k
        for k in missing
        if ".relative_position." in k or k.startswith(("relative_position.", "encoder.relative_position."))
    ]
    other_new = [k for k in missing if k not in new_relative]
    if other_new:
        notes.append(f"newly initialised (not in the source): {', '.join(other_new)}")
    model = model.to(options.dtype if options.dtype is not None else base["embeddings.word_embeddings.weight"].dtype)
    model.eval()

    if source.legacy:  # a cropped key-query table changes distances past the new size
        exact = source.legacy == "relative_key" or P >= P_source
    else:
        exact = bool(plan.keep_absolute and options.init == "preserve" and plan.scheme in EXACT_FROM_ABSOLUTE)
    info = {
        "source_model_type": source.model_type,
        "source_architecture": source.architecture,
        "source_position_embedding_type": source.config.get("position_embedding_type", "absolute"),
        "model_class": type(model).__name__,
        "relative_position": plan.scheme,
        "absolute_position": config.absolute_position,
        "max_position_embeddings": P,
        "init": options.init,
        "exact": exact,
        "new_relative_parameters": new_relative,
        "notes": notes,
    }
    return model, info


# ---------------------------------------------------------------------------------------------------
# Drift probe: the converted model against the source, run by transformers
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _in_float32(*modules):
    """Run modules in fp32 and give them back in their own dtype (a user's source object is not changed)."""
    dtypes = [next(m.parameters()).dtype for m in modules]
    try:
        yield [m.float() for m in modules]
    finally:
        for module, dtype in zip(modules, dtypes):
            module.to(dtype)


def _probe_ids(vocab_size: int, length: int, avoid: set) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, max(6, min(vocab_size, 1000)), (2, length), generator=generator)
    for token in avoid:
        ids[ids == token] = 5 if token != 5 else 6
    return ids


def _probe_batch(vocab_size: int, length: int, pad) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of random ids, the second right-padded to half its length."""
    pad = pad or 0
    ids = _probe_ids(vocab_size, length, {pad})
    mask = torch.ones_like(ids)
    mask[1, length // 2 :] = 0
    ids[1, length // 2 :] = pad
    return ids, mask


def _reference_model(source: _Source, auto_class: str):
    import transformers

    if source.model is not None:
        return source.model
    return getattr(transformers, auto_class).from_pretrained(source.folder, dtype=torch.float32)


def _probe_drift(source: _Source, model) -> dict | None:
    """max/mean |Δ| of the outputs, converted vs source (run by transformers), on random ids with right
    padding: the last hidden state of BERT-family encoders, the logits (or the encoder and decoder states)
    of T5. None where transformers 5 cannot run the source (legacy relative_key checkpoints)."""
    if source.legacy:
        return None
    was_training = model.training
    model.eval()
    with torch.no_grad():
        diffs = _probe_t5(source, model) if source.is_t5 else _probe_bert(source, model)
    model.train(was_training)
    diff, length = diffs
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "probe_length": int(length)}


def _probe_bert(source: _Source, model):
    reference = _reference_model(source, "AutoModel")
    reference_base = reference.base_model
    length = min(32, model.config.max_position_embeddings)
    ids, mask = _probe_batch(model.config.vocab_size, length, source.config.get("pad_token_id", 0))
    training = reference_base.training
    with _in_float32(reference_base, model.base_model) as (ref, ours):
        expected = ref.eval()(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    reference_base.train(training)
    return (expected - got).abs()[mask.bool()], length


def _probe_t5(source: _Source, model):
    reference = _reference_model(source, "AutoModelForSeq2SeqLM")
    length = 16
    ids, mask = _probe_batch(model.config.vocab_size, length, model.config.pad_token_id)
    decoder_ids = _probe_ids(model.config.vocab_size, length // 2, {model.config.pad_token_id})
    training = reference.training
    with _in_float32(reference, model) as (ref, ours):
        kwargs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        expected, got = ref.eval()(**kwargs), ours(**kwargs)
        pairs = [(expected.encoder_last_hidden_state[mask.bool()], got.encoder_last_hidden_state[mask.bool()])]
        if getattr(expected, "logits", None) is not None and getattr(got, "logits", None) is not None:
            pairs.append((expected.logits, got.logits))
        elif getattr(got, "last_hidden_state", None) is not None:  # head='base': the decoder's states
            decoder = ref.get_decoder()(
                input_ids=decoder_ids,
                encoder_hidden_states=expected.encoder_last_hidden_state,
                encoder_attention_mask=mask,
            )
            pairs.append((decoder.last_hidden_state, got.last_hidden_state))
    reference.train(training)
    return torch.cat([(a - b).abs().flatten() for a, b in pairs]), length


def _check_drift(plan: _Plan, model, info: dict):
    info["check"] = _probe_drift(plan.source, model)
    if info["check"] is None:
        info["notes"].append("no drift check: transformers 5 cannot run a legacy relative_key checkpoint")
    elif plan.options.exact and info["check"]["max_abs_diff"] > 1e-4:
        raise ValueError(
            f"exact=True but the converted model differs from the source by {info['check']['max_abs_diff']:.3g} "
            "(max |Δ| of the outputs on a probe input); nothing was written"
        )


# ---------------------------------------------------------------------------------------------------
# Write: a complete folder or none
# ---------------------------------------------------------------------------------------------------


def _check_out(out) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out={str(out)!r} already exists and is not an empty folder; choose a new or empty folder")
    return out


def _load_tokenizer(source: _Source, tokenizer, no_tokenizer: bool):
    """(tokenizer object or None, where it came from)."""
    if no_tokenizer:
        return None, None
    if tokenizer is None:
        folder = source.folder
        if folder is None or not any((folder / name).is_file() for name in _TOKENIZER_FILES):
            raise ValueError(
                f"tokenizer=None: the source ({str(folder) if folder else type(source.model).__name__}) has no tokenizer "
                f"files ({', '.join(_TOKENIZER_FILES)}); pass tokenizer=<folder or Hub id> (--tokenizer), or "
                "no_tokenizer=True (--no-tokenizer) to write a checkpoint without one"
            )
        tokenizer = str(folder)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tokenizer), tokenizer
    except Exception as err:
        raise ValueError(f"tokenizer={str(tokenizer)!r} could not be loaded ({type(err).__name__}: {err})") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or unknowable: leave its folder alone
    return True


def _remove_stale(out: Path):
    """Temporary folders of conversions into ``out`` whose process is gone (killed): removed."""
    stem = f".{out.name}{_TMP_MARK}"
    for path in out.parent.iterdir():
        pid = path.name[len(stem) :] if path.name.startswith(stem) else ""
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)


def _write(out: Path, model, tokenizer, info: dict, model_max_length: int | None):
    """Write everything into ``.<out>.converting-<pid>`` beside ``out``, then rename it to ``out``: ``out`` is
    complete or absent, even if the process is killed; a killed run's folder is removed by the next run."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = out.parent / f".{out.name}{_TMP_MARK}{os.getpid()}"
    tmp.mkdir()  # (not mkdtemp: its 0700 mode would stick to the renamed folder)
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            finalize_tokenizer_files(tmp, model_max_length)  # the model's real limit; a plain tokenizer class
        add_pipelines(tmp)  # question-answering / summarization pipelines as remote code
        (tmp / "conversion.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        _check_out(out)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # (gone after a successful rename)


# ---------------------------------------------------------------------------------------------------
# Public entry points: compositions of the steps above
# ---------------------------------------------------------------------------------------------------


def convert_t5_to_relpos(
    hf_model_or_path,
    *,
    dtype: torch.dtype | None = torch.float32,
    **config_overrides,
) -> RelPosT5ForConditionalGeneration:
    """Convert an HF T5 encoder-decoder to ``relpos_t5`` with T5's own bucket scheme, exactly.

    Args:
        hf_model_or_path: a ``T5ForConditionalGeneration`` (or any T5-architecture model with the same
            parameter names, e.g. ``T5Model`` minus the LM head) or a local folder / Hub name.
        dtype: dtype of the returned model (``None``: keep the source's dtype).
        **config_overrides: extra ``RelPosT5Config`` fields (e.g. ``dropout_rate=0.0``); position
            fields that would break equivalence are refused.

    The bucket tables ``{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias`` become
    the stack-shared ``{encoder,decoder}.relative_position.relative_attention_bias``. A T5 whose decoder
    output is not rescaled (T5 v1.1, ``tie_word_embeddings=False`` in its original config) becomes an
    untied relpos_t5 whose ``lm_head`` is a copy of T5's LM head.
    """
    options = ConvertOptions(dtype=dtype, config_overrides=config_overrides)
    source = _load_source(hf_model_or_path)
    _check_model_type(source, T5_MODEL_TYPES)
    return _build(_plan(source, options))[0]


def _convert_bert(src, scheme=None, keep_absolute=None, **kwargs):
    """(model, info): convert_bert_to_relpos with its report; ``kwargs`` as there."""
    options = ConvertOptions.from_kwargs(scheme=scheme, keep_absolute=keep_absolute, **kwargs)
    source = _load_source(src)
    _check_model_type(source, BERT_LIKE_MODEL_TYPES)
    return _build(_plan(source, options))


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
            their exact counterpart (``LEGACY_RELATIVE``: ``relative_key`` → Shaw with clip P − 1 and the
            table reversed, ``relative_key_query`` → Shaw key-query with the table as is).
        keep_absolute: keep the learned absolute table (default for absolute sources) or drop it
            (purely relative, any length). Legacy checkpoints never used theirs: leave it ``None``.
        max_position_embeddings: resize the absolute table (Longformer-style copies past the source's
            length, exact on shorter inputs) / size the legacy key-query table. Default: the source's
            (RoBERTa: ``max_position_embeddings − padding_idx − 1``, its table shifted accordingly).
        exact: refuse (ValueError) options that cannot reproduce the source's outputs.
        head: ``"auto"`` (the source's task head) or ``"base"`` (encoder only).
        init: ``"preserve"`` (zero the new relative parameters where that makes them add nothing: the
            schemes in ``EXACT_FROM_ABSOLUTE``) or ``"random"`` (each scheme's own initialisation).
        dtype: dtype of the returned model (``None``: the source's).
        **config_overrides: further ``RelPosBertConfig`` fields (scheme hyper-parameters, dropouts).

    Returns a ``RelPosBert*`` model in eval mode.
    """
    options = ConvertOptions(scheme, keep_absolute, max_position_embeddings, exact, head, init, dtype, config_overrides)
    source = _load_source(src)
    _check_model_type(source, BERT_LIKE_MODEL_TYPES)
    return _build(_plan(source, options))[0]


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
    ``relative_key*`` BERTs as in :func:`convert_bert_to_relpos` (see it for every argument); T5 / mT5 as in
    :func:`convert_t5_to_relpos` (T5's scheme, exact; ``head="base"`` gives a ``RelPosT5Model`` without
    the LM head; ``keep_absolute``, ``max_position_embeddings`` and ``init="random"`` do not apply). ``out``
    gets safetensors weights, config.json with ``auto_map``, the modeling code (loadable with
    ``trust_remote_code=True`` without hf_relpos), the tokenizer (from the source or ``tokenizer``; a source
    without one fails unless ``no_tokenizer``) and ``conversion.json`` (what was done, and with ``check`` the
    measured drift against the source on a probe input). Everything is written into a temporary folder
    beside ``out`` and renamed at the end: a failure, or a killed process, leaves no partial ``out``, which
    must not exist or be empty.

    Returns the conversion report (also written to ``conversion.json``).
    """
    options = ConvertOptions(scheme, keep_absolute, max_position_embeddings, exact, head, init, dtype, config_overrides)
    out = _check_out(out)
    source = _load_source(src, read_weights=False)
    plan = _plan(source, options)
    tok, tokenizer_src = _load_tokenizer(source, tokenizer, no_tokenizer)
    model, info = _build(plan)
    if check:
        _check_drift(plan, model, info)
    info["source"] = str(src) if isinstance(src, (str, os.PathLike)) else type(src).__name__
    info["tokenizer"] = str(tokenizer_src) if tokenizer_src is not None else None
    _write(out, model, tok, info, max_position_embeddings)
    info["output_dir"] = str(out)
    return info


__all__ = ["ConvertOptions", "convert_bert_to_relpos", "convert_checkpoint", "convert_t5_to_relpos"]
