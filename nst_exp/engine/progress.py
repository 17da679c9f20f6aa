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
last step is always drawn, as the bar closes. Into a file or a pipe (a SLURM log, ``| tee``)
every redraw stays in the file, so there the bar redraws at most every ``PIPE_INTERVAL_S``: a
ten-minute GPU job leaves ~20 redraws in its log instead of ~6000.

While the bar is live, a console log record clears the bar's line first and prints there;
the bar draws itself again below it at its next redraw (right after the metrics flush that
logged, so at no extra redraw, unless the flushes come faster than ``MIN_INTERVAL_S``: then
the bar is blank until its next redraw, rather than paying one per record). Printed after
the bar's text on its line instead, each ``step N  loss ...`` record left a stale copy of the
bar above it. The bar closes with the run's last step, before the end-of-run callbacks
(yardstick, summary) log: its rate is the steps' own and nothing redraws it under their
records.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import _update_n

from nst_exp.engine.steps import StepHooks

SHOWN = ("train/loss",)  # callback_metrics keys the bar shows
MIN_INTERVAL_S = 0.1  # tqdm's own default ``mininterval``
PIPE_INTERVAL_S = 30.0  # when the bar's stream is not a terminal: each redraw stays in the log file


class LossProgressBar(StepHooks, TQDMProgressBar):
    """TQDMProgressBar showing ``train/loss``, converted at refresh time only."""

    _drawn_at = -math.inf  # perf_counter of the last redraw
    _interval = MIN_INTERVAL_S  # least time between redraws (set when the run starts)
    _console: tuple[tuple[logging.Logger, ClearFirst], ...] = ()  # stand-ins while live (each holds its handler)

    def step_interval(self) -> int:
        return self.refresh_rate

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        bar, step, now = self.train_progress_bar, trainer.global_step, time.perf_counter()
        if bar is None or not self._should_update(step, bar.total):
            return
        if now - self._drawn_at >= self._interval:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            _update_n(bar, step)  # the one redraw
            self._drawn_at = now

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        bar = self.train_progress_bar
        self._interval = MIN_INTERVAL_S if _is_terminal(bar.fp) else PIPE_INTERVAL_S
        if not bar.disable:
            self._console = tuple((logger, ClearFirst(handler, bar.clear)) for logger in all_loggers()
                                  for handler in logger.handlers if _on_console(handler))
            for logger, wrapper in self._console:
                logger.handlers[logger.handlers.index(wrapper.handler)] = wrapper

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The run's end (one endless epoch): its last count and loss, drawn once, as the bar closes."""
        bar = self.train_progress_bar
        if not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        self._close()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        """Close the bar (tqdm's close is idempotent) and give the console back to the log handlers."""
        if self._train_progress_bar is not None:
            self.train_progress_bar.close()
        for logger, wrapper in self._console:
            if wrapper in logger.handlers:
                logger.handlers[logger.handlers.index(wrapper)] = wrapper.handler
        self._console = ()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        for key in SHOWN:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                number = float(value)  # the one host copy, at the bar's refresh
                items[key] = f"{number:.3g}" if math.isfinite(number) else str(number)
        return items


class ClearFirst(logging.Handler):
    """A console handler's stand-in while the bar is live: clear the bar's line, then let the
    handler print the record there."""

    def __init__(self, handler: logging.Handler, clear: Callable[[], None]) -> None:
        super().__init__(handler.level)
        self.handler, self.clear = handler, clear

    def emit(self, record: logging.LogRecord) -> None:
        self.clear()
        self.handler.handle(record)


def all_loggers() -> list[logging.Logger]:
    """The root and every named logger: console handlers sit on the root (Hydra's) and on some
    that do not propagate to it (Lightning's own, when it was imported before logging was
    configured)."""
    named = [logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    return [logging.root, *named]


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _on_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)
