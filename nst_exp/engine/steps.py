"""Several optimiser steps per Lightning batch: the framework's fixed cost paid once per batch.

On a GPU a 512 px step takes a few ms, so what runs around each step decides the overhead:
Lightning's loop, its hook dispatch to every callback, the progress bar. Those run once per
*batch*, so the module runs several optimiser steps in one batch (``training_step``), as many
as fit between the callbacks' own cadences: a batch never crosses a step at which some
callback acts (a metrics flush, a snapshot, a checkpoint, a verdict), so every callback still
sees ``trainer.global_step`` land on its multiples, exactly as with one step per batch.

A callback takes part through ``StepHooks``: ``step_interval`` says how often it acts at a
batch end, ``before_step``/``after_step`` do its per-step share inside the batch (record the
losses, track the best image), and ``after_step`` may end the batch early (a stop signal).
A callback that acts at batch ends without saying how often gets one step per batch: the
plan is then the old one, never a silent change of what the callback sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl

BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")


class StepHooks:
    """A callback's per-step work and its cadence (see the module docstring)."""

    def step_interval(self) -> int:
        """Steps between this callback's batch-end actions (0: it has none)."""
        return 0

    def before_step(self, trainer: Any, module: Any) -> None:
        """Just before an optimiser step (the image is the step's start)."""

    def after_step(self, trainer: Any, module: Any) -> bool:
        """Just after it (``module.last_components``: the losses at the step's start image);
        True ends the batch after this step (e.g. a stop signal arrived)."""
        return False


def overrides(obj: object, base: type, hooks: Iterable[str]) -> bool:
    """Whether ``obj``'s class replaces any of ``base``'s ``hooks`` (Lightning calls them all:
    only a replaced one does something)."""
    return any(getattr(type(obj), hook, None) is not getattr(base, hook) for hook in hooks)


def acts_per_batch(callback: object) -> bool:
    """Whether a callback overrides a batch hook (so it may care how long a batch is)."""
    return overrides(callback, pl.Callback, BATCH_HOOKS)


def steps_per_batch(callbacks: Iterable[object]) -> int:
    """The longest batch no callback's cadence falls inside: the gcd of their intervals.

    1 if a callback acts at batch ends but is no ``StepHooks`` (it says nothing about its
    cadence), or if no callback has a cadence. With the default callbacks ``log_every`` (the
    metrics flush) normally decides.
    """
    intervals = []
    for callback in callbacks:
        if isinstance(callback, StepHooks):
            intervals.append(max(0, int(callback.step_interval())))
        elif acts_per_batch(callback):
            return 1
    return max(1, math.gcd(*intervals)) if intervals else 1


def batch_length(global_step: int, per_batch: int, max_steps: int) -> int:
    """Steps the next batch runs: up to the next multiple of ``per_batch`` (a resumed run at an
    odd step realigns), never past ``max_steps`` (-1: no limit)."""
    steps = per_batch - global_step % per_batch
    return max(1, min(steps, max_steps - global_step)) if max_steps >= 0 else steps
