"""Denoising the saved image (mxnet neural-style's ``--remove-noise``): Gaussian or TV-Chambolle.

``gaussian_denoise`` blends toward a small blur. ``tv_chambolle`` is what mxnet applies:
scikit-image's ``denoise_tv_chambolle`` (Chambolle's projection algorithm for the
Rudin-Osher-Fatemi problem), transcribed to torch, stopping rule included, so that no new
dependency is needed; tests/test_denoise.py checks it against scikit-image's output.
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


DENOISE_METHODS = ("gaussian", "chambolle")


def denoise(image: Tensor, strength: float, method: str = "gaussian") -> Tensor:
    """``gaussian_denoise`` or ``tv_chambolle`` (with ``strength`` as its weight)."""
    if method not in DENOISE_METHODS:
        raise ValueError(f"denoise_method={method!r} is not one of {list(DENOISE_METHODS)}")
    return gaussian_denoise(image, strength) if method == "gaussian" else tv_chambolle(image, strength)


def tv_chambolle(image: Tensor, weight: float, eps: float = 2.0e-4, max_num_iter: int = 200) -> Tensor:
    """skimage.restoration.denoise_tv_chambolle(image, weight, channel_axis=...) for (C, H, W)
    or (B, C, H, W) images in [0, 1]: each channel alone, in float64, as scikit-image does.

    Minimises |u - image|^2 / 2 + weight * TV(u) per channel; larger weight, smoother image.
    """
    if weight < 0:
        raise ValueError(f"denoise={weight!r} must be >= 0")
    if weight == 0:
        return image
    flat = image.reshape(-1, *image.shape[-2:]).double()
    out = torch.stack([_chambolle_2d(channel, weight, eps, max_num_iter) for channel in flat])
    return out.reshape(image.shape).to(image.dtype)


def _chambolle_2d(image: Tensor, weight: float, eps: float, max_num_iter: int) -> Tensor:
    """scikit-image's _denoise_tv_chambolle_nd for one 2-D channel (dual variable p, step 1/4)."""
    p = image.new_zeros((2, *image.shape))
    g = torch.zeros_like(p)
    d = torch.zeros_like(image)
    out, tau = image, 1.0 / 4.0
    e_init = e_previous = 0.0
    for i in range(max_num_iter):
        if i > 0:
            d = -p.sum(0)  # minus the divergence of p
            d[1:, :] += p[0, :-1, :]
            d[:, 1:] += p[1, :, :-1]
            out = image + d
        energy = d.square().sum()
        g[0, :-1, :] = out[1:, :] - out[:-1, :]
        g[1, :, :-1] = out[:, 1:] - out[:, :-1]
        norm = g.square().sum(0, keepdim=True).sqrt()
        energy = float((energy + weight * norm.sum()) / image.numel())
        p = (p - tau * g) / (norm * (tau / weight) + 1.0)
        if i == 0:
            e_init = e_previous = energy
        elif abs(e_previous - energy) < eps * e_init:
            break
        else:
            e_previous = energy
    return out
