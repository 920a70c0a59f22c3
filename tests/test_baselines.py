"""Issue 17: every recipe scores a model-free baseline next to its model (majority class, lead-k, unigram MLM),
the card shows both, `compare --models` puts checkpoints side by side, and a pretraining split can read files
of two layouts. Tiny sizes, generated data (and ../shared/data when present)."""

import json
from collections import Counter

import numpy as np
import pytest
from helpers import PROJECT_ROOT
from huggingface_hub import ModelCard

from hf_relpos.cards import results_table
from hf_relpos.cli import main as cli_main
from hf_relpos.training import train
from hf_relpos.training.classification import majority_label
from hf_relpos.training.compare import parse_models
from hf_relpos.training.data import load_raw_datasets, synthetic_summarization
from hf_relpos.training.modeling import train_wordpiece_tokenizer
from hf_relpos.training.pretraining import packed_blocks, synthetic_pretraining, unigram_baseline
from hf_relpos.training.summarization import lead, rouge

RECIPES = PROJECT_ROOT / "recipes"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
FAST = [
    "--max_steps",
    "3",
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--synthetic_train_size",
    "40",
    "--synthetic_eval_size",
    "16",
    "--disable_tqdm",
    "true",
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_majority_label():
    assert majority_label([0, 1, 1, 2, 1, 0]) == 1
    assert majority_label([3, 3, 0, 0]) == 0  # a tie: the smallest id
    assert majority_label(np.array([2])) == 2


def test_lead_takes_the_first_words():
    assert lead("one  two\nthree four five", 3) == "one two three"
    assert lead("short", 12) == "short"


def test_unigram_baseline_against_counting(tmp_path):
    corpus = synthetic_pretraining(train_size=60, eval_size=20, seed=3)
    tok = train_wordpiece_tokenizer(list(corpus["train"]["text"]), vocab_size=200)
    keep = ("input_ids", "special_tokens_mask")
    train_blocks = packed_blocks(corpus["train"], tok, "text", 32, keep)
    eval_blocks = packed_blocks(corpus["validation"], tok, "text", 32, keep)

    def plain(blocks):
        return [
            t for ids, sp in zip(blocks["input_ids"], blocks["special_tokens_mask"]) for t, s in zip(ids, sp) if not s
        ]

    top = Counter(plain(train_blocks)).most_common(1)[0][0]
    evals = plain(eval_blocks)
    assert unigram_baseline(train_blocks, eval_blocks) == pytest.approx(evals.count(top) / len(evals))
    assert 0 < unigram_baseline(train_blocks, eval_blocks) < 0.5


def test_span_corruption_baseline_against_its_definition():
    from hf_relpos.training.pretraining import noise_spans, span_corruption_baseline

    corpus = synthetic_pretraining(train_size=60, eval_size=20, seed=3)
    tok = train_wordpiece_tokenizer(list(corpus["train"]["text"]), vocab_size=200)
    train_blocks = packed_blocks(corpus["train"], tok, "text", 40, ("input_ids",))
    eval_blocks = packed_blocks(corpus["validation"], tok, "text", 40, ("input_ids",))
    top = Counter(t for b in train_blocks["input_ids"] for t in b).most_common(1)[0][0]
    flat = [t for b in eval_blocks["input_ids"] for t in b]
    share = flat.count(top) / len(flat)
    noise, spans = round(40 * 0.15), noise_spans(40, 0.15, 3.0)  # 6 noise tokens in 2 spans
    assert (noise, spans) == (6, 2)
    assert span_corruption_baseline(train_blocks, eval_blocks, 40, 0.15, 3.0) == pytest.approx(
        (1 + share * noise) / (spans + noise + 1)
    )


def test_span_corruption_run_reports_its_baseline(tmp_path):
    out = tmp_path / "sc"
    result = train(
        None,
        [
            "--task",
            "span_corruption",
            "--preset",
            "tiny",
            "--relative_position",
            "t5",
            "--max_seq_length",
            "32",
            "--tokenizer_vocab_size",
            "300",
            "--output_dir",
            str(out),
            *FAST,
        ],
    )
    assert 0 < result["eval"]["eval_baseline_accuracy"] < 0.5
    assert (
        "| accuracy |" in (out / "README.md").read_text()
        and "first target token (always `<extra_id_0>`)" in (out / "README.md").read_text()
    )


def test_classification_run_reports_the_majority_baseline(tmp_path):
    out = tmp_path / "cls"
    result = train(RECIPES / "classification_demo.yaml", [*FAST, "--output_dir", str(out)])
    from hf_relpos.training.data import synthetic_classification

    data = synthetic_classification(40, 16, seed=1234)
    majority = Counter(data["train"]["label"]).most_common(1)[0][0]
    expected = np.mean(np.array(data["validation"]["label"]) == majority)
    assert result["eval"]["eval_baseline_accuracy"] == pytest.approx(expected)
    assert "eval_baseline_macro_f1" in result["eval"]
    card = ModelCard.load(out / "README.md")
    assert "| name | this model | baseline |" in card.text
    assert f"| accuracy | {result['eval']['eval_accuracy']:.4f} | {expected:.4f} |" in card.text
    assert "most frequent class" in card.text
    # the model-index lists the model's own scores only
    assert all(not r.metric_type.startswith("baseline") for r in card.data.eval_results)


def test_summarization_run_reports_the_lead_baseline(tmp_path):
    out = tmp_path / "sum"
    result = train(
        RECIPES / "summarization_demo.yaml",
        [
            *FAST,
            "--output_dir",
            str(out),
            "--lead_words",
            "3",
            "--no_repeat_ngram_size",
            "2",
            "--length_penalty",
            "1.5",
            "--num_beams",
            "2",
        ],
    )
    data = synthetic_summarization(40, 16, seed=1234)["validation"]
    expected = rouge([lead(d, 3) for d in data["document"]], list(data["summary"]))
    for key in ("rouge1", "rouge2", "rougeL"):
        # rouge_score's bootstrap aggregate: the mid value of resampled means
        assert result["eval"][f"eval_baseline_{key}"] == pytest.approx(expected[key], abs=0.5)
    card = (out / "README.md").read_text()
    assert "| rouge1 |" in card and "lead-N" in card
    generation = json.loads((out / "generation_config.json").read_text())
    assert (
        generation["no_repeat_ngram_size"] == 2 and generation["length_penalty"] == 1.5 and generation["num_beams"] == 2
    )
    assert generation["max_length"] == 16  # summarization_demo's max_target_length: generate() as evaluated
    assert np.isfinite(result["eval"]["eval_other_source_loss"]) and "| other_source_loss |" in card


def test_other_source_loss_pairs_each_summary_with_the_next_source(tmp_path):
    """The loss with rotated sources, computed by hand for a fresh model (which reads its input: the two
    losses differ), and equal to the plain loss for a model whose encoder output is blanked."""
    import torch
    from datasets import Dataset
    from transformers import Seq2SeqTrainingArguments, default_data_collator

    from hf_relpos import RelPosT5Config
    from hf_relpos.modeling_relpos_t5 import RelPosT5ForConditionalGeneration
    from hf_relpos.training.summarization import other_source_loss
    from hf_relpos.training.trainer import RelPosSeq2SeqTrainer

    torch.manual_seed(0)
    model = RelPosT5ForConditionalGeneration(
        RelPosT5Config(
            vocab_size=40,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            dropout_rate=0.0,
        )
    ).eval()
    g = torch.Generator().manual_seed(1)
    rows = [
        {
            "input_ids": torch.randint(2, 40, (n,), generator=g).tolist() + [1],
            "labels": torch.randint(2, 40, (4,), generator=g).tolist(),
        }
        for n in (5, 9, 7)
    ]
    evals = Dataset.from_list([{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows])
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=1, report_to="none", use_cpu=True
    )
    trainer = RelPosSeq2SeqTrainer(model=model, args=args, eval_dataset=evals, data_collator=default_data_collator)

    def loss(source, target):
        with torch.no_grad():
            return model(input_ids=torch.tensor([source]), labels=torch.tensor([target])).loss.item()

    by_hand = np.mean([loss(rows[(i + 1) % 3]["input_ids"], rows[i]["labels"]) for i in range(3)])
    plain = np.mean([loss(r["input_ids"], r["labels"]) for r in rows])
    rotated = other_source_loss(trainer, evals)["eval_other_source_loss"]
    assert rotated == pytest.approx(by_hand, rel=1e-5) and abs(rotated - plain) > 1e-3
    model.encoder.register_forward_hook(
        lambda module, inputs, output: output.__class__(last_hidden_state=torch.zeros_like(output.last_hidden_state))
    )
    assert other_source_loss(trainer, evals)["eval_other_source_loss"] == pytest.approx(
        trainer.evaluate()["eval_loss"], rel=1e-6
    )


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--lead_words", "0"], "lead_words=0 is not valid"),
        (["--length_penalty", "2.0", "--num_beams", "1"], "length_penalty=2.0 needs beam search; num_beams=1"),
        (["--no_repeat_ngram_size", "0"], "no_repeat_ngram_size=0 is not valid"),
    ],
)
def test_bad_generation_values_are_named_before_training(tmp_path, extra, needle):
    with pytest.raises(ValueError, match=needle):
        train(RECIPES / "summarization_demo.yaml", [*FAST, "--output_dir", str(tmp_path / "x"), *extra])
    assert not (tmp_path / "x" / "trainer_state.json").exists()


