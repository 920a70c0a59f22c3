"""relpos_bert: parity with HF BERT, every scheme through save/load (installed and remote code),
backends, heads, gradient checkpointing, outputs, bf16, Trainer, long inputs, shift invariance, config errors.

Tiny models only (hidden 32, 2 layers, vocab 100, lengths ≤ 40)."""

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from helpers import run_without_hf_relpos
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    Trainer,
    TrainingArguments,
)

from hf_relpos import (
    SCHEMES,
    RelPosBertConfig,
    RelPosBertForMaskedLM,
    RelPosBertForMultipleChoice,
    RelPosBertForQuestionAnswering,
    RelPosBertForSequenceClassification,
    RelPosBertForTokenClassification,
    RelPosBertModel,
)
from hf_relpos.position_kernels import alibi_slopes
from hf_relpos.relative_positions import RelativePositionScheme

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
# small scheme hyper-parameters, so the clipping/bucketing is exercised at short lengths
SMALL_SCHEME = dict(
    max_relative_position=8, relative_attention_max_distance=16, position_buckets=8, max_relative_positions=32
)
# every scheme, plus Shaw with its value side (eager-only term)
SCHEME_CASES = {name: dict(relative_position=name) for name in SCHEMES}
SCHEME_CASES["shaw_value"] = dict(relative_position="shaw", relative_value=True)
# no position information at all would be position-blind: give `none` BERT's learned table
SCHEME_CASES["none"]["absolute_position"] = "learned"
PURE_RELATIVE = [name for name in SCHEMES if name != "none"]
CODE_FILES = {
    "configuration_relpos_bert.py",
    "modeling_relpos_bert.py",
    "relative_positions.py",
    "attention_engine.py",
    "position_kernels.py",
    "scheme_config.py",
    "local_attention.py",
    "compat.py",
}
BACKENDS = ("eager", "sdpa", "flex_attention")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(case="t5", **overrides):
    fields = {**TINY, **SMALL_SCHEME, **SCHEME_CASES.get(case, dict(relative_position=case)), **overrides}
    return RelPosBertConfig(**fields)


