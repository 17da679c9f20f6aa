"""Divergence guard: a NaN/Inf or exploding loss sends the run back to its best image.

L-BFGS without a line search, a large Adam lr or extreme loss weights can blow a run up: the
loss turns NaN/Inf or jumps by orders of magnitude, and every later step is garbage. The guard
keeps the best image seen so far on the device, and on divergence either restarts from it with
a lower lr (``restarts`` times) or stops the run there, with ``status: diverged`` and the step
in summary.json, so the run ends cleanly with its best result instead of a black image.

Cost: the bookkeeping (engine/guard_ledgers.py) is done inside the batch (engine/steps.py).
On a GPU it is five device ops per step, and the search for the first bad step waits for the
batch's end, where a few ops cover all its steps; none waits for the device. Reading the
verdict is the only sync: every ``check_every`` steps (``log_every``: the metrics flush, where
MetricsRecorder syncs already); L-BFGS, whose line search reads the loss at every evaluation
anyway, also reads it after every step and ends the batch at the first bad one, so its verdict
comes at once. On the CPU, where reading is free, each step is judged in Python at once.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch

from nst_exp.core.lbfgs import quasi_newton
from nst_exp.engine.guard_ledgers import TRACKED, ledger_for
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.steps import StepHooks
from nst_exp.engine.summary import SummaryPart

log = logging.getLogger(__name__)


class DivergenceGuard(StepHooks, SummaryPart, pl.Callback):
    """Detect a non-finite or exploding loss; restore the best image; restart or stop.

    :param explode_factor: a loss above ``explode_factor`` times the best so far is divergence
        (null: only NaN/Inf count).
    :param restarts: how many times to restart from the best image with ``lr * lr_factor``
        before giving up and stopping the run.
    :param lr_factor: the learning-rate multiplier at each restart.
    :param check_every: steps between verdicts (L-BFGS: also at once, see the module docstring).
    """

    def __init__(self, explode_factor: float | None = 1e3, restarts: int = 0, lr_factor: float = 0.1,
                 check_every: int = 10) -> None:
        self.explode_factor = explode_factor
        self.restarts = restarts
        self.lr_factor = lr_factor
        self.check_every = max(1, int(check_every))
        self.events: list[dict[str, Any]] = []
        self._restored: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        # per-image state: a batch may hold several sweep jobs
        self._ledger = ledger_for(pl_module.image.detach(), self.explode_factor)
        self._restarts_left = self.restarts
        self._quasi_newton = quasi_newton(trainer.optimizers[0])
        self.events = []
        state, self._restored = self._restored, None
        if state:  # a resumed run: the same best image, restarts left and history of events
            self._ledger.load({name: state[name] for name in TRACKED})
            self._restarts_left, self.events = int(state["restarts_left"]), list(state["events"])

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold so that a resumed run recovers as this one would."""
        if not hasattr(self, "_ledger"):
            return {}
        return {**self._ledger.state(), "restarts_left": self._restarts_left, "events": list(self.events)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)  # applied in on_train_start, which sets up the ledger

    def step_interval(self) -> int:
        return self.check_every

    def before_step(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        self._ledger.start.copy_(pl_module.image.detach())

    def after_step(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> bool:
        """Track the step's start image and loss; with L-BFGS, end the batch at a bad step."""
        loss = pl_module.last_components.get("loss")
        if loss is None:
            return False
        self._ledger.track(loss.reshape(-1), trainer.global_step - 1)  # losses of the step's start images
        return self._quasi_newton and self._ledger.any_bad()  # L-BFGS has synced anyway

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule, *args: Any) -> None:
        self._ledger.settle()
        due = trainer.global_step % self.check_every == 0 or self._quasi_newton
        if due and self._ledger.any_bad():  # the one sync
            self._recover(trainer, pl_module, final=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        """Catch a divergence since the last verdict (runs before RunSummary writes)."""
        if hasattr(self, "_ledger") and self._ledger.any_bad():
            self._recover(trainer, pl_module, final=True)

    def _recover(self, trainer: pl.Trainer, pl_module: StyleTransferModule, final: bool) -> None:
        """Put the best image back, then restart with a lower lr or stop the run."""
        ledger = self._ledger
        bad = ledger.bad_step >= 0
        event: dict[str, Any] = {"step": int(ledger.bad_step[bad].min()), "loss": _values(ledger.bad_loss[bad]),
                                 "best_step": _values(ledger.best_step), "best_loss": _values(ledger.best_loss)}
        if len(bad) > 1:
            event["images"] = bad.nonzero().flatten().tolist()
        with torch.no_grad():
            pl_module.image.copy_(ledger.best)
        restart = not final and self._restarts_left > 0
        # L-BFGS history / Adam moments hold the diverged values: forget them either way.
        lr = reset_optimizer(trainer.optimizers[0], self.lr_factor if restart else 1.0)
        if restart:
            self._restarts_left -= 1
            event["action"] = f"restart with lr={lr:.3g}"
        else:
            event["action"] = "stop"
            trainer.should_stop = True
        ledger.clear_bad()
        self.events.append(event)
        log.warning("Diverged at step %d (loss %s; best %s at step %s): restored the best image, %s",
                    event["step"], event["loss"], event["best_loss"], event["best_step"], event["action"])

    def run_status(self) -> str | None:
        """``diverged`` once a divergence stopped the run (RunSummary asks when it writes)."""
        return "diverged" if self.events and self.events[-1]["action"] == "stop" else None

    def summary_fields(self) -> dict[str, Any]:
        """summary.json keys: every divergence, and the step of the one that stopped the run."""
        if not self.events:
            return {}
        fields: dict[str, Any] = {"divergences": list(self.events)}
        if self.events[-1]["action"] == "stop":
            fields["diverged_at_step"] = self.events[-1]["step"]
        return fields


def reset_optimizer(optimizer: Any, lr_factor: float = 1.0) -> float:
    """Forget the optimiser's memory and multiply its lr by ``lr_factor``; returns the new lr.

    A job of a batched sweep gets a handle on its own image's share of the batched optimiser
    (``nst_exp.strategies.batched.jobs.JobOptimizer``) with a ``reset`` of its own: that job's memory and
    lr change, its batch mates' do not.
    """
    if hasattr(optimizer, "reset"):
        return float(optimizer.reset(lr_factor))
    optimizer.state.clear()
    for group in optimizer.param_groups:
        group["lr"] *= lr_factor
    return float(optimizer.param_groups[0]["lr"])


def _values(tensor: torch.Tensor) -> Any:
    """Per-image values for JSON: a scalar for one image, NaN/Inf as strings (JSON has none)."""
    values = [v if not isinstance(v, float) or math.isfinite(v) else str(v) for v in tensor.tolist()]
    return values[0] if len(values) == 1 else values
