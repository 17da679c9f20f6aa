"""torch's L-BFGS, stepping in a recipe's pixel units, for an image kept in [0, 1].

jcjohnson/neural-style (and neural-style-pt) optimise the Caffe input ``u = k * x - mean`` (BGR,
k = 256 there) with ``torch.optim.LBFGS`` at a *fixed* step: no line search, lr = 1. Our image
is ``x`` in [0, 1]. Write g_u = dL/du = (dL/dx) / k. L-BFGS is invariant to rescaling its
variable in every step but the first:

- the first step is ``-min(1, 1 / |g|_1) * lr * g``: in u units it moves u by
  ``g_u / |g_u|_1`` (when |g_u|_1 >= 1), in x units it would move x by ``g_x / |g_x|_1``, i.e. u
  by k times as much. That is the 3.3e30 blow-up of running the recipe's optimiser on x.
- later steps are ``t * d`` with ``d = -H g`` from the two-loop recursion and t = lr. With
  s_x = s_u / k and y_x = k y_u, every curvature pair gives ``y.s`` unchanged (so the
  ``y.s > 1e-10`` acceptance test too) and the initial scaling ``y.s / y.y`` shrinks by k^2,
  so ``d_x = d_u / k``: the same move.

No single learning rate fixes the first step without rescaling all the others. So this
optimiser runs torch's algorithm itself on u: it reads ``g_u = grad / k`` and moves the image
by ``update / k`` (``_gather_flat_grad`` / ``_add_grad``, the two places torch's LBFGS touches
gradients and parameters, line search included). The mean shift drops out of every difference.
With k a power of two (256) both divisions are exact in floating point, so the iterates are
the recipe's up to the rounding of ``k * x - mean`` itself (tests/test_neural_style.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor
from torch.optim import LBFGS

from nst_exp.core.history import PlainStateDict, pairs


class PixelLBFGS(PlainStateDict, LBFGS):
    """``torch.optim.LBFGS`` whose variable is ``pixel_scale`` times the parameter.

    All other arguments are torch's, in the recipe's units (``lr``, ``tolerance_grad`` …).
    """

    def __init__(self, params: Iterable[Tensor], pixel_scale: float = 256.0, **options: object) -> None:
        if not pixel_scale > 0:
            raise ValueError(f"optimizer.pixel_scale={pixel_scale!r}: must be a number > 0")
        super().__init__(params, **options)  # type: ignore[arg-type]
        self.pixel_scale = float(pixel_scale)

    def _gather_flat_grad(self) -> Tensor:
        """dL/du = dL/dx / k (chain rule through u = k x - mean)."""
        return super()._gather_flat_grad() / self.pixel_scale

    def _add_grad(self, step_size: float, update: Tensor) -> None:  # type: ignore[override]
        """u += step * update, i.e. x += step * update / k."""
        super()._add_grad(step_size / self.pixel_scale, update)

    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """torch's step; its (s, y) lists then move into one block each (core/history.py)."""
        loss = super().step(closure)
        state, size = self.state[self._params[0]], self.param_groups[0]["history_size"]
        for key in ("old_dirs", "old_stps"):
            if key in state:
                state[key] = pairs(state[key], size)
        return loss
