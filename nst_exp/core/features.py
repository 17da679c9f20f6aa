"""VGG16/19 feature extractors in plain torch, with named layers and torchvision indices.

Layers are named as in the papers (``conv4_2``, ``relu4_2``, ``pool4``) and sit at the same
``features.{idx}`` positions as torchvision's VGG, so published checkpoints load unchanged.
The extractor is truncated after the deepest layer in use and frozen: its weights are
buffers, not parameters, so the image stays the only thing an optimiser can see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nst_exp.errors import WeightsMismatch

# Output channels per conv, "M" = 2x2 pooling (Simonyan & Zisserman, configs D and E).
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}  # fmt: skip
POOLINGS = ("avg", "max")  # model.pooling: VGG's own max, or Gatys et al.'s average


def layer_names(arch: str) -> list[str]:
    """Names of ``features[i]`` for every i: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names, block, depth = [], 1, 1
    for item in _config(arch):
        if item == "M":
            names.append(f"pool{block}")
            block, depth = block + 1, 1
        else:
            names += [f"conv{block}_{depth}", f"relu{block}_{depth}"]
            depth += 1
    return names


def conv_indices(arch: str) -> list[int]:
    """torchvision ``features`` indices of the conv layers, in order (conv1_1 first)."""
    return [i for i, name in enumerate(layer_names(arch)) if name.startswith("conv")]


def resolve_layer(arch: str, layer: str | int) -> str:
    """Turn a layer name or a torchvision ``features`` index into a checked layer name."""
    names = layer_names(arch)
    if isinstance(layer, int) and not isinstance(layer, bool):
        if 0 <= layer < len(names):
            return names[layer]
        raise ValueError(f"layer index {layer} is out of range for {arch} (0..{len(names) - 1})")
    if layer in names:
        return str(layer)
    raise ValueError(f"unknown layer {layer!r} for {arch}; valid layers: {', '.join(names)}")


def min_input_size(arch: str, layers: Iterable[str | int]) -> tuple[int, str]:
    """(smallest image side, deepest layer): each 2x2 pooling up to that layer halves the side
    (rounding down), and the deepest layer needs at least one pixel."""
    names = layer_names(arch)
    deepest = max(names.index(resolve_layer(arch, layer)) for layer in layers)
    pools = sum(name.startswith("pool") for name in names[: deepest + 1])
    return 2**pools, names[deepest]


def _config(arch: str) -> list[int | str]:
    if arch not in VGG_CONFIGS:
        raise ValueError(f"model.arch={arch!r} is not one of {sorted(VGG_CONFIGS)}")
    return VGG_CONFIGS[arch]



class FrozenConv2d(nn.Module):
    """A 3x3 conv whose weight and bias are non-persistent buffers (frozen, never saved)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.empty(out_channels, in_channels, 3, 3), persistent=False)
        self.register_buffer("bias", torch.zeros(out_channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size=3, padding=1"


def build_vgg_features(arch: str, pooling: str = "max", depth: int | None = None) -> nn.Sequential:
    """The ``features`` stack of torchvision's VGG, optionally only its first ``depth`` layers."""
    if pooling not in POOLINGS:
        raise ValueError(f"model.pooling={pooling!r} is not one of {list(POOLINGS)}")
    layers: list[nn.Module] = []
    channels = 3
    for item in _config(arch):
        if item == "M":
            # Gatys et al. swap max for average pooling: smoother gradients, nicer images.
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        else:
            layers += [FrozenConv2d(channels, int(item)), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers[:depth])


class VGGFeatures(nn.Module):
    """Preprocess an RGB [0, 1] image and return the activations of the requested layers.

    One forward pass serves all content and style layers; the stack stops at the deepest
    layer anybody asked for.
    """

    def __init__(
        self,
        arch: str,
        layers: Iterable[str | int],
        state_dict: dict[str, Tensor],
        preprocess: nn.Module,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        self.arch = arch
        self.layers = sorted({resolve_layer(arch, l) for l in layers}, key=layer_names(arch).index)
        if not self.layers:
            raise ValueError("no layers requested: the content and style layer sets are both empty")
        depth = layer_names(arch).index(self.layers[-1]) + 1
        self.names = layer_names(arch)[:depth]
        self.preprocess = preprocess
        self.net = build_vgg_features(arch, pooling, depth)
        load_conv_weights(self.net, state_dict, arch)
        self.eval()

    def forward(self, image: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        wanted = set(self.layers if layers is None else layers)
        if not wanted:  # e.g. the content targets of a style-only run (layers.content=[])
            return {}
        stop = max(self.names.index(name) for name in wanted)
        x = self.preprocess(image)
        feats: dict[str, Tensor] = {}
        for index, (name, module) in enumerate(zip(self.names, self.net)):
            if isinstance(module, nn.ReLU):
                # In place saves a copy per layer, unless the conv output itself was kept.
                x = F.relu(x, inplace=self.names[index - 1] not in wanted)
            else:
                x = module(x)
            if name in wanted:
                feats[name] = x
            if index == stop:
                break
        return feats

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always stay in eval mode: the extractor is a fixed measuring instrument."""
        return super().train(False)


def load_conv_weights(net: nn.Sequential, state_dict: dict[str, Tensor], arch: str) -> None:
    """Copy ``features.{i}.weight/bias`` (or ``{i}.weight``) into the truncated stack.

    Raises a ValueError naming every missing key or mismatched shape.
    """
    problems = []
    for index, module in enumerate(net):
        if not isinstance(module, FrozenConv2d):
            continue
        for kind in ("weight", "bias"):
            tensor = state_dict.get(f"features.{index}.{kind}", state_dict.get(f"{index}.{kind}"))
            expected = getattr(module, kind).shape
            if tensor is None:
                problems.append(f"missing features.{index}.{kind}")
            elif tensor.shape != expected:
                problems.append(f"features.{index}.{kind} has shape {tuple(tensor.shape)}, "
                                f"{arch} needs {tuple(expected)}")
            else:
                getattr(module, kind).copy_(tensor.float())
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} in all)" if len(problems) > 6 else "")
        raise WeightsMismatch(f"weights do not fit {arch}: {shown}")
