"""hf_relpos: relative position encodings for BERT- and T5-style models in HF Transformers 5.x.

Importing this package registers the ``relpos_bert`` and ``relpos_t5`` configs and models with the
Auto classes, for both loading paths: installed (``AutoX.from_pretrained(folder)`` finds the classes by
``model_type``) and remote (``save_pretrained`` copies the code files and writes ``auto_map``, so
``trust_remote_code=True`` loads work where hf_relpos is not installed).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTextEncoding,
    AutoModelForTokenClassification,
)

from .attention_engine import build_attention_mask, relpos_attention
from .configuration_relpos_bert import RelPosBertConfig, RelPosBertEncoderDecoderConfig
from .configuration_relpos_t5 import RelPosT5Config
from .convert import convert_bert_to_relpos, convert_checkpoint, convert_t5_to_relpos
from .modeling_relpos_bert import (
    RelPosBertEncoderDecoderModel,
    RelPosBertForMaskedLM,
    RelPosBertForMultipleChoice,
    RelPosBertForQuestionAnswering,
    RelPosBertForSequenceClassification,
    RelPosBertForTokenClassification,
    RelPosBertLMHeadModel,
    RelPosBertModel,
    RelPosBertPreTrainedModel,
)
from .modeling_relpos_t5 import (
    RelPosT5EncoderModel,
    RelPosT5ForConditionalGeneration,
    RelPosT5Model,
    RelPosT5PreTrainedModel,
)
from .relative_positions import ABSOLUTE_POSITIONS, SCHEMES
from .scheme_config import SCHEME_DEFAULTS, build_relative_position

__version__ = "0.2.0"

# model_type → (config class, [(Auto class, model class), ...]): the one registration table
_REGISTRY = {
    "relpos_bert": (
        RelPosBertConfig,
        [
            (AutoModel, RelPosBertModel),
            (AutoModelForMaskedLM, RelPosBertForMaskedLM),
            (AutoModelForCausalLM, RelPosBertLMHeadModel),
            (AutoModelForSequenceClassification, RelPosBertForSequenceClassification),
            (AutoModelForTokenClassification, RelPosBertForTokenClassification),
            (AutoModelForQuestionAnswering, RelPosBertForQuestionAnswering),
            (AutoModelForMultipleChoice, RelPosBertForMultipleChoice),
        ],
    ),
    "relpos_bert_encoder_decoder": (
        RelPosBertEncoderDecoderConfig,
        [(AutoModelForSeq2SeqLM, RelPosBertEncoderDecoderModel)],
    ),
    "relpos_t5": (
        RelPosT5Config,
        [
            (AutoModel, RelPosT5Model),
            (AutoModelForSeq2SeqLM, RelPosT5ForConditionalGeneration),
            (AutoModelForTextEncoding, RelPosT5EncoderModel),
        ],
    ),
}


def _register() -> None:
    for model_type, (config_class, heads) in _REGISTRY.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class()
        for auto_class, model_class in heads:
            auto_class.register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)


_register()


def __getattr__(name):
    if name == "predict":  # hf_relpos.predict(...), from hf_relpos/prediction.py (imported on first use)
        import importlib

        return importlib.import_module(".prediction", __name__).predict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ABSOLUTE_POSITIONS",
    "SCHEMES",
    "SCHEME_DEFAULTS",
    "RelPosBertConfig",
    "RelPosBertEncoderDecoderConfig",
    "RelPosBertEncoderDecoderModel",
    "RelPosBertForMaskedLM",
    "RelPosBertForMultipleChoice",
    "RelPosBertForQuestionAnswering",
    "RelPosBertForSequenceClassification",
    "RelPosBertForTokenClassification",
    "RelPosBertLMHeadModel",
    "RelPosBertModel",
    "RelPosBertPreTrainedModel",
    "RelPosT5Config",
    "RelPosT5EncoderModel",
    "RelPosT5ForConditionalGeneration",
    "RelPosT5Model",
    "RelPosT5PreTrainedModel",
    "__version__",
    "build_attention_mask",
    "build_relative_position",
    "convert_bert_to_relpos",
    "convert_checkpoint",
    "convert_t5_to_relpos",
    "predict",
    "relpos_attention",
]
