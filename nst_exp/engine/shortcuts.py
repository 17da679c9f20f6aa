"""Where the module steps past Lightning's per-step machinery, and when it may.

On a GPU a 512 px step takes a few ms, so Python run at every step or evaluation is the
framework's overhead there (docs/performance.md, fixed cost). Lightning dispatches hooks to
every callback around each backward and after each evaluation of a step's closure, even when no
callback implements them: ~0.1-0.15 ms each on this CPU. The module does the same work without
the dispatch when nobody listens, and goes through Lightning whenever somebody does: a callback
or the module overriding the hook, a loss scaler (16-mixed), gradient clipping by the Trainer,
or a strategy other than a single device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.strategies import SingleDeviceStrategy, Strategy

from nst_exp.engine.steps import overrides

BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")
STEP_HOOKS = ("on_before_optimizer_step",)


def plain_backward_will_do(module: pl.LightningModule) -> bool:
    """Whether ``loss.backward()`` does all that ``manual_backward`` would for this fit.

    ``manual_backward`` goes through the strategy and precision plugin to dispatch
    ``on_before_backward``/``on_after_backward`` to every callback, ~0.1 ms per evaluation
    that none of ours uses.
    """
    return (not _listened(module, BACKWARD_HOOKS, "backward") and _unscaled(module.trainer)
            and isinstance(module.trainer.strategy, SingleDeviceStrategy))


def direct_step_will_do(module: pl.LightningModule) -> bool:
    """Whether stepping the wrapped torch optimiser does all that ``LightningOptimizer.step``
    would: its precision plugin dispatches ``on_before_optimizer_step`` to every callback after
    each evaluation of the closure (~0.15 ms; L-BFGS evaluates several times a step) and clips
    gradients if the Trainer was told to."""
    trainer = module.trainer
    plugin, strategy = trainer.precision_plugin, trainer.strategy
    plain_plugin = type(plugin).optimizer_step in (Precision.optimizer_step, MixedPrecision.optimizer_step)
    plain_strategy = isinstance(strategy, SingleDeviceStrategy) \
        and type(strategy).optimizer_step is Strategy.optimizer_step
    return (not _listened(module, STEP_HOOKS) and _unscaled(trainer) and plain_plugin and plain_strategy
            and not trainer.gradient_clip_val)


def step_directly(optimizer: LightningOptimizer, closure: Callable[[], Any]) -> Any:
    """``optimizer.step(closure)`` without the hook dispatch (``direct_step_will_do`` says when):
    the manual loop's progress hooks still count the step, which ``global_step`` reads."""
    optimizer._on_before_step()
    output = optimizer.optimizer.step(closure=closure)
    optimizer._on_after_step()
    return output


def _listened(module: pl.LightningModule, hooks: tuple[str, ...], *module_hooks: str) -> bool:
    """Whether some callback of the fit, or the module, replaces one of ``hooks``."""
    return any(overrides(callback, pl.Callback, hooks) for callback in module.trainer.callbacks) \
        or overrides(module, pl.LightningModule, (*hooks, *module_hooks))


def _unscaled(trainer: pl.Trainer) -> bool:
    """No loss scaler (16-mixed) acts between the loss, its gradient and the step."""
    return getattr(trainer.precision_plugin, "scaler", None) is None
