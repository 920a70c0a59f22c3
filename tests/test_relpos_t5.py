"""relpos_t5: parity with HF T5, generation with/without cache for every scheme, backends, remote
code, Seq2SeqTrainer, gradient checkpointing, config validation. Tiny models (d_model 32, 2 layers)."""

import json
import math

import pytest
import torch
from helpers import run_without_hf_relpos
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSeq2SeqLM,
    AutoModelForTextEncoding,
    T5Config,
    T5ForConditionalGeneration,
)

from hf_relpos import (
    SCHEMES,
    RelPosT5Config,
    RelPosT5EncoderModel,
    RelPosT5ForConditionalGeneration,
    RelPosT5Model,
    convert_t5_to_relpos,
)
from hf_relpos.relative_positions import RelativePositionScheme

TINY = dict(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)
# small scheme hyper-parameters so clipping, log buckets and thresholds are reached at L ≤ 24
SMALL = dict(
    max_relative_position=8,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
    position_buckets=8,
    max_relative_positions=32,
    max_position_embeddings=64,
    fire_init_threshold=8.0,
)
TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides):
    return RelPosT5Config(**{**TINY, **SMALL, **overrides})


def make_model(seed=0, cls=RelPosT5ForConditionalGeneration, **overrides):
    torch.manual_seed(seed)
    return cls(tiny_config(**overrides)).eval()


def batch(seed=1, lengths=(12, 8), vocab=100):
    """Right-padded encoder batch of different lengths (ids ≥ 2: 0 is pad, 1 is eos)."""
    g = torch.Generator().manual_seed(seed)
    length = max(lengths)
    ids = torch.randint(2, vocab, (len(lengths), length), generator=g)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


def decoder_batch(seed=2, lengths=(7, 5), vocab=100):
    ids, mask = batch(seed, lengths, vocab)
    ids[:, 0] = 0  # decoder_start_token_id
    return ids, mask


# ----------------------------------------------------------------------------------------------
# 1. HF T5 → relpos_t5 conversion is exact
# ----------------------------------------------------------------------------------------------


def hf_t5(feed_forward_proj, tied, seed=0):
    torch.manual_seed(seed)
    config = T5Config(
        **TINY,
        feed_forward_proj=feed_forward_proj,
        tie_word_embeddings=tied,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).eval()
    if not tied:
        # a real separate head (transformers 5.24 keeps T5's head tied and only drops the rescale)
        model.lm_head.weight = nn.Parameter(torch.randn_like(model.shared.weight))
    with torch.no_grad():  # larger weights than T5's init, so generations are not constant
        for name, p in model.named_parameters():
            if "layer_norm" not in name:
                p.mul_(2.0)
    return model


@pytest.mark.parametrize("feed_forward_proj", ["relu", "gated-gelu"])
@pytest.mark.parametrize("tied", [True, False])
def test_conversion_matches_hf_t5(feed_forward_proj, tied):
    hf = hf_t5(feed_forward_proj, tied)
    model = convert_t5_to_relpos(hf)
    assert model.config.tie_word_embeddings is tied
    assert model.config.relative_position == "t5" and model.config.feed_forward_proj == feed_forward_proj
    names = dict(model.named_parameters())
    assert "encoder.relative_position.relative_attention_bias.weight" in names
    assert "decoder.relative_position.relative_attention_bias.weight" in names
    assert not any("SelfAttention.relative_position" in n for n in names)  # shared, not per layer
    assert (model.lm_head.weight is model.shared.weight) is tied

    ids, mask = batch()
    dec, dec_mask = decoder_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
    assert (ref.logits - out.logits).abs().max().item() <= TOL
    assert (ref.encoder_last_hidden_state - out.encoder_last_hidden_state).abs().max().item() <= TOL

    for kwargs in (dict(do_sample=False), dict(do_sample=False, num_beams=3)):
        ref_gen = hf.generate(ids, attention_mask=mask, max_new_tokens=8, **kwargs)
        gen = model.generate(ids, attention_mask=mask, max_new_tokens=8, **kwargs)
        assert torch.equal(ref_gen, gen), kwargs


