"""What the configs share about schemes: the hf_relpos 0.1 flat fields (aliases of scheme parameters,
kept as keyword arguments and attributes), resolving and validating a config's scheme fields, the
value checks that name field, value and choices, and the warning for a misspelt field.

This file travels as remote code with the configuration files: it imports only transformers and
``relative_positions``.
"""

from __future__ import annotations

from .relative_positions import (
    ABSOLUTE_POSITIONS,
    SCHEMES,
    RelativePositionScheme,
    build_scheme,
    choice_error,
    is_int,
    is_number,
    scheme_class,
)

# The flat scheme fields of hf_relpos 0.1 configs (each an alias of one scheme's parameter) and their
# defaults, derived from the classes. Configs still accept them as keyword arguments and attributes.
SCHEME_DEFAULTS = {
    "relative_position": "none",
    "absolute_position": "learned",
    "relative_position_per_layer": None,  # None: the scheme's own default (see `shared_by_default`)
    **{flat: cls.defaults[key] for cls in SCHEMES.values() for flat, key in cls.aliases.items()},
}
FLAT_SCHEME_FIELDS = tuple(
    k for k in SCHEME_DEFAULTS if k not in ("relative_position", "absolute_position", "relative_position_per_layer")
)
# Flat fields that switch a feature on: True must reach a scheme that has it (else a ValueError).
_FLAT_SWITCHES = tuple(f for f in FLAT_SCHEME_FIELDS if isinstance(SCHEME_DEFAULTS[f], bool))


def resolve_scheme_parameters(
    name,
    params=None,
    flat=None,
    prefix: str = "",
    *,
    causal: bool = False,
    head_dim: int | None = None,
    saved: bool | None = None,
) -> dict:
    """The complete, validated hyper-parameters of scheme ``name``: its defaults, then the 0.1 flat
    fields in ``flat`` that it has aliases for, then ``params``. ``saved``: whether they come from a
    saved config (``"transformers_version" in kwargs`` in a config's ``__init__``); a saved config that
    does not name a newer key (``legacy``, e.g. ``directional``) keeps the behaviour it was saved with."""
    cls = scheme_class(name, prefix + "relative_position")
    for switch in _FLAT_SWITCHES:
        value = (flat or {}).get(switch)
        if value is not None and not isinstance(value, bool):
            raise choice_error(switch, value, (True, False))
        if value and switch not in cls.aliases:
            users = [n for n, c in SCHEMES.items() if switch in c.aliases]
            raise ValueError(
                f"{switch}=True is only valid with relative_position in ({', '.join(users)}), not "
                f"{name!r}; choose one of those or set it False"
            )
    return cls.resolve(params, flat, prefix, causal=causal, head_dim=head_dim, saved=saved)


def flat_scheme_fields(source) -> dict:
    """The 0.1 flat scheme fields present on ``source`` (an object or a dict), for ``resolve``."""
    if isinstance(source, dict):
        return {f: source[f] for f in FLAT_SCHEME_FIELDS if f in source}
    return {f: getattr(source, f) for f in FLAT_SCHEME_FIELDS if hasattr(source, f)}


def validate_per_layer(value, prefix: str = "") -> None:
    if value not in (None, True, False):
        raise choice_error(prefix + "relative_position_per_layer", value, (None, True, False))


def validate_absolute_position(value, prefix: str = "") -> None:
    if value not in ABSOLUTE_POSITIONS:
        raise choice_error(prefix + "absolute_position", value, ABSOLUTE_POSITIONS)


# --- 0.1 entry points, kept for callers outside the configs/models --------------------------------


