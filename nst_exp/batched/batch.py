"""Run several sweep jobs as one batch of images that share the frozen network and targets.

Jobs that differ only in keys that leave the network and the targets alone (``BATCHABLE``)
become one (B, 3, H, W) image parameter with per-image loss weights, init and learning rate,
optimised by the batched optimisers (one state and line search per image). Every job keeps
its own directory and files: its callbacks and loggers see only its own image (``ImageSlice``)
and its own loggers (``JobTrainer``), so a batched job dir reads like a sequential one.
Used by the ``hydra/launcher=batched`` plugin (hydra_plugins/nst_batched_launcher).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from nst_exp.core.files import read_json
from nst_exp.core.images import init_image
from nst_exp.engine.loggers import wandb_run
from nst_exp.engine.module import StyleTransferModule
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_callbacks, build_loggers, build_module, build_trainer
from nst_exp.runtime.validate import check_config

log = logging.getLogger(__name__)
# Keys a batch may vary: per-image loss weights, init image, learning rate (dotted paths).
BATCHABLE = ("style_weight", "content_weight", "tv_weight", "seed", "init", "optimizer.lr")
BATCHED_OPTIMIZERS = {"torch.optim.Adam": "nst_exp.batched.optim.BatchedAdam",
                      "torch.optim.LBFGS": "nst_exp.batched.optim.BatchedLBFGS"}
# Keys whose value is per job by construction (directories, names), not part of the maths.
PER_JOB = ("paths", "tags", "logger", "callbacks", "trainer.default_root_dir")


def batch_key(cfg: DictConfig) -> str:
    """Everything in a resolved job config that must be equal for jobs to share a batch."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)
    for path in (*BATCHABLE, *PER_JOB):
        *parents, leaf = path.split(".")
        node = resolved
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    if resolved.get("model", {}).get("weights") != "random":
        resolved["model"].pop("seed", None)  # the seed only matters for random weights
    return json.dumps(resolved, sort_keys=True, default=str)


def batched_optimizer(cfgs: Sequence[DictConfig]) -> Any:
    """The batched twin of the configured optimiser, with one learning rate per job."""
    target = cfgs[0].optimizer._target_
    if target not in BATCHED_OPTIMIZERS:
        raise ConfigError(f"optimizer._target_={target!r} cannot be batched; batched: {sorted(BATCHED_OPTIMIZERS)}")
    options = OmegaConf.to_container(cfgs[0].optimizer, resolve=True)
    assert isinstance(options, dict)
    if target == "torch.optim.LBFGS" and cfgs[0].clamp == "auto":
        target = "nst_exp.core.box_lbfgs.BoxLBFGS"  # already one state per image, as run alone
    options.update(_target_=BATCHED_OPTIMIZERS.get(target, target), lr=[float(cfg.optimizer.lr) for cfg in cfgs])
    return instantiate(options)


def build_batched_module(cfgs: Sequence[DictConfig]) -> StyleTransferModule:
    """One module for B jobs: the first job's network and targets, each job's init and weights."""
    for cfg in cfgs[1:]:
        check_config(cfg)  # build_module checks the first
    first = build_module(cfgs[0])
    content, style = first.content[:1], first.style
    images = [init_image(cfg.init.kind, content, style, torch.Generator().manual_seed(cfg.seed),
                         cfg.init.get("noise", 0.0)) for cfg in cfgs]
    weights = {name: torch.tensor([float(cfg[f"{name}_weight"]) for cfg in cfgs])
               for name in ("content", "style", "tv")}
    return StyleTransferModule(
        image=torch.cat(images), content=content, style=style, extractor=first.extractor,
        content_layers=first.content_layers, style_layers=first.style_layers,
        optimizer=batched_optimizer(cfgs), weights=weights, loss=first.loss_options,
        augment=first.augment, clamp=first.clamp,
    )