def test_training_follows_hf_t5_step_by_step():
    """Converted from HF T5 and trained on the same batches with the same optimizer, relpos_t5 follows HF's
    own loss curve (forward, backward and the shared bucket table's gradient alike), including the scheme's
    parameters. A summarization failure of a relative-only T5 from scratch is T5's, not this port's."""
    hf = hf_t5("relu", True).train()
    model = convert_t5_to_relpos(hf).train()
    hf_storage = {p.data_ptr() for p in hf.parameters()}
    assert not any(p.data_ptr() in hf_storage for p in model.parameters())  # two models, not one trained twice
    for m in (hf, model):
        m.config.dropout_rate = 0.0
        for module in m.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (hf, model)]
    for step in range(5):
        ids, mask = batch(seed=10 + step)
        labels = torch.randint(2, 100, (2, 6), generator=torch.Generator().manual_seed(20 + step))
        labels[1, 4:] = -100
        losses = []
        for m, optimizer in zip((hf, model), optimizers):
            loss = m(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], abs=1e-4), (step, losses)
    table = hf.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    torch.testing.assert_close(
        model.encoder.relative_position.relative_attention_bias.weight, table, atol=1e-5, rtol=1e-4
    )


def test_conversion_from_folder_and_refusals(tmp_path):
    hf = hf_t5("relu", True)
    hf.save_pretrained(tmp_path)
    model = convert_t5_to_relpos(str(tmp_path))
    ids, mask = batch()
    dec, _ = decoder_batch()
    with torch.no_grad():
        diff = (
            hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
            - model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        )
    assert diff.abs().max().item() <= TOL
    with pytest.raises(ValueError, match="relative_position"):
        convert_t5_to_relpos(hf, relative_position="alibi")


# ----------------------------------------------------------------------------------------------
# 2. generate with cache == without cache, every scheme
# ----------------------------------------------------------------------------------------------

CASES = [pytest.param(name, False, id=name) for name in SCHEMES] + [pytest.param("shaw", True, id="shaw-value")]


def generate_both(model, ids, mask, **kwargs):
    outs = []
    for use_cache in (True, False):
        if kwargs.get("do_sample"):
            torch.manual_seed(123)
        outs.append(
            model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=8,
                min_new_tokens=8,
                use_cache=use_cache,
                output_scores=True,
                return_dict_in_generate=True,
                **kwargs,
            )
        )
    return outs


@pytest.mark.parametrize("scheme,value", CASES)
def test_generate_cache_equals_no_cache(scheme, value):
    # initializer_factor 2: larger random weights, so the steps' logits depend on position
    model = make_model(relative_position=scheme, relative_value=value, initializer_factor=2.0)
    ids, mask = batch()
    # plain greedy, and greedy with a repetition penalty so that the generated tokens all differ
    for kwargs in (dict(do_sample=False), dict(do_sample=False, repetition_penalty=2.0)):
        cached, uncached = generate_both(model, ids, mask, **kwargs)
        assert cached.sequences.shape == (2, 9)
        assert torch.equal(cached.sequences, uncached.sequences), kwargs
        # every step's scores agree, not only the argmax
        for step, (a, b) in enumerate(zip(cached.scores, uncached.scores)):
            # logits reach |13| here; cache vs recompute differ by fp32 summation order (xl: up to 9e-5)
            assert torch.allclose(a, b, atol=3e-4, rtol=1e-4), (scheme, kwargs, step, (a - b).abs().max())
    assert all(len(set(row[1:])) >= 4 for row in cached.sequences.tolist()), cached.sequences
    # the scores move from step to step (the test is not comparing constants)
    assert not torch.allclose(cached.scores[1], cached.scores[-1])


@pytest.mark.parametrize(
    "overrides",
    [
        dict(relative_position="shaw", decoder_relative_position="t5"),
        dict(relative_position="t5", decoder_relative_position="fire"),
        dict(relative_position="none", absolute_position="learned"),
        dict(relative_position="alibi", absolute_position="sinusoidal"),
        dict(relative_position="rotary", num_decoder_layers=3),
        dict(relative_position="t5", relative_position_per_layer=True),
    ],
    ids=["enc-shaw-dec-t5", "enc-t5-dec-fire", "abs-learned", "abs-sinusoidal", "3-decoder-layers", "t5-per-layer"],
)
def test_generate_cache_variants(overrides):
    model = make_model(initializer_factor=2.0, **overrides)
    ids, mask = batch()
    for kwargs in (dict(do_sample=False), dict(do_sample=False, num_beams=3), dict(do_sample=True, top_k=20)):
        cached, uncached = generate_both(model, ids, mask, **kwargs)
        assert torch.equal(cached.sequences, uncached.sequences), kwargs


