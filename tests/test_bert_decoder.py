"""relpos_bert as a decoder (issue 32): parity with HF BertLMHeadModel, cache == no cache for every scheme,
BERT2BERT (RelPosBertEncoderDecoderModel) save / load / remote code, beam search."""

import json

import pytest
import torch
from helpers import run_without_hf_relpos
from test_relpos_bert import SCHEME_CASES, SMALL_SCHEME, TINY, perturb_schemes
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    BertConfig,
    BertLMHeadModel,
    EncoderDecoderModel,
)

from hf_relpos import (
    RelPosBertConfig,
    RelPosBertEncoderDecoderModel,
    RelPosBertLMHeadModel,
    RelPosBertModel,
)
from hf_relpos.relative_positions import RelativePositionScheme

pytestmark = pytest.mark.usefixtures("one_thread")

DECODER = dict(is_decoder=True, add_cross_attention=True)


def decoder_config(case="t5", **overrides):
    fields = {**TINY, **SMALL_SCHEME, **SCHEME_CASES[case], **DECODER, "initializer_range": 0.2, **overrides}
    return RelPosBertConfig(**fields)


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (2, 9), generator=g)
    encoder_hidden = torch.randn(2, 6, TINY["hidden_size"], generator=g)
    encoder_mask = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]])
    return ids, encoder_hidden, encoder_mask


