"""Every scheme runs in fp16, bf16 and fp64 on every backend in both model families (issue 14 #2: FIRE
crashed outside fp32), with outputs in the model's dtype that match the fp32 model within a
dtype-appropriate tolerance. Tiny models (hidden 32, 2 layers), CPU: torch 2.13 has CPU kernels for
every op used here in fp16 and bf16 (matmul, softmax, sdpa, unfused flex, log/softplus), so no
combination is skipped."""

import copy

import pytest
import torch

from hf_relpos import (
    SCHEMES,
    RelPosBertConfig,
    RelPosBertModel,
    RelPosT5Config,
    RelPosT5ForConditionalGeneration,
)
from hf_relpos.relative_positions import RelativePositionScheme

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(
    max_relative_position=3,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=12,
    position_buckets=6,
    max_relative_positions=20,
    fire_init_threshold=5.0,
    rope_theta=100.0,
)
BACKENDS = ("eager", "sdpa", "flex_attention")
# max |out − out_fp32| / max |out_fp32|: rounding of the dtype through 2 layers (measured max: fp16 1.6e-3,
# bf16 1.1e-2, fp64 3.3e-7 — fp64 is off fp32 by the fp32 reference’s own rounding)
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 6e-2, torch.float64: 1e-5}


def bert(name):
    config = RelPosBertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        relative_position=name,
        **SMALL,
    )
    return RelPosBertModel(config).eval(), lambda model, ids, mask: model(ids, attention_mask=mask).last_hidden_state


def t5(name):
    config = RelPosT5Config(
        vocab_size=50,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        relative_position=name,
        **SMALL,
    )
    model = RelPosT5ForConditionalGeneration(config).eval()
    return (
        model,
        lambda model, ids, mask: model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :6]).logits,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SCHEMES))
@pytest.mark.parametrize("family", [bert, t5], ids=["bert", "t5"])
def test_every_scheme_runs_in_half_bfloat_and_double(family, name, backend):
    torch.manual_seed(0)
    model, forward = family(name)
    model.set_attn_implementation(backend)
    ids = torch.randint(2, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        reference = forward(model, ids, mask)
    for dtype, tolerance in TOLERANCE.items():
        cast = copy.deepcopy(model).to(dtype)
        # the schemes the layers use are the cast model's own modules (not the fp32 originals)
        used = {id(s) for stack in cast.modules() for s in getattr(stack, "_schemes", ())}
        assert used <= {id(m) for m in cast.modules() if isinstance(m, RelativePositionScheme)}
        with torch.no_grad():
            out = forward(cast, ids, mask)
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        error = ((out.double() - reference.double()).abs().max() / reference.abs().max()).item()
        assert error <= tolerance, (dtype, error)
