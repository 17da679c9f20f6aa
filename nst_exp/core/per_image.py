"""Per-image settings of an optimiser over a batch of independent images (dim 0).

A batched sweep optimises B images at once, one per job; each job may change its own image's
share of the optimiser only: its learning rate, its memory (a divergence restart), whether it
still moves (its job has stopped). These settings live in the param group, so the optimiser's
``state_dict`` (and with it a checkpoint) carries them. Used by ``nst_exp.core.lbfgs`` and
``nst_exp.strategies.batched.optim``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def per_image(lr: float | Sequence[float], batch: int) -> list[float]:
    """A learning rate per image from one value or a length-B sequence."""
    values = [float(lr)] * batch if isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(values) != batch:
        raise ValueError(f"optimizer.lr has {len(values)} values for a batch of {batch} images")
    return values


def init_per_image(group: dict[str, Any], lr: list[float], **extra: list[Any]) -> None:
    """Each image's lr and whether its job has stopped, in the param group (see the module doc)."""
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
