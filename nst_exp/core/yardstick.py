"""An impartial yardstick: scores of a stylised image that no run's settings can move.

A ruler used to compare runs must not move with the runs' settings or be one of them. So:

- one network, whatever the run's ``model.*``: the bundled Caffe VGG19, plain (not normalised),
  max pooling;
- one scale, whatever the run's ``image_size``, ``scales`` or ``style_scale``: the image, the
  photo and the *original* painting files are all resized (Lanczos, 8-bit, as a PNG would be)
  to one long edge, ``EDGE`` px; the image then to the photo's exact size;
- the original paintings, not the run's recoloured or greyed style tensors, every style of a
  blend weighted by the blend;
- a style measure that is no preset's objective: the sliced Wasserstein distance between the
  image's and the painting's VGG feature distributions at relu1_1..relu5_1 (Heitz et al. 2021,
  "A sliced Wasserstein loss for neural texture synthesis"), where every preset optimises
  Gram matrices (second moments only).

Both network terms are divided by what the two trivial answers score, so they are pure
numbers and the same for any pair of images:

    judge_content = |F(x) - F(photo)| / sum_k w_k |F(painting_k) - F(photo)|     at relu4_2
    judge_style   = sum_k w_k mean_l SWD_l(x, painting_k) / SWD_l(photo, painting_k)
    judge_loss    = judge_content + judge_style

The photo scores content 0, style 1; a painting content 1, style 0: both have judge_loss 1,
and a result that keeps the photo's layout in the painting's textures scores below 1. The
equal weight of the two terms is a choice, not a measurement; weigh judge_content and
judge_style otherwise if a study needs it. judge_ssim (to the photo) and judge_color (to the
paintings' colours, blend-weighted) need no network.

``EDGE`` = 256 px: relu5_1 then still has 16 x 12 positions (192 samples of its 512-d
distribution) for a 4:3 photo, while at 64 px the result of docs/images (320 px) loses its
texture (style 0.73 there, 0.41 at 256). A run pays four VGG19 passes at 256 px plus the sorts
(6.6 s for photo and painting, 2.5 s for the image, measured on two heavily shared CPU cores),
a few L-BFGS steps' worth; 384 px would cost 2.25x that.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from nst_exp.core.features import VGGFeatures
from nst_exp.core.images import fit_long_edge, load_image, to_pil, to_tensor
from nst_exp.core.metrics import color_distance, ssim
from nst_exp.core.weights import build_extractor

EDGE = 256
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
PROJECTIONS = 64     # random directions per layer (fixed, seeded): the SWD's slices
QUANTILES = 256      # each sliced distribution compared at these many quantiles (any pixel counts)
SEED = 0
SCORE_KEYS = ("judge_loss", "judge_content", "judge_style", "judge_ssim", "judge_color")
ImageSource = str | Path | Image.Image | Tensor


@functools.lru_cache(maxsize=1)
def network(device: str) -> VGGFeatures:
    """The yardstick's VGG19 on ``device``, built once per process.

    Building it decodes the bundled Caffe weights (about a second and 80 MB), and a sweep
    run in one process scores every job with it; one entry, since a process scores on one
    device. Frozen and in eval mode, so sharing it changes nothing.
    """
    return build_extractor("vgg19", [CONTENT_LAYER, *STYLE_LAYERS], weights="caffe",
                           pooling="max").to(device)


def blend_weights(blend: float | Sequence[float] | None, count: int) -> list[float]:
    """``style_blend`` as ``count`` weights summing to 1: null = equal, t = [t, 1 - t]."""
    if blend is None:
        return [1.0 / count] * count
    weights = [float(blend), 1.0 - float(blend)] if isinstance(blend, (int, float)) else [float(b) for b in blend]
    return [w / sum(weights) for w in weights]


def at_edge(source: ImageSource, edge: int, field: str = "image") -> Tensor:
    """``source`` (a file, PIL image or (1, 3, H, W) tensor in [0, 1]) as 8-bit RGB resized to a
    long edge of ``edge`` px: files and tensors go through the same path, so a run's image
    and its saved PNG score alike."""
    if isinstance(source, Tensor):
        source = to_pil(source if source.dim() == 3 else source[0])
    elif not isinstance(source, Image.Image):
        source = load_image(source, field)
    return to_tensor(fit_long_edge(source, edge))


def resized(image: Tensor, size: tuple[int, int]) -> Tensor:
    """``image`` at exactly ``size`` (H, W): a result of another aspect is stretched to the photo."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return to_tensor(to_pil(image).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def sliced(features: Tensor, directions: Tensor) -> Tensor:
    """(1, C, H, W) features -> (P, QUANTILES): each projection's sorted values at fixed quantiles.

    Resampling the sorted values (linear interpolation) lets distributions of different pixel
    counts be compared, which the usual equal-size SWD cannot.
    """
    values = (directions.T @ features.flatten(2)[0]).sort(1).values.double()  # (P, N)
    count = values.shape[1]
    position = ((torch.arange(QUANTILES, dtype=torch.float64, device=values.device) + 0.5) / QUANTILES
                * count - 0.5).clamp(0, count - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=count - 1)
    frac = position - low
    return values[:, low] * (1 - frac) + values[:, high] * frac


