"""Models and tokenizers for the recipes: a checkpoint, or a fresh preset × scheme with a tokenizer
trained on the training text."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

from ..cli import parse_json_object
from ..configuration_relpos_bert import RelPosBertConfig
from ..configuration_relpos_t5 import RelPosT5Config

BERT_PRESETS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
T5_PRESETS = {
    "tiny": dict(d_model=64, d_kv=32, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=2),
    "small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8),
    "base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12),
}


def train_wordpiece_tokenizer(texts, vocab_size=2000) -> PreTrainedTokenizerFast:
    """A lowercase BERT-style WordPiece tokenizer ([CLS] A [SEP] B [SEP], token types, offsets)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def train_sentencepiece_tokenizer(texts, vocab_size=2000) -> PreTrainedTokenizerFast:
    """A T5-style SentencePiece (BPE mode, `▁` word boundaries) tokenizer: <pad>=0, </s>=1, <unk>=2,
    `</s>` appended. (tokenizers' Unigram trainer collapses small corpora to characters, so BPE.)"""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def load_tokenizer(model_args, texts, seq2seq: bool):
    source = model_args.tokenizer_name or model_args.model_name_or_path
    if source:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    train = train_sentencepiece_tokenizer if seq2seq else train_wordpiece_tokenizer
    return train(texts, vocab_size=model_args.tokenizer_vocab_size)


def build_config(model_args, tokenizer, seq2seq: bool, **task_fields):
    """The config of the model to fine-tune: the checkpoint's, or a preset with the chosen scheme."""
    overrides = parse_json_object("model_overrides", model_args.model_overrides) if model_args.model_overrides else {}
    if model_args.model_name_or_path:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code)
        for key, value in {**task_fields, **overrides}.items():
            setattr(config, key, value)
        return config
    if seq2seq:
        fields = dict(T5_PRESETS[model_args.preset], relative_position=model_args.relative_position,
                      absolute_position=model_args.absolute_position,
                      decoder_relative_position=model_args.decoder_relative_position,
                      vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
        return RelPosT5Config(**{**fields, **task_fields, **overrides})
    fields = dict(BERT_PRESETS[model_args.preset], relative_position=model_args.relative_position,
                  absolute_position=model_args.absolute_position, vocab_size=len(tokenizer),
                  pad_token_id=tokenizer.pad_token_id)
    return RelPosBertConfig(**{**fields, **task_fields, **overrides})


def load_model(auto_class, model_args, config):
    if model_args.model_name_or_path:
        return auto_class.from_pretrained(
            model_args.model_name_or_path, config=config, trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=True,
        )
    return auto_class.from_config(config)
