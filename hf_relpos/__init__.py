"""hf_relpos: relative position encodings for BERT- and T5-style models in HF Transformers 5.x.

Importing this package registers the ``relpos_bert`` and ``relpos_t5`` configs and models with the
Auto classes.
"""

from .relative_positions import ABSOLUTE_POSITIONS, SCHEME_DEFAULTS, SCHEMES, build_relative_position
from .relpos_attention import build_attention_mask, relpos_attention

__version__ = "0.1.0"

# --- relpos_bert registration ---
# --- end relpos_bert registration ---

# --- relpos_t5 registration ---
# --- end relpos_t5 registration ---
