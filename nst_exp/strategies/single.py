"""One image, one Lightning fit: the run every other strategy is made of or measured against.

The module's only parameter is the image; the callbacks (conf/callbacks/default.yaml) write the
run record: metrics.csv, snapshots, final.png and summary.json (engine/summary.py), the W&B run,
the yardstick's scores, checkpoints for a resume.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig
from torch import Tensor

from nst_exp.core.files import read_json
from nst_exp.engine.loggers import finish_wandb
from nst_exp.runtime.build import build_callbacks, build_loggers, build_module, build_trainer
from nst_exp.runtime.checkpoint import find_checkpoint
from nst_exp.runtime.signals import lightning_plugins

log = logging.getLogger(__name__)


def fit(cfg: DictConfig, init: Tensor | None = None) -> dict[str, Any]:
    """One untiled run (``init``: a starting image instead of ``cfg.init``); its summary.json."""
    module = build_module(cfg, init)
    checkpoint = find_checkpoint(cfg, module)  # an interrupted run in this job dir to continue
    trainer = build_trainer(cfg.trainer, callbacks=build_callbacks(cfg), logger=build_loggers(cfg) or False,
                            plugins=lightning_plugins())
    log.info("Optimising a %dx%d image for %d steps on %s (%s)", module.image.shape[-1], module.image.shape[-2],
             cfg.steps, trainer.strategy.root_device, trainer.precision)
    failed = True
    try:
        trainer.fit(module, ckpt_path=checkpoint, weights_only=True)
        failed = False
    finally:
        finish_wandb(failed)
    summary = read_json(f"{cfg.paths.output_dir}/summary.json")
    log.info("Done: %s, final loss %s, %s ms/step -> %s", summary["status"], summary["final_loss"],
             summary["ms_per_step"], summary["image"])
    return summary