def perturb_schemes(model, std=0.5, seed=0):
    """Make the scheme parameters large, so every equality test below is sensitive to them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RelativePositionScheme):
                for p in module.parameters(recurse=True):
                    p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def sample_inputs(batch=3, length=12, seed=0, vocab=100):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (batch, length), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length - 4 :] = 0  # one right-padded row
    input_ids[attention_mask == 0] = 0
    return input_ids, attention_mask


# ----------------------------------------------------------------------------------------------
# 1. parity with HF BERT
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_parity_with_hf_bert(impl):
    hf_config = transformers.BertConfig(**{k: TINY[k] for k in TINY})
    torch.manual_seed(0)
    hf_model = transformers.BertModel(hf_config).eval()
    hf_mlm = transformers.BertForMaskedLM(hf_config).eval()
    config = tiny_config(relative_position="none", absolute_position="learned")
    ours = RelPosBertModel(config).eval()
    ours_mlm = RelPosBertForMaskedLM(config).eval()
    # parameter names follow HF BERT exactly: strict loading, nothing missing or unexpected
    ours.load_state_dict(hf_model.state_dict(), strict=True)
    ours_mlm.load_state_dict(hf_mlm.state_dict(), strict=True)
    for model in (hf_model, hf_mlm, ours, ours_mlm):
        model.set_attn_implementation(impl)

    input_ids, attention_mask = sample_inputs()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 6:] = 1
    with torch.no_grad():
        expected = hf_model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        got = ours(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        expected_mlm = hf_mlm(input_ids, attention_mask=attention_mask).logits
        got_mlm = ours_mlm(input_ids, attention_mask=attention_mask).logits
    # every real token (the padded batch runs unpadded here: padding positions come out as zeros, never read)
    real = attention_mask.bool()
    torch.testing.assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_mlm[real], expected_mlm[real], atol=1e-5, rtol=0)
    # and every position of the padded computation
    ours.config.unpad_inputs = False
    with torch.no_grad():
        padded = ours(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    torch.testing.assert_close(padded.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=0)


def test_hf_bert_checkpoint_loads_by_name(tmp_path):
    """A saved HF BertModel folder loads into RelPosBertModel.from_pretrained with a relpos config."""
    hf_config = transformers.BertConfig(**TINY)
    torch.manual_seed(0)
    hf_model = transformers.BertModel(hf_config).eval()
    hf_model.save_pretrained(tmp_path)
    config = tiny_config(relative_position="none", absolute_position="learned")
    ours = RelPosBertModel.from_pretrained(tmp_path, config=config).eval()
    for name, tensor in hf_model.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
    input_ids, attention_mask = sample_inputs()
    real = attention_mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(
            ours(input_ids, attention_mask=attention_mask).last_hidden_state[real],
            hf_model(input_ids, attention_mask=attention_mask).last_hidden_state[real],
            atol=1e-5,
            rtol=0,
        )


def test_scheme_placement_and_names():
    shared = RelPosBertModel(tiny_config("t5"))
    keys = set(shared.state_dict())
    assert "encoder.relative_position.relative_attention_bias.weight" in keys
    assert not any(".layer." in k and "relative_position" in k for k in keys)  # not re-registered per layer
    per_layer = RelPosBertModel(tiny_config("t5", relative_position_per_layer=True))
    keys = set(per_layer.state_dict())
    assert "encoder.layer.1.attention.self.relative_position.relative_attention_bias.weight" in keys
    assert not any(k.startswith("encoder.relative_position") for k in keys)
    shaw = RelPosBertModel(tiny_config("shaw"))
    assert "encoder.layer.0.attention.self.relative_position.relative_key.weight" in shaw.state_dict()
    # BERT names, and PEFT's usual target modules resolve to Linear layers
    names = dict(shaw.named_modules())
    for n in (
        "embeddings.word_embeddings",
        "embeddings.token_type_embeddings",
        "embeddings.LayerNorm",
        "encoder.layer.0.attention.output.dense",
        "encoder.layer.0.intermediate.dense",
        "encoder.layer.0.output.LayerNorm",
        "pooler.dense",
    ):
        assert n in names, n
    assert "embeddings.position_embeddings" not in names  # absolute_position="none"
    targets = [n for n in names if n.split(".")[-1] in ("query", "value")]
    assert len(targets) == 4 and all(isinstance(names[n], torch.nn.Linear) for n in targets)
    # per-layer tables are distinct parameters, and the per-layer variant runs
    tables = [
        layer.attention.self.relative_position.relative_attention_bias.weight for layer in per_layer.encoder.layer
    ]
    assert tables[0] is not tables[1]
    ids, mask = sample_inputs()
    assert per_layer(ids, attention_mask=mask).last_hidden_state.shape == (3, 12, 32)


# ----------------------------------------------------------------------------------------------
# 2. every scheme: save/load, backends, remote code
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_schemes(tmp_path_factory):
    """One tiny classifier per scheme case, saved; reference logits under sdpa."""
    root = tmp_path_factory.mktemp("schemes")
    input_ids, attention_mask = sample_inputs()
    saved = {}
    for i, case in enumerate(SCHEME_CASES):
        torch.manual_seed(i)
        model = perturb_schemes(RelPosBertForSequenceClassification(tiny_config(case, num_labels=3)), seed=i).eval()
        model.set_attn_implementation("sdpa")
        with torch.no_grad():
            out = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        path = root / case
        model.save_pretrained(path)
        saved[case] = (path, out.logits, out.hidden_states[-1])
    return saved, input_ids, attention_mask


@pytest.mark.parametrize("case", list(SCHEME_CASES))
def test_scheme_save_load_and_backends(case, saved_schemes):
    saved, input_ids, attention_mask = saved_schemes
    path, logits, last_hidden = saved[case]
    assert CODE_FILES <= {p.name for p in path.iterdir()}
    auto_map = json.loads((path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForMaskedLM",
        "AutoModelForCausalLM",
        "AutoModelForSequenceClassification",
        "AutoModelForTokenClassification",
        "AutoModelForQuestionAnswering",
        "AutoModelForMultipleChoice",
    }
    loaded = AutoModelForSequenceClassification.from_pretrained(path).eval()
    assert type(loaded) is RelPosBertForSequenceClassification
    if case == "alibi":  # non-persistent buffer: recreated by _init_weights after meta-device loading
        torch.testing.assert_close(loaded.bert.encoder.relative_position.slopes, alibi_slopes(4), atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids, attention_mask=attention_mask).logits, logits, atol=1e-6, rtol=0)
    for impl in BACKENDS:
        model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation=impl).eval()
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            out = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=0, msg=lambda m: f"{impl}: {m}")
        torch.testing.assert_close(out.hidden_states[-1], last_hidden, atol=1e-5, rtol=0, msg=lambda m: f"{impl}: {m}")


def test_remote_code_all_schemes(saved_schemes, tmp_path):
    """One process without hf_relpos loads every scheme's folder with trust_remote_code=True, and one
    folder with every Auto class (the pre-seeded auto_map)."""
    saved, input_ids, attention_mask = saved_schemes
    folders = {case: str(path) for case, (path, _, _) in saved.items()}
    result = run_without_hf_relpos(
        f"""
        import json, sys, torch
        from transformers import (AutoModel, AutoModelForMaskedLM, AutoModelForMultipleChoice,
            AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoModelForTokenClassification)
        folders = {folders!r}
        input_ids = torch.tensor({input_ids.tolist()!r})
        attention_mask = torch.tensor({attention_mask.tolist()!r})
        logits, modules = {{}}, {{}}
        for case, path in folders.items():
            model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).eval()
            modules[case] = type(model).__module__
            with torch.no_grad():
                logits[case] = model(input_ids, attention_mask=attention_mask).logits.tolist()
        heads = {{}}
        for auto in (AutoModel, AutoModelForMaskedLM, AutoModelForMultipleChoice, AutoModelForQuestionAnswering,
                     AutoModelForTokenClassification):
            model = auto.from_pretrained(folders["t5"], trust_remote_code=True, ignore_mismatched_sizes=True)
            heads[auto.__name__] = type(model).__name__
        eager = AutoModelForSequenceClassification.from_pretrained(
            folders["deberta"], trust_remote_code=True, attn_implementation="eager").eval()
        with torch.no_grad():
            eager_logits = eager(input_ids, attention_mask=attention_mask).logits.tolist()
        print(json.dumps({{"logits": logits, "modules": modules, "heads": heads, "eager": eager_logits,
                          "hf_relpos_loaded": "hf_relpos" in sys.modules and sys.modules["hf_relpos"] is not None}}))
        """,
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert not result["hf_relpos_loaded"]
    for case, (_, logits, _) in saved.items():
        assert result["modules"][case].startswith("transformers_modules"), result["modules"][case]
        torch.testing.assert_close(torch.tensor(result["logits"][case]), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(result["eager"]), saved["deberta"][1], atol=1e-5, rtol=0)
    assert result["heads"] == {
        "AutoModel": "RelPosBertModel",
        "AutoModelForMaskedLM": "RelPosBertForMaskedLM",
        "AutoModelForMultipleChoice": "RelPosBertForMultipleChoice",
        "AutoModelForQuestionAnswering": "RelPosBertForQuestionAnswering",
        "AutoModelForTokenClassification": "RelPosBertForTokenClassification",
    }


def test_auto_classes_installed(tmp_path):
    config = AutoConfig.for_model("relpos_bert", **TINY)
    assert isinstance(config, RelPosBertConfig) and config.relative_position == "t5"
    assert config.absolute_position == "none"
    assert type(AutoModel.from_config(config)) is RelPosBertModel
    RelPosBertForSequenceClassification(config).save_pretrained(tmp_path)
    # one checkpoint, every head (the encoder weights load, the new head is initialised)
    for auto, cls in (
        (AutoModel, RelPosBertModel),
        (AutoModelForMaskedLM, RelPosBertForMaskedLM),
        (AutoModelForTokenClassification, RelPosBertForTokenClassification),
        (AutoModelForQuestionAnswering, RelPosBertForQuestionAnswering),
        (AutoModelForMultipleChoice, RelPosBertForMultipleChoice),
    ):
        assert type(auto.from_pretrained(tmp_path, ignore_mismatched_sizes=True)) is cls


# ----------------------------------------------------------------------------------------------
# 3. heads
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["t5", "deberta"])
def test_heads_forward_with_labels(scheme):
    torch.manual_seed(0)
    input_ids, attention_mask = sample_inputs(batch=2, length=10)
    B, L = input_ids.shape

    def check(output):
        assert output.loss is not None and torch.isfinite(output.loss)
        output.loss.backward()

    model = RelPosBertForMaskedLM(tiny_config(scheme))
    labels = input_ids.clone()
    labels[:, ::2] = -100
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (B, L, 100)
    check(out)

    for num_labels, labels, problem in (
        (3, torch.tensor([0, 2]), "single_label_classification"),
        (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "multi_label_classification"),
        (1, torch.tensor([0.5, -1.0]), "regression"),
    ):
        model = RelPosBertForSequenceClassification(tiny_config(scheme, num_labels=num_labels))
        out = model(input_ids, attention_mask=attention_mask, labels=labels)
        assert out.logits.shape == (B, num_labels)
        assert model.config.problem_type == problem
        check(out)

    model = RelPosBertForTokenClassification(tiny_config(scheme, num_labels=5))
    labels = torch.randint(0, 5, (B, L))
    labels[attention_mask == 0] = -100
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (B, L, 5)
    check(out)

    model = RelPosBertForQuestionAnswering(tiny_config(scheme))
    out = model(
        input_ids,
        attention_mask=attention_mask,
        start_positions=torch.tensor([1, 2]),
        end_positions=torch.tensor([3, 40]),
    )  # 40: out of range, ignored
    assert out.start_logits.shape == (B, L) and out.end_logits.shape == (B, L)
    check(out)

    model = RelPosBertForMultipleChoice(tiny_config(scheme))
    C = 3
    mc_ids = torch.randint(1, 100, (B, C, L))
    mc_mask = torch.ones_like(mc_ids)
    mc_mask[:, 1, -3:] = 0
    out = model(mc_ids, attention_mask=mc_mask, token_type_ids=torch.zeros_like(mc_ids), labels=torch.tensor([0, 2]))
    assert out.logits.shape == (B, C)
    check(out)


def test_mlm_decoder_tied(tmp_path):
    model = RelPosBertForMaskedLM(tiny_config("alibi"))
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight.data_ptr() == embeddings.data_ptr()
    assert model.cls.predictions.decoder.bias.data_ptr() == model.cls.predictions.bias.data_ptr()
    with torch.no_grad():
        embeddings[5, 0] = 3.25  # one storage: visible through the decoder
    assert model.cls.predictions.decoder.weight[5, 0] == 3.25
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.cls.predictions.decoder.weight.data_ptr() == loaded.bert.embeddings.word_embeddings.weight.data_ptr()
    assert loaded.cls.predictions.decoder.weight[5, 0] == 3.25
    ids, mask = sample_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.eval()(ids, attention_mask=mask).logits, model.eval()(ids, attention_mask=mask).logits
        )
    untied = RelPosBertForMaskedLM(tiny_config("alibi", tie_word_embeddings=False))
    assert untied.cls.predictions.decoder.weight.data_ptr() != untied.bert.embeddings.word_embeddings.weight.data_ptr()


# ----------------------------------------------------------------------------------------------
# 4. gradient checkpointing
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme, reentrant",
    [("t5", False), ("t5", True), ("deberta", False), ("shaw_value", False), ("fire", False)],
)
def test_gradient_checkpointing_same_gradients(scheme, reentrant):
    torch.manual_seed(0)
    reference = perturb_schemes(RelPosBertForSequenceClassification(tiny_config(scheme, num_labels=3)))
    checkpointed = copy.deepcopy(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current name: no deprecation warning
        checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    assert all(layer.gradient_checkpointing for layer in checkpointed.bert.encoder.layer)
    input_ids, attention_mask = sample_inputs()
    labels = torch.tensor([0, 1, 2])
    for model in (reference, checkpointed):
        model.train()
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    ref_params = dict(reference.named_parameters())
    scheme_grads = 0
    for name, p in checkpointed.named_parameters():
        ref = ref_params[name]
        if ref.grad is None:
            assert p.grad is None, name
            continue
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, ref.grad, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
        if "relative_position" in name:
            scheme_grads += int(ref.grad.abs().sum() > 0)
    assert scheme_grads > 0  # the scheme itself is trained through the checkpointed layers


# ----------------------------------------------------------------------------------------------
# 5. outputs
# ----------------------------------------------------------------------------------------------


def test_output_attentions_hidden_states_and_tuples():
    torch.manual_seed(0)
    model = perturb_schemes(RelPosBertModel(tiny_config("shaw"))).eval()
    model.set_attn_implementation("eager")
    input_ids, attention_mask = sample_inputs()
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2
    for probs in out.attentions:
        assert probs.shape == (3, 4, 12, 12)
        torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, 12))
        assert float(probs[1, :, :, -4:].abs().max()) == 0.0  # padded keys get no attention
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.hidden_states[0], model.embeddings(input_ids))
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)

    # sdpa cannot expose probabilities: a forward that asks for them runs eagerly, same values
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        sdpa_out = model(input_ids, attention_mask=attention_mask, output_attentions=True)
        plain = model(input_ids, attention_mask=attention_mask)
    assert plain.attentions is None and plain.hidden_states is None
    for a, b in zip(sdpa_out.attentions, out.attentions):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    with torch.no_grad():
        as_tuple = model(input_ids, attention_mask=attention_mask, return_dict=False)
    assert isinstance(as_tuple, tuple)
    real = attention_mask.bool()  # return_dict=False alone runs unpadded: padding positions are zeros
    torch.testing.assert_close(as_tuple[0][real], out.last_hidden_state[real], atol=1e-5, rtol=0)
    assert as_tuple[1].shape == (3, 32)  # pooler

    head = RelPosBertForSequenceClassification(tiny_config("t5")).eval()
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        loss, logits, hidden = head(
            input_ids, attention_mask=attention_mask, labels=labels, output_hidden_states=True, return_dict=False
        )
    assert logits.shape == (3, 2) and loss.dim() == 0 and len(hidden) == 3
    head.config.return_dict = False  # the config default applies when return_dict is not passed
    with torch.no_grad():
        assert isinstance(head(input_ids, attention_mask=attention_mask), tuple)
        assert head(input_ids, attention_mask=attention_mask, return_dict=True).logits.shape == (3, 2)


# ----------------------------------------------------------------------------------------------
# 6. bfloat16
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["t5", "shaw", "deberta"])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_bfloat16_runs_close_to_fp32(scheme, impl):
    torch.manual_seed(0)
    model = perturb_schemes(RelPosBertModel(tiny_config(scheme)), std=0.2).eval()
    model.set_attn_implementation(impl)
    model_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    input_ids, attention_mask = sample_inputs()
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
        got = model_bf16(input_ids, attention_mask=attention_mask).last_hidden_state
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    diff = (got.float() - expected).abs()
    assert float(diff.mean()) < 0.03 and float(diff.max()) < 0.25, (float(diff.mean()), float(diff.max()))


# ----------------------------------------------------------------------------------------------
# 7. Trainer on a position-sensitive task
# ----------------------------------------------------------------------------------------------

CLS, TOKEN_A, TOKEN_B = 1, 3, 4


def order_task(n, length, seed):
    """[CLS] then a run of one token and a run of the other (random split point): label 1 iff the
    A-run comes first. Token counts carry no signal; only the order does."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    splits = torch.randint(1, length - 1, (n,), generator=g)
    rows = []
    for label, split in zip(labels.tolist(), splits.tolist()):
        first, second = (TOKEN_A, TOKEN_B) if label else (TOKEN_B, TOKEN_A)
        ids = torch.full((length,), second)
        ids[0] = CLS
        ids[1 : 1 + split] = first
        rows.append({"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long), "labels": label})
    return rows


@pytest.mark.parametrize("case", list(SCHEME_CASES))
def test_trainer_learns_order(case, tmp_path):
    steps, batch = 50, 16
    torch.manual_seed(0)
    config = tiny_config(case, vocab_size=8, initializer_range=0.2, fire_init_threshold=16.0)
    model = RelPosBertForSequenceClassification(config)
    # bias tables (t5, kerple, fire) move by ~lr per Adam step: give the scheme a larger step
    scheme_params = [p for n, p in model.named_parameters() if "relative_position" in n]
    other_params = [p for n, p in model.named_parameters() if "relative_position" not in n]
    groups = [{"params": other_params, "lr": 3e-3}]
    if scheme_params:
        groups.append({"params": scheme_params, "lr": 5e-2})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        per_device_train_batch_size=batch,
        max_steps=steps,
        logging_steps=5,
        save_strategy="steps",
        save_steps=steps,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=order_task(steps * batch, 16, seed=0), optimizers=(optimizer, None)
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first and last < 0.5, losses  # chance is ln 2 ≈ 0.69: the order was learned
    checkpoint = Path(tmp_path) / f"checkpoint-{steps}"
    assert CODE_FILES <= {p.name for p in checkpoint.iterdir()}
    assert "auto_map" in json.loads((checkpoint / "config.json").read_text())


# ----------------------------------------------------------------------------------------------
# 8. inputs longer than max_position_embeddings
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_longer_than_max_position_embeddings(scheme):
    config = tiny_config(scheme, max_position_embeddings=16, absolute_position="none")
    model = RelPosBertModel(config).eval()
    input_ids, attention_mask = sample_inputs(batch=2, length=40)
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask).last_hidden_state
    assert out.shape == (2, 40, 32) and torch.isfinite(out).all()


def test_learned_absolute_rejects_long_inputs_sinusoidal_does_not():
    model = RelPosBertModel(tiny_config("t5", max_position_embeddings=16, absolute_position="learned"))
    with pytest.raises(ValueError, match=r"max_position_embeddings=16") as info:
        model(torch.ones(1, 40, dtype=torch.long))
    assert "40" in str(info.value)
    model(torch.ones(1, 16, dtype=torch.long))  # at the limit: fine
    sinusoidal = RelPosBertModel(tiny_config("t5", max_position_embeddings=16, absolute_position="sinusoidal"))
    assert sinusoidal(torch.ones(1, 40, dtype=torch.long)).last_hidden_state.shape == (1, 40, 32)


# ----------------------------------------------------------------------------------------------
# 9. shift invariance and padding
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", PURE_RELATIVE)
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_padding_invariance(scheme, impl):
    torch.manual_seed(0)
    model = perturb_schemes(RelPosBertModel(tiny_config(scheme, absolute_position="none"))).eval()
    model.set_attn_implementation(impl)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 100, (1, 10), generator=g)
    pad = 5
    with torch.no_grad():
        plain = model(tokens).last_hidden_state[0]
        right = model(
            torch.cat([tokens, torch.zeros(1, pad, dtype=torch.long)], 1),
            attention_mask=torch.cat([torch.ones(1, 10), torch.zeros(1, pad)], 1).long(),
        ).last_hidden_state[0, :10]
        left = model(
            torch.cat([torch.zeros(1, pad, dtype=torch.long), tokens], 1),
            attention_mask=torch.cat([torch.zeros(1, pad), torch.ones(1, 10)], 1).long(),
        ).last_hidden_state[0, pad:]
    # right padding never changes real tokens (fire too: its threshold exceeds these lengths)
    torch.testing.assert_close(right, plain, atol=1e-5, rtol=0)
    if SCHEMES[scheme].shift_invariant:
        torch.testing.assert_close(left, plain, atol=1e-5, rtol=0)  # depends only on j − i
    else:
        assert scheme == "fire"


