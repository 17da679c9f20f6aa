"""Adam for a batch of independent images: one optimiser state per image (dim 0).

A batched sweep optimises B images at once; each must follow exactly the path it would follow
alone. Adam is element-wise, so only a per-image learning rate (and a per-image restart) is
new. L-BFGS is not element-wise: it is ``nst_exp.core.lbfgs.ImageLBFGS``, per image for single,
batched and tiled runs alike. The closure returns the per-image losses, shape (B,)
(``per_image_loss``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from nst_exp.core.lbfgs import Closure
from nst_exp.core.per_image import PerImageControl, init_per_image, per_image, scale_lr


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
