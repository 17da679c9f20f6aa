"""What a batch can and cannot do for its jobs: every refusal of a batched sweep, in one place.

A batch keeps each job's promises (its own stop, divergence restart, checkpoint/resume and
summary.json; see nst_exp/strategies/batched/jobs.py). What it cannot keep it refuses before any work,
with the project's one-line ``error: field=value: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from nst_exp.engine.steps import overrides
from nst_exp.errors import ConfigError

BATCHED_OPTIMIZERS = {"torch.optim.Adam": "nst_exp.strategies.batched.optim.BatchedAdam",
                      "torch.optim.LBFGS": "torch.optim.LBFGS"}  # per image: nst_exp.core.lbfgs.image_lbfgs


def check_batch(cfgs: Sequence[DictConfig]) -> None:
    """Raise ConfigError for the first option these jobs cannot have as one batch."""
    target = cfgs[0].optimizer._target_
    if target not in BATCHED_OPTIMIZERS:
        raise ConfigError(f"optimizer._target_={target!r} cannot be batched; batched: {sorted(BATCHED_OPTIMIZERS)}")
    scheduler = (cfgs[0].get("scheduler") or {}).get("_target_")
    if scheduler:  # torch schedulers rescale group["lr"], a list of per-image rates here
        raise ConfigError(f"scheduler._target_={scheduler!r} cannot be batched; use scheduler=none or another launcher")
    if cfgs[0].get("grad_clip") is not None:  # Lightning clips the whole batch's gradient as one
        raise ConfigError(f"grad_clip={cfgs[0].grad_clip!r} cannot be batched; use grad_clip=null or another launcher")
    # One checkpoint holds the whole batch (they share one step counter), so its schedule is one.
    first = _checkpoint_settings(cfgs[0])
    for cfg in cfgs[1:]:
        if _checkpoint_settings(cfg) != first:
            raise ConfigError(f"callbacks.checkpoint={_checkpoint_settings(cfg)}: jobs of one batch share one "
                              f"checkpoint, and another job has {first}; set it for the whole sweep")


# Lightning hooks a batch does not pass on to its jobs' callbacks: jobs.py forwards the fit's,
# the train start/end and batch-end ones, and the step hooks; the batch's checkpoint is its first
# job's own callback. Validation, test, predict and sanity-check hooks never fire in a run here.
UNFORWARDED = ("setup", "teardown", "on_train_epoch_start", "on_train_epoch_end", "on_before_backward",
               "on_after_backward", "on_before_zero_grad", "on_before_optimizer_step", "on_save_checkpoint",
               "on_load_checkpoint")


def check_job_callbacks(cfg: DictConfig, callbacks: Sequence[pl.Callback]) -> None:
    """Raise ConfigError for a job's callback that overrides a hook the batch never calls for it
    (it would silently not run)."""
    for callback in callbacks:
        hooks = [hook for hook in UNFORWARDED if overrides(callback, pl.Callback, (hook,))]
        if hooks:
            target = f"{type(callback).__module__}.{type(callback).__qualname__}"
            names = [name for name, entry in (cfg.get("callbacks") or {}).items()
                     if entry is not None and entry.get("_target_") == target]
            field = f"callbacks.{names[0]}._target_" if names else "callbacks"
            raise ConfigError(f"{field}={target}: its {hooks[0]} is a Lightning hook a batched job never gets; "
                              "use another launcher")


def _checkpoint_settings(cfg: DictConfig) -> dict[str, object] | None:
    entry = (cfg.get("callbacks") or {}).get("checkpoint")
    if entry is None:
        return None
    settings = OmegaConf.to_container(entry, resolve=True)
    assert isinstance(settings, dict)
    settings.pop("output_dir", None)  # each job's own dir; the batch's is its first job's
    settings.pop("_target_", None)
    return settings
