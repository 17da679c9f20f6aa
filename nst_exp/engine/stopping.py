"""Early stopping on a loss plateau (mxnet neural-style's ``--stop-eps``), off by default.

The loss ``window`` steps ago is kept as a device tensor and compared once per window, so the
check costs one host sync every ``window`` steps rather than one per step.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from nst_exp.engine.module import StyleTransferModule

log = logging.getLogger(__name__)


class StopOnPlateau(pl.Callback):
    """Stop when ``|L(t - window) - L(t)| / |L(t - window)| < eps`` (eps = 0 never stops).

    Differs from mxnet's example, which compares successive *images*; the loss is what
    metrics.csv records, so a stop can be checked against the curve.
    """

    def __init__(self, eps: float = 0.0, window: int = 10) -> None:
        if eps < 0 or window < 1:
            raise ValueError(f"stop_eps={eps!r} must be >= 0 and window={window!r} >= 1")
        self.eps, self.window = float(eps), int(window)
        self.stopped_early_at: int | None = None
        self._reference: torch.Tensor | float | None = None

    def state_dict(self) -> dict[str, Any]:
        """The loss a window ago (checkpointed with the run, so a resumed run stops where this
        one would have)."""
        reference = None if self._reference is None else float(self._reference)
        return {"reference": reference, "stopped_early_at": self.stopped_early_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._reference, self.stopped_early_at = state_dict["reference"], state_dict["stopped_early_at"]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule, *args: Any) -> None:
        if self.eps <= 0 or not pl_module.last_components or trainer.global_step % self.window:
            return
        loss = pl_module.last_components["loss"].detach().sum()
        reference, self._reference = self._reference, loss
        if reference is None:
            return
        reference = torch.as_tensor(reference, dtype=loss.dtype, device=loss.device)  # a float after a resume
        change = float((reference - loss).abs() / reference.abs().clamp_min(1e-30))
        if change < self.eps and trainer.global_step < trainer.max_steps:
            self.stopped_early_at = trainer.global_step
            trainer.should_stop = True
            log.info("Stopping early at step %d: loss changed %.3g%% over %d steps (stop_eps %g)",
                     trainer.global_step, 100 * change, self.window, self.eps)

    def summary_fields(self) -> dict[str, int | None]:
        """What RunSummary adds to summary.json."""
        return {"stopped_early_at": self.stopped_early_at}
