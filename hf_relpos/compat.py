"""Every private torch / transformers interface the package relies on, each behind a feature check with a
public fallback (slower or degraded, never wrong) and one warning per process when the fallback runs.

A flat sibling of the modeling files: it travels with them as remote code, so it imports only torch,
transformers and the standard library.

- ``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu`` (:func:`flash_attention_forward`): the fused
  CPU flash kernel returning the output and its log-sum-exp. Fallback: the same two tensors from public ops
  (scores, softmax, logsumexp), O(rows · Lk) memory per call.
- ``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward`` (:func:`flash_attention_backward`,
  :func:`has_flash_backward`): that kernel's backward. Fallback: the recomputing backward
  (P = exp(S − logsumexp), dS = P ∘ (dO·vᵀ − rowsum(dO ∘ O))); callers with their own recomputing backward
  ask :func:`has_flash_backward` and take it.
- transformers ``Trainer._save_checkpoint(model, trial)`` and its ``_tr_loss`` / ``_total_loss_scalar``
  (:func:`trainer_has_save_checkpoint`, :func:`session_loss_sum`): the training loss of this session at a
  checkpoint. Fallbacks: the loss summed from ``state.log_history`` (public), the steps after the last log
  counted at the logged mean (exact when checkpoints fall on logging steps); and, without the method, the
  totals reach ``trainer_state.json`` through a public ``ExportableState`` callback
  (:func:`run_totals_callback_class`).

``HF_RELPOS_FORCE_COMPAT_FALLBACK`` (``1``/``all``, or a comma-separated list of ``flash_forward``,
``flash_backward``, ``trainer``) or the module-level set :data:`FORCE_FALLBACK` forces fallbacks (tests).
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings

import torch

FEATURES = ("flash_forward", "flash_backward", "trainer")
FORCE_FALLBACK: set = set()  # features forced onto their fallback in this process (tests), besides the env var
_warned: set = set()


def forced(feature: str) -> bool:
    """Whether ``feature``'s fallback is forced (``FORCE_FALLBACK`` or ``HF_RELPOS_FORCE_COMPAT_FALLBACK``)."""
    if feature in FORCE_FALLBACK or "all" in FORCE_FALLBACK:
        return True
    value = os.environ.get("HF_RELPOS_FORCE_COMPAT_FALLBACK", "").strip().lower()
    if not value or value in ("0", "false", "no"):
        return False
    names = {v.strip() for v in value.split(",")}
    return bool(names & {"1", "all", "true", "yes", feature})


def warn_fallback(feature: str, message: str) -> None:
    """One ``RuntimeWarning`` per feature and process."""
    if feature in _warned:
        return
    _warned.add(feature)
    warnings.warn(f"hf_relpos: {message}", RuntimeWarning, stacklevel=3)


def reset_warnings() -> None:
    """Forget which fallbacks have warned (tests)."""
    _warned.clear()


# ------------------------------------------------------------------------------------------------
# torch: the fused CPU flash kernel and its backward

_FORWARD_OP = "_scaled_dot_product_flash_attention_for_cpu"
_BACKWARD_OP = "_scaled_dot_product_flash_attention_for_cpu_backward"


@functools.lru_cache(maxsize=None)
def _op_ok(name: str, arguments: tuple, returns: int) -> bool:
    """Whether ``torch.ops.aten.<name>`` exists with these argument names and this many returned tensors."""
    try:
        schema = getattr(torch.ops.aten, name).default._schema
    except (AttributeError, RuntimeError):
        return False
    names = [a.name for a in schema.arguments]
    return [n for n in names if n in arguments] == list(arguments) and len(schema.returns) == returns


def has_flash_forward() -> bool:
    """The forward kernel: (query, key, value, dropout_p, is_causal, *, attn_mask, scale) → (out, logsumexp)."""
    return not forced("flash_forward") and _op_ok(
        _FORWARD_OP, ("query", "key", "value", "dropout_p", "is_causal", "attn_mask", "scale"), 2
    )


def has_flash_backward() -> bool:
    """The backward kernel: (grad_out, query, key, value, out, logsumexp, dropout_p, is_causal, *, attn_mask,
    scale) → (grad_query, grad_key, grad_value)."""
    return not forced("flash_backward") and _op_ok(
        _BACKWARD_OP,
        ("grad_out", "query", "key", "value", "out", "logsumexp", "dropout_p", "is_causal", "attn_mask", "scale"),
        3,
    )


