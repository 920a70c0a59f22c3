"""Model cards (hf_relpos/cards.py over model_cards/*.md): training data and evaluation data are named apart, the
`datasets` metadata holds Hub dataset ids only, and every Python snippet of every card runs warning-free where
hf_relpos is not installed, against a tiny checkpoint of the card's kind."""

import json

import pytest
import yaml
from snippets import assert_clean, python_snippets, run_snippets

from hf_relpos import (
    RelPosBertConfig,
    RelPosBertForMaskedLM,
    RelPosBertForQuestionAnswering,
    RelPosBertForSequenceClassification,
    RelPosBertModel,
    RelPosT5Config,
    RelPosT5ForConditionalGeneration,
)
from hf_relpos.cards import build_base_card, build_model_card, card_from_metrics, data_sources
from hf_relpos.pipeline_files import add_pipelines
from hf_relpos.tokenization import finalize_tokenizer_files
from hf_relpos.training.modeling import train_sentencepiece_tokenizer, train_wordpiece_tokenizer
from hf_relpos.training.pretraining import add_sentinels

QA_FILES = {"train": "../shared/data/qa/pydoc_train.jsonl", "validation": "../shared/data/qa/pydoc_validation.jsonl"}
QA_LABEL = "qa/pydoc_train.jsonl, qa/pydoc_validation.jsonl"  # what metrics.json's "dataset" says
BERT_QA = {
    "model_type": "relpos_bert",
    "relative_position": "t5",
    "absolute_position": "none",
    "architectures": ["RelPosBertForQuestionAnswering"],
}


def metadata(card):
    return yaml.safe_load(str(card).split("---")[1])


def test_local_files_train_and_evaluation_apart_and_not_in_metadata():
    card = build_model_card(
        "qa", BERT_QA, {"eval_exact_match": 85.1, "eval_f1": 92.8}, {}, QA_LABEL, repo_id="me/qa", data_files=QA_FILES
    )
    text = card.text
    assert "- Training data: local file `qa/pydoc_train.jsonl`" in text
    assert "- Evaluation data: local file `qa/pydoc_validation.jsonl`" in text
    assert (
        "fine-tuned with [hf_relpos](https://pypi.org/project/hf-relpos/)\non local file `qa/pydoc_train.jsonl`."
        in text
    )
    assert "Evaluated on local file `qa/pydoc_validation.jsonl`" in text
    # the limitation names what it was trained on, and the evaluation file only as evaluated on
    assert (
        "Trained on local file `qa/pydoc_train.jsonl` only (evaluated on local file `qa/pydoc_validation.jsonl`)"
        in text
    )
    assert QA_LABEL not in text and "Fine-tuned on" not in text
    meta = metadata(card)
    assert "datasets" not in meta  # a local file path is not a Hub dataset id
    assert "pydoc" not in str(meta["model-index"][0]["results"][0]["dataset"]["type"])


def test_several_training_files_are_listed():
    sources = data_sources(data_files={"train": "a/x.jsonl,b/y.jsonl", "validation": "a/v.jsonl"})
    assert sources == {
        "training": "local files `a/x.jsonl`, `b/y.jsonl`",
        "evaluation": "local file `a/v.jsonl`",
        "hub_ids": [],
    }


def test_hub_dataset_id_is_the_only_metadata():
    config = {**BERT_QA, "architectures": ["RelPosBertForSequenceClassification"]}
    card = build_model_card(
        "classification",
        config,
        {"eval_accuracy": 0.9},
        {},
        "glue/sst2",
        repo_id="me/sst2",
        hub_dataset=["glue", "sst2"],
    )
    meta = metadata(card)
    assert meta["datasets"] == ["glue"]
    dataset = meta["model-index"][0]["results"][0]["dataset"]
    assert dataset["type"] == "glue" and dataset["config"] == "sst2"
    assert "- Training data: the train split of the Hub dataset `glue` (config `sst2`)" in card.text
    assert "- Evaluation data: the validation split" in card.text


def test_synthetic_task_is_named_in_the_text_only():
    config = {**BERT_QA, "architectures": ["RelPosBertForSequenceClassification"]}
    card = build_model_card("classification", config, {"eval_accuracy": 0.9}, {}, "synthetic", repo_id="me/demo")
    assert "datasets" not in metadata(card)
    assert "- Training data: the train split of hf_relpos' built-in synthetic task" in card.text
    assert "a demonstration of the pipeline" in card.text


