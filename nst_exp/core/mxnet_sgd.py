"""MXNet's SGD, stepping in MXNet neural-style's pixel units, for an image kept in [0, 1].

apache/mxnet's example/neural-style optimises ``img = pixel_max * x - mean`` (RGB, the mean
pixel subtracted) with ``mx.optimizer.SGD(momentum, wd, clip_gradient)``. Per step, in those
units:

    g = clip(dL/dimg, -clip_gradient, clip_gradient)
    mom = momentum * mom - lr * (g + wd * img)
    img = img + mom

torch.optim.SGD differs in three ways that change the run, so the twin is written out here:
weight decay pulls ``img`` toward 0, i.e. the pixels toward the *mean pixel* (toward black in
[0, 1] units); the clip is element-wise and comes before weight decay; and the velocity holds
lr-scaled steps, so a learning-rate decay does not rescale the velocity already built up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

MXNET_MEAN_RGB = (123.68, 116.779, 103.939)  # nstyle.py / run.py: subtracted from the 0-256 image


class MXNetSGD(Optimizer):
    """``mx.optimizer.SGD`` on (B, 3, H, W) images in [0, 1], in MXNet's ``img`` units.

    ``pixel_max`` and ``mean`` define those units (run.py: ``resized * 256 - mean``); ``lr``,
    ``wd`` and ``clip_gradient`` are MXNet's numbers, unconverted.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 0.1, momentum: float = 0.9, wd: float = 0.0,
                 clip_gradient: float | None = None, pixel_max: float = 256.0,
                 mean: Sequence[float] = MXNET_MEAN_RGB) -> None:
        defaults = {"lr": lr, "momentum": momentum, "wd": wd, "clip_gradient": clip_gradient,
                    "pixel_max": float(pixel_max), "mean": tuple(float(m) for m in mean)}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            scale, clip = group["pixel_max"], group["clip_gradient"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                mean = torch.tensor(group["mean"], dtype=param.dtype, device=param.device).view(-1, 1, 1)
                grad = param.grad / scale  # dL/dimg: the chain rule through img = scale * x - mean
                if clip is not None:
                    grad = grad.clamp(-clip, clip)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                velocity = state["momentum_buffer"]
                velocity.mul_(group["momentum"]).add_(grad + group["wd"] * (param * scale - mean), alpha=-group["lr"])
                param.add_(velocity, alpha=1.0 / scale)
        return loss
