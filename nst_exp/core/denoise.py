"""A final Gaussian denoise for the saved image (mxnet neural-style's ``--remove-noise``).

mxnet applies skimage's TV-Chambolle filter; a Gaussian blend needs no new dependency and
does the same job on the high-frequency speckle that pixel optimisation leaves behind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA_PX = 1.0  # blur radius of the denoised component; ``strength`` sets how much of it is used


def gaussian_kernel(sigma: float = SIGMA_PX) -> Tensor:
    """Normalised 1-D Gaussian, radius 3 sigma."""
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_denoise(image: Tensor, strength: float) -> Tensor:
    """Blend (C, H, W) or (B, C, H, W) ``image`` toward its Gaussian blur: 0 = unchanged, 1 = blurred.

    Separable blur with reflected borders, so edges do not darken.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"denoise={strength!r} must be in [0, 1]")
    if strength == 0:
        return image
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    kernel = gaussian_kernel().to(batch)
    radius = kernel.numel() // 2
    channels = batch.shape[1]
    blurred = F.pad(batch, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    out = torch.lerp(batch, blurred, strength)
    return out if image.dim() == 4 else out[0]
