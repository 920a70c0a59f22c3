"""Unpadded batches (issue 29): a right-padded batch runs on its real tokens only, and one row of texts packed by
transformers' DataCollatorWithFlattening attends within each text; both give each text's own outputs."""

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithFlattening

from hf_relpos import RelPosBertConfig, RelPosBertForSequenceClassification, RelPosBertModel
from hf_relpos.relative_positions import SCHEMES

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = [5, 31, 17, 40]


def tiny(name, **extra):
    params = {"directional": True} if "directional" in SCHEMES[name].defaults else None
    return RelPosBertConfig(
        vocab_size=80,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        relative_position=name,
        relative_position_parameters=params,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **extra,
    )


def batch(lengths=LENGTHS, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.randint(5, 80, (len(lengths), L), generator=g)
    mask = (torch.arange(L) < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def padded_and_unpadded(model, ids, mask):
    unpadded = model(input_ids=ids, attention_mask=mask).last_hidden_state
    model._unpadding = lambda *a: None  # the padded computation
    try:
        padded = model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        del model._unpadding
    return padded, unpadded


UNPADDED = [n for n, cls in SCHEMES.items() if not cls.length_dependent]


@pytest.mark.parametrize("name", UNPADDED)
@pytest.mark.parametrize("absolute", ["none", "learned"])
def test_unpadded_equals_padded_per_text(name, absolute):
    torch.manual_seed(0)
    model = RelPosBertModel(tiny(name, absolute_position=absolute)).eval()
    ids, mask = batch()
    padded, unpadded = padded_and_unpadded(model, ids, mask)
    for i, n in enumerate(LENGTHS):
        single = model(input_ids=ids[i : i + 1, :n]).last_hidden_state[0]
        assert torch.allclose(unpadded[i, :n], padded[i, :n], atol=1e-5)
        assert torch.allclose(unpadded[i, :n], single, atol=1e-5)
    assert (unpadded[0, LENGTHS[0] :] == 0).all()  # padding positions are zeros, never read


def test_unpadded_path_is_taken_and_skipped_where_it_must(monkeypatch):
    torch.manual_seed(0)
    model = RelPosBertModel(tiny("t5")).eval()
    ids, mask = batch()
    seen = []
    real = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda h, m, **k: seen.append(h.shape) or real(h, m, **k))
    model(input_ids=ids, attention_mask=mask)
    assert seen[-1] == (1, sum(LENGTHS), 32)  # the real tokens only, one row
    model(input_ids=ids, attention_mask=mask, output_hidden_states=True)  # per-layer outputs keep the batch shape
    assert seen[-1] == (4, 40, 32)
    holes = mask.clone()
    holes[3, 10] = 0  # not right-padded: the distances would change, so no unpadding
    model(input_ids=ids, attention_mask=holes)
    assert seen[-1] == (4, 40, 32)
    model(input_ids=ids, attention_mask=torch.ones_like(mask))  # nothing to skip
    assert seen[-1] == (4, 40, 32)


def test_unpadded_training_gradients_equal_padded():
    """A classification step on the unpadded batch gives the padded batch's loss and gradients."""
    ids, mask = batch()
    labels = torch.tensor([0, 1, 1, 0])
    results = []
    for padded in (True, False):
        torch.manual_seed(0)
        model = RelPosBertForSequenceClassification(tiny("deberta", num_labels=2)).train()
        if padded:
            model.bert._unpadding = lambda *a: None
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (loss_p, grads_p), (loss_u, grads_u) = results
    assert torch.allclose(loss_p, loss_u, atol=1e-6)
    for n, g in grads_p.items():
        assert torch.allclose(g, grads_u[n], atol=1e-5), n


@pytest.mark.parametrize("absolute", ["none", "learned"])
def test_flattened_batch_attends_within_each_text(absolute):
    """DataCollatorWithFlattening's one row (position_ids restarting per text): each text's outputs are its own,
    for a relative scheme (no position reset needed) and with absolute embeddings (they read the restarted ids)."""
    torch.manual_seed(0)
    model = RelPosBertModel(tiny("rotary", absolute_position=absolute)).eval()
    ids, _ = batch()
    features = [{"input_ids": ids[i, :n].tolist()} for i, n in enumerate(LENGTHS)]
    packed = DataCollatorWithFlattening(return_tensors="pt")(features)
    out = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).last_hidden_state[0]
    start = 0
    for i, n in enumerate(LENGTHS):
        single = model(input_ids=ids[i : i + 1, :n]).last_hidden_state[0]
        assert torch.allclose(out[start : start + n], single, atol=1e-5)
        start += n


def test_rows_of_packed_documents_attend_within_each_document():
    """Two rows, each holding whole and cut documents with position_ids restarting (the mlm recipes'
    document_attention): each document's outputs are those of the document alone."""
    from hf_relpos.training.pretraining import pack

    torch.manual_seed(0)
    model = RelPosBertModel(tiny("t5", absolute_position="learned")).eval()
    docs = [[int(t) for t in torch.randint(5, 80, (n,))] for n in (7, 12, 5, 9, 6)]
    blocks = pack({"input_ids": docs}, 16, document_positions=True)
    assert blocks["position_ids"] == [
        list(range(7)) + list(range(9)),
        [0, 1, 2] + list(range(5)) + list(range(8)),
    ]  # the 12-token document is cut by the block boundary and restarts
    ids, positions = torch.tensor(blocks["input_ids"]), torch.tensor(blocks["position_ids"])
    out = model(input_ids=ids, position_ids=positions, attention_mask=torch.ones_like(ids)).last_hidden_state
    flat_ids, flat_out = ids.reshape(-1), out.reshape(-1, out.shape[-1])
    starts = [i for i, p in enumerate(positions.reshape(-1).tolist()) if p == 0] + [ids.numel()]
    for a, b in zip(starts[:-1], starts[1:]):
        alone = model(input_ids=flat_ids[a:b][None]).last_hidden_state[0]
        assert torch.allclose(flat_out[a:b], alone, atol=1e-5)


def test_mlm_recipe_with_document_attention(tmp_path):
    from hf_relpos.training import train

    result = train(
        {"task": "mlm"},
        [
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "4",
            "--synthetic_train_size",
            "40",
            "--synthetic_eval_size",
            "8",
            "--max_seq_length",
            "32",
            "--document_attention",
            "true",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--output_dir",
            str(tmp_path / "run"),
        ],
    )
    assert np.isfinite(result["eval"]["eval_loss"])
    with pytest.raises(ValueError, match="document_attention=True applies to task 'mlm'"):
        train({"task": "classification"}, ["--document_attention", "true", "--output_dir", str(tmp_path / "bad")])


def test_length_dependent_scheme_keeps_the_padded_computation():
    """FIRE normalises by the input length: with a threshold under it, a padded text's outputs depend on the
    padding, so the batch keeps the padded computation (the outputs saved checkpoints gave)."""
    torch.manual_seed(0)
    config = tiny("fire")
    config.relative_position_parameters = {**config.relative_position_parameters, "init_threshold": 8.0}
    model = RelPosBertModel(config).eval()
    ids, mask = batch()
    padded, unpadded = padded_and_unpadded(model, ids, mask)
    assert torch.equal(padded, unpadded)
    single = model(input_ids=ids[0:1, : LENGTHS[0]]).last_hidden_state[0]
    assert not torch.allclose(single, padded[0, : LENGTHS[0]], atol=1e-4)  # padding matters to FIRE