def test_mlm_run_reports_the_unigram_baseline(tmp_path):
    out = tmp_path / "mlm"
    result = train(
        None,
        [
            "--task",
            "mlm",
            "--preset",
            "tiny",
            "--relative_position",
            "t5",
            "--max_seq_length",
            "32",
            "--tokenizer_vocab_size",
            "300",
            "--output_dir",
            str(out),
            *FAST,
        ],
    )
    assert 0 < result["eval"]["eval_baseline_accuracy"] < 1
    assert "| accuracy |" in (out / "README.md").read_text()


def test_results_table_with_baseline_and_comparison():
    text = results_table(
        {"accuracy": 0.8, "loss": 0.4, "baseline_accuracy": 0.55},
        [
            {"label": "original", "metrics": {"accuracy": 0.7, "loss": 0.5}, "train_seconds": 12.0},
            {"label": "converted", "metrics": {"accuracy": 0.8, "loss": 0.4, "f1": 0.3}, "train_seconds": 13.4},
        ],
    )
    assert "| accuracy | 0.8000 | 0.5500 |" in text and "| loss | 0.4000 |  |" in text
    assert "| model | accuracy | loss | train s |" in text  # only the metrics every compared run has
    assert "| original | 0.7000 | 0.5000 | 12 |" in text and "| converted | 0.8000 | 0.4000 | 13 |" in text
    assert results_table({"accuracy": 0.8}).startswith("| name | value |")


