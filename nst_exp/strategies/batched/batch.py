"""Run several sweep jobs as one batch of images that share the frozen network and targets.

Jobs that differ only in keys that leave the network and the targets alone (``BATCHABLE``)
become one (B, 3, H, W) image parameter with per-image loss weights, init and learning rate,
optimised by the batched optimisers (one state and line search per image). Every job keeps
its own directory, files and promises (its own stop, divergence restart, summary.json: see
jobs.py); the batch checkpoints and resumes as one (resume.py); what it cannot do for a job it
refuses (rules.py). A batched job dir reads like a sequential one.
Used by the ``hydra/launcher=batched`` plugin (hydra_plugins/nst_batched_launcher).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from nst_exp.config import check_config
from nst_exp.core.files import read_json
from nst_exp.core.lbfgs import image_lbfgs
from nst_exp.engine.loggers import wandb_run
from nst_exp.engine.module import StyleTransferModule
from nst_exp.runtime.build import build_callbacks, build_loggers, build_module, build_trainer, objective_terms
from nst_exp.runtime.checkpoint import find_checkpoint
from nst_exp.runtime.controls import build_init
from nst_exp.strategies.batched.jobs import BatchCallbacks, Job
from nst_exp.strategies.batched.resume import BatchResume, batch_checkpointing
from nst_exp.strategies.batched.rules import BATCHED_OPTIMIZERS, check_batch, check_job_callbacks

log = logging.getLogger(__name__)
# Keys a batch may vary: per-image loss weights, init image, learning rate (dotted paths).
# stop_eps and denoise only reach the job's own callbacks (its stop, its final.png).
BATCHABLE = ("style_weight", "content_weight", "tv_weight", "seed", "init", "optimizer.lr", "stop_eps", "denoise")
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
    for entry in (resolved.get("objective") or {}).values():
        if isinstance(entry, dict):
            entry.pop("weight", None)  # each job's own weight of each term
    if resolved.get("model", {}).get("weights") != "random":
        resolved["model"].pop("seed", None)  # the seed only matters for random weights
    return json.dumps(resolved, sort_keys=True, default=str)


def batched_optimizer(cfgs: Sequence[DictConfig]) -> Any:
    """The batched twin of the configured optimiser, with one learning rate per job."""
    target = cfgs[0].optimizer._target_
    options = OmegaConf.to_container(cfgs[0].optimizer, resolve=True)
    assert isinstance(options, dict)
    options.update(_target_=BATCHED_OPTIMIZERS.get(target, target), lr=[float(cfg.optimizer.lr) for cfg in cfgs])
    return image_lbfgs(instantiate(options), cfgs[0].clamp)  # L-BFGS: one state per image, as run alone


def build_batched_module(cfgs: Sequence[DictConfig]) -> StyleTransferModule:
    """One module for B jobs: the first job's network and targets, each job's init and weights."""
    check_batch(cfgs)
    first = build_module(cfgs[0])
    spec = first.spec
    images = [build_init(cfg, spec.content, spec.styles[0], torch.Generator().manual_seed(cfg.seed)) for cfg in cfgs]
    per_job = [objective_terms(cfg)[1] for cfg in cfgs]
    weights = {name: torch.tensor([weights[name] for weights in per_job]) for name in spec.terms}
    return StyleTransferModule(image=torch.cat(images), spec=spec.with_weights(weights), extractor=first.extractor,
                               optimizer=batched_optimizer(cfgs), augment=first.augment, clamp=first.clamp)


def prepare_job(cfg: DictConfig, resume: BatchResume | None = None) -> Job:
    """Inside the job's Hydra context: pin its output dir, build its callbacks and loggers.

    A bad value fails this job here, alone, before its batch starts. ``resume`` (shared by the
    jobs of one batch) points a resumed job's W&B logger at its run.
    """
    cfg = check_config(cfg)  # plain values from here on: the schema's Enums are for checking
    with open_dict(cfg):
        cfg.paths.output_dir = HydraConfig.get().runtime.output_dir
        if (cfg.get("logger") or {}).get("wandb") is not None:
            cfg.logger.wandb.reinit = "create_new"  # B W&B runs live side by side in this process
    if resume is not None:
        resume.apply(cfg)
    return Job(cfg, build_callbacks(cfg), build_loggers(cfg))


def train_batch(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Optimise all jobs' images together, continuing the batch's checkpoint if there is one;
    return each job's summary.json."""
    jobs, cfgs = list(jobs), [job.cfg for job in jobs]
    checkpointing = batch_checkpointing(jobs)  # the one checkpoint, out of the jobs' callbacks
    for job in jobs:
        check_job_callbacks(job.cfg, job.callbacks)
    pl.seed_everything(cfgs[0].seed, workers=True, verbose=False)
    module = build_batched_module(cfgs)
    checkpoint = find_checkpoint(cfgs[0], module)
    trainer_cfg = copy.deepcopy(cfgs[0].trainer)
    with open_dict(trainer_cfg):
        trainer_cfg.enable_progress_bar = False  # B bars would say the same thing
    callbacks = [BatchCallbacks(jobs), *([checkpointing] if checkpointing is not None else [])]
    trainer = build_trainer(trainer_cfg, callbacks=callbacks, logger=False)
    log.info("Optimising %d images of %dx%d together for %d steps on %s (%s)", len(jobs), module.image.shape[-1],
             module.image.shape[-2], cfgs[0].steps, trainer.strategy.root_device, trainer.precision)
    status = "failed"
    try:
        trainer.fit(module, ckpt_path=checkpoint)
        status = "success"
    finally:
        for job in jobs:
            for logger in job.loggers:
                logger.finalize(status)
            run = wandb_run(job.loggers)
            if run is not None:
                run.finish(exit_code=0 if status == "success" else 1)
    return [read_json(f"{cfg.paths.output_dir}/summary.json") for cfg in cfgs]
