"""Models and tokenizers for the recipes: a checkpoint, or a fresh preset × scheme with a tokenizer
trained on the training text."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

from ..configuration_relpos_bert import RelPosBertConfig
from ..configuration_relpos_t5 import RelPosT5Config
from ..initialization import mimetic_init_

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


NEWLINE_TOKEN = "¶"


def train_wordpiece_tokenizer(texts, vocab_size=2000, lowercase=True, newlines=False) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer ([CLS] A [SEP] B [SEP], token types, offsets), lowercase unless
    ``lowercase=False``; ``newlines=True`` keeps each line break as a token ``¶`` whose offsets point at the
    newline (BERT's normalizer otherwise turns it into a space, losing paragraph and signature boundaries)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    bert = normalizers.BertNormalizer(lowercase=lowercase)
    tok.normalizer = normalizers.Sequence([normalizers.Replace("\n", f" {NEWLINE_TOKEN} "), bert]) if newlines else bert
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def train_sentencepiece_tokenizer(texts, vocab_size=2000) -> PreTrainedTokenizerFast:
    """A T5-style SentencePiece (BPE mode, `▁` word boundaries) tokenizer: <pad>=0, </s>=1, <unk>=2,
    `</s>` appended. (tokenizers' Unigram trainer collapses small corpora to characters, so BPE.)"""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"])
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _needs_remote_code(field_name: str, source, load):
    """``load()``, turning transformers' "contains custom code ... trust_remote_code=True" refusal into a
    ValueError naming the recipe field and how to opt in, and a checkpoint that cannot be found or fetched
    (OSError) into one naming the field and the value."""
    try:
        return load()
    except OSError as err:  # not a folder and not reachable as a Hub id (offline, typo, private): one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{field_name}={source!r} could not be loaded: {first}") from None
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise ValueError(
            f"{field_name}={source!r} carries its own modeling code, which runs only if you trust it: set "
            "`trust_remote_code: true` in the recipe (or --trust_remote_code true). hf_relpos's own relpos_* "
            "checkpoints do not need it while hf_relpos is installed"
        ) from None


def load_tokenizer(model_args, texts, seq2seq: bool):
    source = model_args.tokenizer_name or model_args.model_name_or_path
    if source:
        field_name = "tokenizer_name" if model_args.tokenizer_name else "model_name_or_path"
        return _needs_remote_code(
            field_name,
            source,
            lambda: AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code),
        )
    if seq2seq:
        return train_sentencepiece_tokenizer(texts, vocab_size=model_args.tokenizer_vocab_size)
    return train_wordpiece_tokenizer(
        texts,
        vocab_size=model_args.tokenizer_vocab_size,
        lowercase=model_args.tokenizer_lowercase is not False,
        newlines=model_args.tokenizer_newlines,
    )


def learned_position_limit(config) -> int | None:
    """The longest input a checkpoint's learned absolute position table takes, or None when it has no
    such limit. ``config``: a config object or config.json's dict (relpos_* models, and the absolute
    BERT family that ``model_name_or_path`` may also name)."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    model_type, limit = str(get("model_type", "")), get("max_position_embeddings")
    if not isinstance(limit, int):
        return None
    if model_type.startswith("relpos_"):
        return limit if get("absolute_position", "none") == "learned" else None
    if get("position_embedding_type", "absolute") != "absolute":
        return None
    if "roberta" in model_type or model_type == "camembert":  # positions start after the padding index
        return limit - (get("pad_token_id", 1) or 0) - 1
    return limit


def check_position_limit(config, max_length, source) -> None:
    """ValueError when the recipe's inputs (``max_length``) exceed the learned absolute position table."""
    limit = learned_position_limit(config)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"model_name_or_path={source!r} has learned absolute positions for {limit} tokens "
            f"(max_position_embeddings), but the recipe asks for inputs of {max_length} tokens "
            f"(max_seq_length / max_source_length / max_target_length): lower them to ≤ {limit}, or convert "
            "the checkpoint with `hf-relpos convert --drop-absolute` (or --max-position-embeddings)"
        )


def check_fresh_position_limit(model_args, max_length) -> None:
    """A fresh model with learned absolute positions whose ``model_overrides`` fix a table shorter than the
    recipe's inputs cannot run them: ValueError naming both fields."""
    table = model_args.overrides().get("max_position_embeddings")
    if model_args.absolute_position == "learned" and table is not None and table < max_length:
        raise ValueError(
            f"model_overrides max_position_embeddings={table} is shorter than the recipe's inputs ({max_length} "
            "tokens: max_seq_length / max_source_length / max_target_length), and absolute_position='learned' "
            "cannot run past it; raise max_position_embeddings or lower those lengths"
        )


def build_config(model_args, tokenizer, seq2seq: bool, max_length: int | None = None, **task_fields):
    """The config of the model to fine-tune: the checkpoint's, or a preset with the chosen scheme.

    ``max_length``: the longest input the recipe feeds. A fresh model with learned absolute positions gets
    a table at least that long (``max_position_embeddings`` from the preset, raised to it); if
    ``model_overrides`` sets a shorter ``max_position_embeddings``, or a checkpoint's learned table is
    shorter, a ValueError names both fields."""
    overrides = model_args.overrides()
    if model_args.model_name_or_path:
        config = _needs_remote_code(
            "model_name_or_path",
            model_args.model_name_or_path,
            lambda: AutoConfig.from_pretrained(
                model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
            ),
        )
        for key, value in {**task_fields, **overrides}.items():
            setattr(config, key, value)
        if max_length is not None:
            check_position_limit(config, max_length, model_args.model_name_or_path)
        return config
    if seq2seq:
        fields = dict(
            T5_PRESETS[model_args.preset],
            absolute_position=model_args.absolute_position,
            decoder_relative_position=model_args.decoder_relative_position,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
        config_class = RelPosT5Config
    else:
        fields = dict(
            BERT_PRESETS[model_args.preset],
            absolute_position=model_args.absolute_position,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
        )
        config_class = RelPosBertConfig
    if model_args.relative_position is not None:  # None: the config's default scheme
        fields["relative_position"] = model_args.relative_position
    if max_length is not None and model_args.absolute_position == "learned":
        check_fresh_position_limit(model_args, max_length)
        if "max_position_embeddings" not in overrides:
            fields["max_position_embeddings"] = max(config_class().max_position_embeddings, max_length)
    return config_class(**{**fields, **task_fields, **overrides})


def load_model(auto_class, model_args, config):
    if model_args.model_name_or_path:
        return _needs_remote_code(
            "model_name_or_path",
            model_args.model_name_or_path,
            lambda: auto_class.from_pretrained(
                model_args.model_name_or_path,
                config=config,
                trust_remote_code=model_args.trust_remote_code,
                ignore_mismatched_sizes=True,
            ),
        )
    return fresh_model(auto_class, model_args, config)


def fresh_model(auto_class, model_args, config):
    """A new model of ``config``, its attention initialised as ``attention_init`` says."""
    model = auto_class.from_config(config)
    if model_args.attention_init == "mimetic":
        mimetic_init_(model)  # the global generator: seeded by the recipe's seed like the rest of the weights
    return model
