"""The divergence guard's two ledgers against its definition, step by step.

The device ledger keeps the best image at every step but looks for the first bad step only at
``settle``, for all the steps since at once; the host ledger decides every step in Python
(engine/guard_ledgers.py). The reference below is the definition, one step at a time: a loss is
bad if it is NaN/Inf or above ``explode_factor`` x the best loss before it; the first bad step
is kept until handled; a finite loss below the best makes its start image the best.
"""

from __future__ import annotations

import math

import pytest
import torch

from nst_exp.engine.guard_ledgers import TRACKED, DeviceLedger, HostLedger, ledger_for


class Reference:
    """The definition, per step (what the guard computed before it was windowed)."""

    def __init__(self, image: torch.Tensor, factor: float | None) -> None:
        batch = image.shape[0]
        self.factor, self.best = factor, image.clone()
        self.best_loss = torch.full((batch,), math.inf)
        self.best_step = torch.zeros(batch, dtype=torch.long)
        self.bad_step = torch.full((batch,), -1, dtype=torch.long)
        self.bad_loss = torch.full((batch,), math.nan)

    def track(self, start: torch.Tensor, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss)
        if self.factor is not None:
            bad |= (self.best_loss > 0) & (loss > self.factor * self.best_loss)
        first = bad & (self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss, self.bad_loss)
        better = ~bad & (loss < self.best_loss)
        self.best = torch.where(better.view(-1, 1, 1, 1), start, self.best)
        self.best_loss = torch.where(better, loss, self.best_loss)
        self.best_step = torch.where(better, step, self.best_step)


def losses(steps: int, images: int, generator: torch.Generator) -> torch.Tensor:
    """Falling losses with noise, now and then NaN, +-Inf, a 1e4x jump or an exact 0."""
    values = torch.logspace(3, 0, steps)[:, None] * (1 + 0.3 * torch.rand(steps, images, generator=generator))
    events = torch.rand(steps, images, generator=generator)
    values[events < 0.04] = math.nan
    values[(events >= 0.04) & (events < 0.06)] = math.inf
    values[(events >= 0.06) & (events < 0.07)] = -math.inf
    values[(events >= 0.07) & (events < 0.12)] *= 1e4
    values[(events >= 0.12) & (events < 0.13)] = 0.0
    return values


@pytest.mark.parametrize("ledger_kind", [DeviceLedger, HostLedger])
@pytest.mark.parametrize("factor", [1e3, 2.0, None])
@pytest.mark.parametrize("images", [1, 3])
def test_each_ledger_keeps_the_step_by_step_definition(ledger_kind: type, factor: float | None, images: int) -> None:
    generator = torch.Generator().manual_seed(images + int(factor or 0))
    steps = 120
    sequence = losses(steps, images, generator)
    starts = torch.rand(steps, images, 3, 4, 5, generator=generator)
    ledger = ledger_kind(torch.zeros(images, 3, 4, 5), factor)
    reference = Reference(torch.zeros(images, 3, 4, 5), factor)
    settle_at = set(torch.randint(0, steps, (25,), generator=generator).tolist()) | {steps - 1}
    handled = 0
    for step in range(steps):
        ledger.start.copy_(starts[step])  # the guard's before_step
        ledger.track(sequence[step], step)
        reference.track(starts[step], sequence[step], step)
        if step in settle_at:
            ledger.settle()
            state = ledger.state()
            assert set(state) == set(TRACKED)
            assert torch.equal(state["bad_step"], reference.bad_step), step
            torch.testing.assert_close(state["bad_loss"], reference.bad_loss, rtol=0, atol=0, equal_nan=True)
            assert torch.equal(state["best_step"], reference.best_step), step
            assert torch.equal(state["best_loss"], reference.best_loss), step
            assert torch.equal(state["best"], reference.best), step
            assert ledger.any_bad() == bool((reference.bad_step >= 0).any())
            handled += int((reference.bad_step >= 0).sum())
            ledger.clear_bad()  # handled, as the guard's _recover does
            reference.bad_step = torch.full_like(reference.bad_step, -1)
    assert handled >= 5 * images  # the comparisons did cover many bad steps


@pytest.mark.parametrize("ledger_kind", [DeviceLedger, HostLedger])
def test_a_ledger_resumes_from_either_ledgers_state(ledger_kind: type) -> None:
    """Checkpoints hold one format: a CPU run's state resumes on a GPU, and back."""
    generator = torch.Generator().manual_seed(0)
    sequence = losses(40, 2, generator)
    writer = (HostLedger if ledger_kind is DeviceLedger else DeviceLedger)(torch.zeros(2, 3, 4, 5), 1e3)
    for step in range(40):
        writer.start.copy_(torch.rand(2, 3, 4, 5, generator=generator))
        writer.track(sequence[step], step)
    reader = ledger_kind(torch.zeros(2, 3, 4, 5), 1e3)
    reader.load(writer.state())
    for name, value in reader.state().items():
        torch.testing.assert_close(value, writer.state()[name], rtol=0, atol=0, equal_nan=True)


def test_the_cpu_gets_the_host_ledger() -> None:
    assert isinstance(ledger_for(torch.zeros(1, 3, 4, 5), 1e3), HostLedger)
    assert isinstance(ledger_for(torch.zeros(1, 3, 4, 5, device="meta"), 1e3), DeviceLedger)
