"""One job of a batch, as its callbacks see it: its image, its optimiser, its own stop.

A batched sweep trains B jobs with one Trainer and one (B, 3, H, W) image, but every job
keeps its own callbacks (metrics.csv, snapshots, stop-eps, divergence guard, summary.json).
They run unchanged: ``BatchCallbacks`` calls each job's callbacks with a ``JobTrainer`` and
an ``ImageSlice`` in place of the Trainer and the module. These are explicit per-job
interfaces, not proxies: they offer exactly the names the callbacks use, each answered for
that job, and anything else is an AttributeError rather than a silent reach into the batch.

- ``trainer.should_stop = True`` (stop-eps, a divergence stop) stops that job alone: its
  callbacks get ``on_train_end`` at once (summary.json says where it stopped), its image is
  frozen in the batched optimiser, and the batch stops when every job has.
- ``trainer.optimizers[0]`` is a ``JobOptimizer``: a divergence restart resets that image's
  optimiser memory and lowers that image's lr only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from nst_exp.core.lbfgs import quasi_newton
from nst_exp.core.per_image import PerImageControl
from nst_exp.engine.loggers import wandb_run
from nst_exp.engine.memory import release_optimizer_state
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.steps import StepHooks, overrides, steps_per_batch

log = logging.getLogger(__name__)
# Hooks forwarded to the jobs still running (setup/teardown belong to the batch's own callbacks).
HOOKS = ("on_fit_start", "on_train_start", "on_train_batch_start", "on_train_batch_end", "on_train_end",
         "on_fit_end", "on_exception")


@dataclass
class Job:
    """One sweep job inside a batch: its config, callbacks and loggers (built in its Hydra context)."""

    cfg: Any
    callbacks: list[pl.Callback]
    loggers: list[pl.loggers.Logger]


class ImageSlice:
    """What one job's callbacks see of the batched module: its image and its losses only."""

    def __init__(self, module: StyleTransferModule, index: int, evaluations: dict[str, dict[str, Tensor]]) -> None:
        self.module, self.index, self._evaluations = module, index, evaluations

    @property
    def image(self) -> Tensor:
        """A view of this job's image in the batch: in-place writes (a guard's restore) land there."""
        return self.module.image[self.index:self.index + 1]

    @property
    def last_components(self) -> dict[str, Tensor]:
        return {key: value[self.index:self.index + 1] for key, value in self.module.last_components.items()}

    # The inputs every job of the batch shares, read-only (the yardstick and W&B read them).
    content = property(lambda self: self.module.content)
    style = property(lambda self: self.module.style)
    styles = property(lambda self: self.module.styles)
    style_blend = property(lambda self: self.module.style_blend)
    masks = property(lambda self: self.module.masks)
    device = property(lambda self: self.module.device)
    spec = property(lambda self: self.module.spec)
    columns = property(lambda self: self.module.columns)

    def evaluate(self) -> dict[str, float]:
        """This image's clamped losses; the batch is evaluated once for all its jobs."""
        if "parts" not in self._evaluations:
            with torch.no_grad():
                self._evaluations["parts"] = self.module.components(self.module.image.clamp(0, 1))
        return {key: float(value[self.index]) for key, value in self._evaluations["parts"].items()}


class JobOptimizer:
    """One job's handle on the batched optimiser (see ``engine.guards.reset_optimizer``)."""

    def __init__(self, optimizer: PerImageControl, index: int) -> None:
        self.optimizer, self.index = optimizer, index

    @property
    def quasi_newton(self) -> bool:
        return quasi_newton(self.optimizer)

    @property
    def lr(self) -> float:
        return self.optimizer.lr_of(self.index)

    def reset(self, lr_factor: float = 1.0) -> float:
        """Forget this image's memory (L-BFGS history / Adam moments), scale its lr; the new lr."""
        return self.optimizer.reset_image(self.index, lr_factor)


class JobTrainer:
    """The run as one job of a batch sees it, under ``pl.Trainer``'s names."""

    def __init__(self, trainer: pl.Trainer, job: Job, index: int) -> None:
        self._trainer, self.job, self.index = trainer, job, index
        self.stop_requested = False
        self.stopped_at: int | None = None  # the step this job stopped at (it is then frozen)

    global_step = property(lambda self: self._trainer.global_step)
    max_steps = property(lambda self: self._trainer.max_steps)
    precision = property(lambda self: self._trainer.precision)
    lightning_module = property(lambda self: self._trainer.lightning_module, doc="The whole batch (SpeedUps).")
    callbacks = property(lambda self: self.job.callbacks, doc="This job's callbacks only.")
    loggers = property(lambda self: self.job.loggers, doc="This job's loggers only.")

    @property
    def logger(self) -> pl.loggers.Logger | None:
        return self.job.loggers[0] if self.job.loggers else None

    @property
    def optimizers(self) -> list[JobOptimizer]:
        return [JobOptimizer(self._trainer.optimizers[0], self.index)]

    @property
    def should_stop(self) -> bool:
        return self.stop_requested

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        """Stop this job after the current step; its batch mates go on."""
        self.stop_requested = self.stop_requested or bool(value)


