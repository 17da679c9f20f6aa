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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim import LBFGS, Optimizer

from nst_exp.batched.line_search import Scalar, strong_wolfe
from nst_exp.core.box_lbfgs import Closure, evaluate_images, two_loop


def per_image(lr: float | Sequence[float], batch: int) -> list[float]:
    """A learning rate per image from one value or a length-B sequence."""
    values = [float(lr)] * batch if isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(values) != batch:
        raise ValueError(f"optimizer.lr has {len(values)} values for a batch of {batch} images")
    return values


def init_per_image(group: dict[str, Any], lr: list[float], **extra: list[Any]) -> None:
    """Per-image settings live in the param group, so the optimiser's ``state_dict`` (and with
    it a checkpoint) carries them: each image's lr and whether its job has stopped."""
    group.update(image_lr=lr, frozen=[False] * len(lr), **extra)


def scale_lr(group: dict[str, Any], index: int, factor: float) -> float:
    group["image_lr"][index] *= factor
    return group["image_lr"][index]


class PerImageControl:
    """What one job of a batch may change in the batched optimiser: its own image only."""

    param_groups: list[dict[str, Any]]

    def freeze(self, index: int) -> None:
        """Image ``index`` no longer moves (its job has stopped); the others go on."""
        self.param_groups[0]["frozen"][index] = True

    def lr_of(self, index: int) -> float:
        return float(self.param_groups[0]["image_lr"][index])

    def reset_image(self, index: int, lr_factor: float = 1.0) -> float:
        raise NotImplementedError


class BatchedAdam(PerImageControl, Optimizer):
    """Adam (Kingma & Ba) on one (B, ...) tensor with a learning rate per image.

    Same update as ``torch.optim.Adam`` without amsgrad; with one image it matches it to
    float rounding.
    """

    per_image_loss = True

    def __init__(self, params: Sequence[Tensor], lr: float | Sequence[float] = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        (param,) = self.param_groups[0]["params"]
        # restarted_at: the shared step count when each image's moments were last reset.
        init_per_image(self.param_groups[0], per_image(lr, param.shape[0]), restarted_at=[0] * param.shape[0])
        self._tensors: dict[str, tuple[tuple[Any, ...], Tensor]] = {}

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
        state = self._state(param)
        state["step"] += 1
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1, correction2 = self._corrections(state["step"], beta1, beta2, param)
        denom = (state["exp_avg_sq"].sqrt() / correction2).add_(group["eps"])
        update = self._tensor("image_lr", param) / correction1 * state["exp_avg"] / denom
        if any(group["frozen"]):  # a stopped job's image stays where it stopped
            update.masked_fill_(self._tensor("frozen", param), 0.0)
        param.sub_(update)
        return loss

    def _state(self, param: Tensor) -> dict[str, Any]:
        state = self.state[param]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
        return state

    def _tensor(self, key: str, param: Tensor) -> Tensor:
        """A per-image list of the group as a (B, 1, 1, 1) device tensor, rebuilt only when it
        changed (a restart, a stop): no host-to-device copy, i.e. no sync, on other steps."""
        values = tuple(self.param_groups[0][key])
        cached = self._tensors.get(key)
        if cached is None or cached[0] != values:
            dtype = torch.bool if key == "frozen" else param.dtype
            tensor = torch.tensor(values, device=param.device, dtype=dtype).view(-1, *[1] * (param.dim() - 1))
            self._tensors[key] = cached = (values, tensor)
        return cached[1]

    def _corrections(self, step: int, beta1: float, beta2: float, param: Tensor) -> tuple[Any, Any]:
        """Adam's bias corrections: Python floats (as torch's Adam computes them) while every
        image has taken the same number of steps since its reset, per-image tensors after a
        job of the batch restarted (its moments start again from zero)."""
        steps = [step - start for start in self.param_groups[0]["restarted_at"]]
        if len(set(steps)) == 1:
            return 1 - beta1 ** steps[0], math.sqrt(1 - beta2 ** steps[0])
        shape = (-1, *[1] * (param.dim() - 1))
        first = torch.tensor([1 - beta1 ** s for s in steps], device=param.device, dtype=param.dtype)
        second = torch.tensor([math.sqrt(1 - beta2 ** s) for s in steps], device=param.device, dtype=param.dtype)
        return first.view(shape), second.view(shape)

    def reset_image(self, index: int, lr_factor: float = 1.0) -> float:
        """Forget image ``index``'s moments (as ``state.clear()`` would for it alone) and scale
        its lr; returns the new lr. The other images' moments and step counts are untouched."""
        group, (param,) = self.param_groups[0], self.param_groups[0]["params"]
        state = self._state(param)
        state["exp_avg"][index].zero_()
        state["exp_avg_sq"][index].zero_()
        group["restarted_at"][index] = state["step"]
        return scale_lr(group, index, lr_factor)


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


class BatchedLBFGS(PerImageControl, LBFGS):
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
        init_per_image(self.param_groups[0], per_image(lr, param.shape[0]))
        self.histories = [ImageHistory() for _ in range(param.shape[0])]

    def reset_image(self, index: int, lr_factor: float = 1.0) -> float:
        """Forget image ``index``'s history (as ``state.clear()`` would for it alone) and scale
        its lr; returns the new lr."""
        self.histories[index] = ImageHistory()
        return scale_lr(self.param_groups[0], index, lr_factor)

    def state_dict(self) -> dict[str, Any]:
        """torch's state plus every image's history (torch's LBFGS keeps its one in ``state``)."""
        return {**super().state_dict(), "histories": [asdict(history) for history in self.histories]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        histories = state_dict.pop("histories", None)
        super().load_state_dict(state_dict)
        if histories is not None:
            device = self._params[0].device
            self.histories = [ImageHistory(**_to_device(history, device)) for history in histories]

    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:  # type: ignore[override]
        group, (param,) = self.param_groups[0], self._params
        losses, grads = evaluate_images(closure, param)
        first, start = losses, param.detach().clone()
        directions, searches = {}, {}
        for i, history in enumerate(self.histories):
            if group["frozen"][i]:
                continue  # its job has stopped: no move, no history update
            f, g = float(losses[i]), grads[i].clone()
            if float(g.abs().max()) <= group["tolerance_grad"]:
                continue  # converged: torch returns before touching the history
            d = history.direction(g, group["history_size"])
            history.prev_grad = g
            lr = group["image_lr"][i]
            t = min(1.0, 1.0 / g.abs().sum()) * lr if history.n_iter == 1 else lr
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
            losses, grads = evaluate_images(closure, param)
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


def _to_device(value: Any, device: torch.device) -> Any:
    """Tensors in a (nested) history moved to where the image lives."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    return value
