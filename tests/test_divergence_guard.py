"""The divergence guard's windowed bookkeeping against its definition, step by step.

``DivergenceGuard`` keeps the best image at every step but looks for the first bad step only
at the batch's end, for all its steps at once (engine/guards.py). The reference below is the
definition, one step at a time: a loss is bad if it is NaN/Inf or above ``explode_factor`` x
the best loss before it; the first bad step is kept until handled; a finite loss below the best
makes its start image the best.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from nst_exp.engine.guards import DivergenceGuard


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


@pytest.mark.parametrize("factor", [1e3, 2.0, None])
@pytest.mark.parametrize("images", [1, 3])
def test_windowed_bookkeeping_is_the_step_by_step_definition(factor: float | None, images: int) -> None:
    generator = torch.Generator().manual_seed(images + int(factor or 0))
    steps = 120
    sequence = losses(steps, images, generator)
    starts = torch.rand(steps, images, 3, 4, 5, generator=generator)
    module = SimpleNamespace(image=torch.zeros(images, 3, 4, 5), last_components={})
    trainer = SimpleNamespace(optimizers=[torch.optim.Adam([torch.zeros(1, requires_grad=True)])], global_step=0)
    guard = DivergenceGuard(explode_factor=factor)
    guard.on_train_start(trainer, module)
    reference = Reference(module.image, factor)
    settle_at = set(torch.randint(0, steps, (25,), generator=generator).tolist()) | {steps - 1}
    handled = 0
    for step in range(steps):
        module.image = starts[step]
        guard.before_step(trainer, module)
        module.last_components = {"loss": sequence[step]}
        trainer.global_step = step + 1
        guard.after_step(trainer, module)
        reference.track(starts[step], sequence[step], step)
        if step in settle_at:
            guard._settle()
            assert torch.equal(guard._bad_step, reference.bad_step), step
            torch.testing.assert_close(guard._bad_loss, reference.bad_loss, rtol=0, atol=0, equal_nan=True)
            assert torch.equal(guard._best_step, reference.best_step), step
            assert torch.equal(guard._best_loss, reference.best_loss), step
            assert torch.equal(guard._best, reference.best), step
            handled += int((reference.bad_step >= 0).sum())
            guard._bad_step = torch.full_like(guard._bad_step, -1)  # handled, as _recover does
            reference.bad_step = torch.full_like(reference.bad_step, -1)
    assert handled >= 5 * images  # the comparisons did cover many bad steps