def flash_attention_forward(query, key, value, attn_mask=None, scale=None):
    """(output (B, H, Lq, d), logsumexp (B, H, Lq)) of softmax(q·kᵀ·scale + attn_mask)·v; no dropout, not causal."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    if has_flash_forward():
        return getattr(torch.ops.aten, _FORWARD_OP)(query, key, value, attn_mask=attn_mask, scale=scale)
    warn_fallback(
        "flash_forward",
        f"torch {torch.__version__} has no aten.{_FORWARD_OP} with the expected schema; "
        "attention runs a slower math path (same results)",
    )
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scale)
    if attn_mask is not None:
        scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), value), torch.logsumexp(scores, dim=-1)


def flash_attention_backward(grad_out, query, key, value, out, logsumexp, attn_mask=None, scale=None):
    """(dq, dk, dv) of :func:`flash_attention_forward` given its output and log-sum-exp."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    if has_flash_backward():
        return getattr(torch.ops.aten, _BACKWARD_OP)(
            grad_out, query, key, value, out, logsumexp, 0.0, False, attn_mask=attn_mask, scale=scale
        )
    warn_flash_backward()
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scale)
    if attn_mask is not None:
        scores = scores + attn_mask
    probs = scores.sub_(logsumexp[..., None]).exp_()  # P = exp(S − logsumexp)
    dv = torch.matmul(probs.transpose(-1, -2), grad_out)
    delta = (grad_out * out).sum(-1, keepdim=True)
    ds = probs.mul_(torch.matmul(grad_out, value.transpose(-1, -2)).sub_(delta))
    return torch.matmul(ds, key).mul_(scale), torch.matmul(ds.transpose(-1, -2), query).mul_(scale), dv


def warn_flash_backward() -> None:
    """The one warning of the backward's fallback (also for callers running their own recomputing backward)."""
    warn_fallback(
        "flash_backward",
        f"torch {torch.__version__} has no aten.{_BACKWARD_OP} with the expected "
        "schema; attention's backward recomputes the probabilities (slower, same results)",
    )


# ------------------------------------------------------------------------------------------------
# transformers: Trainer's checkpoint hook and its loss accumulators


def trainer_has_save_checkpoint(trainer_cls=None) -> bool:
    """Whether transformers' Trainer has ``_save_checkpoint(self, model, trial)`` (where a subclass can add to
    the trainer state before it is written)."""
    if forced("trainer"):
        return False
    if trainer_cls is None:
        from transformers import Trainer as trainer_cls
    method = getattr(trainer_cls, "_save_checkpoint", None)
    if not callable(method):
        return False
    try:
        return list(inspect.signature(method).parameters)[:3] == ["self", "model", "trial"]
    except (TypeError, ValueError):
        return False


def session_loss_sum(trainer, start_step: int = 0) -> float:
    """Sum of the per-step training losses of this session (the steps after ``start_step``) so far.

    Fast path: Trainer's ``_total_loss_scalar`` (drained at each log) plus ``_tr_loss`` (since the last log).
    Fallback: the ``loss`` entries of ``trainer.state.log_history`` after ``start_step``, each its interval's
    mean, times the interval; steps after the last log are counted at the logged mean."""
    if not forced("trainer") and hasattr(trainer, "_total_loss_scalar") and hasattr(trainer, "_tr_loss"):
        tr_loss = trainer._tr_loss
        return float(trainer._total_loss_scalar) + (float(tr_loss.item()) if tr_loss is not None else 0.0)
    warn_fallback(
        "trainer",
        "transformers' Trainer has no _tr_loss/_total_loss_scalar here (or the fallback is "
        "forced); a checkpoint's loss total is summed from the logged losses (exact when it "
        "falls on a logging step)",
    )
    return logged_loss_sum(trainer.state.log_history, start_step, trainer.state.global_step)


def logged_loss_sum(log_history, start_step: int, step: int) -> float:
    """Loss sum over steps ``start_step + 1 … step`` from logged interval means (see :func:`session_loss_sum`)."""
    total, last = 0.0, start_step
    for entry in log_history:
        at = entry.get("step", 0)
        if "loss" in entry and last < at <= step:
            total += float(entry["loss"]) * (at - last)
            last = at
    return total * (step - start_step) / (last - start_step) if last > start_step else 0.0


RUN_TOTALS_CALLBACK = "HfRelposRunTotals"  # its class name: the key of its entry in stateful_callbacks


@functools.lru_cache(maxsize=1)
def run_totals_callback_class():
    """The public route of the run totals into ``trainer_state.json`` (``stateful_callbacks`` under
    :data:`RUN_TOTALS_CALLBACK`) for a Trainer without ``_save_checkpoint``: an ``ExportableState`` callback whose
    ``totals()`` returns the attributes to store. Built on first use (transformers.trainer_callback imports the
    training arguments, which modeling code does not need)."""
    from transformers.trainer_callback import ExportableState, TrainerCallback

    class HfRelposRunTotals(TrainerCallback, ExportableState):
        def __init__(self, totals=None):
            self.totals = totals

        def state(self) -> dict:
            return {"args": {}, "attributes": self.totals() if self.totals is not None else {}}

        def on_train_begin(self, args, state, control, **kwargs):
            # a state resumed from a checkpoint written without this callback has no entry, and Trainer's save
            # indexes it
            state.stateful_callbacks.setdefault(RUN_TOTALS_CALLBACK, {"args": {}, "attributes": {}})

    assert HfRelposRunTotals.__name__ == RUN_TOTALS_CALLBACK
    return HfRelposRunTotals


def pop_cache(kwargs, cache=None):
    """The models' cache argument under either name: ``cache`` (transformers 5.24+) or ``past_key_values``."""
    legacy = kwargs.pop("past_key_values", None)
    new = kwargs.pop("cache", None)
    if cache is None:
        cache = new if new is not None else legacy
    return cache