def validate_scheme_config(config, prefix: str = "", *, causal: bool = False, head_dim: int | None = None) -> dict:
    """Validate the scheme fields of ``config`` (a config, or any object with ``relative_position`` and
    either ``relative_position_parameters`` or 0.1 flat fields) and return the resolved parameters.
    ValueError names the field, the value and the valid choices."""
    name = config.relative_position
    scheme_class(name, prefix + "relative_position")
    if hasattr(config, "absolute_position"):
        validate_absolute_position(config.absolute_position, prefix)
    validate_per_layer(getattr(config, "relative_position_per_layer", None), prefix)
    params = getattr(config, "relative_position_parameters", None)
    return resolve_scheme_parameters(name, params, flat_scheme_fields(config), prefix, causal=causal, head_dim=head_dim)


def build_relative_position(config, num_heads, head_dim, hidden_size, causal=False) -> RelativePositionScheme:
    """Instantiate the scheme named by ``config.relative_position`` (see ``validate_scheme_config``)."""
    params = validate_scheme_config(config, causal=causal, head_dim=head_dim)
    return build_scheme(
        config.relative_position,
        params,
        num_heads,
        head_dim,
        hidden_size,
        causal,
        getattr(config, "max_position_embeddings", 512),
    )


class SchemeFields:
    """A plain namespace of 0.1 flat scheme fields (defaults filled in), accepted by
    ``build_relative_position``; e.g. ``SchemeFields(relative_position="t5", max_position_embeddings=1024)``."""

    def __init__(self, **fields):
        for name, default in SCHEME_DEFAULTS.items():
            setattr(self, name, fields.pop(name, default))
        for name, value in fields.items():
            setattr(self, name, value)


# --- what both configs share ------------------------------------------------------------------------


def check_positive_int(field, value) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"{field}={value!r} is not valid; choose a positive integer (≥ 1)")


def check_positive_number(field, value) -> None:
    if not is_number(value) or value <= 0:
        raise ValueError(f"{field}={value!r} is not valid; choose a positive number")


def check_probability(field, value) -> None:
    # [0, 1): a dropout probability of 1 zeroes every activation it applies to, so the model's output
    # no longer depends on its input; that is a mistake rather than a setting (torch accepts it silently).
    if not is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{field}={value!r} is not valid; choose a probability in [0, 1)")


def check_head_size(hidden_size, num_heads, hidden_field="hidden_size", heads_field="num_attention_heads") -> None:
    if hidden_size % num_heads:
        raise ValueError(
            f"{heads_field}={num_heads} does not divide {hidden_field}={hidden_size}; choose a number of heads that "
            f"divides it (e.g. {', '.join(str(h) for h in range(1, hidden_size + 1) if hidden_size % h == 0 and h <= 64)})"
        )


def flat_field_property(flat: str) -> property:
    """A config attribute for the 0.1 flat field ``flat``: it reads and writes the parameter it is an
    alias of in every scheme dict of the config (``config.scheme_roles()``: (name, params) pairs); a
    config whose schemes do not use it reads the 0.1 default."""

    def fget(config):
        for name, params in config.scheme_roles():
            key = SCHEMES[name].aliases.get(flat)
            if key is not None:
                return params[key]
        return SCHEME_DEFAULTS[flat]

    def fset(config, value):
        used = False
        for name, params in config.scheme_roles():
            cls = SCHEMES[name]
            key = cls.aliases.get(flat)
            if key is not None:
                cls.validate({**params, key: value})
                params[key] = value
                used = True
        if not used and flat in _FLAT_SWITCHES and value:
            resolve_scheme_parameters(config.relative_position, None, {flat: value})  # raises, naming the field

    return property(fget, fset, doc=f"hf_relpos 0.1 flat field {flat!r}: an alias into the scheme parameter dicts")


def add_flat_scheme_fields(config_class):
    """Class decorator of the configs: one ``flat_field_property`` per 0.1 flat scheme field."""
    for flat in FLAT_SCHEME_FIELDS:
        if flat not in vars(config_class):
            setattr(config_class, flat, flat_field_property(flat))
    return config_class


_WARNED_FIELDS: set = set()


