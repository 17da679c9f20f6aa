"""nst_exp's L-BFGS: one history, one step and one line search per image, bounds optional.

Every L-BFGS run goes through ``ImageLBFGS`` (``image_lbfgs`` swaps it in for the configured
``torch.optim.LBFGS``): a single image, a batch of sweep jobs (B independent images along
dim 0, each following exactly the path it would follow alone) and the tiles of a tiled run.
All pending trial points of a step are evaluated in one batched forward/backward; the
closure returns per-image losses (B,) (a scalar for one image).

- ``bounds=None``: torch's ``LBFGS`` per image, one iteration per step (``max_iter=1``): the
  same direction (two-loop recursion), first step, and line search (``line_search_fn=
  'strong_wolfe'``: ``line_search.strong_wolfe``; None: the fixed step ``lr``), hence the same
  iterates (tests/test_lbfgs_reference.py).
- ``bounds=(lo, hi)`` (``clamp=auto``: pixels in [0, 1], as Gatys et al.'s SciPy L-BFGS-B):
  projected L-BFGS with an active set (Bertsekas' two-metric projection; Kim, Sra & Dhillon
  2010). Pixels at a bound whose gradient points outwards are held; the two-loop direction on
  the others is a descent direction; the step follows the projected path clip(x + t d, lo, hi)
  with ``line_search.projected_backtracking`` (for either ``line_search_fn`` but None, which
  takes the fixed step). It reaches L-BFGS-B's optimum (same tests). torch's unconstrained
  L-BFGS cannot do this: clamping between its steps corrupts its curvature pairs, clamping at
  the end saves an image that was never optimised.

Curvature pairs (s, y) are kept when s.y > eps |g.s| (g: the gradient where the step started,
eps: float64's machine epsilon): SciPy L-BFGS-B's rule (lbfgsb.f, "skip the L-BFGS update"),
invariant to the loss's scale, where torch's absolute s.y > 1e-10 drops every pair of a
small loss. Gradients are cloned when kept: ``param.grad`` is refilled by every evaluation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import LBFGS, Optimizer

from nst_exp.core.history import PlainStateDict, pairs
from nst_exp.core.line_search import projected_backtracking, strong_wolfe
from nst_exp.core.per_image import PerImageControl, init_per_image, per_image, scale_lr

Closure = Callable[[], Tensor]
EPS = torch.finfo(torch.float64).eps  # SciPy L-BFGS-B's epsmch
SEARCHES = (None, "strong_wolfe")


def two_loop(q: Tensor, stps: Sequence[Tensor], dirs: Sequence[Tensor], ro: Sequence[Tensor | float],
             h_diag: Tensor | float) -> Tensor:
    """L-BFGS's two-loop recursion: H q for the inverse-Hessian estimate of the (s, y) pairs.

    ``q`` is overwritten (callers pass a fresh tensor); the operations and their order are
    torch's ``LBFGS``, so the result rounds exactly as torch's direction does.
    """
    alphas = []
    for s_i, y_i, ro_i in zip(reversed(stps), reversed(dirs), reversed(ro)):
        alphas.append(s_i.dot(q) * ro_i)
        q.add_(y_i, alpha=-alphas[-1])
    r = q.mul_(h_diag)
    for s_i, y_i, ro_i, a_i in zip(stps, dirs, ro, reversed(alphas)):
        r.add_(s_i, alpha=a_i - y_i.dot(r) * ro_i)
    return r


class ImageLBFGS(PlainStateDict, PerImageControl, Optimizer):
    """L-BFGS on one (B, ...) tensor, per image along dim 0; projected into ``bounds`` if given.

    Takes torch ``LBFGS``'s arguments, so ``optimizer=lbfgs`` configs work unchanged; ``lr``
    may be one value per image (a batched sweep). ``max_eval`` bounds a step's evaluations as
    torch's does with one iteration per step: 1 + a search of up to ``max_eval`` trials
    (torch's default ``max_iter * 5 // 4`` = 1 leaves the search a single trial).
    The histories live in ``self.state`` (checkpointed with the optimiser; ``state.clear()``
    forgets them all, as for torch's, see engine.guards.reset_optimizer).
    """

    per_image_loss = True

    def __init__(self, params: Sequence[Tensor], lr: float | Sequence[float] = 1.0, max_iter: int = 1,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None,
                 bounds: tuple[float, float] | None = None) -> None:
        if max_iter != 1:
            raise ValueError(f"optimizer.max_iter={max_iter}: nst-exp's L-BFGS runs one iteration per step")
        if line_search_fn not in SEARCHES:
            raise ValueError(f"optimizer.line_search_fn={line_search_fn!r}: one of strong_wolfe, null")
        max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
        scalar = isinstance(lr, (int, float))  # one lr: in the group, where the divergence guard scales it
        super().__init__(params, {"lr": float(lr) if scalar else 1.0, "max_iter": 1, "max_eval": max_eval,
                                  "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                                  "history_size": history_size, "line_search_fn": line_search_fn})
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise ValueError("ImageLBFGS optimises one (B, ...) image tensor")
        batch = self._param.shape[0]
        init_per_image(self.param_groups[0], per_image(1.0 if scalar else lr, batch))
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))

    @property
    def _param(self) -> Tensor:
        return self.param_groups[0]["params"][0]

    def lr_of(self, index: int) -> float:
        return float(self.param_groups[0]["lr"] * self.param_groups[0]["image_lr"][index])

    def reset_image(self, index: int, lr_factor: float = 1.0) -> float:
        """Forget image ``index``'s history (as ``state.clear()`` would for it alone) and scale
        its lr; returns the new lr. The other images' histories are untouched."""
        self.state[self._param].get("images", {}).pop(index, None)
        scale_lr(self.param_groups[0], index, lr_factor)
        return self.lr_of(index)

    def memory(self, index: int) -> dict[str, Any]:
        """Image ``index``'s history: (s, y) pairs, 1/(s.y), the scaling, last gradient and step."""
        images, size = self.state[self._param].setdefault("images", {}), self.param_groups[0]["history_size"]
        memory = images.setdefault(index, {"n_iter": 0, "stps": [], "dirs": [], "ro": [], "h_diag": 1.0,
                                           "grad": None, "s": None})
        memory["stps"], memory["dirs"] = pairs(memory["stps"], size), pairs(memory["dirs"], size)  # one block each
        return memory

    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:  # type: ignore[override]
        """One L-BFGS iteration for every image not frozen; returns the closure's first losses."""
        param, group = self._param, self.param_groups[0]
        first, losses, grads = _evaluate(closure, param)
        start = param.detach().reshape(param.shape[0], -1).clone()
        moves, searches = {}, {}
        for i in range(param.shape[0]):
            if group["frozen"][i]:
                continue  # its job has stopped: no move, no history update
            move = self._begin(i, losses[i], grads[i].clone(), start[i])
            if move is None:
                continue
            moves[i] = move
            if move[2] is None:
                self._finish(i, start[i], move[0], move[1])
            else:
                searches[i] = move[2]
        trials = {i: next(search) for i, search in searches.items()}
        while trials:
            steps = {i: self._place(i, start[i], moves[i][0], t) for i, t in trials.items()}
            _, losses, grads = _evaluate(closure, param)
            pending = {}
            for i in trials:
                # strong Wolfe needs the trial's slope g(x(t)).d; the projected search the step
                # x(t) - x only (its sufficient-decrease slope is the start point's gradient)
                sent = steps[i] if self.bounds is not None else grads[i].dot(moves[i][0])
                try:
                    pending[i] = searches[i].send((losses[i], sent))
                except StopIteration as accepted:
                    self._finish(i, start[i], moves[i][0], accepted.value)
            trials = pending
        return first

    def _begin(self, index: int, f: float, grad: Tensor, x: Tensor) -> tuple[Tensor, Any, Any] | None:
        """Update image ``index``'s history at the step's start; (direction, first step length,
        line search or None), or None where the image does not move this step."""
        group, memory = self.param_groups[0], self.memory(index)
        free = self._free(x, grad)
        projected = grad if free is None else grad.mul(free)
        if projected.abs().max() <= group["tolerance_grad"]:
            return None  # stationary (for the box problem): torch returns before its history
        memory["n_iter"] += 1
        d = self._direction(memory, grad, projected, free)
        memory["grad"], memory["s"] = grad, None
        lr = group["lr"] * group["image_lr"][index]
        t = min(1.0, 1.0 / projected.abs().sum()) * lr if memory["n_iter"] == 1 else lr
        gtd = grad.dot(d)
        if gtd > -group["tolerance_change"]:
            return None  # not a descent direction: no move this step
        if group["line_search_fn"] is None:
            return d, t, None
        max_ls = group["max_eval"] - 1  # trials after the first: torch's max_eval - current_evals
        if self.bounds is not None:
            return d, t, projected_backtracking(float(t), f, grad, max_ls=max_ls)
        return d, t, strong_wolfe(t, d, f, gtd, max_ls=max_ls)

    def _direction(self, memory: dict[str, Any], grad: Tensor, projected: Tensor, free: Tensor | None) -> Tensor:
        """Keep the last step's curvature pair if it passes the relative test; the two-loop
        direction, zero on the held pixels of a bounded run."""
        if memory["n_iter"] == 1:
            return projected.neg()
        if memory["s"] is not None:
            s, y = memory["s"], grad.sub(memory["grad"])
            ys = y.dot(s)
            if ys > EPS * abs(memory["grad"].dot(s)):  # SciPy L-BFGS-B's rule (see the module doc)
                if len(memory["stps"]) == self.param_groups[0]["history_size"]:
                    memory["stps"].pop(0), memory["dirs"].pop(0), memory["ro"].pop(0)
                memory["stps"].append(s), memory["dirs"].append(y), memory["ro"].append(1.0 / ys)
                memory["h_diag"] = ys / y.dot(y)
        d = two_loop(projected.neg(), memory["stps"], memory["dirs"], memory["ro"], memory["h_diag"])
        return d if free is None else d.mul_(free)

    def _free(self, x: Tensor, grad: Tensor) -> Tensor | None:
        """1 where a pixel may move, 0 where it sits at a bound its gradient pushes it past."""
        if self.bounds is None:
            return None
        lower, upper = self.bounds
        binding = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
        return (~binding).to(grad.dtype)

    def _place(self, index: int, start: Tensor, d: Tensor, t: Any) -> Tensor | None:
        """Put image ``index`` at start + t d, projected into the bounds; a bounded run gets
        the step taken, x(t) - start, back (the path bends: not t d)."""
        image = self._param[index]
        if self.bounds is None:  # torch's arithmetic: x_init, then add_(d, alpha=t)
            image.copy_(start.view_as(image)).add_(d.view_as(image), alpha=t)
            return None
        point = start.add(d, alpha=float(t)).clamp_(*self.bounds)
        image.copy_(point.view_as(image))
        return point.sub_(start)

    def _finish(self, index: int, start: Tensor, d: Tensor, t: Any) -> None:
        """Move image ``index`` to its accepted step; remember the step for the next pair."""
        step = self._place(index, start, d, t)
        if float(t) != 0.0:
            self.memory(index)["s"] = d.mul(t) if step is None else step  # torch's s = d t


def _evaluate(closure: Closure, param: Tensor) -> tuple[Tensor, list[float], Tensor]:
    """The closure's value, per-image losses (host floats, one sync) and flat gradients (B, N).

    The gradients are a view of ``param.grad``, which the next evaluation refills: whatever
    outlives this evaluation is cloned (a start gradient) or reduced at once (a slope).
    """
    with torch.enable_grad():
        value = closure()
    losses = value.detach().reshape(-1).tolist()
    return value, losses, param.grad.detach().reshape(param.shape[0], -1)


def image_lbfgs(factory: Callable, clamp: str) -> Callable:
    """The one swap point: a configured ``torch.optim.LBFGS`` factory becomes ``ImageLBFGS``,
    bounded to [0, 1] for ``clamp=auto``, unbounded (torch's iterates) for ``clamp=step/end``.
    Any other optimiser's factory is returned as it is."""
    func = getattr(factory, "func", factory)
    if func is not LBFGS:
        return factory
    return functools.partial(ImageLBFGS, *getattr(factory, "args", ()), **getattr(factory, "keywords", {}),
                             bounds=(0.0, 1.0) if clamp == "auto" else None)


QUASI_NEWTON = (LBFGS, ImageLBFGS)


def quasi_newton(optimizer: Any) -> bool:
    """Is this L-BFGS? The project's one test, for an optimiser, a batch job's handle on one
    (``.optimizer``), an optimiser class or a Hydra ``_target_`` string.

    L-BFGS needs fp32 losses, a box of its own (no clamping between steps), and syncs every
    step anyway (it reads losses on the host).
    """
    target = getattr(optimizer, "optimizer", optimizer)
    if isinstance(target, str):
        target = _locate(target)
    cls = target if isinstance(target, type) else type(target)
    return issubclass(cls, QUASI_NEWTON)


def _locate(path: str) -> type:
    """The class a dotted path names, or ``object`` if it names none."""
    import pydoc

    found = pydoc.locate(path)
    return found if isinstance(found, type) else object
