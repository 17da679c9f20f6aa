"""nst_exp's L-BFGS (``core.lbfgs.ImageLBFGS``) checked against reference solvers, not only by
"the loss went down": unbounded, its iterates are ``torch.optim.LBFGS``'s; bounded, it reaches
SciPy's L-BFGS-B optimum. Plus the two bugs the reference checks exist for: the sufficient-
decrease test gets the START point's slope, and curvature pairs of a small loss are kept."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import Tensor

import nst_exp.core.line_search as line_search
from conftest import FAST, compose_cfg
from nst_exp.core.lbfgs import ImageLBFGS

Objective = Callable[[Tensor], Tensor]  # (B, ...) -> per-image losses (B,)
ARGS = {"max_iter": 1, "max_eval": 20, "history_size": 5, "tolerance_grad": 0.0, "tolerance_change": 0.0}


def iterates(make: Callable[[list[Tensor]], torch.optim.Optimizer], objective: Objective, x0: Tensor,
             steps: int) -> Tensor:
    """The point after each of ``steps`` optimiser steps, stacked."""
    x = torch.nn.Parameter(x0.clone().contiguous())  # torch's LBFGS flattens grads with .view()
    opt = make([x])
    return torch.stack([take_steps(opt, x, objective, 1) for _ in range(steps)])


def take_steps(opt: torch.optim.Optimizer, x: Tensor, objective: Objective, steps: int) -> Tensor:
    """``steps`` steps of ``opt`` on ``x`` (per-image losses for ImageLBFGS); the point reached."""
    def closure() -> Tensor:
        opt.zero_grad()
        losses = objective(x)
        losses.sum().backward()
        return losses.detach() if isinstance(opt, ImageLBFGS) else losses.sum().detach()

    for _ in range(steps):
        opt.step(closure)
    return x.detach().clone()


def quadratic(n: int, seed: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """A well-conditioned positive definite A and a b: f(x) = x.A x / 2 - b.x."""
    generator = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=generator, dtype=dtype)
    return m @ m.T / n + 0.5 * torch.eye(n, dtype=dtype), torch.randn(n, generator=generator, dtype=dtype)


def quadratic_loss(a: Tensor, b: Tensor, scale: float = 1.0) -> Objective:
    return lambda x: scale * (0.5 * ((x.flatten(1) @ a) * x.flatten(1)).sum(1) - x.flatten(1) @ b)


def rosenbrock(x: Tensor) -> Tensor:
    flat = x.flatten(1)
    return (100 * (flat[:, 1:] - flat[:, :-1].square()).square() + (1 - flat[:, :-1]).square()).sum(1)


@pytest.mark.parametrize("search", ["strong_wolfe", None])
def test_unbounded_iterates_are_torch_lbfgs_on_a_quadratic(search: str | None) -> None:
    """Same history size and line search: torch's iterates. The two share every operation in
    the same order on one machine, so 1e-6 is loose (they agree to the bit here)."""
    a, b = quadratic(30, seed=0)
    args = {**ARGS, "line_search_fn": search, "lr": 1.0 if search else 0.5}
    ours = iterates(lambda p: ImageLBFGS(p, **args), quadratic_loss(a, b), torch.zeros(1, 30), 12)
    torch_s = iterates(lambda p: torch.optim.LBFGS(p, **args), quadratic_loss(a, b), torch.zeros(1, 30), 12)
    torch.testing.assert_close(ours, torch_s, rtol=0, atol=1e-6)
    assert float((ours[0] - ours[-1]).abs().max()) > 0.1  # it really moved, 12 steps worth


@pytest.fixture(scope="module")
def style_transfer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Objective, Tensor]:
    """A run's 32 px objective (random VGG to relu2_1, Gram style and content losses) and its
    start (the content image)."""
    from nst_exp.runtime.build import build_module

    layers = ["layers.style=[relu1_1,relu2_1]", "layers.content=[relu2_1]", "style_weight=1e4"]
    module = build_module(compose_cfg(*FAST, *layers, output_dir=tmp_path_factory.mktemp("run")))
    return (lambda x: module.components(x)["loss"]), module.image.detach()


@pytest.mark.parametrize("search", ["strong_wolfe", None])
def test_unbounded_iterates_are_torch_lbfgs_on_style_transfer(style_transfer: tuple[Objective, Tensor],
                                                              search: str | None) -> None:
    """6 steps in float32: 1e-6 on pixels in [0, 1] is float32 rounding of the same arithmetic
    (they agree to the bit on one machine)."""
    objective, x0 = style_transfer
    args = {**ARGS, "line_search_fn": search, "lr": 1.0 if search else 0.1, "history_size": 10}
    ours = iterates(lambda p: ImageLBFGS(p, **args), objective, x0, 6)
    torch_s = iterates(lambda p: torch.optim.LBFGS(p, **args), objective, x0, 6)
    torch.testing.assert_close(ours, torch_s, rtol=0, atol=1e-6)
    assert float(objective(ours[-1])) < 0.8 * float(objective(x0))


def scipy_optimum(f: Callable[[np.ndarray], float], x0: np.ndarray, bounds: list[tuple[float, float]]) -> np.ndarray:
    """SciPy's L-BFGS-B run to its tightest tolerances: the reference optimum."""
    result = minimize(f, x0, method="L-BFGS-B", bounds=bounds,
                      options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000, "maxfun": 100000})
    assert result.success, result.message
    return result.x


