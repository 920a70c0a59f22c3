"""The fused distance-bias path (attention_engine.FusedDistanceBiasAttention): fused sdpa forward, a
backward that recomputes probabilities block by block and sums dS along diagonals into the bias table.
Exact against eager (outputs; gradients of q, k, v, the table and the scheme's parameters) for every
distance-only scheme and variant, padded, causal, q_len < k_len, blocks that do not divide Lq."""

import math
import sys

import pytest
import torch
from test_engine import CASES, D, H, inputs, make_scheme, naive_attention, run
from torch.utils._python_dispatch import TorchDispatchMode

from hf_relpos.relative_positions import SCHEMES

engine = sys.modules["hf_relpos.attention_engine"]
DISTANCE = [c for c in CASES if SCHEMES[c[0]].distance_only]
LENGTHS = [(24, 24), (11, 24), (1, 9), (17, 17)]


@pytest.fixture
def fused(monkeypatch):
    """Every input takes the fused path, in blocks of 5 rows; the calls are counted."""
    calls = []
    real = engine.FusedDistanceBiasAttention.apply
    monkeypatch.setattr(engine, "FUSED_MIN_SCORES", 0)
    monkeypatch.setattr(engine, "fused_block", lambda q, k: 5)
    monkeypatch.setattr(engine.FusedDistanceBiasAttention, "apply", lambda *a: calls.append(1) or real(*a))
    return calls


def test_every_distance_only_scheme_is_covered():
    assert {name for name, _ in DISTANCE} == {n for n, c in SCHEMES.items() if c.distance_only}
    assert {"t5", "alibi", "kerple", "fire"} <= {name for name, _ in DISTANCE}


