"""Checkpoint and resume a batch: one checkpoint for the whole batch, in its first job's dir.

The jobs of a batch share one image tensor, one optimiser and one step counter, so they are
saved and restored together: the batch runs one ``Checkpointing`` (the first job's, writing
``<first job dir>/checkpoint.ckpt``) and drops the others'. Each job's callback states (its
metrics rows, time spent, stop-eps reference, where it stopped) go into that checkpoint through
``BatchCallbacks``; ``find_checkpoint`` finds it and checks its fingerprint (the batched
module's: every job's weights, the batch size) as for a single run. Running the same sweep
command again continues the batch; once it has finished the checkpoint is removed as usual.

Each job's W&B run must be known before its logger starts (in its own Hydra context, before
the batch is built), so ``BatchResume`` reads the jobs' W&B ids from the checkpoint first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from nst_exp.runtime.checkpoint import CHECKPOINT_NAME, Checkpointing
from nst_exp.strategies.batched.jobs import BatchCallbacks, Job

log = logging.getLogger(__name__)


def batch_checkpointing(jobs: list[Job]) -> Checkpointing | None:
    """The one ``Checkpointing`` of the batch (its first job's); the jobs' own are removed."""
    found = [[cb for cb in job.callbacks if isinstance(cb, Checkpointing)] for job in jobs]
    for job in jobs:
        job.callbacks = [cb for cb in job.callbacks if not isinstance(cb, Checkpointing)]
    return found[0][0] if found[0] else None


class BatchResume:
    """The W&B run ids in a batch's checkpoint, read by its first job before any logger starts."""

    def __init__(self) -> None:
        self.read_by: str | None = None
        self.ids: dict[str, str] = {}

    def apply(self, cfg: DictConfig) -> None:
        """Point this job's W&B logger at its run in the batch's checkpoint, if it has one."""
        if self.read_by is None:  # the first job of the batch: the checkpoint would be in its dir
            self.read_by = str(cfg.paths.output_dir)
            self.ids = _checkpointed_ids(cfg)
        run_id = self.ids.get(str(cfg.paths.output_dir))
        if run_id and (cfg.get("logger") or {}).get("wandb") is not None:
            with open_dict(cfg):
                cfg.logger.wandb.id = run_id


def _checkpointed_ids(cfg: DictConfig) -> dict[str, str]:
    path = Path(cfg.paths.output_dir) / CHECKPOINT_NAME
    if cfg.get("resume", "auto") is False or not path.is_file():
        return {}
    try:
        saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        state = saved["callbacks"][BatchCallbacks.__qualname__]
    except (KeyError, RuntimeError, OSError):
        return {}  # not a batch's checkpoint: find_checkpoint will say what it is
    return dict(state.get("wandb_ids") or {})
