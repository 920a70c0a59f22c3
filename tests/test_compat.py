"""hf_relpos.compat: every private torch / transformers interface behind a feature check, with a public
fallback. Each fallback, forced, gives the fast path's results (outputs and gradients; the run totals a
checkpoint stores) and warns exactly once per process."""

import json
import sys
import warnings

import pytest
import torch
from helpers import PROJECT_ROOT
from torch.utils._python_dispatch import TorchDispatchMode

from hf_relpos import compat

engine = sys.modules["hf_relpos.attention_engine"]
pytestmark = pytest.mark.usefixtures("one_thread")
FORCE = "HF_RELPOS_FORCE_COMPAT_FALLBACK"
FORWARD_OP = "_scaled_dot_product_flash_attention_for_cpu"
BACKWARD_OP = "_scaled_dot_product_flash_attention_for_cpu_backward"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.delenv(FORCE, raising=False)
    compat.reset_warnings()
    yield
    compat.reset_warnings()


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _fallback_warnings(caught, feature_words):
    return [w for w in caught if issubclass(w.category, RuntimeWarning) and feature_words in str(w.message)]


def _inputs(dtype=torch.float32, B=2, H=3, Lq=7, Lk=11, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, d, generator=g, dtype=dtype) for L in (Lq, Lk, Lk))
    table = torch.randn(H, Lq + Lk - 1, generator=g, dtype=dtype)
    mask = torch.zeros(B, 1, Lq, Lk, dtype=dtype)
    mask[1, ..., :3] = torch.finfo(dtype).min  # padding
    bias = table.unfold(-1, Lk, 1)[None].flip(2) + mask  # a (B, H, Lq, Lk) bias, as the engine passes
    return q, k, v, table, mask, bias


def test_checks_find_the_private_ops_and_trainer_hook_on_this_install(monkeypatch):
    assert compat.has_flash_forward() and compat.has_flash_backward()
    assert compat.trainer_has_save_checkpoint()
    assert not compat._op_ok("no_such_op_here", ("query",), 2)
    assert not compat._op_ok(FORWARD_OP, ("query", "key", "value", "attn_mask", "scale"), 3)  # wrong arity
    assert not compat.trainer_has_save_checkpoint(object)  # a Trainer without the method
    for value, forced in (
        ("1", {"flash_forward", "flash_backward", "trainer"}),
        ("flash_backward", {"flash_backward"}),
        ("trainer,flash_forward", {"trainer", "flash_forward"}),
        ("0", set()),
    ):
        monkeypatch.setenv(FORCE, value)
        assert {f for f in compat.FEATURES if compat.forced(f)} == forced
    monkeypatch.delenv(FORCE)
    monkeypatch.setattr(compat, "FORCE_FALLBACK", {"flash_forward"})
    assert not compat.has_flash_forward() and compat.has_flash_backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_fallback_equals_the_kernel_and_warns_once(monkeypatch, dtype):
    q, k, v, _, _, bias = _inputs(dtype)
    out, lse = compat.flash_attention_forward(q, k, v, attn_mask=bias, scale=0.3)
    monkeypatch.setenv(FORCE, "flash_forward")
    with warnings.catch_warnings(record=True) as caught, _OpLog() as log:
        warnings.simplefilter("always")
        got = [compat.flash_attention_forward(q, k, v, attn_mask=bias, scale=0.3) for _ in range(2)]
    assert FORWARD_OP not in log.ops
    assert len(_fallback_warnings(caught, f"aten.{FORWARD_OP} with")) == 1
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for o, l in got:
        assert (o - out).abs().max().item() <= tol and (l - lse).abs().max().item() <= tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_fallback_equals_the_kernel_and_warns_once(monkeypatch, dtype):
    q, k, v, _, _, bias = _inputs(dtype)
    out, lse = compat.flash_attention_forward(q, k, v, attn_mask=bias, scale=0.3)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    want = compat.flash_attention_backward(grad, q, k, v, out, lse, attn_mask=bias, scale=0.3)
    monkeypatch.setenv(FORCE, "flash_backward")
    with warnings.catch_warnings(record=True) as caught, _OpLog() as log:
        warnings.simplefilter("always")
        got = [compat.flash_attention_backward(grad, q, k, v, out, lse, attn_mask=bias, scale=0.3) for _ in range(2)]
    assert BACKWARD_OP not in log.ops
    assert len(_fallback_warnings(caught, f"aten.{BACKWARD_OP} with")) == 1
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    for grads in got:
        for a, b in zip(grads, want):
            assert (a - b).abs().max().item() <= tol


@pytest.mark.parametrize("forced", ["flash_forward", "flash_backward", "flash_forward,flash_backward"])
@pytest.mark.parametrize("learned", [False, True])
def test_fused_distance_bias_attention_under_fallbacks(monkeypatch, forced, learned):
    """The engine's fused path through compat: forced fallbacks give the kernels' output and gradients (q, k,
    v and a learned table), the private ops never run, one warning per forced feature."""
    q, k, v, table, mask, _ = _inputs(seed=2)
    monkeypatch.setenv("HF_RELPOS_FUSED_BACKWARD", "kernel")  # the fast path: both kernels

    def run():
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)] + [table.clone().requires_grad_(learned)]
        out = engine.FusedDistanceBiasAttention.apply(*leaves, mask, 0.3, 3)
        grads = torch.autograd.grad(
            (out * torch.linspace(-1, 1, out.shape[-1])).sum(), [t for t in leaves if t.requires_grad]
        )
        return [out, *grads]

    want = run()
    monkeypatch.setenv(FORCE, forced)
    with warnings.catch_warnings(record=True) as caught, _OpLog() as log:
        warnings.simplefilter("always")
        got = [run() for _ in range(2)]
    for name, op in (("flash_forward", FORWARD_OP), ("flash_backward", BACKWARD_OP)):
        if name in forced:
            assert op not in log.ops
            # the backward's fallback warns only where the kernel backward would have run (a frozen table)
            assert len(_fallback_warnings(caught, f"aten.{op} with")) == (
                0 if name == "flash_backward" and learned else 1
            )
    for result in got:
        for a, b in zip(result, want):
            assert (a - b).abs().max().item() <= 1e-5


