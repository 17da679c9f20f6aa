"""Early stopping on a plateau (mxnet neural-style's ``--stop-eps``), off by default.

``measure="loss"`` compares the loss ``window`` steps apart; the reference is kept as a device
tensor and compared once per window, so the check costs one host sync every ``window`` steps.
``measure="image"`` is MXNet's own test: ``|x_t - x_(t-window)| / |x_t - center|`` with the
image in [0, 1] and ``center`` its zero point (MXNet measures mean-subtracted pixels, so its
preset passes the mean pixel); with window 1 that is one sync per step, as in MXNet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.steps import StepHooks
from nst_exp.engine.summary import SummaryPart

log = logging.getLogger(__name__)
STOP_ON = ("loss", "image")


class StopOnPlateau(StepHooks, SummaryPart, pl.Callback):
    """Stop when the loss (or image) changed by less than ``eps`` (relative) over ``window`` steps.

    eps = 0 never stops. The loss test is ``|L(t - window) - L(t)| / |L(t - window)| < eps``.
    """

    def __init__(self, eps: float = 0.0, window: int = 10, measure: str = "loss",
                 center: Sequence[float] | None = None) -> None:
        self.eps, self.window, self.measure = float(eps), int(window), measure
        self.center = None if center is None else torch.tensor([float(c) for c in center]).view(-1, 1, 1)
        self.stopped_early_at: int | None = None
        self._reference: torch.Tensor | float | None = None

    def state_dict(self) -> dict[str, Any]:
        """The loss (or image) a window ago (checkpointed with the run, so a resumed run stops where this
        one would have)."""
        reference = self._reference
        if isinstance(reference, torch.Tensor):  # the loss as a number; an image as a CPU tensor
            reference = reference.detach().cpu() if self.measure == "image" else float(reference)
        return {"reference": reference, "stopped_early_at": self.stopped_early_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._reference, self.stopped_early_at = state_dict["reference"], state_dict["stopped_early_at"]

    def step_interval(self) -> int:
        return self.window if self.eps > 0 else 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule, *args: Any) -> None:
        if self.eps <= 0 or not pl_module.last_components or trainer.global_step % self.window:
            return
        if self.measure == "image":
            current = pl_module.image.detach().clone()
            reference, self._reference = self._reference, current
            if reference is None:
                return
            reference = torch.as_tensor(reference).to(current)  # on the CPU after a resume
            zero = 0.0 if self.center is None else self.center.to(current)
            change = float((current - reference).norm() / (current - zero).norm().clamp_min(1e-30))
        else:
            loss = pl_module.last_components["loss"].detach().sum()
            reference, self._reference = self._reference, loss
            if reference is None:
                return
            reference = torch.as_tensor(reference, dtype=loss.dtype, device=loss.device)  # a float after a resume
            change = float((reference - loss).abs() / reference.abs().clamp_min(1e-30))
        if change < self.eps and trainer.global_step < trainer.max_steps:
            self.stopped_early_at = trainer.global_step
            trainer.should_stop = True
            log.info("Stopping early at step %d: %s changed %.3g%% over %d steps (stop_eps %g)",
                     trainer.global_step, self.measure, 100 * change, self.window, self.eps)

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        if self.measure == "image":  # MXNet's first test compares the first update with the start image
            self._reference = pl_module.image.detach().clone()

    def summary_fields(self) -> dict[str, int | None]:
        """What RunSummary adds to summary.json."""
        return {"stopped_early_at": self.stopped_early_at}
