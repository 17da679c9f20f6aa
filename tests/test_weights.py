"""Weights sources: bundled Caffe VGG19, random, local files, torchvision's hub cache."""

from pathlib import Path

import pytest
import torch

from nst_exp.core import weights as W
from nst_exp.core.features import VGGFeatures, conv_indices

# Published MatConvNet values for conv1_1 (see data/weights notes in the README).
CONV1_1_BIAS = [
    0.73017758, 0.06493629, 0.03428847, 0.8260386, 0.2578029, 0.54867655, -0.01243854, 0.34789944,
    0.55108708, 0.06297145, 0.60699058, 0.26703122, 0.649414, 0.17073655, 0.47723091, 0.38250586,
    0.46373144, 0.21496128, 0.46911287, 0.23825859, 0.47519219, 0.70606434, 0.27007523, 0.68552732,
    0.03216552, 0.60252881, 0.35034859, 0.446798, 0.77326518, 0.58191687, 0.39083108, 1.75193536,
    0.66117406, 0.30213955, 0.53059655, 0.67737472, 0.33273223, 0.49127793, 0.26548928, 0.18805602,
    0.07412001, 1.10810876, 0.28224325, 0.86755145, 0.19422948, 0.810332, 0.36062282, 0.50720042,
    0.42472315, 0.49632648, 0.15117475, 0.79454446, 0.33494323, 0.47283995, 0.41552398, 0.08496041,
    0.37947032, 0.60067391, 0.47174454, 0.81309211, 0.45521152, 1.08920074, 0.47757268, 0.4072122,
]
CONV1_1_WEIGHT_HEAD_BGR = [0.341195, 0.339992, -0.0448442, 0.232159, 0.0897821, -0.303314,
                           -0.0726092, -0.246675, -0.336833, 0.464184]


def test_caffe_weights_shapes_and_published_values() -> None:
    state = W.caffe_vgg19_state_dict()
    assert sorted(state) == sorted(f"features.{i}.{k}" for i in conv_indices("vgg19") for k in ("weight", "bias"))
    assert state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["features.34.weight"].shape == (512, 512, 3, 3)
    bias = state["features.0.bias"]
    assert torch.allclose(bias, torch.tensor(CONV1_1_BIAS), atol=1e-6)
    weight = state["features.0.weight"].flatten()[:10]  # OIHW, input channel 0 = blue
    assert torch.allclose(weight, torch.tensor(CONV1_1_WEIGHT_HEAD_BGR), atol=5e-3)


def test_caffe_preprocessing_is_bgr_0_255_mean_subtracted() -> None:
    red = torch.zeros(1, 3, 1, 1)
    red[:, 0] = 1.0
    raw = W.CaffePreprocess(scale=1.0)(red).flatten().tolist()
    assert raw == pytest.approx([-103.939, -116.779, 255 - 123.68])
    scaled = W.CaffePreprocess()(red).flatten()
    assert torch.allclose(scaled * W.CAFFE_FEATURE_SCALE, torch.tensor(raw), atol=1e-4)


def test_rescaled_caffe_network_is_the_original_divided_by_the_scale() -> None:
    """Input and biases divided by s: every activation is exactly the original's / s."""
    image = torch.rand(1, 3, 24, 24)
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    original = VGGFeatures("vgg19", layers, W.caffe_vgg19_state_dict(), W.CaffePreprocess(scale=1.0))(image)
    rescaled = W.build_extractor("vgg19", layers, weights="caffe")(image)
    for name in layers:
        assert torch.allclose(rescaled[name] * W.CAFFE_FEATURE_SCALE, original[name], rtol=1e-3,
                              atol=1e-3 * original[name].abs().max().item())


def test_random_weights_are_seeded() -> None:
    a, b, c = (W.random_state_dict("vgg19", s) for s in (1, 1, 2))
    assert torch.equal(a["features.0.weight"], b["features.0.weight"])
    assert not torch.equal(a["features.0.weight"], c["features.0.weight"])


def test_local_file_full_torchvision_checkpoint(tmp_path: Path) -> None:
    state = {**W.random_state_dict("vgg16", 3), "classifier.0.weight": torch.zeros(2, 2)}
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    extractor = W.build_extractor("vgg16", ["relu2_1"], weights=str(path))
    assert torch.equal(extractor.net[0].weight, state["features.0.weight"])
    assert isinstance(extractor.preprocess, W.ImageNetNormalize)


def test_local_file_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(W.WeightsError, match=r"model.weights='.*nope.pth': no such file"):
        W.load_state_dict("vgg19", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(W.WeightsError, match="is not a loadable plain state dict"):
        W.load_state_dict("vgg19", str(bad))


def test_torchvision_offline_error_says_which_file_goes_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(W.WeightsError) as info:
        W.load_state_dict("vgg19", "torchvision")
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "model.weights=/path/to/vgg19-dcbb9e9d.pth" in message


def test_torchvision_weights_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save(W.random_state_dict("vgg19", 5), tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth")
    assert torch.equal(W.load_state_dict("vgg19", "torchvision")["features.0.bias"],
                       W.random_state_dict("vgg19", 5)["features.0.bias"])


def test_caffe_weights_only_for_vgg19() -> None:
    with pytest.raises(W.WeightsError, match="only for vgg19"):
        W.load_state_dict("vgg16", "caffe")
