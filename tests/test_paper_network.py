"""Gatys et al.'s normalised VGG (model.normalize=true): same function up to per-channel scale,
mean activation 1 on the reference images."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from nst_exp.core.features import VGGFeatures, layer_names
from nst_exp.core.normalize import channel_means, mean_activations, normalised_state_dict, reference_images
from nst_exp.core.weights import load_state_dict, make_preprocess
from tests.conftest import compose_cfg, config_error

SIZE = 32  # reference long edge for the random-weights tests: the properties do not depend on it


def networks(pooling: str, arch: str = "vgg19") -> tuple[VGGFeatures, VGGFeatures, dict[str, torch.Tensor]]:
    """(original, normalised, relu -> m_l) for seeded random weights."""
    state, preprocess = load_state_dict(arch, "random", seed=3), make_preprocess("random")
    normalised = normalised_state_dict(arch, state, preprocess, size=SIZE)
    names = layer_names(arch)
    return (VGGFeatures(arch, names, state, preprocess, pooling),
            VGGFeatures(arch, names, normalised, preprocess, pooling),
            channel_means(arch, state, preprocess, size=SIZE))


def scale_of(layer: str, means: dict[str, torch.Tensor]) -> torch.Tensor:
    """The per-channel factor of any layer: that of the last conv at or before it."""
    names = list(means)
    if layer.startswith(("conv", "relu")):
        key = "relu" + layer[4:]
    else:  # pool<b>: the last relu of block b
        key = [n for n in names if n.startswith(f"relu{layer[4:]}_")][-1]
    m = means[key]
    return torch.where(m > 0, m, torch.ones_like(m)).view(1, -1, 1, 1)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("arch", ["vgg19", "vgg16"])
def test_same_function_up_to_per_channel_scale(pooling: str, arch: str) -> None:
    """Every layer (conv, relu, pool) of the normalised net = the original's / m_l, channel by channel,
    on an image that is not a reference image."""
    original, normalised, means = networks(pooling, arch)
    image = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    before, after = original(image), normalised(image)
    for layer in layer_names(arch):
        torch.testing.assert_close(after[layer] * scale_of(layer, means), before[layer], rtol=2e-4, atol=1e-5,
                                   msg=lambda text, layer=layer: f"{layer}: {text}")
    assert not torch.allclose(after["relu5_1"], before["relu5_1"], rtol=0.1)  # really rescaled


def test_mean_activation_is_one_on_the_reference_images() -> None:
    """Every relu channel that fires on the reference set averages exactly 1 there."""
    state, preprocess = load_state_dict("vgg19", "random", seed=3), make_preprocess("random")
    relus = [n for n in layer_names("vgg19") if n.startswith("relu")]
    normalised = VGGFeatures("vgg19", relus, normalised_state_dict("vgg19", state, preprocess, size=SIZE), preprocess)
    means = channel_means("vgg19", state, preprocess, size=SIZE)
    measured = mean_activations(normalised, reference_images(SIZE))
    assert set(measured) == {n for n in layer_names("vgg19") if n.startswith("relu")}
    for layer, mean in measured.items():
        alive = means[layer] > 0
        torch.testing.assert_close(mean[alive], torch.ones_like(mean[alive]), rtol=1e-3, atol=0,
                                   msg=lambda text, layer=layer: f"{layer}: {text}")
        assert torch.equal(mean[~alive], torch.zeros_like(mean[~alive]))  # dead channels stay dead


def test_reference_set_is_fixed_and_deterministic() -> None:
    """Ten shipped images; the scales are the same on every call (cached) and every rebuild."""
    images = reference_images(SIZE)
    assert len(images) == 10 and all(max(i.shape[-2:]) == SIZE for i in images)
    first = networks("avg")[2]
    torch.testing.assert_close(networks("avg")[2], first, rtol=0, atol=0)


def test_config_knob_builds_the_normalised_extractor() -> None:
    cfg = compose_cfg("model.weights=random", "model.normalize=true")
    extractor = instantiate(cfg.model, layers=["relu1_1"])
    state = load_state_dict("vgg19", "random", seed=cfg.seed)
    expected = normalised_state_dict("vgg19", state, make_preprocess("random"))
    torch.testing.assert_close(extractor.net[0].weight, expected["features.0.weight"])
    assert compose_cfg().model.normalize is False  # off unless asked for
    assert config_error("model.normalize=maybe") == "model.normalize='maybe': expected true or false"


def test_gatys_presets_use_the_normalised_network() -> None:
    for experiment in ("gatys_fig1_content", "gatys_fig1_style", "gatys_fig3", "gatys_fig5", "gatys_fig6",
                       "gatys_layer_ratio"):
        cfg = compose_cfg(f"experiment={experiment}")
        assert cfg.model.normalize is True and cfg.model.pooling == "avg", experiment


@pytest.mark.slow
def test_bundled_caffe_weights_normalise_independently_of_their_input_scale() -> None:
    """The bundled weights are the Caffe net with activations / 57.6; normalising cancels that:
    the raw Caffe net (0-255 input, raw biases) normalises to the same network, with mean 1."""
    from nst_exp.core.weights import CaffePreprocess, caffe_vgg19_state_dict

    layers = ["relu1_1", "relu3_1", "relu5_1"]
    scaled = VGGFeatures("vgg19", layers, normalised_state_dict("vgg19", load_state_dict("vgg19", "caffe"),
                                                                  make_preprocess("caffe")), make_preprocess("caffe"))
    raw = VGGFeatures("vgg19", layers, normalised_state_dict("vgg19", caffe_vgg19_state_dict(), CaffePreprocess(1.0)),
                      CaffePreprocess(1.0))
    image = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    for layer, feats in raw(image).items():
        torch.testing.assert_close(scaled(image)[layer], feats, rtol=1e-3, atol=1e-4)
    for mean in mean_activations(scaled, reference_images()).values():
        torch.testing.assert_close(mean, torch.ones_like(mean), rtol=1e-3, atol=0)
