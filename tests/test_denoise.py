"""TV-Chambolle denoise (mxnet's --remove-noise) against scikit-image's published output."""

import pytest
import torch

from nst_exp.core.denoise import denoise, gaussian_denoise, tv_chambolle

# skimage.restoration.denoise_tv_chambolle(x, weight=w) (scikit-image 0.26.0, float64) for
# x[i, j] = ((7 i + 3 j) mod 11) / 10 on a 6x6 grid, rounded to 6 decimals.
GRID = torch.tensor([[((7 * i + 3 * j) % 11) / 10 for j in range(6)] for i in range(6)], dtype=torch.float64)
SKIMAGE = {
    0.1: [[0.135412, 0.388539, 0.56504, 0.688135, 0.293011, 0.302584],
          [0.606731, 0.708681, 0.463198, 0.482962, 0.525184, 0.282276],
          [0.497015, 0.574506, 0.620736, 0.387865, 0.40181, 0.456856],
          [0.765938, 0.479989, 0.489478, 0.527924, 0.310562, 0.442616],
          [0.584878, 0.63896, 0.397368, 0.419221, 0.547705, 0.728649],
          [0.395986, 0.521197, 0.524342, 0.274399, 0.370349, 0.599898]],
    0.3: [[0.322037, 0.454154, 0.522274, 0.526387, 0.403737, 0.368371],
          [0.531627, 0.541179, 0.520653, 0.485395, 0.443474, 0.378988],
          [0.555892, 0.550348, 0.532226, 0.463934, 0.438982, 0.433144],
          [0.589641, 0.537865, 0.501986, 0.470355, 0.448603, 0.460647],
          [0.549197, 0.539494, 0.472099, 0.45384, 0.484697, 0.552473],
          [0.483796, 0.489671, 0.470787, 0.416834, 0.452498, 0.552714]],
}


@pytest.mark.parametrize("weight", sorted(SKIMAGE))
def test_tv_chambolle_matches_scikit_image(weight: float) -> None:
    ours = tv_chambolle(GRID.view(1, 6, 6), weight)[0]
    assert torch.allclose(ours, torch.tensor(SKIMAGE[weight], dtype=torch.float64), atol=1e-6)


def test_channels_are_denoised_alone_and_shapes_kept() -> None:
    image = torch.stack([GRID, 1 - GRID, torch.full_like(GRID, 0.5)]).float().unsqueeze(0)  # (1, 3, 6, 6)
    out = tv_chambolle(image, 0.1)
    assert out.shape == image.shape and out.dtype == image.dtype
    expected = torch.tensor(SKIMAGE[0.1], dtype=torch.float32)
    assert torch.allclose(out[0, 0], expected, atol=1e-6) and torch.allclose(out[0, 1], 1 - expected, atol=1e-6)
    assert torch.allclose(out[0, 2], image[0, 2])  # a flat channel stays flat
    assert torch.equal(tv_chambolle(image, 0.0), image)


def test_tv_denoise_removes_noise_and_keeps_edges() -> None:
    clean = torch.zeros(3, 32, 32)
    clean[:, :, 16:] = 1.0
    noisy = (clean + 0.1 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    out = tv_chambolle(noisy, 0.05)
    assert (out - clean).square().mean() < 0.5 * (noisy - clean).square().mean()
    assert out[:, :, 18:].mean() - out[:, :, :14].mean() > 0.8  # the edge survives


def test_denoise_dispatches_and_refuses_unknown_methods() -> None:
    image = torch.rand(3, 8, 8)
    assert torch.equal(denoise(image, 0.5, "gaussian"), gaussian_denoise(image, 0.5))
    assert torch.equal(denoise(image, 0.2, "chambolle"), tv_chambolle(image, 0.2))
    with pytest.raises(ValueError, match="denoise_method='median'"):
        denoise(image, 0.2, "median")
