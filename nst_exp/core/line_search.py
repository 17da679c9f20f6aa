"""The two line searches of nst_exp's L-BFGS (``nst_exp.core.lbfgs``), as coroutines.

Each search yields a trial step length ``t`` and is sent back what it needs to know about the
point x(t); it returns the accepted step length. As coroutines, the searches of B independent
images share one batched evaluation per round of trial points.

- ``strong_wolfe``: the straight path x + t d of an unbounded run. torch's ``LBFGS`` search
  (its private ``_strong_wolfe``, a port of lswolfe.lua: bracket, then zoom with safeguarded
  cubic interpolation; Nocedal & Wright, Algorithms 3.5 and 3.6), with torch's constants,
  its evaluation limit and its arithmetic on 0-dim tensors, so a run takes torch's iterates.
  Sent (f(x(t)), g(x(t)).d) at each trial.
- ``projected_backtracking``: the bent path x(t) = clip(x + t d, lo, hi) of a bounded run.
  Only sufficient decrease is tested, against the START point's gradient:
  f(x(t)) <= f(x) + c1 g(x).(x(t) - x). A Wolfe curvature test compares slopes along one
  straight line; the projected path bends wherever a pixel reaches its bound, so it has no
  such slope to compare. Sent (f(x(t)), x(t) - x) at each trial.

Both take the sufficient-decrease (Armijo) decision through ``sufficient_decrease``, one
function a test can spy on.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

from torch import Tensor

Scalar = float | Tensor  # 0-dim tensors where torch's LBFGS keeps them so: the same rounding
WolfeSearch = Generator[Scalar, tuple[float, Scalar], Scalar]
ProjectedSearch = Generator[float, tuple[float, Tensor], float]
C1, C2 = 1e-4, 0.9  # torch's (and Nocedal & Wright's) sufficient-decrease and curvature constants


def sufficient_decrease(f_new: float, f: float, t: Scalar, slope: Scalar, c1: float = C1) -> bool:
    """Armijo: did f fall at least c1 times the linear model's decrease t * slope?

    ``slope`` must be taken at the START point of the search (its gradient along the step),
    never at the trial point. NaN/Inf losses fail the test (the trial was far too long).
    """
    return math.isfinite(f_new) and not f_new > f + c1 * t * slope


def cubic_minimum(x1: Scalar, f1: Scalar, g1: Scalar, x2: Scalar, f2: Scalar, g2: Scalar,
                  bounds: tuple[Scalar, Scalar] | None = None) -> Scalar:
    """Minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clipped to
    ``bounds`` (default: between the two points); the bounds' midpoint if it has none."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = d2_square.sqrt() if isinstance(d2_square, Tensor) else math.sqrt(d2_square)
    if x1 <= x2:
        at = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        at = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(at, low), high)


@dataclass
class Trial:
    """A point on the search line: step length, loss, slope g(x + t d).d."""

    t: Scalar
    f: float
    slope: Scalar


def strong_wolfe(t: Scalar, d: Tensor, f: float, gtd: Scalar, c1: float = C1, c2: float = C2,
                 tolerance_change: float = 1e-9, max_ls: int = 25) -> WolfeSearch:
    """Find t with sufficient decrease and |g(x + t d).d| <= c2 |g(x).d| along x + t d.

    ``f`` and ``gtd`` (= g(x).d < 0) are the start point's loss and slope. Yields trial steps,
    is sent (loss, slope) at each; returns the accepted step. ``max_ls``: trials after the
    first (torch's LBFGS passes max_eval - 1 with one iteration per step); when they are
    spent, the lower end of the bracket, as torch.
    """
    start, trial = Trial(0.0, f, gtd), Trial(t, *(yield t))
    previous, evaluations = start, 1
    bracket = None  # two Trials enclosing a strong-Wolfe point, kept in torch's order
    while evaluations <= max_ls:  # bracketing: grow t until the minimum is enclosed
        decreased = sufficient_decrease(trial.f, f, trial.t, gtd, c1)
        if not decreased or (evaluations > 2 and trial.f >= previous.f):
            bracket = [previous, trial]
            break
        if abs(trial.slope) <= -c2 * gtd:
            return trial.t  # strong Wolfe holds
        if trial.slope >= 0:
            bracket = [previous, trial]
            break
        grown = cubic_minimum(previous.t, previous.f, previous.slope, trial.t, trial.f, trial.slope,
                              bounds=(trial.t + 0.01 * (trial.t - previous.t), trial.t * 10))
        previous, trial = trial, Trial(grown, *(yield grown))
        evaluations += 1
    if bracket is None:
        bracket = [start, trial]  # out of trials while growing: torch's fallback
    low, d_norm, stuck = _lower(bracket), d.abs().max(), False
    while evaluations <= max_ls:  # zoom: shrink the bracket around a strong-Wolfe point
        if abs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change:
            break
        t, stuck = _zoom_step(bracket, stuck)
        trial = Trial(t, *(yield t))
        evaluations += 1
        high = 1 - low
        if not sufficient_decrease(trial.f, f, trial.t, gtd, c1) or trial.f >= bracket[low].f:
            bracket[high] = trial
            low = _lower(bracket)
            continue
        if abs(trial.slope) <= -c2 * gtd:
            return trial.t
        if trial.slope * (bracket[high].t - bracket[low].t) >= 0:
            bracket[high] = bracket[low]
        bracket[low] = trial
    return bracket[low].t


def _lower(bracket: list[Trial]) -> int:
    """Index of the bracket end with the lower loss (the first on a tie, as torch)."""
    return 0 if bracket[0].f <= bracket[1].f else 1


def _zoom_step(bracket: list[Trial], stuck: bool) -> tuple[Scalar, bool]:
    """The next trial inside the bracket (cubic interpolation), kept a tenth of the bracket away
    from its ends when the last trial also landed near one (torch's "insufficient progress")."""
    a, b = bracket
    t = cubic_minimum(a.t, a.f, a.slope, b.t, b.f, b.slope)
    left, right = min(a.t, b.t), max(a.t, b.t)
    margin = 0.1 * (right - left)
    if not min(right - t, t - left) < margin:
        return t, False
    if not (stuck or t >= right or t <= left):
        return t, True
    return (right - margin if abs(t - right) < abs(t - left) else left + margin), False


def projected_backtracking(t: float, f: float, grad: Tensor, c1: float = C1,
                           max_ls: int = 25) -> ProjectedSearch:
    """Backtrack from ``t`` until f(x(t)) <= f + c1 grad.(x(t) - x), with ``grad`` = g(x).

    Yields trial steps, is sent (loss, x(t) - x) at each; 1 + ``max_ls`` trials at most,
    as ``strong_wolfe``. Shrinks by the minimiser of the
    quadratic through f, the path's start slope and f(x(t)), kept in [0.1 t, 0.5 t]; NaN/Inf:
    t / 10. Out of trials, returns the best one that lowered f, else 0 (no move).
    """
    best_t, best_f = 0.0, f
    for _ in range(max_ls + 1):
        f_t, step = yield t
        slope = min(float(grad.dot(step)), 0.0)  # the START point's gradient along the step taken
        if sufficient_decrease(f_t, f, 1.0, slope, c1):  # (<= 0 for an active-set direction; if not, f must fall)
            return t
        if f_t < best_f:
            best_t, best_f = t, f_t
        if not math.isfinite(f_t):
            t *= 0.1
            continue
        per_t = slope / t
        curvature = f_t - f - per_t * t
        t = min(max(-per_t * t * t / (2 * curvature), 0.1 * t), 0.5 * t) if curvature > 0 else 0.5 * t
    return best_t
