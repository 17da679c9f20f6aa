"""Give the memory a run no longer uses back to the operating system.

Why a run needs this: L-BFGS keeps ``history_size`` pairs of image-sized vectors alive for
``history_size`` steps, while each step's activations are allocated and freed around them.
glibc's heap cannot hand back pages that lie between live blocks, so the holes left by freed
pairs and activations stay resident: a 256 px ``experiment=neural_style`` run grew by about
100 MB more than it used (docs/performance.md). ``malloc_trim(0)`` returns the free pages in
the middle of the heap too; it costs a few milliseconds at 256 px, so ``HeapTrim`` calls it
every few steps, not every step. Other C libraries (musl, macOS, Windows) lack it: a no-op there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

import pytorch_lightning as pl

from nst_exp.engine.steps import StepHooks


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def trim_heap() -> bool:
    """Return the heap's free pages to the OS; True if any were (always False without glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def release_optimizer_state(trainer: pl.Trainer) -> None:
    """Forget the optimisers' memory once the steps are done, and give it back.

    Only after a normal end: after an exception a checkpoint saves that state. L-BFGS's history
    is 118 MB at 256 px and 470 MB at 512; scoring final.png (the yardstick's network and
    features) then fits in it instead of adding to the run's peak.
    """
    for optimizer in trainer.optimizers:
        optimizer.state.clear()
    trim_heap()


class HeapTrim(StepHooks, pl.Callback):
    """``trim_heap()`` after every ``every_n_steps``-th optimiser step (0: never).

    A step hook with no cadence of its own: it trims inside a batch, so the batches stay as
    long as the other callbacks allow (engine/steps.py).
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every_n_steps = int(every_n_steps)

    def after_step(self, trainer: pl.Trainer, module: Any) -> bool:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            trim_heap()
        return False
