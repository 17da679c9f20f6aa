"""A progress bar that copies the loss to the host only when it refreshes.

``self.log(..., prog_bar=True)`` makes Lightning convert the value to a Python float at the end
of *every* batch (``_ResultCollection.metrics`` fills ``progress_bar_metrics`` with
``.item()``): on a GPU that is a host-device synchronisation per step, whatever the bar's
refresh rate. The module logs its losses without ``prog_bar``, and this bar reads
``train/loss`` from ``callback_metrics`` (device tensors) when it redraws, every
``refresh_rate`` steps -- the metrics flush's rate, where the host waits for the device anyway.
A batch may hold several steps (engine/steps.py): the bar counts steps, not batches.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import _update_n

from nst_exp.engine.steps import StepHooks

SHOWN = ("train/loss",)  # callback_metrics keys the bar shows


class LossProgressBar(StepHooks, TQDMProgressBar):
    """TQDMProgressBar showing ``train/loss``, converted at refresh time only."""

    def step_interval(self) -> int:
        return self.refresh_rate

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and self._should_update(step, bar.total):
            _update_n(bar, step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        for key in SHOWN:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                number = float(value)  # the one host copy, at the bar's refresh
                items[key] = f"{number:.3g}" if math.isfinite(number) else str(number)
        return items
