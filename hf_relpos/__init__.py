"""hf_relpos: relative position encodings for BERT- and T5-style models in HF Transformers 5.x.

Importing this package registers the ``relpos_bert`` and ``relpos_t5`` configs and models with the
Auto classes.
"""

from .relative_positions import ABSOLUTE_POSITIONS, SCHEME_DEFAULTS, SCHEMES, build_relative_position
from .attention_engine import build_attention_mask, relpos_attention

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
from transformers import AutoConfig as _AutoConfig  # noqa: E402
from transformers import AutoModel as _AutoModel  # noqa: E402
from transformers import AutoModelForSeq2SeqLM as _AutoModelForSeq2SeqLM  # noqa: E402
from transformers import AutoModelForTextEncoding as _AutoModelForTextEncoding  # noqa: E402

from .configuration_relpos_t5 import RelPosT5Config  # noqa: E402
from .convert import convert_bert_to_relpos, convert_checkpoint, convert_t5_to_relpos  # noqa: E402
from .modeling_relpos_t5 import (  # noqa: E402
    RelPosT5EncoderModel,
    RelPosT5ForConditionalGeneration,
    RelPosT5Model,
    RelPosT5PreTrainedModel,
)

_AutoConfig.register("relpos_t5", RelPosT5Config, exist_ok=True)
_AutoModel.register(RelPosT5Config, RelPosT5Model, exist_ok=True)
_AutoModelForSeq2SeqLM.register(RelPosT5Config, RelPosT5ForConditionalGeneration, exist_ok=True)
_AutoModelForTextEncoding.register(RelPosT5Config, RelPosT5EncoderModel, exist_ok=True)
# save_pretrained copies the code files (flat) and writes auto_map, so trust_remote_code loads work
RelPosT5Config.register_for_auto_class()
RelPosT5Model.register_for_auto_class("AutoModel")
RelPosT5ForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
RelPosT5EncoderModel.register_for_auto_class("AutoModelForTextEncoding")
# --- end relpos_t5 registration ---