@pytest.mark.parametrize("name,value", DISTANCE)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Lq,Lk", LENGTHS)
def test_fused_equals_eager_with_gradients(name, value, causal, Lq, Lk, fused):
    cfg, scheme, projections = make_scheme(name, causal=causal, value=value, seed=3)
    q, k, v, padding = inputs(Lq, Lk)
    with torch.no_grad():
        want = naive_attention(name, cfg, scheme, projections, q, k, v, padding, causal, D**-0.5)
    grads = {}
    for impl in ("eager", "sdpa"):
        scheme.zero_grad(set_to_none=True)
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = run(scheme, projections, *leaves, padding, causal, impl, D**-0.5)
        assert (out.detach() - want).abs().max().item() <= 1e-5, impl
        (out**2 * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads[impl] = [t.grad for t in leaves] + [p.grad for p in scheme.parameters()]
    has_table = not (name == "fire" and causal)  # causal FIRE has no 1-D table: the plain path
    assert len(fused) == (1 if has_table else 0)
    for a, b in zip(grads["eager"], grads["sdpa"]):
        assert a is not None and b is not None
        assert (a - b).abs().max().item() <= 1e-4


@pytest.mark.parametrize("Lq,Lk,block", [(24, 24, 5), (11, 24, 4), (1, 9, 1), (17, 17, 17), (9, 30, 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_table_gradient_float64(Lq, Lk, block, masked):
    """The function itself in float64 against a plain autograd reference: output, dq, dk, dv and the
    (H, Lq + Lk − 1) table gradient, with an additive padding + causal mask."""
    g = torch.Generator().manual_seed(Lq * 100 + Lk)
    B = 2
    q, k, v = (torch.randn(B, H, L, D, generator=g, dtype=torch.float64, requires_grad=True) for L in (Lq, Lk, Lk))
    table = torch.randn(H, Lq + Lk - 1, generator=g, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        keep = torch.ones(B, 1, Lq, Lk, dtype=torch.bool)
        keep[1, ..., : Lk // 3] = False
        keep &= torch.arange(Lk)[None, :] <= torch.arange(Lk - Lq, Lk)[:, None]
        mask = torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, torch.finfo(torch.float64).min)
    i, j = torch.arange(Lq)[:, None], torch.arange(Lk)[None, :]
    scores = q @ k.transpose(-1, -2) * 0.3 + table[:, j - i + Lq - 1]
    want = torch.softmax(scores if mask is None else scores + mask, -1) @ v
    got = engine.FusedDistanceBiasAttention.apply(q, k, v, table, mask, 0.3, block)
    assert (got - want).abs().max().item() <= 1e-12
    grad = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(got, (q, k, v, table), grad), torch.autograd.grad(want, (q, k, v, table), grad)
    ):
        assert (a - b).abs().max().item() <= 1e-11


class _OpLog(TorchDispatchMode):
    """The aten ops a region dispatches (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _frozen_case(Lq, Lk, masked, dtype):
    g = torch.Generator().manual_seed(Lq * 7 + Lk)
    B = 2
    q, k, v = (torch.randn(B, H, L, D, generator=g, dtype=dtype, requires_grad=True) for L in (Lq, Lk, Lk))
    table = torch.randn(H, Lq + Lk - 1, generator=g, dtype=dtype)
    keep = torch.ones(B, 1, Lq, Lk, dtype=torch.bool)
    if "padding" in masked:
        keep[1, ..., : Lk // 3] = False
    if "causal" in masked:
        keep &= torch.arange(Lk)[None, :] <= torch.arange(Lk - Lq, Lk)[:, None]
    mask = None if masked == "none" else torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
    i, j = torch.arange(Lq)[:, None], torch.arange(Lk)[None, :]
    scores = q @ k.transpose(-1, -2) * 0.3 + table[:, j - i + Lq - 1]
    want = torch.softmax(scores if mask is None else scores + mask, -1) @ v
    grad = torch.randn(want.shape, generator=g, dtype=dtype)
    return (q, k, v, table, mask), want, grad, bool((~keep).all(-1).any())


def _frozen_run(inputs, want, grad, block):
    """Output and gradients of the fused function against plain autograd; the aten ops it dispatched."""
    q, k, v, table, mask = inputs
    with _OpLog() as log:
        got = engine.FusedDistanceBiasAttention.apply(q, k, v, table, mask, 0.3, block)
        grads = torch.autograd.grad(got, (q, k, v), grad)
    tol = 1e-5 if q.dtype == torch.float32 else 1e-11
    assert (got - want).abs().max().item() <= tol
    for a, b in zip(grads, torch.autograd.grad(want, (q, k, v), grad, retain_graph=True)):
        assert (a - b).abs().max().item() <= 10 * tol
    return log.ops


KERNEL_BACKWARD = "_scaled_dot_product_flash_attention_for_cpu_backward"


@pytest.mark.parametrize("mode", ["kernel", "recompute"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", ["none", "padding", "causal", "padding+causal"])
@pytest.mark.parametrize("Lq,Lk,block", [(24, 24, 5), (11, 24, 4), (1, 9, 1), (9, 30, 2)])
def test_frozen_table_backward_paths(Lq, Lk, block, masked, dtype, mode, monkeypatch):
    """A table without gradient (ALiBi, a frozen bias): the backward is torch's fused CPU flash backward
    per block or the recomputing one (HF_RELPOS_FUSED_BACKWARD fixes which), each equal to plain autograd;
    a query row with every key masked (padding under a causal mask, where that kernel's backward differs
    from eager's uniform row) always takes the recomputing path."""
    monkeypatch.setenv("HF_RELPOS_FUSED_BACKWARD", mode)
    inputs, want, grad, fully_masked = _frozen_case(Lq, Lk, masked, dtype)
    ops = _frozen_run(inputs, want, grad, block)
    assert (KERNEL_BACKWARD in ops) == (mode == "kernel" and not fully_masked)
    assert ("_softmax" in ops) == fully_masked  # the recomputing backward (eager's softmax for such rows)


@pytest.mark.parametrize("masked", ["none", "padding"])
def test_frozen_table_backward_chosen_by_measurement(masked, monkeypatch):
    """By default the first backward of a shape class times its first block both ways (the kernel's results
    dropped), keeps the faster in-process, and later backwards of that class take it without timing."""
    monkeypatch.setattr(engine, "_BACKWARD_CHOICE", {})
    timed = []
    monkeypatch.setattr(engine.time, "perf_counter", lambda: timed.append(1) or float(len(timed)))
    inputs, want, grad, _ = _frozen_case(24, 24, masked, torch.float32)
    ops = _frozen_run(inputs, want, grad, 5)
    assert KERNEL_BACKWARD in ops and len(timed) == 3  # measured: both paths ran on block 0
    ((shape_class, choice),) = engine._BACKWARD_CHOICE.items()
    assert shape_class == (torch.float32, torch.get_num_threads(), 2 * H, 5, 24, masked == "none")
    assert choice in ("kernel", "recompute")
    for choice in ("recompute", "kernel"):
        engine._BACKWARD_CHOICE[shape_class] = choice
        ops = _frozen_run(inputs, want, grad, 5)
        assert (KERNEL_BACKWARD in ops) == (choice == "kernel") and len(timed) == 3  # no new measurement
    monkeypatch.setenv("HF_RELPOS_FUSED_BACKWARD", "fastest")
    with pytest.raises(ValueError, match="HF_RELPOS_FUSED_BACKWARD='fastest'.*auto, kernel, recompute"):
        _frozen_run(inputs, want, grad, 5)


def test_subnormal_probabilities_are_flushed_and_the_state_restored():
    """ALiBi-like biases push many probabilities below finfo.tiny (issue 29: subnormal arithmetic made the
    backward 3× slower): the fused function runs with flush-to-zero on its thread and restores it after."""

    def ftz_on():
        return bool(torch.tensor(2.0**-140, dtype=torch.float32).mul(1.0) == 0)

    assert not ftz_on()
    with engine.flushed_denormals():
        assert ftz_on()
    assert not ftz_on()
    torch.set_flush_denormal(True)
    try:
        with engine.flushed_denormals():
            assert ftz_on()
        assert ftz_on()  # a caller's own setting survives
    finally:
        torch.set_flush_denormal(False)
    shifted = torch.tensor([0.0, -10.0, -79.0, -80.0, -100.0, -1e30, torch.finfo(torch.float32).min])
    assert engine._shifted_exp(shifted).tolist() == pytest.approx([1.0, math.exp(-10), math.exp(-79), 0, 0, 0, 0])


def test_plain_path_without_table_or_with_dropout_or_under_tracing(fused):
    """Routing reads shapes, dtype, device and dropout only: dropout, bf16 and non-bias schemes keep the plain path."""
    _, scheme, _ = make_scheme("t5")
    q, k, v, _ = inputs(8, 8)
    assert engine.use_fused_bias(q, k, scheme, 0.0)
    assert not engine.use_fused_bias(q, k, scheme, 0.1)
    assert not engine.use_fused_bias(q.bfloat16(), k.bfloat16(), scheme, 0.0)
    assert not engine.use_fused_bias(q, k, make_scheme("rotary")[1], 0.0)
    assert not engine.use_fused_bias(q, k, make_scheme("shaw")[1], 0.0)


def test_default_rule_is_by_size(monkeypatch):
    """Below FUSED_MIN_SCORES (the measured crossover) the plain sdpa path runs."""
    _, scheme, _ = make_scheme("t5")
    q, k, _, _ = inputs(8, 8)
    assert not engine.use_fused_bias(q, k, scheme, 0.0)
    monkeypatch.setattr(engine, "FUSED_MIN_SCORES", 2 * H * 64)
    assert engine.use_fused_bias(q, k, scheme, 0.0)
