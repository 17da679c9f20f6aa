"""Keep the photo's colours: luminance-only transfer and colour-histogram matching.

Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving color in neural artistic style
transfer", give two recipes; both are here (``color=luminance`` and ``color=histogram``).

Luminance-only transfer feeds the network grey images and keeps the content's chroma. The
luminance used is the channel mean m = (r + g + b) / 3, not YIQ's weighted Y, for one exact
reason: the gradient of anything computed from m is the same for r, g and b, so every step of
any optimiser (L-BFGS directions, Adam's per-element moments) moves a pixel along (1, 1, 1).
That direction leaves YIQ's I and Q (whose coefficients sum to zero) untouched, so an RGB image
that starts with the content's chroma keeps it while no channel meets the [0, 1] box: the
optimised image *is* the recombined result, snapshots included, with no colour conversion at
save time. Where a channel saturates, the box clamps it alone and that pixel's chroma drifts
(0.16 % of the pixels by more than 2/255 in a 64 px L-BFGS run; docs/controls.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

COLOR_MODES = ("none", "luminance", "histogram")
_EPS = 1e-5


def luminance(image: Tensor) -> Tensor:
    """(B, 3, H, W) -> the grey image (B, 3, H, W) whose three channels are the channel mean."""
    return image.mean(1, keepdim=True).expand_as(image)


def with_chroma(image: Tensor, chroma_from: Tensor) -> Tensor:
    """``image``'s luminance with ``chroma_from``'s chroma (rgb - mean), clamped to [0, 1]."""
    chroma = chroma_from - chroma_from.mean(1, keepdim=True)
    return (image.mean(1, keepdim=True) + chroma).clamp(0, 1).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """The style as a grey image whose luminance has the content's mean and standard deviation
    (the paper's luminance matching: without it a dark painting would darken the photo)."""
    style_l, content_l = style.mean(1, keepdim=True), content.mean(1, keepdim=True)
    scale = content_l.std() / style_l.std().clamp_min(_EPS)
    matched = (style_l - style_l.mean()) * scale + content_l.mean()
    return matched.clamp(0, 1).expand_as(style).contiguous()


def match_histogram(style: Tensor, content: Tensor) -> Tensor:
    """The style recoloured so its pixels have the content's colour mean and covariance.

    x' = C_c^{1/2} C_s^{-1/2} (x - mu_s) + mu_c with symmetric matrix square roots (the
    paper's "Image Analogies" variant: the least rotation of the colour space that matches
    the second moments). A grey style (singular covariance) is regularised, not rejected.
    """
    def moments(image: Tensor) -> tuple[Tensor, Tensor]:
        pixels = image.double().flatten(2)[0]  # (3, N)
        mean = pixels.mean(1, keepdim=True)
        centred = pixels - mean
        cov = centred @ centred.T / max(1, pixels.shape[1] - 1)
        return mean, cov + _EPS * torch.eye(3, dtype=cov.dtype)

    def power(matrix: Tensor, exponent: float) -> Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        return vectors @ torch.diag(values.clamp_min(_EPS) ** exponent) @ vectors.T

    mu_s, cov_s = moments(style)
    mu_c, cov_c = moments(content)
    transform = power(cov_c, 0.5) @ power(cov_s, -0.5)
    pixels = transform @ (style.double().flatten(2)[0] - mu_s) + mu_c
    return pixels.reshape(style.shape).clamp(0, 1).to(style.dtype).contiguous()