def test_card_from_metrics_keeps_the_split_and_reads_old_metrics():
    metrics = {"task": "qa", "eval": {"eval_exact_match": 1.0}, "dataset": QA_LABEL, "data_files": QA_FILES}
    card = card_from_metrics(BERT_QA, metrics, "me/qa")
    assert "- Evaluation data: local file `qa/pydoc_validation.jsonl`" in card.text and "datasets" not in metadata(card)
    # a metrics.json written before data_files/hub_dataset existed: its label is files, so no metadata either
    old = card_from_metrics(BERT_QA, {**metrics, "data_files": None}, "me/qa")
    assert "datasets" not in metadata(old)
    hub = card_from_metrics(BERT_QA, {**metrics, "data_files": None, "dataset": "squad"}, "me/qa")
    assert metadata(hub)["datasets"] == ["squad"]


def test_base_card_metadata_and_data_section():
    config = {**BERT_QA, "architectures": ["RelPosBertModel"]}
    assert "datasets" not in metadata(build_base_card(config, repo_id="me/base"))
    card = build_base_card(
        config,
        repo_id="me/base",
        dataset="longtext/train.jsonl",
        data_files={"train": "../shared/data/longtext/train.jsonl"},
    )
    assert "datasets" not in metadata(card) and "- Training data: local file `longtext/train.jsonl`" in card.text


# ----------------------------------------------------------------------- every card's snippets run, warning-free

TEXTS = [
    "relative positions help models read word order",
    "the north wind comes before the south wind",
    "what does fork do? it creates a new process",
    "summaries copy the first words of a document",
] * 4


def _bert(cls, folder, tokenizer, **extra):
    config = RelPosBertConfig(
        relative_position="t5",
        absolute_position="none",
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    return _save(cls(config), folder, tokenizer)


def _t5(folder, tokenizer):
    config = RelPosT5Config(
        relative_position="t5",
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _save(RelPosT5ForConditionalGeneration(config), folder, tokenizer)


def _sentence(folder, tokenizer):
    """A relpos_bert model with sentence-transformers files (mean pooling, normalised), as extend_minilm writes."""
    config = _bert(RelPosBertModel, folder, tokenizer)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    for sub in ("1_Pooling", "2_Normalize"):
        (folder / sub).mkdir()
    pooling = {"word_embedding_dimension": config.hidden_size, "pooling_mode_mean_tokens": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return config


def _save(model, folder, tokenizer):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    finalize_tokenizer_files(folder, trained_length=64, config=model.config)
    add_pipelines(folder)  # as train, convert and push outputs carry them
    return model.config


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """One rendered card per template (and the base card), each pointing at a tiny checkpoint of its kind."""
    root = tmp_path_factory.mktemp("cards")
    wordpiece = train_wordpiece_tokenizer(TEXTS, vocab_size=120)
    sentencepiece = train_sentencepiece_tokenizer(TEXTS, vocab_size=120)
    spans = train_sentencepiece_tokenizer(TEXTS, vocab_size=120)
    add_sentinels(spans, 4)
    example = TEXTS[1]
    made = {}
    for task, build in {
        "classification": lambda f: _bert(RelPosBertForSequenceClassification, f, wordpiece, num_labels=2),
        "qa": lambda f: _bert(RelPosBertForQuestionAnswering, f, wordpiece),
        "mlm": lambda f: _bert(RelPosBertForMaskedLM, f, wordpiece),
        "embedding_distillation": lambda f: _sentence(f, wordpiece),
        "summarization": lambda f: _t5(f, sentencepiece),
        "span_corruption": lambda f: _t5(f, spans),
    }.items():
        folder = root / task
        config = build(folder)
        made[task] = build_model_card(
            task,
            config,
            {"eval_loss": 1.0},
            {"learning_rate": 1e-3},
            "synthetic",
            repo_id=str(folder),
            example_input=example,
            example_question="what comes before the south wind?",
        )
    folder = root / "base"
    made["base"] = build_base_card(_bert(RelPosBertModel, folder, wordpiece), repo_id=str(folder))
    return made


def test_every_template_has_a_card_here(cards):
    from hf_relpos.cards import TEMPLATES

    assert {p.stem for p in TEMPLATES.glob("*.md")} == set(cards)


def test_card_snippets_run_warning_free_without_hf_relpos(cards, tmp_path):
    snippets = [
        (f"model_cards/{task}.md snippet {i + 1}", code)
        for task, card in cards.items()
        for i, code in enumerate(python_snippets(card.text, skip_marked=False))
    ]
    assert len(snippets) >= len(cards)
    assert_clean(run_snippets(snippets, tmp_path, without_hf_relpos=True))
