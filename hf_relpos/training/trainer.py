"""Trainer classes of the recipes: transformers' own, plus one learning rate for the relative
position parameters.

A bias scheme's scalar tables (bucketed biases, kernel or MLP parameters) hold one number per head and
distance: AdamW moves each by about `learning_rate` per step, so at fine-tuning rates they barely change
in a short run. On the built-in QA task a tiny model with the default bucketed-bias scheme reaches 0.98
exact match in 400 steps with `relative_position_learning_rate: 0.1`, and stays at chance with the
shared 3e-3.
"""

from __future__ import annotations

import time

from transformers import Seq2SeqTrainer, Trainer

from .. import compat

# trainer_state.json → stateful_callbacks: the run's totals at that checkpoint (the name of compat's callback,
# the public route where Trainer has no _save_checkpoint)
TOTALS_KEY = compat.RUN_TOTALS_CALLBACK


def is_position_parameter(name: str) -> bool:
    """Parameters of a scheme module (`...relative_position.<param>` in relpos_bert and relpos_t5; the local
    layers' own scheme, when they have one, is `...local_relative_position.<param>`)."""
    return any(f".{owner}." in f".{name}" for owner in ("relative_position", "local_relative_position"))


class PositionLearningRateMixin:
    """Puts the scheme parameters in their own optimizer group with `position_learning_rate`
    (no weight decay). None keeps transformers' default grouping."""

    position_learning_rate: float | None = None

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.position_learning_rate is None:
            return optimizer
        model = self.model if model is None else model
        position = {id(p) for n, p in model.named_parameters() if p.requires_grad and is_position_parameter(n)}
        if not position:
            return optimizer
        moved = []
        for group in optimizer.param_groups:
            moved += [p for p in group["params"] if id(p) in position]
            group["params"] = [p for p in group["params"] if id(p) not in position]
        optimizer.add_param_group({"params": moved, "lr": self.position_learning_rate, "weight_decay": 0.0})
        return optimizer


class RunTotalsMixin:
    """Stores the whole run's training-loss sum and seconds (since step 0, across resumes) in every
    checkpoint's trainer_state.json, so a resumed run can report ``train_loss`` over all its steps.
    ``prior_totals`` (step, loss_sum, seconds at the checkpoint resumed from) is set by the runner."""

    prior_totals: dict | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Trainer's private _save_checkpoint(model, trial) where it exists (compat checks), else a public
        # ExportableState callback writes the same totals into the checkpoint's trainer_state.json
        self._relpos_save_hook = compat.trainer_has_save_checkpoint(Trainer)
        if not self._relpos_save_hook:
            compat.warn_fallback(
                "trainer",
                "transformers' Trainer has no _save_checkpoint(model, trial) here (or the "
                "fallback is forced); run totals reach checkpoints through a callback",
            )
            self.add_callback(compat.run_totals_callback_class()(self._run_totals))

    def train(self, *args, **kwargs):
        self._relpos_started = time.perf_counter()
        return super().train(*args, **kwargs)

    def _run_totals(self) -> dict:
        """Loss sum, seconds and step of the whole run (prior sessions + this one) at this point."""
        prior = self.prior_totals or {"step": 0, "loss_sum": 0.0, "seconds": 0.0}
        session = compat.session_loss_sum(self, prior.get("step", 0))
        started = getattr(self, "_relpos_started", time.perf_counter())
        return {
            "loss_sum": prior["loss_sum"] + session,
            "seconds": prior["seconds"] + time.perf_counter() - started,
            "step": self.state.global_step,
        }

    def _save_checkpoint(self, model, trial):
        if self._relpos_save_hook:
            self.state.stateful_callbacks[TOTALS_KEY] = {"args": {}, "attributes": self._run_totals()}
        return super()._save_checkpoint(model, trial)


class RelPosTrainer(RunTotalsMixin, PositionLearningRateMixin, Trainer):
    def __init__(self, *args, position_learning_rate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.position_learning_rate = position_learning_rate


class RelPosSeq2SeqTrainer(RunTotalsMixin, PositionLearningRateMixin, Seq2SeqTrainer):
    def __init__(self, *args, position_learning_rate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.position_learning_rate = position_learning_rate
