"""Feature-visualisation augmentation: a small random affine warp of the image each step.

Borrowed from feature visualisation (Olah et al., 2017): jittering the image before the network
stops the optimiser from exploiting pixel-exact patterns. The warp is differentiable
(affine_grid + grid_sample), and the border that could sample outside the image is cropped
away, so rotation corners never reach the loss. The content target gets the same warp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Warp:
    """One sampled transform: a (1, 2, 3) affine matrix and the valid centre crop (top, left, h, w)."""

    theta: Tensor
    crop: tuple[int, int, int, int]


class NoAugment:
    """The identity: every step sees the image as it is."""

    active = False

    def sample(self, height: int, width: int) -> Warp | None:
        return None

    def __call__(self, image: Tensor, warp: Warp | None) -> Tensor:
        return image


class RandomAffine(NoAugment):
    """Random rotation, scale and translation, each bounded by ``strength`` x its maximum."""

    def __init__(self, strength: float = 1.0, degrees: float = 5.0, scale: float = 0.05,
                 translate: float = 0.03, seed: int = 0) -> None:
        if not strength >= 0:
            raise ValueError(f"augment.strength={strength} must be >= 0")
        self.degrees, self.scale, self.translate = degrees * strength, scale * strength, translate * strength
        self.active = strength > 0
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, bound: float) -> float:
        return (torch.rand((), generator=self.generator).item() * 2 - 1) * bound

    def sample(self, height: int, width: int) -> Warp | None:
        """Draw one warp for an image of this size (None when strength is 0)."""
        if not self.active:
            return None
        angle = math.radians(self._uniform(self.degrees))
        zoom = 1.0 + self._uniform(self.scale)
        tx, ty = self._uniform(self.translate) * 2, self._uniform(self.translate) * 2  # normalised
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        # Rotation in pixel space, expressed in normalised [-1, 1] coordinates of a HxW image.
        theta = torch.tensor([[cos, -sin * height / width, tx], [sin * width / height, cos, ty]])
        return Warp(theta.unsqueeze(0), valid_crop(theta, height, width))

    def __call__(self, image: Tensor, warp: Warp | None) -> Tensor:
        if warp is None:
            return image
        theta = warp.theta.to(image).expand(image.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        top, left, h, w = warp.crop
        return warped[..., top:top + h, left:left + w]


def valid_crop(theta: Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """Largest centred box whose every output pixel samples inside the input image.

    Output point p in [-c, c]^2 samples theta[:, :2] @ p + t; it stays inside [-1, 1] while
    c * (|a_i1| + |a_i2|) + |t_i| <= 1 for both rows i.
    """
    reach = theta[:, :2].abs().sum(1)
    c = float(((1 - theta[:, 2].abs()) / reach).min().clamp(0.1, 1.0))
    # One pixel less per side: bilinear taps at the very edge would blend in the zero padding.
    h, w = max(1, math.floor(height * c) - 2), max(1, math.floor(width * c) - 2)
    return (height - h) // 2, (width - w) // 2, h, w