def warn_misspelt_fields(config_class, kwargs: dict) -> None:
    """Warn once per (config class, key) for an unknown keyword that is a near-miss of a known field
    (``relative_positon`` → ``relative_position``): such a key would otherwise be kept as an extra
    attribute while the intended field silently keeps its default. Keys far from every field stay
    silent, as HF configs accept extra keys (saved checkpoints carry some)."""
    import difflib
    import inspect

    from transformers import PreTrainedConfig
    from transformers.utils import logging

    unknown = [key for key in kwargs if not key.startswith("_")]
    if not unknown:
        return
    # suggestions come from the config's own fields only; transformers' generic keys (name_or_path, ...)
    # are never flagged
    own = set(inspect.signature(config_class.__init__).parameters) | set(FLAT_SCHEME_FIELDS)
    own |= set(getattr(config_class, "attribute_map", {}))
    own -= {"self", "kwargs"}
    known = own | set(inspect.signature(PreTrainedConfig.__init__).parameters) | set(vars(PreTrainedConfig()))
    for key in unknown:
        if key in known or (config_class.__name__, key) in _WARNED_FIELDS:
            continue
        close = difflib.get_close_matches(key, sorted(own), n=1, cutoff=0.85)
        if close:
            _WARNED_FIELDS.add((config_class.__name__, key))
            logging.get_logger(config_class.__module__).warning(
                f"{config_class.__name__}: unknown field {key}={kwargs[key]!r} is kept as an extra attribute and "
                f"changes nothing; did you mean {close[0]!r}?"
            )


# --- local (sliding-window) layers ------------------------------------------------------------------

LAYER_TYPES = ("full_attention", "sliding_attention")  # transformers' names (ModernBERT, Gemma, ...)


def resolve_layer_types(layer_types, num_layers: int, field: str = "layer_types") -> list[str]:
    """One type per layer: ``layer_types`` checked, or all ``"full_attention"`` when None (what every
    checkpoint saved before local layers existed means). ValueError naming the field otherwise."""
    if layer_types is None:
        return ["full_attention"] * num_layers
    if not isinstance(layer_types, (list, tuple)) or len(layer_types) != num_layers:
        raise ValueError(
            f"{field}={layer_types!r} is not valid; give a list of {num_layers} entries (one per layer), "
            f"each one of: {', '.join(LAYER_TYPES)}"
        )
    for i, kind in enumerate(layer_types):
        if kind not in LAYER_TYPES:
            raise choice_error(f"{field}[{i}]", kind, LAYER_TYPES)
    return list(layer_types)


def check_sliding_window(value, field: str = "sliding_window") -> None:
    if not is_int(value) or value < 1:
        raise ValueError(
            f"{field}={value!r} is not valid; choose a positive integer: the half-width w of the "
            "window, a token seeing the keys at |i − j| ≤ w (ModernBERT's local_attention = 2w)"
        )


def resolve_local_parameters(
    name, params: dict, local, field: str, *, causal: bool = False, head_dim: int | None = None
) -> dict | None:
    """The complete hyper-parameters of the local layers' scheme: ``params`` updated with ``local`` (e.g.
    ``{"theta": 10000.0}`` beside a global rotary theta of 160,000, as ModernBERT), or None when ``local``
    is None (local layers use the global layers' scheme, the same instance where it is shared)."""
    if local is None:
        return None
    if not isinstance(local, dict):
        raise ValueError(
            f"{field}={local!r} is not valid; choose None or a dict of {name!r}'s parameters "
            f"({', '.join(SCHEMES[name].defaults) or 'it has none'})"
        )
    unknown = sorted(set(local) - set(SCHEMES[name].defaults))
    if unknown:
        raise ValueError(
            f"{field} has {unknown[0]!r}, not a parameter of relative_position={name!r}; choose from: "
            f"{', '.join(SCHEMES[name].defaults) or 'none (the scheme has no parameters)'}"
        )
    return resolve_scheme_parameters(name, {**params, **local}, causal=causal, head_dim=head_dim)