def bounded_solution(objective: Objective, x0: Tensor, bounds: tuple[float, float], steps: int) -> Tensor:
    args = {**ARGS, "line_search_fn": "strong_wolfe", "history_size": 10}
    return iterates(lambda p: ImageLBFGS(p, bounds=bounds, **args), objective, x0, steps)[-1]


def test_bounded_reaches_scipy_lbfgsb_on_a_box_constrained_quadratic() -> None:
    """float64, a quadratic whose free minimum lies partly outside [0, 1]: the same optimum as
    L-BFGS-B to 1e-6 (both converge far below that; the optimum is unique, A is positive definite)."""
    a, b = quadratic(40, seed=1, dtype=torch.float64)
    b = 3 * b
    objective = quadratic_loss(a, b)
    x0 = torch.full((1, 40), 0.5, dtype=torch.float64)
    ours = bounded_solution(objective, x0, (0.0, 1.0), 60)[0].numpy()
    reference = scipy_optimum(lambda x: float(objective(torch.from_numpy(x)[None])), x0[0].numpy(), [(0, 1)] * 40)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    active = (reference <= 1e-9) | (reference >= 1 - 1e-9)
    assert 5 <= active.sum() <= 35  # both bounds matter and some coordinates are free


def test_bounded_reaches_scipy_lbfgsb_on_rosenbrock_with_active_bounds() -> None:
    """Rosenbrock in [-1.5, 0.5]^6: its minimum (1, ..., 1) is outside, the box's lies on the upper
    bound for some coordinates. Same optimum as L-BFGS-B to 1e-6."""
    x0 = torch.tensor([[-1.2, 0.3, -0.8, 0.0, -1.0, 0.2]], dtype=torch.float64)
    bounds = (-1.5, 0.5)
    ours = bounded_solution(rosenbrock, x0, bounds, 200)[0].numpy()
    reference = scipy_optimum(lambda x: float(rosenbrock(torch.from_numpy(x)[None])), x0[0].numpy(), [bounds] * 6)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    assert np.isclose(reference, bounds[1]).sum() >= 1  # an active bound


