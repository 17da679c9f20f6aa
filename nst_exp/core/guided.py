"""Spatial control: each style applied to its own region of the content through guided Grams.

Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling perceptual factors in neural
style transfer", section 4: a guidance channel T_r (a mask over the content, resized to each
layer's feature map) weights the features, F_r = F * T_r, and region r's Gram matrix F_r F_r^T
is matched to the Gram of the style chosen for that region.

Normalisation, chosen so that ``style_weight`` keeps its meaning: region r's Gram is divided
by the mask's mass sum(T_r^2) instead of the map's pixel count H*W (a mean over the region,
comparable with a whole style image's Gram), and region r's loss is weighted by its area
sum(T_r^2) / (H*W). An all-white mask then gives exactly the unguided loss, and two
complementary masks give each half the per-pixel pull one style would have on the whole image.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-8


def layer_masks(masks: Tensor, size: tuple[int, int] | list[int] | tuple[int, ...]) -> Tensor:
    """(K, 1, H, W) image-size masks -> (K, 1, h, w) at a layer's size (area average: a
    feature sees the fraction of its cell that lies in the region)."""
    return F.adaptive_avg_pool2d(masks, tuple(size[-2:]))


def guided_regions(features: Tensor, masks: Tensor) -> list[tuple[Tensor, Tensor]]:
    """For each mask: (the features weighted by it and rescaled so their Gram is the region's
    Gram as if the region filled the map, the region's area fraction).

    ``features`` (B, C, h, w), ``masks`` (K, 1, H, W) at image size.
    """
    h, w = features.shape[-2:]
    regions = []
    for mask in layer_masks(masks.to(features.dtype), (h, w)):
        area = mask.square().mean().clamp_min(_EPS)
        regions.append((features * (mask / area.sqrt()), area))
    return regions