@pytest.mark.parametrize("cache_name", ["cache", "past_key_values"])
def test_incremental_forward_accepts_both_cache_names(cache_name):
    """Feeding tokens one at a time through the returned cache (under either argument name) gives the
    logits of the full decoder sequence."""
    model = make_model(relative_position="fire", decoder_relative_position="t5", absolute_position="sinusoidal")
    ids, mask = batch()
    dec, _ = decoder_batch(lengths=(6, 6))
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)
        cache, steps = None, []
        for t in range(dec.shape[1]):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=mask,
                decoder_input_ids=dec[:, t : t + 1],
                use_cache=True,
                **{cache_name: cache},
            )
            cache = out.cache if "cache" in type(out).__dataclass_fields__ else out.past_key_values
            assert cache is not None and cache.get_seq_length() == t + 1
            steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= TOL


def test_scheme_placement():
    model = make_model(relative_position="shaw", decoder_relative_position="t5")
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.block.0.layer.0.SelfAttention.relative_position.relative_key.weight" in names
    assert "encoder.block.1.layer.0.SelfAttention.relative_position.relative_key.weight" in names
    assert "decoder.relative_position.relative_attention_bias.weight" in names
    assert not any(n.startswith("decoder.block") and "relative_position" in n for n in names)
    assert not any("EncDecAttention.relative_position" in n for n in names)
    assert (
        model.decoder.relative_position.causal
        and not model.encoder.block[0].layer[0].SelfAttention.relative_position.causal
    )
    # one T5 table per stack, with T5's init (std d_model^-0.5)
    model = make_model(relative_position="t5", seed=3)
    table = model.encoder.relative_position.relative_attention_bias.weight
    assert table.shape == (8, 4)
    assert 0.5 / math.sqrt(32) < model.encoder.block[0].layer[0].SelfAttention.k.weight.std() < 2 / math.sqrt(32)
    scheme_modules = [m for m in model.modules() if isinstance(m, RelativePositionScheme)]
    assert len(scheme_modules) == 2


def test_learned_absolute_positions_too_long():
    model = make_model(relative_position="none", absolute_position="learned", max_position_embeddings=10)
    ids, mask = batch(lengths=(12, 8))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :3])


# ----------------------------------------------------------------------------------------------
# 3. eager == sdpa == flex
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["t5", "shaw", "rotary", "deberta", "fire"])
def test_backends_agree(scheme):
    model = make_model(relative_position=scheme)
    ids, mask = batch()
    dec, dec_mask = decoder_batch()
    logits = {}
    for impl in ("eager", "sdpa", "flex_attention"):
        model.set_attn_implementation(impl)
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            logits[impl] = model(
                input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask
            ).logits
    assert (logits["eager"] - logits["sdpa"]).abs().max().item() <= TOL
    assert (logits["eager"] - logits["flex_attention"]).abs().max().item() <= TOL
    # and the cached decoding path (single-query steps, offsets) under each backend
    generations = []
    for impl in ("eager", "sdpa", "flex_attention"):
        model.set_attn_implementation(impl)
        generations.append(model.generate(ids, attention_mask=mask, max_new_tokens=6, repetition_penalty=2.0))
    assert torch.equal(generations[0], generations[1]) and torch.equal(generations[0], generations[2])


def test_eager_attentions_and_hidden_states():
    model = make_model(relative_position="alibi")
    model.set_attn_implementation("eager")
    ids, mask = batch()
    dec, _ = decoder_batch()
    with torch.no_grad():
        out = model(
            input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_attentions=True, output_hidden_states=True
        )
    assert len(out.encoder_attentions) == 2 and out.encoder_attentions[0].shape == (2, 4, 12, 12)
    assert len(out.decoder_attentions) == 2 and out.decoder_attentions[0].shape == (2, 4, 7, 7)
    assert out.cross_attentions[0].shape == (2, 4, 7, 12)
    assert len(out.decoder_hidden_states) == 3
    assert torch.all(out.decoder_attentions[0].triu(1) == 0)  # causal
    assert torch.all(out.encoder_attentions[0][1, :, :, 8:] == 0)  # padding
    assert torch.all(out.cross_attentions[0][1, :, :, 8:] == 0)


# ----------------------------------------------------------------------------------------------
# 4. save → load with trust_remote_code where hf_relpos is not importable
# ----------------------------------------------------------------------------------------------

