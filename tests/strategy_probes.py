"""Callbacks a test adds through config (``+callbacks.NAME._target_=strategy_probes...``) to watch
a run from inside, whatever strategy or launcher runs it."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from nst_exp.engine.steps import StepHooks


class InBox(StepHooks, pl.Callback):
    """Fail the run if the image ever leaves [0, 1] after a step (box-constrained L-BFGS).

    A step hook, so it watches every step even where a Lightning batch runs several.
    """

    def after_step(self, trainer: Any, pl_module: Any) -> bool:
        image = pl_module.image.detach()
        if image.min() < 0 or image.max() > 1:
            raise AssertionError(f"step {trainer.global_step}: image in [{float(image.min())}, {float(image.max())}]")
        return False
