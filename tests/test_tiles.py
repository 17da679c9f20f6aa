"""Tile geometry, feathered pasting and tile-by-tile Gram matrices (nst_exp/core/tiles.py)."""

from __future__ import annotations

import pytest
import torch

from nst_exp.core.features import VGGFeatures
from nst_exp.core.losses import gram_matrix
from nst_exp.core.tiles import (
    feather,
    gram_target,
    partition,
    paste,
    resample,
    tile_grid,
    tiled_grams,
    upsample_with_detail,
)
from nst_exp.core.weights import build_extractor


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), [(100, 37, 32, 8), (512, 384, 128, 16),
                                                                   (30, 30, 32, 8), (97, 200, 48, 20)])
@pytest.mark.parametrize("shift", [False, True])
def test_grid_covers_the_image_with_overlapping_tiles(height: int, width: int, tile: int, overlap: int,
                                                       shift: bool) -> None:
    boxes = tile_grid(height, width, tile, overlap, shift)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for top, bottom, left, right in boxes:
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        assert bottom - top <= tile and right - left <= tile
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    rows = sorted({(t, b) for t, b, _, _ in boxes})
    for (_, end), (start, _) in zip(rows, rows[1:]):
        assert end - start >= overlap - 1  # rounding of evenly spaced starts
    if height > tile and width > tile and shift:  # a shifted pass moves the seams
        assert {b[0] for b in boxes} != {b[0] for b in tile_grid(height, width, tile, overlap)}


def test_bad_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(100, 100, 32, 32)


def test_feather_fades_only_where_another_tile_continues() -> None:
    mask = feather((0, 32, 10, 42), 64, 80, overlap=8)[0, 0]
    assert mask.shape == (32, 32)
    assert mask[0, 16] == 1  # the top edge is the image border: no fade
    assert mask[16, 16] == 1 and mask[16, 0] == 0 and mask[31, 16] == 0  # left and bottom fade
    assert mask[16, :2].eq(0).all() and mask[16, 2] > 0  # the outer quarter of the overlap: the neighbour's
    assert torch.all(mask >= 0) and torch.all(mask <= 1)
    assert torch.all(mask[16, 1:8].diff() > 0)  # a ramp, not a step


def test_paste_blends_through_the_mask() -> None:
    image = torch.zeros(1, 3, 8, 8)
    mask = torch.full((1, 1, 4, 4), 0.25)
    paste(image, torch.ones(1, 3, 4, 4), (2, 6, 2, 6), mask)
    assert image[0, 0, 3, 3] == 0.25 and image[0, 0, 0, 0] == 0


@pytest.mark.parametrize("norm", ["chw", "gatys", "sqrt_chw", "none"])
@pytest.mark.parametrize("width", [48, 40, 36])  # 40 = 16 + 16 + 8; 36 = 16 + 20 (a 4 px strip joins)
def test_tiled_grams_equal_the_whole_image_grams(width: int, norm: str) -> None:
    """With context covering the image and tile edges on the pooling grid, the sums are exact
    (each position counted once, also where the image is no multiple of the tile), under every
    Gram normalisation (``sqrt_chw`` and ``none`` depend on the region's size: gram_target)."""
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    extractor: VGGFeatures = build_extractor("vgg19", layers, weights="random", seed=0)
    image = torch.rand(1, 3, 64, width, generator=torch.Generator().manual_seed(0))
    whole = {name: (gram_matrix(f, norm), f.shape[-2] * f.shape[-1]) for name, f in extractor(image, layers).items()}
    tiled = tiled_grams(image, lambda x: extractor(x, layers), tile=16, margin=64)
    for name in layers:  # rtol: float32 sums in another order (1e-6 typical); same on every CPU
        gram, positions = whole[name]
        torch.testing.assert_close(gram_target(tiled[name], positions, norm), gram, rtol=1e-4, atol=1e-6)


def test_resample_up_and_down_keeps_range() -> None:
    image = torch.rand(1, 3, 10, 20)
    assert resample(image, (20, 40)).shape == (1, 3, 20, 40)
    small = resample(image, (5, 10))
    assert small.shape == (1, 3, 5, 10) and small.min() >= 0 and small.max() <= 1
    assert resample(image, (10, 20)).equal(image)


def test_upsample_with_detail_adds_back_the_band_the_coarse_size_cannot_hold() -> None:
    """A coarse result equal to the downscaled photo comes back as the photo itself (detail=1),
    as plain upsampling (detail=0), or in between."""
    generator = torch.Generator().manual_seed(0)
    content = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 96, 128, generator=generator), 3, 1, 1) * 0.8 + 0.1
    coarse = resample(content, (24, 32))
    plain = upsample_with_detail(coarse, content, 0.0)
    torch.testing.assert_close(plain, resample(coarse, (96, 128)))
    full = upsample_with_detail(coarse, content, 1.0)
    torch.testing.assert_close(full, content, atol=1e-5, rtol=0)
    half = upsample_with_detail(coarse, content, 0.5)
    torch.testing.assert_close(half, (plain + full) / 2, atol=1e-5, rtol=0)
    assert full.is_contiguous() and float(half.min()) >= 0 and float(half.max()) <= 1


@pytest.mark.parametrize(("length", "tile"), [(72, 32), (96, 32), (40, 16), (20, 32), (4096, 512), (4100, 512)])
def test_partition_covers_each_pixel_once_with_no_thin_strip(length: int, tile: int) -> None:
    boxes = partition(length, length + 3, tile)
    count = torch.zeros(length, length + 3)
    for top, bottom, left, right in boxes:
        count[top:bottom, left:right] += 1
        assert min(bottom - top, right - left) >= min(tile // 2, length)
    assert bool((count == 1).all())
