"""Feature-visualisation augmentation: identity at 0, differentiable, seeded, edges cropped."""

import torch

from nst_exp.core.augment import NoAugment, RandomAffine, valid_crop


def test_strength_zero_is_the_identity() -> None:
    augment = RandomAffine(strength=0.0)
    image = torch.rand(1, 3, 20, 30)
    warp = augment.sample(20, 30)
    assert warp is None and augment(image, warp) is image
    assert NoAugment()(image, None) is image


def test_warp_is_differentiable_and_crops_the_border() -> None:
    augment = RandomAffine(strength=2.0, seed=1)
    image = torch.rand(1, 3, 40, 60, requires_grad=True)
    warp = augment.sample(40, 60)
    out = augment(image, warp)
    assert out.shape[-2] < 40 and out.shape[-1] < 60
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_no_padding_reaches_the_cropped_output() -> None:
    """Warp an all-ones image many times: any zero padding leaking in would show as < 1."""
    augment = RandomAffine(strength=3.0, seed=7)
    ones = torch.ones(1, 1, 48, 64)
    for _ in range(50):
        out = augment(ones, augment.sample(48, 64))
        assert out.min().item() > 0.999


def test_same_seed_same_warps() -> None:
    a, b = RandomAffine(seed=3), RandomAffine(seed=3)
    for _ in range(3):
        assert torch.equal(a.sample(10, 10).theta, b.sample(10, 10).theta)


def test_identity_matrix_needs_no_crop_beyond_the_edge_pixel() -> None:
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert valid_crop(theta, 100, 50) == (1, 1, 98, 48)
