"""Callbacks a test adds through config (``+callbacks.NAME._target_=strategy_probes...``) to watch
a run from inside, whatever strategy or launcher runs it."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class InBox(pl.Callback):
    """Fail the run if the image ever leaves [0, 1] after a step (box-constrained L-BFGS)."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        image = pl_module.image.detach()
        if image.min() < 0 or image.max() > 1:
            raise AssertionError(f"step {trainer.global_step}: image in [{float(image.min())}, {float(image.max())}]")
