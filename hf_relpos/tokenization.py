"""What a saved checkpoint folder's tokenizer_config.json says: one place for recipe outputs
(``hf-relpos train``), ``hf-relpos convert`` outputs and pushed repositories (``hf-relpos push``).

- ``model_max_length`` is the model's real limit, so ``truncation=True`` truncates: learned absolute
  positions → ``max_position_embeddings`` (the table ends there); purely relative (``absolute_position``
  "none" or "sinusoidal") → the length the model was trained at (a recipe's ``max_seq_length`` /
  ``max_source_length``; a conversion: the source's ``max_position_embeddings``). Relative models run
  past it: pass ``max_length=`` to the tokenizer for longer inputs (extrapolation).
- ``tokenizer_class`` names a class transformers ships (the file is loaded as a plain tokenizer, never
  through remote code).

transformers 5.24's ``AutoTokenizer.from_pretrained(dir)`` loads the model config first
(``AutoConfig.from_pretrained``, models/auto/tokenization_auto.py:805); a config.json with
``auto_map["AutoConfig"]`` and a model_type transformers does not know asks "Do you wish to run the custom
code?" there (models/auto/configuration_auto.py:419, ``resolve_trust_remote_code``) before the tokenizer
files are read, whatever they contain. Without hf_relpos installed, ``trust_remote_code=False`` loads the
tokenizer with no prompt; with hf_relpos installed there is no prompt.

Imports nothing from hf_relpos (the training, convert and hub modules import this one).
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_CONFIG = "tokenizer_config.json"
UNSET = 10**29  # transformers writes int(1e30) (VERY_LARGE_INTEGER) when no limit was set
DEFAULT_TOKENIZER_CLASS = "TokenizersBackend"  # transformers' class for a tokenizer.json


def _get(config, key, default=None):
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def model_max_length_for(config, trained_length: int | None = None) -> int | None:
    """The ``model_max_length`` a checkpoint's tokenizer should carry. ``config``: config object or dict.

    Learned absolute positions: ``max_position_embeddings``. Otherwise (purely relative): ``trained_length``
    when given, else ``max_position_embeddings`` (the source's length for a conversion). None when the
    config has neither."""
    table = _get(config, "max_position_embeddings")
    table = table if isinstance(table, int) and table > 0 else None
    if _get(config, "absolute_position", "none") == "learned":
        return table
    if isinstance(trained_length, int) and trained_length > 0:
        return trained_length
    return table


def finalized_tokenizer_config(
    tokenizer_config: dict,
    config,
    *,
    model_max_length: int | None = None,
    trained_length: int | None = None,
    keep_set_length: bool = False,
    has_tokenizer_json: bool = True,
) -> dict:
    """``tokenizer_config`` with ``model_max_length`` and ``tokenizer_class`` settled (a new dict).

    ``model_max_length``: use it (a learned table still caps it). ``keep_set_length``: a finite value already
    there is kept for purely relative models (a push of an already-finalized folder)."""
    out = dict(tokenizer_config)
    limit = model_max_length_for(config, trained_length)
    learned = _get(config, "absolute_position", "none") == "learned"
    current = out.get("model_max_length")
    current = current if isinstance(current, (int, float)) and 0 < current < UNSET else None
    if model_max_length:
        value = min(model_max_length, limit) if learned and limit else model_max_length
    elif keep_set_length and not learned and current is not None and trained_length is None:
        value = int(current)
    else:
        value = limit
    if value:
        out["model_max_length"] = int(value)
    if not out.get("tokenizer_class") and has_tokenizer_json:
        out["tokenizer_class"] = DEFAULT_TOKENIZER_CLASS
    return out


def finalize_tokenizer_files(
    folder, model_max_length: int | None = None, *, trained_length: int | None = None, config=None
) -> dict | None:
    """Rewrite ``folder``/tokenizer_config.json (see the module docstring). ``config`` defaults to the folder's
    config.json. Returns the written dict, or None when the folder has no tokenizer_config.json."""
    folder = Path(folder)
    path = folder / TOKENIZER_CONFIG
    if not path.is_file():
        return None
    if config is None:
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    data = finalized_tokenizer_config(
        json.loads(path.read_text()),
        config,
        model_max_length=model_max_length,
        trained_length=trained_length,
        has_tokenizer_json=(folder / "tokenizer.json").is_file(),
    )
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return data


__all__ = ["finalize_tokenizer_files", "finalized_tokenizer_config", "model_max_length_for"]
