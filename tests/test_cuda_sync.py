"""No host-device synchronisation in an Adam step on CUDA (skipped without a GPU).

A GPU step of a 512 px image takes a few ms; a per-step sync makes the host wait for it, so the
Python of the next step (Lightning's loop, the callbacks) cannot overlap the GPU's work. The run
goes through the project's own Trainer and default callbacks; between the metrics flushes (every
``log_every`` steps, where the one copy to the host is meant to happen) torch's sync debug mode
turns any synchronisation into an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from conftest import compose_cfg
from nst_exp.engine.loggers import finish_wandb
from nst_exp.engine.steps import StepHooks
from nst_exp.runtime.build import build_callbacks, build_loggers, build_module, build_trainer

pytestmark = pytest.mark.gpu
LOG_EVERY = 10
WINDOW = range(LOG_EVERY + 1, 2 * LOG_EVERY)  # steps strictly between two flushes (steps count from 1)


class SyncTrap(StepHooks, pl.Callback):
    """Sync debug mode "error" from the start of the first step in ``WINDOW`` to the start of
    the first step after it: the steps themselves and every callback's step hooks (a step hook,
    so it also watches steps that share a Lightning batch: engine/steps.py); where batches
    hold one step, also Lightning's loop and every callback's batch hooks between them."""

    def __init__(self) -> None:
        self.trapped: list[int] = []

    def before_step(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step + 1  # the step about to run
        if step - 1 in WINDOW:  # the previous step and everything after it ran without a sync
            self.trapped.append(step - 1)
        torch.cuda.set_sync_debug_mode("error" if step in WINDOW else "default")


@pytest.mark.parametrize("logger", ["none", "csv", "wandb"])
def test_adam_steps_never_synchronise(tmp_path: Path, logger: str) -> None:
    cfg = compose_cfg("model.weights=random", "image_size=64", "optimizer=adam", f"steps={2 * LOG_EVERY}",
                      f"log_every={LOG_EVERY}", "snapshot_every=100", "checkpoint_every=100", "trainer=gpu",
                      "precision=32-true", f"logger={logger}", output_dir=tmp_path)
    trap = SyncTrap()
    trainer = build_trainer(cfg.trainer, callbacks=[*build_callbacks(cfg), trap], logger=build_loggers(cfg) or False)
    try:
        trainer.fit(build_module(cfg))
    finally:
        torch.cuda.set_sync_debug_mode("default")
        finish_wandb(False)
    assert trap.trapped == list(WINDOW)
    assert trainer.global_step == 2 * LOG_EVERY
