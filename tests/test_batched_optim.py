"""Optimisers over a batch of images take, per image, the same steps as torch's optimiser on that
image alone: ``BatchedAdam`` and the unbounded ``ImageLBFGS`` (nst_exp.core.lbfgs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from nst_exp.core.lbfgs import ImageLBFGS
from nst_exp.core.line_search import strong_wolfe
from nst_exp.strategies.batched.optim import BatchedAdam

LBFGS_ARGS = {"max_iter": 1, "max_eval": 20, "history_size": 5, "line_search_fn": "strong_wolfe",
              "tolerance_grad": 0.0, "tolerance_change": 0.0}


def objective(x: Tensor, weights: Tensor) -> Tensor:
    """A non-quadratic per-image loss (B,): line searches have to bracket and zoom."""
    flat = x.flatten(1)
    rosen = (1 - flat[:, :-1]).square() + 10 * (flat[:, 1:] - flat[:, :-1].square()).square()
    return weights * rosen.sum(1) + flat.pow(4).sum(1)


def run(x0: Tensor, weights: Tensor, make: Callable[[list[Tensor]], torch.optim.Optimizer], steps: int,
        per_image: bool) -> Tensor:
    x = torch.nn.Parameter(x0.clone())
    opt = make([x])

    def closure() -> Tensor:
        opt.zero_grad()
        losses = objective(x, weights)
        losses.sum().backward()
        return losses.detach() if per_image else losses.sum().detach()

    for _ in range(steps):
        opt.step(closure)
    return x.detach()


@pytest.fixture
def problem() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(4, 2, 3, 3, generator=generator, dtype=torch.float64) * 2 - 1, \
        torch.tensor([1.0, 3.0, 10.0, 30.0], dtype=torch.float64)


def test_image_lbfgs_equals_torch_lbfgs_per_image(problem: tuple[Tensor, Tensor]) -> None:
    x0, weights = problem
    batched = run(x0, weights, lambda p: ImageLBFGS(p, lr=1.0, **LBFGS_ARGS), 25, per_image=True)
    for i in range(len(x0)):
        alone = run(x0[i:i + 1], weights[i:i + 1], lambda p: torch.optim.LBFGS(p, lr=1.0, **LBFGS_ARGS), 25,
                    per_image=False)
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-6, atol=1e-8)
    assert not torch.allclose(batched[0], batched[3], atol=1e-3)  # the weights really differ


def test_joint_torch_lbfgs_would_couple_the_images(problem: tuple[Tensor, Tensor]) -> None:
    """Why ImageLBFGS keeps a state per image: one L-BFGS over the whole batch is not B independent runs."""
    x0, weights = problem
    joint = run(x0, weights, lambda p: torch.optim.LBFGS(p, lr=1.0, **LBFGS_ARGS), 10, per_image=False)
    alone = run(x0[:1], weights[:1], lambda p: torch.optim.LBFGS(p, lr=1.0, **LBFGS_ARGS), 10, per_image=False)
    assert not torch.allclose(joint[:1], alone, atol=1e-4)


def test_image_lbfgs_fixed_step_and_per_image_lr(problem: tuple[Tensor, Tensor]) -> None:
    x0, weights = problem
    args = {**LBFGS_ARGS, "line_search_fn": None}
    lrs = [0.05, 0.1, 0.2, 0.05]
    batched = run(x0, weights, lambda p: ImageLBFGS(p, lr=lrs, **args), 6, per_image=True)
    for i, lr in enumerate(lrs):
        alone = run(x0[i:i + 1], weights[i:i + 1], lambda p, lr=lr: torch.optim.LBFGS(p, lr=lr, **args), 6,
                    per_image=False)
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-6, atol=1e-8)


def test_batched_adam_equals_torch_adam_per_image(problem: tuple[Tensor, Tensor]) -> None:
    x0, weights = problem
    lrs = [0.01, 0.02, 0.05, 0.1]
    batched = run(x0, weights, lambda p: BatchedAdam(p, lr=lrs), 30, per_image=True)
    for i, lr in enumerate(lrs):
        alone = run(x0[i:i + 1], weights[i:i + 1], lambda p, lr=lr: torch.optim.Adam(p, lr=lr), 30, per_image=False)
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-6, atol=1e-8)


def test_line_search_accepts_a_good_first_step() -> None:
    """On f(x) = x^2 from x = 1 along d = -1, t = 1 lands on the minimum: one trial, accepted."""
    search = strong_wolfe(1.0, torch.tensor([-1.0]), 1.0, -2.0)
    assert next(search) == 1.0
    with pytest.raises(StopIteration) as stop:
        search.send((0.0, 0.0))  # f(1) = 0, slope 0 there: both Wolfe conditions hold
    assert stop.value.value == 1.0


def test_line_search_grows_at_most_tenfold() -> None:
    """On f(t) = (t - 1)^2 - 1 from t = 0.02: still steep there (|slope| 1.96 > 0.9 * 2), so it
    extrapolates; the cubic's minimiser 1 is capped at torch's 10 t = 0.2, where |slope| 1.6 <= 1.8:
    accepted."""
    search = strong_wolfe(0.02, torch.tensor([1.0]), 0.0, -2.0)
    t, trials = next(search), []
    with pytest.raises(StopIteration) as stop:
        for _ in range(10):
            trials.append(t)
            t = search.send(((t - 1) ** 2 - 1, 2 * (t - 1)))
    assert trials == [0.02, pytest.approx(0.2)] and stop.value.value == pytest.approx(0.2)


@pytest.mark.parametrize("optimizer", [BatchedAdam, ImageLBFGS])
def test_lr_count_must_match_the_batch(optimizer: type) -> None:
    with pytest.raises(ValueError, match="optimizer.lr has 2 values for a batch of 3"):
        optimizer([torch.nn.Parameter(torch.zeros(3, 2))], lr=[0.1, 0.2])