def swd(a: Tensor, b: Tensor) -> float:
    """Sliced Wasserstein-2 distance between two ``sliced`` distributions."""
    return float((a - b).square().mean().sqrt())


def directions(channels: int, device: torch.device) -> Tensor:
    """``PROJECTIONS`` fixed unit directions in a ``channels``-d feature space (seeded, CPU)."""
    generator = torch.Generator().manual_seed(SEED + channels)
    dirs = torch.randn(channels, PROJECTIONS, generator=generator)
    return (dirs / dirs.norm(dim=0, keepdim=True)).to(device)


@dataclass
class Painting:
    """One style of the reference: its blend weight, pixels and the baselines it sets."""

    weight: float
    pixels: Tensor
    slices: dict[str, Tensor]
    photo_swd: dict[str, float]   # SWD of the photo to this painting, per layer (style = 1)
    content_distance: float       # |F(painting) - F(photo)| at relu4_2 (content = 1)


@dataclass
class Reference:
    """The photo and paintings at the yardstick's scale: computed once, any number of images scored."""

    photo: Tensor
    photo_content: Tensor
    paintings: list[Painting]


class Yardstick:
    """Scores images against a photo and one or more paintings (the module docstring says how)."""

    def __init__(self, edge: int = EDGE, device: str | torch.device = "cpu") -> None:
        self.edge, self.device = int(edge), torch.device(device)
        self.net = network(str(self.device))

    @torch.no_grad()
    def features(self, image: Tensor) -> dict[str, Tensor]:
        return self.net(image.to(self.device).float())

    def slices(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: sliced(features[name], directions(features[name].shape[1], self.device))
                for name in STYLE_LAYERS}

    def reference(self, content: ImageSource, styles: Sequence[ImageSource],
                  blend: float | Sequence[float] | None = None) -> Reference:
        """The photo ``content`` and the paintings ``styles`` (blended by ``style_blend``'s rule)."""
        photo = at_edge(content, self.edge, "content")
        photo_features = self.features(photo)
        photo_slices = self.slices(photo_features)
        paintings = []
        for index, (weight, style) in enumerate(zip(blend_weights(blend, len(styles)), styles, strict=True)):
            pixels = at_edge(style, self.edge, f"style[{index}]")
            slices = self.slices(self.features(pixels))
            stretched = self.features(resized(pixels, tuple(photo.shape[-2:])))[CONTENT_LAYER]
            paintings.append(Painting(
                weight, pixels, slices, {name: swd(photo_slices[name], slices[name]) for name in STYLE_LAYERS},
                float((stretched - photo_features[CONTENT_LAYER]).norm())))
        return Reference(photo, photo_features[CONTENT_LAYER], paintings)

    def score(self, image: ImageSource, reference: Reference) -> dict[str, float]:
        """The ``SCORE_KEYS`` of ``image`` against ``reference``.

        Style and colour are measured on the image at its own aspect, content and SSIM on it
        stretched to the photo's size (the same pixels for a run's result, whose aspect is the
        photo's), so a painting scored as an image gets style 0 whatever its shape.
        """
        own = at_edge(image, self.edge)
        pixels = resized(own, tuple(reference.photo.shape[-2:]))
        features = self.features(pixels)
        slices = self.slices(features if pixels is own else self.features(own))
        paintings = reference.paintings
        content = float((features[CONTENT_LAYER] - reference.photo_content).norm()) / max(
            sum(p.weight * p.content_distance for p in paintings), 1e-12)
        style = sum(p.weight * sum(swd(slices[name], p.slices[name]) / max(p.photo_swd[name], 1e-12)
                                   for name in STYLE_LAYERS) / len(STYLE_LAYERS) for p in paintings)
        return {
            "judge_loss": content + style,
            "judge_content": content,
            "judge_style": style,
            "judge_ssim": float(ssim(pixels, reference.photo)[0]),
            "judge_color": sum(p.weight * float(color_distance(own, p.pixels)[0]) for p in paintings),
        }
