"""Tiles of a big image: the grid, feathered pasting, and Gram targets accumulated tile by tile.

An image too large for one pass through the network is optimised a tile at a time. Three
pieces make the tiles add up to one picture:

- ``tile_grid``: overlapping tiles that cover the image; ``shift`` moves the grid by half a
  stride, so a later pass puts the previous pass's seams in the middle of its tiles.
- ``feather``: a paste mask that is 1 inside the tile, 0 on the outer quarter of the overlap
  and a linear ramp between, on every side that borders another tile (sides on the image
  border stay at 1). Each tile
  starts from the current image, whose overlap already holds its neighbours' result, and is
  pasted back through this mask, so neighbouring tiles meet without a step.
- ``tiled_grams``: style targets for the whole style image, however large: a Gram matrix is a
  sum over positions, so it is the sum of the per-tile sums; each tile is run with a margin of
  context that is cut off in feature space so no position is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from nst_exp.core.losses import gram_scale

Box = tuple[int, int, int, int]  # top, bottom, left, right (bottom/right exclusive)


def _spans(length: int, tile: int, overlap: int, shift: bool) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one axis: as few as overlap allows, evenly spaced.

    Shifted, the starts move back by half a spacing and one more tile is added; the first and
    last are clipped to the image (smaller, so a shifted pass costs about as much).
    """
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    spacing = (length - tile) / (count - 1)  # <= tile - overlap: neighbours share >= overlap px
    if not shift:
        return [(round(i * spacing), round(i * spacing) + tile) for i in range(count)]
    starts = [round(i * spacing - spacing / 2) for i in range(count + 1)]
    return [(max(0, start), min(length, start + tile)) for start in starts]