def step_by_step(model, ids, encoder_hidden, encoder_mask, first=4):
    """Logits of a prefix, then one token at a time through the returned cache."""
    with torch.no_grad():
        out = model(ids[:, :first], encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask)
        cache, logits = out.cache, [out.logits]
        for t in range(first, ids.shape[1]):
            out = model(
                ids[:, t : t + 1],
                encoder_hidden_states=encoder_hidden,
                encoder_attention_mask=encoder_mask,
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            logits.append(out.logits)
    return torch.cat(logits, dim=1)


def test_hf_bert_lm_head_parity_with_and_without_cache():
    torch.manual_seed(0)
    hf = BertLMHeadModel(BertConfig(**TINY, **DECODER)).eval()
    ours = RelPosBertLMHeadModel(
        RelPosBertConfig(**TINY, **DECODER, relative_position="none", absolute_position="learned")
    ).eval()
    result = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result
    ids, encoder_hidden, encoder_mask = inputs()
    with torch.no_grad():
        expected = hf(ids, encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask).logits
        full = ours(ids, encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask).logits
    assert (full - expected).abs().max().item() <= 1e-5
    assert (step_by_step(ours, ids, encoder_hidden, encoder_mask) - expected).abs().max().item() <= 1e-5
    kwargs = dict(encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask, max_new_tokens=6)
    # HF's BertLMHeadModel.generate with cross-attention fails with a cache on 5.24 (DynamicCache has no is_updated)
    reference = hf.generate(ids[:, :3], do_sample=False, use_cache=False, **kwargs)
    for use_cache in (True, False):
        assert torch.equal(ours.generate(ids[:, :3], do_sample=False, use_cache=use_cache, **kwargs), reference)


@pytest.mark.parametrize("case", list(SCHEME_CASES))
def test_cache_equals_no_cache_every_scheme(case):
    torch.manual_seed(0)
    model = perturb_schemes(RelPosBertLMHeadModel(decoder_config(case))).eval()
    ids, encoder_hidden, encoder_mask = inputs()
    with torch.no_grad():
        full = model(ids, encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask).logits
    assert (step_by_step(model, ids, encoder_hidden, encoder_mask) - full).abs().max().item() <= 1e-4, case
    kwargs = dict(
        encoder_hidden_states=encoder_hidden,
        encoder_attention_mask=encoder_mask,
        max_new_tokens=6,
        min_new_tokens=6,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    cached = model.generate(ids[:, :3], use_cache=True, **kwargs)
    uncached = model.generate(ids[:, :3], use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences), case
    for a, b in zip(cached.scores, uncached.scores):
        assert torch.allclose(a, b, atol=3e-4, rtol=1e-4), (case, (a - b).abs().max())
    # causal: a later token never changes an earlier position's logits
    with torch.no_grad():
        changed = ids.clone()
        changed[:, -1] = 3
        other = model(changed, encoder_hidden_states=encoder_hidden, encoder_attention_mask=encoder_mask).logits
    assert torch.allclose(other[:, :-1], full[:, :-1], atol=1e-5), case


def test_decoder_only_without_cross_attention_and_refusals():
    model = RelPosBertLMHeadModel(decoder_config("rotary", add_cross_attention=False)).eval()
    ids = inputs()[0]
    out = model.generate(ids[:, :3], max_new_tokens=5, do_sample=False)
    assert torch.equal(out, model.generate(ids[:, :3], max_new_tokens=5, do_sample=False, use_cache=False))
    assert not hasattr(model.bert.encoder.layer[0], "crossattention")
    with pytest.raises(ValueError, match="add_cross_attention=True needs is_decoder=True"):
        RelPosBertConfig(**TINY, add_cross_attention=True)
    with pytest.raises(ValueError, match="sliding_attention"):
        RelPosBertConfig(**TINY, is_decoder=True, layer_types=["full_attention", "sliding_attention"])
    # the defaults keep every encoder as it was: no cross-attention, no causal mask
    encoder = RelPosBertModel(RelPosBertConfig(**TINY))
    assert not hasattr(encoder.encoder.layer[0], "crossattention")
    assert not getattr(encoder.config, "is_decoder", False)


def test_loss_is_shifted_next_token():
    model = RelPosBertLMHeadModel(decoder_config("alibi", add_cross_attention=False)).eval()
    ids = inputs()[0]
    with torch.no_grad():
        out = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 100), ids[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, expected)


def encoder_checkpoint(path, scheme="t5"):
    """A tiny relpos_bert encoder folder, as `hf-relpos convert` writes for a BERT."""
    torch.manual_seed(0)
    config = RelPosBertConfig(**TINY, **SMALL_SCHEME, relative_position=scheme, initializer_range=0.2)
    perturb_schemes(RelPosBertModel(config)).save_pretrained(path)
    return path


def test_bert2bert_warm_start_save_load_remote(tmp_path):
    source = encoder_checkpoint(tmp_path / "encoder")
    model = RelPosBertEncoderDecoderModel.from_encoder_decoder_pretrained(
        str(source), str(source), decoder_start_token_id=2, pad_token_id=0
    ).eval()
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    assert not getattr(model.config.encoder, "is_decoder", False)
    # warm start: the decoder's self-attention is the encoder checkpoint's, the cross-attention is fresh
    encoder_layer, decoder_layer = model.encoder.encoder.layer[0], model.decoder.bert.encoder.layer[0]
    assert torch.equal(encoder_layer.attention.self.query.weight, decoder_layer.attention.self.query.weight)
    assert hasattr(decoder_layer, "crossattention")
    # a decoder scheme is the causal form
    schemes = [m for m in model.decoder.modules() if isinstance(m, RelativePositionScheme)]
    assert schemes and all(s.causal for s in schemes if hasattr(s, "causal"))

    # the plain EncoderDecoderModel works too while hf_relpos is installed
    plain = EncoderDecoderModel.from_encoder_decoder_pretrained(str(source), str(source))
    assert isinstance(plain.decoder, RelPosBertLMHeadModel)

    ids = torch.randint(5, 100, (2, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[1] * 10, [1] * 7 + [0] * 3])
    labels = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(4))
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    assert model.decoder.bert.encoder.layer[0].crossattention.self.query.weight.grad is not None
    model.zero_grad()
    gen = dict(max_new_tokens=5, num_beams=3, do_sample=False, eos_token_id=3)
    beams = model.generate(ids, attention_mask=mask, **gen)
    assert torch.equal(beams, model.generate(ids, attention_mask=mask, use_cache=False, **gen))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits

    model.save_pretrained(tmp_path / "b2b")
    config = json.loads((tmp_path / "b2b" / "config.json").read_text())
    assert config["model_type"] == "relpos_bert_encoder_decoder"
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModelForSeq2SeqLM"}
    assert "AutoModelForCausalLM" in config["decoder"]["auto_map"]
    for loader in (AutoModelForSeq2SeqLM, RelPosBertEncoderDecoderModel):
        again = loader.from_pretrained(tmp_path / "b2b").eval()
        assert isinstance(again, RelPosBertEncoderDecoderModel)
        with torch.no_grad():
            assert (again(input_ids=ids, attention_mask=mask, labels=labels).logits - logits).abs().max() <= 1e-5
    decoder_only = AutoModelForCausalLM.from_pretrained(source, is_decoder=True)
    assert isinstance(decoder_only, RelPosBertLMHeadModel)

    result = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModelForSeq2SeqLM
        model = AutoModelForSeq2SeqLM.from_pretrained({str(tmp_path / "b2b")!r}, trust_remote_code=True).eval()
        assert "hf_relpos" not in type(model).__module__
        ids, mask = torch.tensor({ids.tolist()}), torch.tensor({mask.tolist()})
        labels = torch.tensor({labels.tolist()})
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        beams = model.generate(ids, attention_mask=mask, **{gen!r})
        print(json.dumps(dict(cls=type(model).__name__, logits=logits.tolist(), beams=beams.tolist())))
        """,
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result["cls"] == "RelPosBertEncoderDecoderModel"
    assert (torch.tensor(result["logits"]) - logits).abs().max().item() <= 1e-5
    assert result["beams"] == beams.tolist()


def test_summarization_minilm_recipe_tiny(tmp_path):
    """The shipped recipe at tiny size: a tiny relpos_bert encoder folder (WordPiece vocabulary trained on the
    shared data) stands in for the converted MiniLM; BERT2BERT trains, generates with beams, scores lead-12."""
    from test_recipes import FAST, RECIPES, need_shared

    from hf_relpos.training import train
    from hf_relpos.training.modeling import train_wordpiece_tokenizer

    data = need_shared("summarization", "train.jsonl")
    texts = []
    with open(data) as f:
        for _, line in zip(range(200), f):
            row = json.loads(line)
            texts += [row["document"], row["summary"]]
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=500)
    source = tmp_path / "tiny-bert"
    config = RelPosBertConfig(
        **{**TINY, "vocab_size": len(tokenizer), "max_position_embeddings": 64},
        relative_position="t5",
        absolute_position="learned",
    )
    RelPosBertModel(config).save_pretrained(source)
    tokenizer.save_pretrained(source)
    out = tmp_path / "run"
    result = train(
        RECIPES / "summarization_minilm.yaml",
        [
            *FAST,
            "--model_name_or_path",
            str(source),
            "--max_train_samples",
            "32",
            "--max_eval_samples",
            "6",
            "--max_source_length",
            "32",
            "--max_target_length",
            "8",
            "--num_beams",
            "2",
            "--output_dir",
            str(out),
        ],
    )
    metrics = result["eval"]
    assert {"eval_rouge1", "eval_rougeL", "eval_baseline_rouge1", "eval_other_source_loss"} <= set(metrics)
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert isinstance(model, RelPosBertEncoderDecoderModel)
    assert model.generation_config.num_beams == 2
    assert model.generation_config.decoder_start_token_id == tokenizer.cls_token_id
    card = (out / "README.md").read_text()
    assert "baseline" in card and "`t5`" in card
    # a saved BERT2BERT trains on (no second warm start; labels still start after [CLS])
    again = train(
        RECIPES / "summarization_minilm.yaml",
        [*FAST, "--max_steps", "2", "--model_name_or_path", str(out), "--max_train_samples", "16"]
        + ["--max_eval_samples", "4", "--max_source_length", "32", "--max_target_length", "8"]
        + ["--num_beams", "2", "--output_dir", str(tmp_path / "again")],
    )
    assert "eval_rouge1" in again["eval"]