def test_learned_absolute_is_not_shift_invariant():
    """Control for the test above: absolute positions do see a left shift."""
    torch.manual_seed(0)
    model = RelPosBertModel(tiny_config("none", absolute_position="learned", initializer_range=0.2)).eval()
    tokens = torch.randint(1, 100, (1, 10))
    with torch.no_grad():
        plain = model(tokens).last_hidden_state[0]
        left = model(
            torch.cat([torch.zeros(1, 5, dtype=torch.long), tokens], 1),
            attention_mask=torch.cat([torch.zeros(1, 5), torch.ones(1, 10)], 1).long(),
        ).last_hidden_state[0, 5:]
    assert float((left - plain).abs().max()) > 1e-2


# ----------------------------------------------------------------------------------------------
# 10. bad config values
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(relative_position="relative_key"), r"relative_position='relative_key'.*t5"),
        (dict(absolute_position="rotary"), r"absolute_position='rotary'.*learned"),
        (dict(num_attention_heads=5, hidden_size=64), r"num_attention_heads=5 does not divide hidden_size=64"),
        (dict(relative_attention_num_buckets=-4), r"relative_attention_num_buckets=-4"),
        (dict(relative_attention_num_buckets=7), r"relative_attention_num_buckets=7"),
        (dict(hidden_size=0), r"hidden_size=0"),
        (dict(num_hidden_layers=-1), r"num_hidden_layers=-1"),
        (dict(hidden_dropout_prob=1.5), r"hidden_dropout_prob=1.5"),
        (dict(relative_value=True, relative_position="t5"), r"relative_value=True"),
        (dict(relative_position="rotary", hidden_size=36, num_attention_heads=4), r"even head size"),
        (dict(pad_token_id=500), r"pad_token_id=500"),
    ],
)
def test_bad_config_values(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        RelPosBertConfig(**{**TINY, **overrides})


def test_config_round_trip(tmp_path):
    config = tiny_config("deberta", relative_position_per_layer=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RelPosBertConfig)
    for field in ("relative_position", "relative_position_per_layer", "position_buckets", "absolute_position"):
        assert getattr(loaded, field) == getattr(config, field)
    assert RelPosBertConfig().relative_position == "t5" and RelPosBertConfig().absolute_position == "none"
    assert math.isclose(RelPosBertConfig().rope_theta, 10000.0)


@pytest.mark.parametrize("scheme", ["t5", "alibi", "kerple", "shaw_kq"])
def test_flex_trains_on_cpu_with_sdpa_gradients(scheme):
    """attn_implementation="flex_attention" trains on CPU (torch has no flex backward there: the same
    score_mod runs over dense scores) and gives every parameter, the scheme's tables included, the sdpa
    gradients."""
    input_ids, attention_mask = sample_inputs(batch=2, length=12)
    labels = input_ids.clone()
    labels[:, ::3] = -100
    grads = {}
    for impl in ("sdpa", "flex_attention"):
        torch.manual_seed(0)
        model = RelPosBertForMaskedLM(tiny_config(scheme))
        model.set_attn_implementation(impl)
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["sdpa"].keys() == grads["flex_attention"].keys()
    assert any("relative" in n for n in grads["sdpa"]) or scheme == "alibi"
    for name, want in grads["sdpa"].items():
        torch.testing.assert_close(
            grads["flex_attention"][name], want, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}"
        )
