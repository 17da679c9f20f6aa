"""The divergence guard's bookkeeping: the best image and loss so far, the first bad step.

One definition, per image of the batch, at every step: a loss is *bad* if it is NaN/Inf or
above ``explode_factor`` x the best loss before it; the first bad step is kept until the guard
handles it; a finite loss below the best makes its step's start image the best
(tests/test_divergence_guard.py holds it as a reference and checks both ledgers against it).

Two ledgers keep it, for the two costs a step can pay:
- ``DeviceLedger`` (CUDA, MPS): never reads a loss. Five in-place device ops a step keep the
  best image; the search for the first bad step waits for ``settle``, where a few ops cover
  all the steps since the last one. A read on a GPU would wait for the device.
- ``HostLedger`` (CPU): a read costs nothing, but every distinct kernel a step touches costs
  10-25 us of cold instruction cache after the evaluation's convolutions (docs/performance.md,
  fixed cost). It reads the losses as floats and decides in Python; keeping the best image is
  a swap of two buffers, or a copy per improved image. About a third of the device ledger's
  cost per step.
Both save the same checkpoint state (``TRACKED``, CPU tensors), so a run resumes on either.
"""

from __future__ import annotations

import math

import torch

TRACKED = ("best", "best_loss", "best_step", "bad_step", "bad_loss")  # per-image state a resume restores


class DeviceLedger:
    """The bookkeeping as device tensors: no step waits for the device."""

    def __init__(self, image: torch.Tensor, explode_factor: float | None) -> None:
        batch, device = image.shape[0], image.device
        self.explode_factor = explode_factor
        self.start = image.clone()  # the images the current step starts from
        self.best = image.clone()
        self.best_loss = torch.full((batch,), math.inf, device=device)
        self.best_step = torch.zeros(batch, dtype=torch.long, device=device)
        self.bad_step = torch.full((batch,), -1, dtype=torch.long, device=device)  # first unhandled bad step
        self.bad_loss = torch.full((batch,), math.nan, device=device)
        self._window: list[torch.Tensor] = []  # losses of the steps since the last settle, in order
        self._window_start = 0  # the step of the first of them
        self._best_before_window = self.best_loss.clone()

    def track(self, loss: torch.Tensor, step: int) -> None:
        """Keep the step's loss, and its start image if that is the best so far.

        A NaN or Inf loss is never the best, nor is an exploding one: it is above the best
        (``explode_factor`` > 1, config/groups.py).
        """
        if not self._window:
            self._window_start = step
        self._window.append(loss)
        better = _ranked(loss) < self.best_loss
        torch.where(better.view(-1, 1, 1, 1), self.start, self.best, out=self.best)
        torch.where(better, loss, self.best_loss, out=self.best_loss)
        self.best_step.masked_fill_(better, step)

    def settle(self) -> None:
        """The first bad step among those tracked since the last call, for all at once."""
        if not self._window:
            return
        losses = torch.stack(self._window)  # (steps, images)
        self._window = []
        bad = (losses - losses) != 0  # NaN or +-Inf
        if self.explode_factor is not None:  # the best before each step: a running minimum
            before = torch.cat([self._best_before_window[None], _ranked(losses[:-1])])
            before = before.cummin(0).values
            bad |= (losses > self.explode_factor * before).logical_and_(before > 0)
        first = bad.int().argmax(0)  # per image: its first bad step in the window (0 if none)
        new = bad.any(0).logical_and_(self.bad_step < 0)
        self.bad_step = torch.where(new, first + self._window_start, self.bad_step)
        self.bad_loss = torch.where(new, losses.gather(0, first[None])[0], self.bad_loss)
        self._best_before_window = self.best_loss.clone()

    def any_bad(self) -> bool:
        """Is a bad step waiting (the one read of the device)?"""
        self.settle()
        return int(self.bad_step.max()) >= 0

    def clear_bad(self) -> None:
        self.bad_step = torch.full_like(self.bad_step, -1)

    def state(self) -> dict[str, torch.Tensor]:
        """``TRACKED``, settled, as CPU tensors: what a checkpoint holds."""
        self.settle()
        return {name: getattr(self, name).to("cpu", copy=True) for name in TRACKED}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name in TRACKED:
            setattr(self, name, state[name].to(self.start.device, copy=True))
        self._best_before_window = self.best_loss.clone()


class HostLedger:
    """The bookkeeping as Python numbers, decided at every step (the CPU: reads are free)."""

    def __init__(self, image: torch.Tensor, explode_factor: float | None) -> None:
        batch = image.shape[0]
        self.explode_factor = explode_factor
        self.start, self.best = image.clone(), image.clone()
        self.best_losses, self.best_steps = [math.inf] * batch, [0] * batch
        self.bad_steps, self.bad_losses = [-1] * batch, [math.nan] * batch

    def track(self, loss: torch.Tensor, step: int) -> None:
        """Judge the step's loss now; keep its start image where it is the best so far."""
        improved = []
        for index, value in enumerate(loss.tolist()):
            best = self.best_losses[index]
            bad = not math.isfinite(value) or (
                self.explode_factor is not None and best > 0 and value > self.explode_factor * best)
            if bad and self.bad_steps[index] < 0:
                self.bad_steps[index], self.bad_losses[index] = step, value
            elif not bad and value < best:
                self.best_losses[index], self.best_steps[index] = value, step
                improved.append(index)
        if len(improved) == len(self.best_losses):  # every image: the buffers trade places
            self.start, self.best = self.best, self.start
        for index in improved if len(improved) < len(self.best_losses) else ():
            self.best[index].copy_(self.start[index])

    def settle(self) -> None:
        """Nothing waits: ``track`` decided at once."""

    def any_bad(self) -> bool:
        return max(self.bad_steps) >= 0

    def clear_bad(self) -> None:
        self.bad_steps = [-1] * len(self.bad_steps)

    @property
    def best_loss(self) -> torch.Tensor:
        return torch.tensor(self.best_losses)

    @property
    def best_step(self) -> torch.Tensor:
        return torch.tensor(self.best_steps, dtype=torch.long)

    @property
    def bad_step(self) -> torch.Tensor:
        return torch.tensor(self.bad_steps, dtype=torch.long)

    @property
    def bad_loss(self) -> torch.Tensor:
        return torch.tensor(self.bad_losses)

    def state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).to("cpu", copy=True) for name in TRACKED}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.best = state["best"].to(self.start.device, copy=True)
        self.best_losses, self.best_steps = state["best_loss"].tolist(), state["best_step"].tolist()
        self.bad_steps, self.bad_losses = state["bad_step"].tolist(), state["bad_loss"].tolist()


def ledger_for(image: torch.Tensor, explode_factor: float | None) -> DeviceLedger | HostLedger:
    """The host ledger where reading a loss is free (the CPU), else the device ledger."""
    kind = HostLedger if image.device.type == "cpu" else DeviceLedger
    return kind(image, explode_factor)


def _ranked(losses: torch.Tensor) -> torch.Tensor:
    """Losses as the best-so-far compares them: NaN and +-Inf as +Inf, never below a best."""
    return losses.nan_to_num(math.inf, math.inf, math.inf)