class ImageSlice:
    """What one job's callbacks see of the batched module: its image and its losses only."""

    def __init__(self, module: StyleTransferModule, index: int, evaluations: dict[int, dict[str, Tensor]]) -> None:
        self.module, self.index, self._evaluations = module, index, evaluations

    @property
    def image(self) -> nn.Parameter:
        return self.module.image[self.index:self.index + 1]

    @property
    def last_components(self) -> dict[str, Tensor]:
        return {key: value[self.index:self.index + 1] for key, value in self.module.last_components.items()}

    def evaluate(self) -> dict[str, float]:
        """This image's clamped losses; the batch is evaluated once for all its jobs."""
        if "parts" not in self._evaluations:
            with torch.no_grad():
                self._evaluations["parts"] = self.module.components(self.module.image.clamp(0, 1))
        return {key: float(value[self.index]) for key, value in self._evaluations["parts"].items()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


class JobTrainer:
    """The Trainer as one job sees it: its own loggers, everything else shared."""

    def __init__(self, trainer: pl.Trainer, loggers: list[pl.loggers.Logger]) -> None:
        self._trainer, self.loggers = trainer, loggers

    @property
    def logger(self) -> pl.loggers.Logger | None:
        return self.loggers[0] if self.loggers else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


HOOKS = ("on_fit_start", "on_train_start", "on_train_batch_start", "on_train_batch_end", "on_train_end",
         "on_fit_end", "on_exception")


@dataclass
class Job:
    """One sweep job inside a batch: its config, callbacks and loggers (built in its Hydra context)."""

    cfg: DictConfig
    callbacks: list[pl.Callback]
    loggers: list[pl.loggers.Logger]


class BatchCallbacks(pl.Callback):
    """Forward the Trainer's hooks to every job's callbacks with that job's view of the batch."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs
        self._evaluations: dict[int, dict[str, Tensor]] = {}

    def _forward(self, hook: str, trainer: pl.Trainer, module: StyleTransferModule, *args: Any) -> None:
        self._evaluations.clear()  # the image may have changed since the last hook
        for index, job in enumerate(self.jobs):
            view, job_trainer = ImageSlice(module, index, self._evaluations), JobTrainer(trainer, job.loggers)
            for callback in job.callbacks:
                getattr(callback, hook)(job_trainer, view, *args)


def _make_hook(name: str) -> Any:
    def hook(self: BatchCallbacks, trainer: pl.Trainer, module: StyleTransferModule, *args: Any) -> None:
        self._forward(name, trainer, module, *args)
    hook.__name__ = name
    return hook


for _hook in HOOKS:
    setattr(BatchCallbacks, _hook, _make_hook(_hook))


def prepare_job(cfg: DictConfig) -> Job:
    """Inside the job's Hydra context: pin its output dir, build its callbacks and loggers.

    A bad value fails this job here, alone, before its batch starts.
    """
    check_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = HydraConfig.get().runtime.output_dir
        if (cfg.get("logger") or {}).get("wandb") is not None:
            cfg.logger.wandb.reinit = "create_new"  # B W&B runs live side by side in this process
    return Job(cfg, build_callbacks(cfg), build_loggers(cfg))


def train_batch(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Optimise all jobs' images together; return each job's summary.json."""
    cfgs = [job.cfg for job in jobs]
    pl.seed_everything(cfgs[0].seed, workers=True, verbose=False)
    module = build_batched_module(cfgs)
    trainer_cfg = copy.deepcopy(cfgs[0].trainer)
    with open_dict(trainer_cfg):
        trainer_cfg.enable_progress_bar = False  # B bars would say the same thing
    trainer = build_trainer(trainer_cfg, callbacks=[BatchCallbacks(jobs)], logger=False)
    log.info("Optimising %d images of %dx%d together for %d steps", len(jobs), module.image.shape[-1],
             module.image.shape[-2], cfgs[0].steps)
    status = "failed"
    try:
        trainer.fit(module)
        status = "success"
    finally:
        for job in jobs:
            for logger in job.loggers:
                logger.finalize(status)
            run = wandb_run(job.loggers)
            if run is not None:
                run.finish(exit_code=0 if status == "success" else 1)
    return [read_json(f"{cfg.paths.output_dir}/summary.json") for cfg in cfgs]
