"""hf_relpos: relative position encodings for BERT- and T5-style models in HF Transformers 5.x.

Importing this package registers the ``relpos_bert`` and ``relpos_t5`` configs and models with the
Auto classes.
"""

from .relative_positions import ABSOLUTE_POSITIONS, SCHEME_DEFAULTS, SCHEMES, build_relative_position
from .relpos_attention import build_attention_mask, relpos_attention

__version__ = "0.1.0"

# --- relpos_bert registration ---
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_relpos_bert import RelPosBertConfig  # noqa: E402
from .modeling_relpos_bert import (  # noqa: E402
    RelPosBertForMaskedLM,
    RelPosBertForMultipleChoice,
    RelPosBertForQuestionAnswering,
    RelPosBertForSequenceClassification,
    RelPosBertForTokenClassification,
    RelPosBertModel,
    RelPosBertPreTrainedModel,
)

# installed path: AutoX.from_pretrained(dir) finds the classes by model_type
AutoConfig.register("relpos_bert", RelPosBertConfig, exist_ok=True)
# remote path: save_pretrained copies the code and writes auto_map (pre-seeded with every head)
RelPosBertConfig.register_for_auto_class()
for _auto_class, _model_class in (
    (AutoModel, RelPosBertModel),
    (AutoModelForMaskedLM, RelPosBertForMaskedLM),
    (AutoModelForSequenceClassification, RelPosBertForSequenceClassification),
    (AutoModelForTokenClassification, RelPosBertForTokenClassification),
    (AutoModelForQuestionAnswering, RelPosBertForQuestionAnswering),
    (AutoModelForMultipleChoice, RelPosBertForMultipleChoice),
):
    _auto_class.register(RelPosBertConfig, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_class.__name__)
del _auto_class, _model_class
# --- end relpos_bert registration ---

# --- relpos_t5 registration ---
# --- end relpos_t5 registration ---