def test_parse_models_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert parse_models(f"{tmp_path}/a, x={tmp_path}/b") == [("a", f"{tmp_path}/a"), ("x", f"{tmp_path}/b")]
    with pytest.raises(ValueError, match="distinct label"):
        parse_models(f"{tmp_path}/a,{tmp_path}/a")
    with pytest.raises(ValueError, match="is not a local checkpoint folder"):
        parse_models(f"{tmp_path}/missing")


def test_compare_checkpoints_one_table_and_cards(tmp_path, capsys):
    starts = {}
    for scheme in ("alibi", "rotary"):  # two starting checkpoints made by the recipe engine itself
        starts[scheme] = tmp_path / f"start_{scheme}"
        train(
            RECIPES / "classification_demo.yaml",
            [*FAST, "--relative_position", scheme, "--output_dir", str(starts[scheme])],
        )
    out = tmp_path / "cmp"
    code = cli_main(
        [
            "compare",
            str(RECIPES / "classification_demo.yaml"),
            "--models",
            f"first={starts['alibi']},second={starts['rotary']}",
            *FAST,
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "first" in printed and "second" in printed and "baseline_accuracy" in printed
    header = printed.splitlines()[[i for i, line in enumerate(printed.splitlines()) if line.startswith("run ")][-1]]
    assert header.split() == [
        "run",
        "accuracy",
        "baseline_accuracy",
        "baseline_macro_f1",
        "loss",
        "macro_f1",
        "train",
        "s",
    ]
    rows = json.loads((out / "compare" / "compare.json").read_text())
    assert [(r["label"], r["scheme"]) for r in rows] == [("first", "alibi"), ("second", "rotary")]
    assert (out / "compare" / "compare.png").stat().st_size > 1000
    for row in rows:
        metrics = json.loads((out / "compare" / row["label"] / "metrics.json").read_text())
        assert [c["label"] for c in metrics["comparison"]] == ["first", "second"]
        card = (out / "compare" / row["label"] / "README.md").read_text()
        assert "| first |" in card and "| second |" in card and "hf-relpos compare --models" in card
        assert ModelCard.load(out / "compare" / row["label"] / "README.md").data.eval_results


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--schemes", "t5", "--models", "x"], "not allowed with argument"),
        ([], "one of the arguments --schemes --models is required"),
    ],
)
def test_compare_needs_schemes_or_models(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["compare", str(RECIPES / "classification_demo.yaml"), *argv])
    assert exit_info.value.code == 2 and needle in capsys.readouterr().err


