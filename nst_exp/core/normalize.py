"""Gatys et al.'s normalised VGG: every conv filter rescaled to a mean activation of 1.

The paper (Gatys, Ecker & Bethge, CVPR 2016, Sec. 2): "We normalized the network by scaling the
weights such that the mean activation of each convolutional filter over images and positions is
equal to one. Such re-scaling can be done for the VGG network without changing its output,
because it contains only rectifying linear activation functions and no normalization or pooling
over feature maps." Without it, conv1_1 and conv5_1 activations differ by orders of magnitude,
so equal layer weights w_l = 1/5 and the paper's alpha/beta would not weigh the layers as theirs.

How: let m_l[c] be the mean of relu_l channel c of the *original* network over a fixed set of
reference images (the shipped sample images, ``REFERENCE_IMAGES``, at ``REFERENCE_SIZE`` px)
and positions. Conv l's output filter c is divided by m_l[c] (weight and bias), and its input
weights for channel i are multiplied by m_{l-1}[i], which undoes the previous layer's division.
ReLU and 2x2 pooling (max or average) commute with a positive per-channel scale, so every layer
of the normalised net is the original's activation divided by m_l per channel: the same function
up to per-channel scale, and mean activation 1 on the reference set. Because m_l comes from one
forward pass of the original net, the scales do not depend on the order they are applied in.

The means are measured with VGG's own max pooling (the trained network, as the paper normalised
it before swapping in average pooling for synthesis), so the scales do not depend on
``model.pooling``. Channels that never fire on the reference set (mean 0) keep scale 1.
The input scale of the weights source cancels: the bundled Caffe weights (activations / 57.6)
normalise to exactly the same network as the raw Caffe net.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import torch
from torch import Tensor, nn

from nst_exp.core.features import VGGFeatures, conv_indices, layer_names
from nst_exp.core.images import fit_long_edge, load_image, to_tensor

# The sample images shipped in nst_exp/data/images, named explicitly: adding an image to the
# package must not silently change every normalised network.
REFERENCE_IMAGES = (
    "content/astronaut.jpg", "content/chelsea.jpg", "content/coffee.jpg", "content/tubingen.jpg",
    "style/composition_vii.jpg", "style/great_wave.jpg", "style/impression_sunrise.jpg",
    "style/shipwreck.jpg", "style/starry_night.jpg", "style/the_scream.jpg",
)
REFERENCE_SIZE = 256  # long edge, px
_CACHE: dict[tuple[str, str, int], dict[str, Tensor]] = {}


def reference_images(size: int = REFERENCE_SIZE) -> list[Tensor]:
    """The reference set as (1, 3, H, W) tensors in [0, 1], long edge ``size`` (aspect kept)."""
    root = resources.files("nst_exp") / "data" / "images"
    return [to_tensor(fit_long_edge(load_image(str(root / name), "reference image"), size))
            for name in REFERENCE_IMAGES]


@torch.no_grad()
def mean_activations(net: VGGFeatures, images: list[Tensor]) -> dict[str, Tensor]:
    """relu layer -> mean activation per channel over ``images`` and positions (each image weighs the same)."""
    totals: dict[str, Tensor] = {}
    for image in images:
        for name, feats in net(image).items():
            totals[name] = totals.get(name, 0) + feats.mean(dim=(0, 2, 3)).double()
    return {name: (total / len(images)).float() for name, total in totals.items()}


def channel_means(arch: str, state_dict: dict[str, Tensor], preprocess: nn.Module,
                  size: int = REFERENCE_SIZE) -> dict[str, Tensor]:
    """relu_l -> m_l of the original network on the reference set (cached per weights and size)."""
    key = (arch, _digest(state_dict, preprocess), size)
    if key not in _CACHE:
        relus = [name for name in layer_names(arch) if name.startswith("relu")]
        net = VGGFeatures(arch, relus, state_dict, preprocess, pooling="max")
        _CACHE[key] = mean_activations(net, reference_images(size))
    return _CACHE[key]


def normalised_state_dict(arch: str, state_dict: dict[str, Tensor], preprocess: nn.Module,
                          size: int = REFERENCE_SIZE) -> dict[str, Tensor]:
    """``state_dict`` with every conv filter rescaled to mean activation 1 (see the module doc)."""
    means = channel_means(arch, state_dict, preprocess, size)
    scales = [torch.where(m > 0, m, torch.ones_like(m)) for m in means.values()]
    normalised = dict(state_dict)
    previous = torch.ones(3)  # the input image is not rescaled
    for index, scale in zip(conv_indices(arch), scales):
        weight = state_dict[f"features.{index}.weight"].float()
        bias = state_dict[f"features.{index}.bias"].float()
        normalised[f"features.{index}.weight"] = weight * previous.view(1, -1, 1, 1) / scale.view(-1, 1, 1, 1)
        normalised[f"features.{index}.bias"] = bias / scale
        previous = scale
    return normalised


def _digest(state_dict: dict[str, Tensor], preprocess: nn.Module) -> str:
    """A fingerprint of the conv weights and the preprocessing (what the means depend on)."""
    sha = hashlib.sha1(repr(preprocess).encode() + repr(getattr(preprocess, "scale", None)).encode())
    for key in sorted(k for k in state_dict if k.startswith("features.") or k[:1].isdigit()):
        sha.update(key.encode() + state_dict[key].detach().float().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()
