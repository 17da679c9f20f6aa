"""A progress bar that copies the loss to the host only when it refreshes.

``self.log(..., prog_bar=True)`` makes Lightning convert the value to a Python float at the end
of *every* batch (``_ResultCollection.metrics`` fills ``progress_bar_metrics`` with
``.item()``): on a GPU that is a host-device synchronisation per step, whatever the bar's
refresh rate. The module logs its losses without ``prog_bar``, and this bar reads
``train/loss`` from ``callback_metrics`` (device tensors) when it redraws, every
``refresh_rate`` steps -- the metrics flush's rate, where the host waits for the device anyway.
A batch may hold several steps (engine/steps.py): the bar counts steps, not batches.

A redraw costs ~1 ms of Python and terminal output, so the bar draws once per refresh (the
postfix goes in with the count, not in a redraw of its own) and at most ``MIN_INTERVAL_S``
apart, as tqdm itself does by default: a GPU running hundreds of steps a second would
otherwise pay a redraw every ``refresh_rate`` steps (docs/performance.md, fixed cost). The
last step is always drawn.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import _update_n

from nst_exp.engine.steps import StepHooks

SHOWN = ("train/loss",)  # callback_metrics keys the bar shows
MIN_INTERVAL_S = 0.1  # tqdm's own default ``mininterval``


class LossProgressBar(StepHooks, TQDMProgressBar):
    """TQDMProgressBar showing ``train/loss``, converted at refresh time only."""

    _drawn_at = -math.inf  # perf_counter of the last redraw

    def step_interval(self) -> int:
        return self.refresh_rate

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        bar, step, now = self.train_progress_bar, trainer.global_step, time.perf_counter()
        if bar is None or not self._should_update(step, bar.total):
            return
        if now - self._drawn_at >= MIN_INTERVAL_S or step == bar.total:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            _update_n(bar, step)  # the one redraw
            self._drawn_at = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The run's end (one endless epoch): its last count, drawn with the postfix."""
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
        super().on_train_epoch_end(trainer, pl_module)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        for key in SHOWN:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                number = float(value)  # the one host copy, at the bar's refresh
                items[key] = f"{number:.3g}" if math.isfinite(number) else str(number)
        return items
