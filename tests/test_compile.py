"""One graph: torch.compile(fullgraph=True) without graph breaks, and dynamic=True without recompiling for
new lengths. Every scheme × backend goes through torch._dynamo.explain / backend="eager" (no inductor);
inductor itself compiles one scheme per family (CPU inductor costs ~10–30 s per compile)."""

import pytest
import torch
from torch._dynamo.utils import counters

from hf_relpos import (
    RelPosBertConfig,
    RelPosBertForMaskedLM,
    RelPosBertForMultipleChoice,
    RelPosBertForQuestionAnswering,
    RelPosBertForSequenceClassification,
    RelPosBertForTokenClassification,
    RelPosBertModel,
    RelPosT5Config,
    RelPosT5ForConditionalGeneration,
)
from hf_relpos.attention_engine import build_attention_mask
from hf_relpos.relative_positions import SCHEMES

pytestmark = pytest.mark.usefixtures("one_thread")
ALL = sorted(SCHEMES)
BERT_HEADS = [
    RelPosBertForSequenceClassification,
    RelPosBertForQuestionAnswering,
    RelPosBertForTokenClassification,
    RelPosBertForMaskedLM,
    RelPosBertModel,
    RelPosBertForMultipleChoice,
]


def _bert(name, impl="sdpa", head=RelPosBertForSequenceClassification, **extra):
    config = RelPosBertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        relative_position=name,
        absolute_position="learned" if name == "none" else "none",
        **extra,
    )
    config._attn_implementation = impl
    torch.manual_seed(0)
    return head(config).eval()


def _t5(name, impl="sdpa"):
    config = RelPosT5Config(
        vocab_size=99,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_position=name,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    config._attn_implementation = impl
    torch.manual_seed(0)
    return RelPosT5ForConditionalGeneration(config).eval()


def _batch(batch=2, length=9, choices=None):
    shape = (batch, choices, length) if choices else (batch, length)
    ids = torch.randint(3, 99, shape, generator=torch.Generator().manual_seed(length))
    mask = torch.ones_like(ids)
    mask[0, ..., -3:] = 0
    return ids, mask


def _breaks(fn):
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)()
    return explained.graph_break_count, [str(r.reason).splitlines()[0] for r in explained.break_reasons]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("name", ALL)
def test_bert_no_graph_breaks(name, impl):
    ids, mask = _batch()
    model = _bert(name, impl)
    assert _breaks(lambda: model(input_ids=ids, attention_mask=mask)) == (0, [])


@pytest.mark.parametrize("head", BERT_HEADS, ids=lambda h: h.__name__)
def test_bert_heads_no_graph_breaks(head):
    choices = 2 if head is RelPosBertForMultipleChoice else None
    ids, mask = _batch(choices=choices)
    model = _bert("shaw_kq", head=head, **({"num_labels": 2} if head is RelPosBertForQuestionAnswering else {}))
    assert _breaks(lambda: model(input_ids=ids, attention_mask=mask)) == (0, [])


@pytest.mark.parametrize("name", sorted({cls.cost: n for n, cls in sorted(SCHEMES.items())}.values()))
def test_flex_no_graph_breaks_for_inference(name):
    """Flex inside a compiled graph (CPU: inference only, torch has no flex backward on CPU)."""
    ids, mask = _batch()
    model = _bert(name, "flex_attention")
    with torch.no_grad():
        assert _breaks(lambda: model(input_ids=ids, attention_mask=mask)) == (0, [])


def test_shaw_value_side_and_position_ids_no_graph_breaks():
    """Shaw's value side runs the eager backend (sdpa/flex never expose the probabilities): still one graph."""
    model = _bert("shaw", "sdpa", relative_position_parameters={"max_distance": 4, "value": True})
    ids, mask = _batch()
    assert _breaks(lambda: model(input_ids=ids, attention_mask=mask)) == (0, [])
    model = _bert("none", "sdpa")
    positions = torch.arange(9)[None].expand(2, 9)
    assert _breaks(lambda: model(input_ids=ids, attention_mask=mask, position_ids=positions)) == (0, [])


REPRESENTATIVE = sorted({cls.cost: n for n, cls in sorted(SCHEMES.items())}.values())  # one per cost class


@pytest.mark.parametrize("name,impl", [(n, "sdpa") for n in ALL] + [(n, "eager") for n in REPRESENTATIVE])
def test_t5_no_graph_breaks(name, impl):
    """Forward with the decoder's cache (use_cache defaults to True)."""
    ids, mask = _batch()
    model = _t5(name, impl)
    dec = torch.randint(3, 99, (2, 5), generator=torch.Generator().manual_seed(5))
    assert _breaks(lambda: model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)) == (0, [])


@pytest.mark.parametrize("name", ALL)
def test_bert_dynamic_no_recompile(name):
    """dynamic=True: one graph for every length and batch ≥ 2 (batch/length 1 are specialised by dynamo)."""
    model = _bert(name)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="eager")
    for batch, length in [(2, 9), (3, 13), (2, 17)]:
        ids, mask = _batch(batch, length)
        with torch.no_grad():
            compiled(input_ids=ids, attention_mask=mask)
    assert counters["stats"]["unique_graphs"] == 1


def test_bert_inductor_matches_eager_across_lengths():
    model = _bert("t5")
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for batch, length in [(2, 9), (3, 13)]:
        ids, mask = _batch(batch, length)
        with torch.no_grad():
            got, ref = (
                compiled(input_ids=ids, attention_mask=mask).logits,
                model(input_ids=ids, attention_mask=mask).logits,
            )
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1


def test_t5_generate_compiled_with_cache():
    """generate with the DynamicCache through a fullgraph, dynamic forward: the same tokens as eager; the prefill,
    the first step and the later steps are 3 graphs, and new batch sizes and lengths add none."""
    model = _t5("t5")
    ids, mask = _batch(2, 9)
    ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    torch._dynamo.reset()
    counters.clear()
    model.forward = torch.compile(model.forward, fullgraph=True, dynamic=True, backend="eager")  # graphs, not kernels
    got = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(got, ref)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs <= 3
    ids, mask = _batch(3, 13)
    model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=7, do_sample=False)
    assert counters["stats"]["unique_graphs"] == graphs


def test_compiled_training_step():
    """fwd + bwd traced as one graph with autograd (aot_eager: AOTAutograd without inductor's kernels, so the
    gradients are eager's exactly; inductor itself is covered by the forward test above)."""
    model = _bert("shaw_kq")
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_prob"):  # attention dropout
            module.dropout_prob = 0.0
    ids, mask = _batch(2, 9)
    labels = torch.tensor([0, 1])
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    for name, grad in ref.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)


def test_cross_attention_mask_with_longer_queries():
    """A bidirectional mask whose queries outnumber its keys (a decoder longer than the encoder) masks padding
    only, never whole query rows."""
    padding = torch.tensor([[1, 1, 1, 1, 0]])
    mask = build_attention_mask(padding, 8, 5, causal=False)
    allowed = mask[0, 0] == 0
    assert allowed.sum(-1).tolist() == [4] * 8