def _two_layouts(tmp_path):
    a = _write_jsonl(tmp_path / "corpus.jsonl", [{"id": i, "text": f"corpus text number {i}"} for i in range(5)])
    b = _write_jsonl(tmp_path / "docs.jsonl", [{"document": f"a document {i}", "summary": "s"} for i in range(3)])
    return a, b


@pytest.mark.parametrize("streaming", [False, True])
def test_files_of_two_layouts_make_one_text_column(tmp_path, streaming):
    from types import SimpleNamespace

    a, b = _two_layouts(tmp_path)
    args = SimpleNamespace(
        train_file=f"{a},{b}",
        validation_file=str(a),
        test_file=None,
        text_column="text,document",
        max_train_samples=None,
        max_eval_samples=None,
        streaming=streaming,
        task="mlm",
        dataset_name=None,
    )
    raw = load_raw_datasets(args)
    texts = [row["text"] for row in raw["train"]]
    assert sorted(texts) == sorted(
        [f"corpus text number {i}" for i in range(5)] + [f"a document {i}" for i in range(3)]
    )
    assert [row["text"] for row in raw["validation"]] == [f"corpus text number {i}" for i in range(5)]
    args.text_column = "text"
    with pytest.raises(
        ValueError, match="docs.jsonl' has columns document, summary, none of them in text_column='text'"
    ):
        load_raw_datasets(args)


def test_pretraining_recipe_reads_two_layouts(tmp_path):
    a, b = _two_layouts(tmp_path)
    result = train(
        None,
        [
            "--task",
            "mlm",
            "--preset",
            "tiny",
            "--relative_position",
            "alibi",
            "--max_seq_length",
            "8",
            "--tokenizer_vocab_size",
            "120",
            "--train_file",
            f"{a},{b}",
            "--validation_file",
            str(a),
            "--text_column",
            "text,document",
            "--output_dir",
            str(tmp_path / "out"),
            *FAST[:-2],
        ],
    )
    assert np.isfinite(result["eval"]["eval_loss"])
    assert "docs.jsonl" in json.loads((tmp_path / "out" / "metrics.json").read_text())["dataset"]


def test_a_missing_file_of_several_is_named(tmp_path, capsys):
    a, _ = _two_layouts(tmp_path)
    code = cli_main(
        ["train", "mlm_longtext", "--train_file", f"{a},{tmp_path}/nope.jsonl", "--output_dir", str(tmp_path / "o")]
    )
    assert code == 2
    assert f"(file '{tmp_path}/nope.jsonl') does not exist" in capsys.readouterr().err