def tile_grid(height: int, width: int, tile: int, overlap: int, shift: bool = False) -> list[Box]:
    """Boxes of at most ``tile`` x ``tile`` px covering the image, neighbours overlapping by
    at least ``overlap`` px; ``shift`` moves the seams to the middle of the unshifted tiles."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap={overlap} must be in [0, tile={tile})")
    return [(top, bottom, left, right) for top, bottom in _spans(height, tile, overlap, shift)
            for left, right in _spans(width, tile, overlap, shift)]


def partition(height: int, width: int, tile: int) -> list[Box]:
    """Boxes that cover the image exactly once: for sums over positions (Gram matrices), where
    an overlapping grid would count its overlaps twice.

    Edges fall on multiples of ``tile`` (on the pooling grid when ``tile`` is a multiple of 16);
    a last strip under half a tile joins its neighbour, so no box is too thin for the network.
    """
    def cuts(length: int) -> list[tuple[int, int]]:
        spans = [(start, min(start + tile, length)) for start in range(0, length, tile)]
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < tile / 2:
            spans[-2:] = [(spans[-2][0], length)]
        return spans

    return [(top, bottom, left, right) for top, bottom in cuts(height) for left, right in cuts(width)]


def feather(box: Box, height: int, width: int, overlap: int) -> Tensor:
    """(1, 1, h, w) paste mask for ``box``: 1 inside, a linear ramp over ``overlap`` px on each
    side that lies inside the image (where another tile continues), 1 on the image border."""
    top, bottom, left, right = box
    ys = _ramp(bottom - top, overlap, top > 0, bottom < height)
    xs = _ramp(right - left, overlap, left > 0, right < width)
    return (ys[:, None] * xs[None, :])[None, None]


def _ramp(length: int, overlap: int, fade_start: bool, fade_end: bool) -> Tensor:
    """1-D mask: 0 over the outer quarter of the overlap, then a linear rise to 1, where asked.

    The outer pixels of a tile saw the network's zero padding instead of their neighbours, so
    their gradients are off (the cause of visible seams); the neighbour's values stand there.
    """
    mask = torch.ones(length)
    if overlap <= 0:
        return mask
    margin = overlap // 4
    rise = ((torch.arange(overlap, dtype=torch.float32) + 1 - margin) / (overlap - margin + 1)).clamp(min=0)
    n = min(overlap, length)
    if fade_start:
        mask[:n] = torch.minimum(mask[:n], rise[:n])
    if fade_end:
        mask[length - n:] = torch.minimum(mask[length - n:], rise[:n].flip(0))
    return mask


def paste(image: Tensor, tile: Tensor, box: Box, mask: Tensor) -> None:
    """Blend ``tile`` into ``image`` at ``box`` in place: mask 1 takes the tile, 0 keeps the image."""
    top, bottom, left, right = box
    region = image[..., top:bottom, left:right]
    region.mul_(1 - mask).add_(tile * mask)


def resample(image: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``image`` resized to ``size`` (h, w): bicubic up (sharp enough to refine), antialiased down."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image.contiguous()
    down = size[0] < image.shape[-2]
    resized = F.interpolate(image, size=tuple(size), mode="bilinear" if down else "bicubic",
                            antialias=down, align_corners=False)
    return resized.clamp(0, 1).contiguous()


def upsample_with_detail(coarse: Tensor, content: Tensor, detail: float) -> Tensor:
    """``coarse`` at the content's size, plus ``detail`` times the band of the content that the
    coarse size cannot hold (the content minus its round trip through that size).

    Why: upsampled, a coarse result is a blur of what the fine scale needs; the fine features
    of the photo (what relu4_2 sees at the fine size) would have to be rebuilt by the fine
    scale's few steps. Added back, the fine scale starts where the coarse one left off in the
    low band and where a single-scale run starts (the photo) in the high band.
    """
    size = content.shape[-2:]
    image = resample(coarse, size)
    if detail:
        lost = content - F.interpolate(resample(content, coarse.shape[-2:]), size=tuple(size), mode="bicubic",
                                       align_corners=False)
        image = (image + detail * lost).clamp(0, 1)
    return image.contiguous()


def crop(image: Tensor, box: Box) -> Tensor:
    """The view of ``image`` inside ``box`` (no copy)."""
    top, bottom, left, right = box
    return image[..., top:bottom, left:right]


FeatureFn = Callable[[Tensor], Mapping[str, Tensor]]


@torch.no_grad()
def tiled_grams(image: Tensor, features: FeatureFn, tile: int, margin: int) -> dict[str, Tensor]:
    """The mean outer product f f^T per position of every layer ``features`` returns, for all of
    ``image``, one tile at a time: a Gram matrix with the size taken out.

    ``gram_target`` turns it into the Gram target of a region of any size under any
    normalisation. Equals ``F F^T / M`` of ``features(image)[l]`` up to the tiles' border effects
    (the ``margin`` px of context around each tile hides most of them), while the network only
    ever sees a (tile + 2 margin)-px square.
    """
    height, width = image.shape[-2:]
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    for top, bottom, left, right in partition(height, width, tile):
        outer = (max(0, top - margin), min(height, bottom + margin), max(0, left - margin), min(width, right + margin))
        for name, feats in features(crop(image, outer)).items():
            # Map the inner box into this layer's grid (each pooling halves it).
            fy = feats.shape[-2] / (outer[1] - outer[0])
            fx = feats.shape[-1] / (outer[3] - outer[2])
            inner = (round((top - outer[0]) * fy), round((bottom - outer[0]) * fy),
                     round((left - outer[2]) * fx), round((right - outer[2]) * fx))
            flat = crop(feats, inner).float().flatten(2)
            sums[name] = sums.get(name, 0) + torch.bmm(flat, flat.transpose(1, 2))
            counts[name] = counts.get(name, 0) + flat.shape[-1]
    return {name: total / counts[name] for name, total in sums.items()}


def gram_target(per_position: Tensor, positions: int, norm: str) -> Tensor:
    """The Gram target of a region of ``positions`` feature positions, normalised as
    ``core.losses.gram_matrix(norm)`` would normalise that region's own Gram matrix."""
    return per_position * positions / gram_scale(norm, per_position.shape[-1], positions)