REMOTE_CASES = {
    "t5": dict(relative_position="t5"),
    "alibi": dict(relative_position="alibi", decoder_relative_position="kerple"),
    "shaw": dict(relative_position="shaw", relative_value=True, absolute_position="learned"),
    "deberta": dict(relative_position="deberta", decoder_relative_position="rotary"),
    "fire": dict(relative_position="fire", feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def test_remote_code_roundtrip(tmp_path):
    ids, mask = batch()
    dec, dec_mask = decoder_batch()
    expected = {}
    for name, overrides in REMOTE_CASES.items():
        model = make_model(initializer_factor=2.0, **overrides)
        model.save_pretrained(tmp_path / name)
        files = {p.name for p in (tmp_path / name).iterdir()}
        assert {
            "modeling_relpos_t5.py",
            "configuration_relpos_t5.py",
            "relative_positions.py",
            "attention_engine.py",
            "position_kernels.py",
            "scheme_config.py",
        } <= files, files
        auto_map = json.loads((tmp_path / name / "config.json").read_text())["auto_map"]
        assert set(auto_map) >= {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM", "AutoModelForTextEncoding"}
        with torch.no_grad():
            logits = model(
                input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask
            ).logits
        gen = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
        expected[name] = (logits, gen)

    result = run_without_hf_relpos(
        f"""
        import json, torch
        from transformers import AutoModelForSeq2SeqLM, AutoModel, AutoModelForTextEncoding
        ids, mask = torch.tensor({ids.tolist()}), torch.tensor({mask.tolist()})
        dec, dec_mask = torch.tensor({dec.tolist()}), torch.tensor({dec_mask.tolist()})
        out = {{}}
        for name in {list(REMOTE_CASES)!r}:
            path = {str(tmp_path)!r} + "/" + name
            model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
            assert "hf_relpos" not in type(model).__module__
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec,
                               decoder_attention_mask=dec_mask).logits
            gen = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
            out[name] = dict(cls=type(model).__name__, logits=logits.tolist(), gen=gen.tolist())
        path = {str(tmp_path)!r} + "/t5"
        out["base"] = type(AutoModel.from_pretrained(path, trust_remote_code=True)).__name__
        enc = AutoModelForTextEncoding.from_pretrained(path, trust_remote_code=True).eval()
        out["encoder"] = type(enc).__name__
        with torch.no_grad():
            out["encoder_hidden"] = enc(input_ids=ids, attention_mask=mask).last_hidden_state.tolist()
        print(json.dumps(out))
        """,
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    for name, (logits, gen) in expected.items():
        assert result[name]["cls"] == "RelPosT5ForConditionalGeneration"
        assert (torch.tensor(result[name]["logits"]) - logits).abs().max().item() <= TOL, name
        assert result[name]["gen"] == gen.tolist(), name
    assert result["base"] == "RelPosT5Model" and result["encoder"] == "RelPosT5EncoderModel"
    reference = make_model(initializer_factor=2.0, **REMOTE_CASES["t5"])
    with torch.no_grad():
        hidden = reference.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (torch.tensor(result["encoder_hidden"]) - hidden).abs().max().item() <= TOL


def test_auto_classes_installed(tmp_path):
    model = make_model(relative_position="kerple")
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is RelPosT5Config
    assert type(AutoModelForSeq2SeqLM.from_pretrained(tmp_path)) is RelPosT5ForConditionalGeneration
    assert type(AutoModel.from_pretrained(tmp_path)) is RelPosT5Model
    encoder = AutoModelForTextEncoding.from_pretrained(tmp_path)
    assert type(encoder) is RelPosT5EncoderModel
    torch.testing.assert_close(encoder.encoder.relative_position.r1, model.encoder.relative_position.r1)
    ids, mask = batch()
    with torch.no_grad():
        a = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        b = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (a - b).abs().max().item() <= TOL


# ----------------------------------------------------------------------------------------------
# 5. Seq2SeqTrainer on a copy task with a SentencePiece tokenizer trained here
# ----------------------------------------------------------------------------------------------

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "star", "rain"]


def copy_task(n, seed):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        k = int(torch.randint(2, 6, (1,), generator=g))
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g)]
        rows.append({"source": "copy: " + " ".join(words), "target": " ".join(words)})
    return rows


def sentencepiece_tokenizer(lines):
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(
        lines, vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    raw = sp._tokenizer  # the tokenizers.Tokenizer inside the SentencePiece wrapper
    raw.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", raw.token_to_id("</s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1
    return tok


def test_seq2seq_trainer_copy_task(tmp_path):
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    train_rows, eval_rows = copy_task(256, 0), copy_task(16, 1)
    tok = sentencepiece_tokenizer([r["source"] for r in train_rows] * 2)

    def encode(rows):
        return [
            {
                **tok(r["source"], truncation=True, max_length=24),
                "labels": tok(text_target=r["target"], truncation=True, max_length=24)["input_ids"],
            }
            for r in rows
        ]

    torch.manual_seed(0)
    model = RelPosT5ForConditionalGeneration(
        tiny_config(
            vocab_size=len(tok),
            relative_position="t5",
            decoder_relative_position="alibi",
            d_ff=128,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
    )

    def compute_metrics(prediction):
        preds, labels = prediction
        preds = tok.batch_decode(preds, skip_special_tokens=True)
        labels = tok.batch_decode([[t for t in row if t != -100] for row in labels], skip_special_tokens=True)
        return {"exact": sum(p.strip() == l.strip() for p, l in zip(preds, labels)) / len(labels)}

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=8,
        learning_rate=5e-3,
        max_steps=60,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        predict_with_generate=True,
        generation_max_length=24,
        generation_num_beams=2,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=encode(train_rows),
        eval_dataset=encode(eval_rows),
        data_collator=DataCollatorForSeq2Seq(tok, model=model),
        processing_class=tok,
        compute_metrics=compute_metrics,
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    print("train losses", losses, "eval before/after", before, after)
    assert len(losses) >= 5 and losses[-1] < 0.5 * losses[0], losses
    assert after["eval_loss"] < 0.5 * before["eval_loss"], (before, after)
    assert 0.0 <= after["eval_exact"] <= 1.0
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "modeling_relpos_t5.py").exists()


# ----------------------------------------------------------------------------------------------
# 6. gradient checkpointing, label shifting, validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["t5", "deberta", "shaw"])
@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_same_gradients(scheme, reentrant):
    ids, mask = batch()
    labels = torch.randint(2, 100, (2, 6), generator=torch.Generator().manual_seed(5))
    labels[1, 4:] = -100
    grads = []
    for checkpointing in (False, True):
        model = make_model(relative_position=scheme).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
            assert model.encoder.block[0].gradient_checkpointing
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = grads
    assert set(plain) == set(checkpointed)
    assert any("relative_position" in n for n in plain)  # the scheme's parameters are trained
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)


def test_prepare_decoder_input_ids_from_labels():
    model = make_model(decoder_start_token_id=7)
    labels = torch.tensor([[5, 6, 9, 1], [5, 1, -100, -100]])
    shifted = model.prepare_decoder_input_ids_from_labels(labels=labels)
    assert shifted.tolist() == [[7, 5, 6, 9], [7, 5, 1, 0]]
    # the loss uses the same shift
    ids, mask = batch()
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        b = model(input_ids=ids, attention_mask=mask, decoder_input_ids=shifted).logits
    torch.testing.assert_close(a, b)


def test_config_roundtrip_and_defaults():
    config = RelPosT5Config()
    assert config.relative_position == "t5" and config.absolute_position == "none"
    assert config.decoder_relative_position is None and config.decoder_scheme_name == "t5"
    assert config.relative_attention_num_buckets == 32 and config.relative_attention_max_distance == 128
    assert config.is_encoder_decoder and config.tie_word_embeddings and config.decoder_start_token_id == 0
    assert config.hidden_size == 512 and config.num_hidden_layers == 6
    config = tiny_config(relative_position="xl", decoder_relative_position="alibi", feed_forward_proj="gated-silu")
    again = RelPosT5Config.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert again.dense_act_fn == "silu" and again.is_gated_act


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(feed_forward_proj="gated-nope"), "feed_forward_proj"),
        (dict(feed_forward_proj="relu-gated-gelu"), "feed_forward_proj"),
        (dict(relative_position="bogus"), "relative_position"),
        (dict(decoder_relative_position="bogus"), "decoder_relative_position"),
        (dict(absolute_position="rope"), "absolute_position"),
        (dict(relative_attention_num_buckets=7), "relative_attention_num_buckets"),
        (dict(relative_value=True, relative_position="t5"), "relative_value"),
        (dict(dropout_rate=1.5), "dropout_rate"),
        (dict(num_heads=0), "num_heads"),
        (dict(max_position_embeddings=0), "max_position_embeddings"),
    ],
)
def test_bad_config_raises(overrides, field):
    with pytest.raises(ValueError, match=field) as info:
        tiny_config(**overrides)
    bad = next(iter(overrides.values())) if len(overrides) == 1 else None
    if bad is not None and isinstance(bad, str):
        assert repr(bad) in str(info.value)