def test_shared_recipes_parse_and_name_their_inputs():
    from hf_relpos.training.recipes import recipe_summaries

    rows = {r["name"]: r for r in recipe_summaries()}
    for name in ("sentiment_minilm", "span_corruption_docs", "summarization_pretrained"):
        assert name in rows, name
    assert "model folder runs/minilm-t5" in rows["sentiment_minilm"]["needs"]
    assert "model folder runs/span_corruption_docs" in rows["summarization_pretrained"]["needs"]


def test_shared_summarization_lead_baseline_matches_the_issue():
    path = SHARED_DATA / "summarization" / "validation.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is only on the project's machines)")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    scores = rouge([lead(r["document"], 12) for r in rows], [r["summary"] for r in rows])
    assert scores["rouge1"] == pytest.approx(30.2, abs=0.3) and scores["rougeL"] == pytest.approx(26.6, abs=0.3)


def _need_shared(*parts):
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is only on the project's machines)")


TINY_T5 = '{"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2}'
TINY_BERT = '{"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}'
STEPS = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--disable_tqdm",
    "true",
]


def test_summarization_pretrained_pipeline_two_commands(tmp_path):
    """span_corruption_docs (longtext + summarization training documents) then summarization_pretrained from
    its output: ROUGE next to lead-12 in metrics.json and on the card."""
    _need_shared("summarization", "train.jsonl")
    _need_shared("longtext", "train.jsonl")
    pre = tmp_path / "pre"
    train(
        RECIPES / "span_corruption_docs.yaml",
        [
            *STEPS,
            "--model_overrides",
            TINY_T5,
            "--tokenizer_vocab_size",
            "400",
            "--max_seq_length",
            "32",
            "--max_train_samples",
            "300",
            "--max_eval_samples",
            "2",
            "--output_dir",
            str(pre),
        ],
    )
    assert "summarization/train.jsonl" in json.loads((pre / "metrics.json").read_text())["dataset"]
    out = tmp_path / "sum"
    result = train(
        RECIPES / "summarization_pretrained.yaml",
        [
            *STEPS,
            "--model_name_or_path",
            str(pre),
            "--max_train_samples",
            "16",
            "--max_eval_samples",
            "8",
            "--max_source_length",
            "64",
            "--max_target_length",
            "8",
            "--output_dir",
            str(out),
        ],
    )
    for key in ("eval_rouge1", "eval_baseline_rouge1", "eval_baseline_rougeL"):
        assert 0 <= result["eval"][key] <= 100, key
    assert result["eval"]["eval_baseline_rouge1"] > 5  # lead-12 overlaps the synopsis
    card = (out / "README.md").read_text()
    assert "| rouge1 |" in card and "lead-N" in card


def test_qa_pydoc_pretrained_pipeline_two_commands(tmp_path):
    _need_shared("qa", "pydoc_train.jsonl")
    _need_shared("longtext", "train.jsonl")
    pre = tmp_path / "pre"
    train(
        RECIPES / "mlm_longtext_qa.yaml",
        [
            *STEPS,
            "--model_overrides",
            TINY_BERT,
            "--tokenizer_vocab_size",
            "500",
            "--max_seq_length",
            "32",
            "--max_train_samples",
            "20",
            "--max_eval_samples",
            "2",
            "--output_dir",
            str(pre),
        ],
    )
    out = tmp_path / "qa"
    result = train(
        RECIPES / "qa_pydoc_pretrained.yaml",
        [
            *STEPS,
            "--model_name_or_path",
            str(pre),
            "--max_train_samples",
            "16",
            "--max_eval_samples",
            "8",
            "--max_seq_length",
            "64",
            "--doc_stride",
            "16",
            "--output_dir",
            str(out),
        ],
    )
    assert "eval_exact_match" in result["eval"] and "eval_baseline_exact_match" in result["eval"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)  # the pretraining tokenizer travels: cased, line breaks kept
    assert tok.backend_tokenizer.normalizer.normalize_str("A\nb") == "A ¶ b"