def test_fused_content_attention_under_the_forward_fallback(monkeypatch):
    q, k, v, _, mask, _ = _inputs(seed=3)
    weight = torch.randn(q.shape[-1], q.shape[-1], generator=torch.Generator().manual_seed(4), requires_grad=True)

    def content(qb, kb, start, memo):  # a content term reading a parameter, as the content schemes do
        return torch.matmul(qb @ weight, kb.transpose(-1, -2))

    def run():
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = engine.FusedContentAttention.apply(content, *leaves, mask, 0.3, 4, weight)
        return [out, *torch.autograd.grad((out**2).sum(), [*leaves, weight])]

    want = run()
    monkeypatch.setenv(FORCE, "flash_forward")
    with warnings.catch_warnings(record=True) as caught, _OpLog() as log:
        warnings.simplefilter("always")
        got = [run() for _ in range(2)]
    assert FORWARD_OP not in log.ops and len(_fallback_warnings(caught, f"aten.{FORWARD_OP} with")) == 1
    for result in got:
        for a, b in zip(result, want):
            assert (a - b).abs().max().item() <= 1e-5


class _FakeState:
    def __init__(self, log_history, global_step):
        self.log_history, self.global_step = log_history, global_step


class _FakeTrainer:
    def __init__(self, losses, start, logging_steps):
        """Per-step losses of steps start+1 … as Trainer accumulates and logs them."""
        self.state = _FakeState([{"step": s, "loss": 9.0} for s in range(1, start + 1)], start + len(losses))
        self._total_loss_scalar, pending, last = 0.0, 0.0, start
        for step, loss in enumerate(losses, start + 1):
            pending += loss
            if step % logging_steps == 0:
                self.state.log_history.append({"step": step, "loss": pending / (step - last), "learning_rate": 1e-3})
                self._total_loss_scalar, pending, last = self._total_loss_scalar + pending, 0.0, step
        self._tr_loss = torch.tensor(pending)


@pytest.mark.parametrize("logging_steps,exact", [(1, True), (2, True), (3, False)])
def test_session_loss_fallback_from_the_logged_losses(monkeypatch, logging_steps, exact):
    losses = [0.9, 0.7, 0.8, 0.5, 0.6, 0.4]
    trainer = _FakeTrainer(losses, start=4, logging_steps=logging_steps)
    assert compat.session_loss_sum(trainer, 4) == pytest.approx(sum(losses), rel=1e-6)
    monkeypatch.setenv(FORCE, "trainer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [compat.session_loss_sum(trainer, 4) for _ in range(2)]
    assert len(_fallback_warnings(caught, "_tr_loss")) == 1
    if exact:  # the checkpoint falls on a logging step: the same sum
        assert got[0] == pytest.approx(sum(losses), rel=1e-6)
    else:  # steps 4 + 1 … 4 + 5 logged (at 6 and 9), step 10 counted at their mean
        assert got[0] == pytest.approx(sum(losses[:5]) * 6 / 5, rel=1e-6)
    del trainer._tr_loss, trainer._total_loss_scalar  # a Trainer without those attributes: the same fallback
    compat.reset_warnings()
    monkeypatch.delenv(FORCE)
    with pytest.warns(RuntimeWarning, match="_tr_loss"):
        assert compat.session_loss_sum(trainer, 4) == got[0]


def test_checkpoint_totals_through_the_public_callback_equal_the_fast_path(tmp_path, monkeypatch):
    """A Trainer without _save_checkpoint / _tr_loss (forced): the checkpoints' run totals reach
    trainer_state.json through the ExportableState callback, equal to the fast path's (logging every step)."""
    from hf_relpos.training import train
    from hf_relpos.training.trainer import TOTALS_KEY

    args = [
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--eval_strategy",
        "no",
        "--synthetic_train_size",
        "32",
        "--synthetic_eval_size",
        "8",
        "--disable_tqdm",
        "true",
        "--max_seq_length",
        "32",
    ]
    recipe = str(PROJECT_ROOT / "recipes" / "classification_demo.yaml")

    def totals(out):
        train(recipe, [*args, "--output_dir", str(out)])
        found = {}
        for step in (2, 4):
            state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
            found[step] = state["stateful_callbacks"][TOTALS_KEY]["attributes"]
            # the run's own per-step losses (logged every step) sum to the stored total
            logged = sum(e["loss"] for e in state["log_history"] if "loss" in e and e["step"] <= step)
            assert found[step]["loss_sum"] == pytest.approx(logged, rel=1e-6)
        return found

    fast = totals(tmp_path / "fast")
    monkeypatch.setenv(FORCE, "trainer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slow = totals(tmp_path / "slow")
    assert len(_fallback_warnings(caught, "hf_relpos: transformers' Trainer")) == 1
    for step in (2, 4):
        assert fast[step]["step"] == slow[step]["step"] == step
        # (two runs: losses agree to ~1e-5, not bitwise)
        assert slow[step]["loss_sum"] == pytest.approx(fast[step]["loss_sum"], rel=1e-4)
        assert fast[step]["loss_sum"] > 0
