"""Optimisers for a batch of independent images: one optimiser state per image (dim 0).

A batched sweep optimises B images at once; each must follow exactly the path it would follow
alone. Adam is element-wise, so only a per-image learning rate is new. L-BFGS is not: torch's
``LBFGS`` over the joint (B, 3, H, W) tensor would share one history, one step length and one
line search between the images. ``BatchedLBFGS`` keeps a history and a strong-Wolfe line
search per image and evaluates all pending trial points in one batched forward/backward.

Both take a closure that returns the per-image losses, shape (B,) (``per_image_loss``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.optim import LBFGS, Optimizer

from nst_exp.core.box_lbfgs import two_loop

Closure = Callable[[], Tensor]
# A line search yields trial step lengths and is sent back (loss, gradient) at each one.
# Scalars stay 0-dim tensors where torch's LBFGS keeps them so, to round exactly as it does.
Scalar = float | Tensor
LineSearch = Generator[Scalar, tuple[float, Tensor], tuple[float, Tensor, Scalar]]


def per_image(lr: float | Sequence[float], batch: int) -> list[float]:
    """A learning rate per image from one value or a length-B sequence."""
    values = [float(lr)] * batch if isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(values) != batch:
        raise ValueError(f"optimizer.lr has {len(values)} values for a batch of {batch} images")
    return values


class BatchedAdam(Optimizer):
    """Adam (Kingma & Ba) on one (B, ...) tensor with a learning rate per image.

    Same update as ``torch.optim.Adam`` without amsgrad; with one image it matches it to
    float rounding.
    """

    per_image_loss = True

    def __init__(self, params: Sequence[Tensor], lr: float | Sequence[float] = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        (param,) = self.param_groups[0]["params"]
        self.image_lr = torch.tensor(per_image(lr, param.shape[0]), device=param.device,
                                     dtype=param.dtype).view(-1, *[1] * (param.dim() - 1))

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        (beta1, beta2), (param,) = group["betas"], group["params"]
        if param.grad is None:
            return loss
        grad = param.grad if group["weight_decay"] == 0 else param.grad.add(param, alpha=group["weight_decay"])
        state = self.state[param]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
        state["step"] += 1
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1, correction2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(correction2)).add_(group["eps"])
        param.sub_(self.image_lr / correction1 * state["exp_avg"] / denom)
        return loss


@dataclass
class ImageHistory:
    """One image's L-BFGS memory, as torch's LBFGS keeps it in ``state``."""

    n_iter: int = 0
    d: Tensor | None = None
    t: Scalar = 0.0
    old_dirs: list[Tensor] = field(default_factory=list)
    old_stps: list[Tensor] = field(default_factory=list)
    ro: list[Tensor] = field(default_factory=list)
    h_diag: Scalar = 1.0
    prev_grad: Tensor | None = None

    def direction(self, grad: Tensor, history_size: int) -> Tensor:
        """Update the history with the last step and return the two-loop quasi-Newton direction."""
        self.n_iter += 1
        if self.n_iter == 1:
            return grad.neg()
        y, s = grad.sub(self.prev_grad), self.d.mul(self.t)
        ys = y.dot(s)
        if ys > 1e-10:  # skip updates that would break positive definiteness, as torch does
            if len(self.old_dirs) == history_size:
                self.old_dirs.pop(0), self.old_stps.pop(0), self.ro.pop(0)
            self.old_dirs.append(y), self.old_stps.append(s), self.ro.append(1.0 / ys)
            self.h_diag = ys / y.dot(y)
        return two_loop(grad.neg(), self.old_stps, self.old_dirs, self.ro, self.h_diag)


def cubic_minimum(x1: Scalar, f1: Scalar, g1: Scalar, x2: Scalar, f2: Scalar, g2: Scalar,
                  bounds: tuple[Scalar, Scalar] | None = None) -> Scalar:
    """Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``."""
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


def strong_wolfe(t: Scalar, d: Tensor, f: float, g: Tensor, gtd: Tensor, c1: float = 1e-4, c2: float = 0.9,
                 tolerance_change: float = 1e-9, max_ls: int = 25) -> LineSearch:
    """torch's ``_strong_wolfe`` (More-Thuente style bracket + zoom) as a coroutine.

    It yields each trial step length and is sent (loss, gradient) there, so B searches can
    share one batched evaluation per trial. Returns (loss, gradient, step) of the accepted point.
    """
    d_norm = d.abs().max()
    f_new, g_new = yield t
    gtd_new = g_new.dot(d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done, ls_iter = False, 0
    bracket, bracket_f, bracket_g, bracket_gtd = [0.0, t], [f, f_new], [g, g_new], [gtd, gtd_new]
    while ls_iter < max_ls:  # bracketing phase
        rejected = f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev)
        if not rejected and abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if rejected or gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        t_prev, t = t, cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                     bounds=(t + 0.01 * (t - t_prev), t * 10))
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = yield t
        gtd_new = g_new.dot(d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
    insufficient = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:  # zoom phase
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:  # too close to an end of the bracket
            if insufficient or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = yield t
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low]


class BatchedLBFGS(LBFGS):
    """L-BFGS with a history, a step length and a line search per image (dim 0).

    Per image it follows torch's ``LBFGS`` with ``max_iter=1`` (one iteration per step, the
    configuration nst-exp uses); with one image it takes the same steps to float rounding.
    Each batched evaluation serves every image still searching; images that are done wait.
    """

    per_image_loss = True

    def __init__(self, params: Sequence[Tensor], lr: float | Sequence[float] = 1.0, max_iter: int = 1,
                 **kwargs: object) -> None:
        if max_iter != 1:
            raise ValueError(f"optimizer.max_iter={max_iter}: batched L-BFGS runs one iteration per step")
        super().__init__(params, lr=1.0, max_iter=1, **kwargs)
        if self.param_groups[0]["line_search_fn"] not in (None, "strong_wolfe"):
            raise RuntimeError("only 'strong_wolfe' is supported")  # before any history is touched
        (param,) = self._params
        self.image_lr = per_image(lr, param.shape[0])
        self.histories = [ImageHistory() for _ in range(param.shape[0])]

    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:  # type: ignore[override]
        group, (param,) = self.param_groups[0], self._params
        losses, grads = self._evaluate(closure, param)
        first, start = losses, param.detach().clone()
        directions, searches = {}, {}
        for i, history in enumerate(self.histories):
            f, g = float(losses[i]), grads[i].clone()
            if float(g.abs().max()) <= group["tolerance_grad"]:
                continue  # converged: torch returns before touching the history
            d = history.direction(g, group["history_size"])
            history.prev_grad = g
            t = min(1.0, 1.0 / g.abs().sum()) * self.image_lr[i] if history.n_iter == 1 else self.image_lr[i]
            gtd = g.dot(d)
            history.d, history.t = d, t
            if gtd > -group["tolerance_change"]:
                continue  # not a descent direction: no move this step
            directions[i] = d
            if group["line_search_fn"] == "strong_wolfe":
                searches[i] = strong_wolfe(t, d, f, g, gtd, max_ls=group["max_eval"] - 1)
        trials = {i: next(search) for i, search in searches.items()}
        while trials:
            for i, t in trials.items():
                param[i].copy_(start[i]).add_(directions[i].view_as(param[i]), alpha=t)
            losses, grads = self._evaluate(closure, param)
            pending = {}
            for i in trials:
                try:
                    pending[i] = searches[i].send((float(losses[i]), grads[i].clone()))
                except StopIteration as accepted:
                    self.histories[i].t = accepted.value[2]
            trials = pending
        for i, d in directions.items():
            param[i].copy_(start[i]).add_(d.view_as(param[i]), alpha=self.histories[i].t)
        return first

    def _evaluate(self, closure: Closure, param: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image losses (B,) and flat gradients (B, N) at the current batch."""
        with torch.enable_grad():
            losses = closure()
        return losses.detach().reshape(-1).cpu(), param.grad.detach().reshape(param.shape[0], -1)
