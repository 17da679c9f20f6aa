"""Normalised gradients, as jcjohnson/neural-style's ``-normalize_gradients``.

There each loss module divides the gradient it sends into its layer by that gradient's L1 norm
(plus 1e-8) and then multiplies it by the loss's weight; the loss *value* is untouched. Here
the same happens per image of a batch: the reported losses stay the true losses, and each
weighted term pushes on its layer with a gradient of L1 norm equal to its weight, so the
weights directly set how hard each layer pulls, whatever the magnitude of its raw gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _DivideGradient(torch.autograd.Function):
    """Identity on ``value`` (B,); its incoming gradient is divided by ``norm`` (B,)."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, norm: Tensor) -> Tensor:
        ctx.save_for_backward(norm)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (norm,) = ctx.saved_tensors
        return grad / norm, None


def normalized_gradient(value: Tensor, features: Tensor) -> Tensor:
    """``value`` (B,) unchanged, its gradient w.r.t. ``features`` divided by its L1 norm per image.

    Outside autograd (evaluation, no_grad) there is nothing to normalise: ``value`` as is.
    """
    if not (torch.is_grad_enabled() and features.requires_grad and value.requires_grad):
        return value
    (grad,) = torch.autograd.grad(value.sum(), features, retain_graph=True)
    norm = grad.detach().flatten(1).abs().sum(1).float() + 1e-8
    return _DivideGradient.apply(value, norm.to(value.dtype))
