"""Layer naming, index resolution, truncation and freezing of the VGG extractor."""

import pytest
import torch

from nst_exp.core.features import VGGFeatures, build_vgg_features, conv_indices, layer_names, resolve_layer
from nst_exp.core.weights import ImageNetNormalize, random_state_dict


def test_vgg19_names_match_torchvision_indices() -> None:
    names = layer_names("vgg19")
    assert len(names) == 37  # torchvision vgg19.features has 37 modules
    expected = {0: "conv1_1", 1: "relu1_1", 4: "pool1", 5: "conv2_1", 10: "conv3_1", 19: "conv4_1",
                21: "conv4_2", 22: "relu4_2", 25: "conv4_4", 28: "conv5_1", 36: "pool5"}
    assert {i: names[i] for i in expected} == expected
    assert conv_indices("vgg19") == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def test_vgg16_names() -> None:
    names = layer_names("vgg16")
    assert len(names) == 31 and names[21] == "conv4_3" and names[24] == "conv5_1" and names[30] == "pool5"


def test_resolve_layer_accepts_names_and_indices_and_lists_valid_names() -> None:
    assert resolve_layer("vgg19", 25) == "conv4_4"
    assert resolve_layer("vgg19", "relu4_2") == "relu4_2"
    with pytest.raises(ValueError, match="unknown layer 'conv6_1'.*valid layers: conv1_1"):
        resolve_layer("vgg19", "conv6_1")
    with pytest.raises(ValueError, match="out of range"):
        resolve_layer("vgg16", 31)


def test_avg_pooling_and_bad_pooling() -> None:
    assert isinstance(build_vgg_features("vgg19", "avg")[4], torch.nn.AvgPool2d)
    with pytest.raises(ValueError, match="model.pooling='min'"):
        build_vgg_features("vgg19", "min")


def make(layers: list[str], arch: str = "vgg19") -> VGGFeatures:
    return VGGFeatures(arch, layers, random_state_dict(arch, 0), ImageNetNormalize())


def test_truncated_after_deepest_layer_and_frozen() -> None:
    extractor = make(["relu2_1", "conv1_1"])
    assert len(extractor.net) == layer_names("vgg19").index("relu2_1") + 1
    assert extractor.layers == ["conv1_1", "relu2_1"]
    assert list(extractor.parameters()) == []  # weights are buffers: nothing to optimise
    extractor.train()
    assert not extractor.training


def test_forward_returns_requested_layers_with_right_shapes() -> None:
    extractor = make(["conv1_1", "relu1_1", "relu3_1", "pool2"])
    feats = extractor(torch.rand(1, 3, 32, 48))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "conv1_1": (1, 64, 32, 48), "relu1_1": (1, 64, 32, 48), "pool2": (1, 128, 8, 12), "relu3_1": (1, 256, 8, 12)}
    # the pre-ReLU output survives the following ReLU (which is not in place for it)
    assert (feats["conv1_1"] < 0).any() and torch.equal(feats["relu1_1"], feats["conv1_1"].clamp(min=0))


def test_forward_subset_stops_early_and_gradients_reach_the_image() -> None:
    extractor = make(["relu1_1", "relu5_1"])
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    feats = extractor(image, ["relu1_1"])
    assert list(feats) == ["relu1_1"]
    feats["relu1_1"].square().mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_mismatched_weights_name_keys_and_shapes() -> None:
    state = random_state_dict("vgg16", 0)
    expected = (r"weights do not fit vgg19: missing features\.16\.weight.*"
                r"features\.19\.weight has shape \(512, 512, 3, 3\), vgg19 needs \(512, 256, 3, 3\)")
    with pytest.raises(ValueError, match=expected):
        VGGFeatures("vgg19", ["relu5_1"], state, ImageNetNormalize())
    with pytest.raises(ValueError, match=r"missing features\.0\.weight"):
        VGGFeatures("vgg19", ["relu1_1"], {}, ImageNetNormalize())