def test_sufficient_decrease_gets_the_start_points_slope(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trial's Armijo test is given g(x0).(x(t) - x0), with g at the step's START point;
    the old bug handed it the trial point's gradient (a view of param.grad refilled by the trial)."""
    seen: list[tuple[float, float]] = []  # (loss, slope) the test was given
    real = line_search.sufficient_decrease

    def spy(f_new: float, f: float, t: float, slope: float, c1: float = line_search.C1) -> bool:
        seen.append((f_new, float(t) * float(slope)))
        return real(f_new, f, t, slope, c1)

    monkeypatch.setattr(line_search, "sufficient_decrease", spy)
    x = torch.nn.Parameter(torch.tensor([[-1.2, 0.3, -0.8, 0.0, -1.0, 0.2]], dtype=torch.float64))
    opt = ImageLBFGS([x], bounds=(-1.5, 0.5), line_search_fn="strong_wolfe", **{**ARGS, "lr": 3.0})
    evaluated: list[tuple[Tensor, Tensor, float]] = []  # (point, gradient, loss) of every evaluation

    def closure() -> Tensor:
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.sum().backward()
        evaluated.append((x.detach().clone(), x.grad.detach().clone(), float(loss.detach())))
        return loss.detach()

    expected, at_trial = [], []
    for _ in range(8):
        start = len(evaluated)
        opt.step(closure)
        (x0, g0, _), trials = evaluated[start], evaluated[start + 1:]
        expected += [(f, float(g0.flatten() @ (xt - x0).flatten())) for xt, _, f in trials]
        at_trial += [float(gt.flatten() @ (xt - x0).flatten()) for xt, gt, _ in trials]
    assert len(seen) == len(expected) > 8  # some steps backtracked
    for (f_seen, slope_seen), (f, slope) in zip(seen, expected):
        assert f_seen == f and slope_seen == pytest.approx(min(slope, 0.0), rel=1e-12)
    assert any(abs(a - b) > 0.1 * abs(b) for a, b in zip(at_trial, (s for _, s in expected)))  # it matters


def kept_pairs(opt: torch.optim.Optimizer, x: Tensor, objective: Objective, steps: int) -> int:
    """Curvature pairs in the history after ``steps`` steps."""
    take_steps(opt, x, objective, steps)
    return len(opt.memory(0)["stps"]) if isinstance(opt, ImageLBFGS) else len(opt.state[x]["old_dirs"])


def test_small_losses_keep_their_curvature_pairs() -> None:
    """torch keeps a pair when s.y > 1e-10, whatever the loss's scale: s.y scales with the loss,
    so a small loss (here a quadratic times 1e-13) loses every pair and L-BFGS degrades to
    gradient descent. The relative test (s.y > eps |g.s|, SciPy's) keeps them all and
    converges; float64, so the tiny losses are resolved."""
    a, b = quadratic(30, seed=2, dtype=torch.float64)
    objective = quadratic_loss(a, b, scale=1e-13)
    optimum = torch.linalg.solve(a, b)[None]
    args = {**ARGS, "line_search_fn": "strong_wolfe", "history_size": 10}
    x, y = (torch.nn.Parameter(torch.zeros(1, 30, dtype=torch.float64)) for _ in range(2))
    assert kept_pairs(ImageLBFGS([x], **args), x, objective, 12) == 10  # one per step after the first, 10 kept
    assert kept_pairs(torch.optim.LBFGS([y], **args), y, objective, 12) == 0
    assert float((x.detach() - optimum).abs().max()) < 1e-3 < float((y.detach() - optimum).abs().max())


def test_a_batch_of_three_is_three_single_runs() -> None:
    """One history, step and line search per image (per-image lr included), bounded and not.
    A (3, N) reduction may round differently from three (1, N) ones: 1e-9 in float64."""
    generator = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 2, 4, generator=generator, dtype=torch.float64)
    weights = torch.tensor([1.0, 3.0, 10.0], dtype=torch.float64)

    def weighted(w: Tensor) -> Objective:
        return lambda x: w * rosenbrock(x) + x.flatten(1).pow(4).sum(1)

    lrs = [1.0, 0.5, 0.25]
    for bounds in (None, (0.0, 0.8)):
        args = {**ARGS, "line_search_fn": "strong_wolfe", "bounds": bounds}
        batch = iterates(lambda p, a=args: ImageLBFGS(p, lr=lrs, **a), weighted(weights), x0, 10)
        for i in range(3):
            alone = iterates(lambda p, a=args, i=i: ImageLBFGS(p, lr=lrs[i], **a), weighted(weights[i:i + 1]),
                             x0[i:i + 1], 10)
            torch.testing.assert_close(batch[:, i:i + 1], alone, rtol=0, atol=1e-9)
        assert not torch.allclose(batch[-1, 0], batch[-1, 2], atol=1e-3)  # the images really differ