class BatchCallbacks(StepHooks, pl.Callback):
    """Forward the Trainer's hooks to every running job's callbacks with that job's view.

    The step hooks too (engine/steps.py): a batch runs as many steps per Lightning batch as
    every job's callbacks allow.

    Its state (checkpointed with the batch) is every job's callback states and stop step.
    """

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = list(jobs)
        self.runs: list[JobTrainer] = []
        self._evaluations: dict[str, dict[str, Tensor]] = {}
        self._restored: list[int | None] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.runs = [JobTrainer(trainer, job, index) for index, job in enumerate(self.jobs)]
        if self._restored is not None:
            for run, stopped_at in zip(self.runs, self._restored):
                run.stopped_at = stopped_at

    @property
    def running(self) -> list[JobTrainer]:
        return [run for run in self.runs if run.stopped_at is None]

    def _forward(self, hook: str, module: StyleTransferModule, *args: Any, runs: list[JobTrainer] | None = None,
                 kind: type = pl.Callback) -> bool:
        """``hook`` to the callbacks of ``kind`` of every running job (or of ``runs``), each with
        its job's view; True if one of them returned a true value (a step hook ending the batch)."""
        self._evaluations.clear()  # the image may have changed since the last hook
        answers = []
        for run in self.running if runs is None else runs:
            view = ImageSlice(module, run.index, self._evaluations)
            answers += [getattr(callback, hook)(run, view, *args) for callback in run.job.callbacks
                        if isinstance(callback, kind)]
        return any(answers)

    def step_interval(self) -> int:
        return steps_per_batch(callback for job in self.jobs for callback in job.callbacks)

    def before_step(self, trainer: pl.Trainer, module: StyleTransferModule) -> None:
        self._forward("before_step", module, kind=StepHooks)

    def after_step(self, trainer: pl.Trainer, module: StyleTransferModule) -> bool:
        return self._forward("after_step", module, kind=StepHooks)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule, *args: Any) -> None:
        self._forward("on_train_batch_end", pl_module, *args)
        stopping = [run for run in self.running if run.stop_requested]
        if stopping:
            self._stop(trainer, pl_module, stopping)

    def on_train_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        """The batch's steps are done: its optimiser's memory goes (engine/memory.py) before the
        jobs still running write and score their final images, as a single run's does."""
        release_optimizer_state(trainer)
        self._forward("on_train_end", pl_module)

    def _stop(self, trainer: pl.Trainer, module: StyleTransferModule, runs: list[JobTrainer]) -> None:
        """End these jobs as a sequential run would end (their files are final), then freeze them."""
        self._forward("on_train_end", module, runs=runs)
        self._forward("on_fit_end", module, runs=runs)
        for run in runs:
            run.stopped_at = trainer.global_step
            trainer.optimizers[0].freeze(run.index)
            log.info("Job %s stopped at step %d; %d of %d jobs still running", run.job.cfg.paths.output_dir,
                     run.stopped_at, len(self.running), len(self.runs))
        if not self.running:
            log.info("Step %d: all %d jobs have stopped, so has the batch", trainer.global_step, len(self.runs))
            trainer.should_stop = True

    # --- checkpointed state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every job's callback states (each MetricsRecorder flushes its pending rows into its own)."""
        return {"stopped_at": [run.stopped_at for run in self.runs],
                "jobs": [_callback_states(job.callbacks) for job in self.jobs],
                "wandb_ids": _wandb_ids(self.jobs)}  # read back before the loggers start (resume.py)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = list(state_dict["stopped_at"])
        for run, (job, states) in enumerate(zip(self.jobs, state_dict["jobs"])):
            for key, callback in _keyed(job.callbacks):
                if key in states:
                    callback.load_state_dict(states[key])
                elif _has_state(callback):
                    log.warning("job %d: no checkpointed state for callback %s", run, key)
        for run, stopped_at in zip(self.runs, self._restored):
            run.stopped_at = stopped_at


def _keyed(callbacks: list[pl.Callback]) -> list[tuple[str, pl.Callback]]:
    """Callbacks keyed by position and class: two of one class in a job do not collide."""
    return [(f"{n}:{type(callback).__qualname__}", callback) for n, callback in enumerate(callbacks)]


def _has_state(callback: pl.Callback) -> bool:
    return overrides(callback, pl.Callback, ("state_dict",))


def _callback_states(callbacks: list[pl.Callback]) -> dict[str, Any]:
    return {key: callback.state_dict() for key, callback in _keyed(callbacks) if _has_state(callback)}


def _wandb_ids(jobs: list[Job]) -> dict[str, str]:
    """``{job dir: W&B run id}``: a resumed job continues its own run."""
    ids = {}
    for job in jobs:
        run = wandb_run(job.loggers)
        if run is not None:
            ids[str(job.cfg.paths.output_dir)] = str(run.id)
    return ids


def _make_hook(name: str) -> Any:
    def hook(self: BatchCallbacks, trainer: pl.Trainer, module: StyleTransferModule, *args: Any) -> None:
        self._forward(name, module, *args)
    hook.__name__ = name
    return hook


for _hook in HOOKS:
    if _hook not in vars(BatchCallbacks):  # those with more to do than forwarding are written out
        setattr(BatchCallbacks, _hook, _make_hook(_hook))
