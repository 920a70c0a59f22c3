"""segment_match_embedding (DrQA's exact-match feature, Chen et al. 2017): the (B, L) bit against a naive loop,
its effect on the model, defaults unchanged, save/load, and the errors it gives."""

import pytest
import torch

from hf_relpos import RelPosBertConfig, RelPosBertForQuestionAnswering, RelPosBertModel
from hf_relpos.modeling_relpos_bert import segment_match

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(ids, types, mask):
    out = torch.zeros_like(ids)
    for b in range(ids.shape[0]):
        for i in range(ids.shape[1]):
            out[b, i] = int(
                any(ids[b, i] == ids[b, j] and types[b, i] != types[b, j] and mask[b, j] for j in range(ids.shape[1]))
            )
    return out


def _pair_batch(seed=0, batch=3, length=21, vocab=9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    types = torch.zeros_like(ids)
    types[:, 7:] = 1
    mask = torch.ones_like(ids)
    mask[0, -5:] = 0
    mask[2, -1:] = 0
    return ids, types, mask


def test_segment_match_equals_naive_loop():
    for seed in range(4):
        ids, types, mask = _pair_batch(seed)
        assert torch.equal(segment_match(ids, types, mask), _naive(ids, types, mask))
    # a padded token matches nothing it should not: its id occurring only under padding gives no match
    ids = torch.tensor([[5, 6, 7, 8]])
    types = torch.tensor([[0, 0, 1, 1]])
    assert segment_match(ids, types, torch.tensor([[1, 1, 1, 0]])).tolist() == [[0, 0, 0, 0]]
    assert segment_match(ids.new_tensor([[5, 6, 6, 8]]), types, None).tolist() == [[0, 1, 1, 0]]


def _config(**extra):
    return RelPosBertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        relative_position="t5",
        **extra,
    )


def test_off_by_default_and_same_weights():
    torch.manual_seed(0)
    plain = RelPosBertModel(_config())
    assert plain.config.segment_match_embedding is False
    assert not any("segment_match" in k for k in plain.state_dict())
    torch.manual_seed(0)
    matched = RelPosBertModel(_config(segment_match_embedding=True))
    extra = set(matched.state_dict()) - set(plain.state_dict())
    assert extra == {"embeddings.segment_match_embeddings.weight"}


def test_model_output_follows_the_match_bit():
    torch.manual_seed(0)
    model = RelPosBertModel(_config(segment_match_embedding=True)).eval()
    ids, types, mask = _pair_batch(1, vocab=40)
    with torch.no_grad():
        before = model(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        model.embeddings.segment_match_embeddings.weight[1] += 1.0  # only matched tokens see this row
        after = model(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        # embeddings alone: only the tokens whose bit is 1 change
        model.embeddings.segment_match_embeddings.weight[1] -= 1.0
        emb0 = model.embeddings(ids, types, attention_mask=mask)
        model.embeddings.segment_match_embeddings.weight[1] += 1.0
        emb1 = model.embeddings(ids, types, attention_mask=mask)
    bit = segment_match(ids, types, mask).bool()
    assert bit.any() and (~bit).any()
    changed = (emb1 - emb0).abs().amax(-1) > 1e-6
    assert torch.equal(changed, bit)
    assert not torch.allclose(before, after)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = RelPosBertForQuestionAnswering(_config(segment_match_embedding=True)).eval()
    model.save_pretrained(tmp_path)
    loaded = RelPosBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert loaded.config.segment_match_embedding is True
    ids, types, mask = _pair_batch(2, vocab=40)
    with torch.no_grad():
        a = model(ids, attention_mask=mask, token_type_ids=types)
        b = loaded(ids, attention_mask=mask, token_type_ids=types)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match=r"segment_match_embedding='yes' is not valid; choose one of: True, False"):
        _config(segment_match_embedding="yes")
    model = RelPosBertModel(_config(segment_match_embedding=True))
    with pytest.raises(ValueError, match="segment_match_embedding=True needs input_ids"):
        model(inputs_embeds=torch.zeros(1, 4, 32))
