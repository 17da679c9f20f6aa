"""neural-style-pt (PyPI neural-style 0.5.7, neural_style/neural_style.py) transcribed, defaults only.

What its ``main()`` builds for VGG19, ``-pooling max``, content relu4_2, style relu1_1..relu5_1:
the Caffe ``features`` stack (Conv2d, ReLU(inplace=True), MaxPool2d(2, 2)) with loss modules
inserted after the named ReLUs, a TVLoss in front, an image parameter in its own units
(``preprocess``: [0, 1] RGB * 256, BGR, minus the mean pixel), and ``optim.LBFGS`` with a
fixed step run for ``num_iterations`` iterations in one ``step`` call. The loss modules and
``feval`` are copied with only the multi-device and printing/saving code left out, so a
change in our preset's objective or optimiser shows up against this file.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn, optim

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
VGG19 = [64, 64, "P", 128, 128, "P", 256, 256, 256, 256, "P", 512, 512, 512, 512, "P", 512, 512, 512, 512, "P"]
RELUS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4",
         "relu4_1", "relu4_2", "relu4_3", "relu4_4", "relu5_1", "relu5_2", "relu5_3", "relu5_4"]
CONTENT_LAYERS, STYLE_LAYERS = ["relu4_2"], ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 5e0, 1e2, 1e-3  # its argparse defaults


class ContentLoss(nn.Module):
    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength, self.crit, self.mode = strength, nn.MSELoss(), "None"

    def forward(self, input: Tensor) -> Tensor:
        if self.mode == "loss":
            self.loss = self.crit(input, self.target) * self.strength
        elif self.mode == "capture":
            self.target = input.detach()
        return input


class StyleLoss(nn.Module):
    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength, self.crit, self.mode = strength, nn.MSELoss(), "None"

    def forward(self, input: Tensor) -> Tensor:
        _, c, h, w = input.size()
        x_flat = input.view(c, h * w)
        self.G = torch.mm(x_flat, x_flat.t()).div(input.nelement())  # GramMatrix, / nelement
        if self.mode == "capture":
            self.target = self.G.detach()  # one style image, blend weight 1
        elif self.mode == "loss":
            self.loss = self.strength * self.crit(self.G, self.target)
        return input


class TVLoss(nn.Module):
    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, input: Tensor) -> Tensor:
        x_diff = input[:, :, 1:, :] - input[:, :, :-1, :]
        y_diff = input[:, :, :, 1:] - input[:, :, :, :-1]
        self.loss = self.strength * (torch.sum(torch.abs(x_diff)) + torch.sum(torch.abs(y_diff)))
        return input


def preprocess(image: Tensor) -> Tensor:
    """Its ``preprocess`` after Resize + ToTensor: [0, 1] RGB (1, 3, H, W) -> BGR * 256 - mean."""
    mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return image[:, [2, 1, 0]] * 256 - mean


def deprocess(tensor: Tensor) -> Tensor:
    """Its ``deprocess`` without the clamp and the PIL conversion: back to [0, 1] RGB."""
    mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return ((tensor + mean) / 256)[:, [2, 1, 0]]


class Recipe:
    """The network with its loss modules, targets captured from ``content`` and ``style`` ([0, 1] RGB)."""

    def __init__(self, state_bgr: dict[str, Tensor], content: Tensor, style: Tensor) -> None:
        self.net, self.content_losses, self.style_losses = nn.Sequential(), [], []
        self.tv = TVLoss(TV_WEIGHT)
        self.net.add_module("0", self.tv)
        in_channels, relu, pending = 3, 0, set(CONTENT_LAYERS + STYLE_LAYERS)
        for item in VGG19:  # buildSequential, then main()'s loop: it stops after the last loss layer
            if not pending:
                break
            if item == "P":
                self.net.add_module(str(len(self.net)), nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            self._add(nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), state_bgr)
            self.net.add_module(str(len(self.net)), nn.ReLU(inplace=True))
            self._attach(RELUS[relu])
            pending.discard(RELUS[relu])
            in_channels, relu = int(item), relu + 1
        for param in self.net.parameters():
            param.requires_grad = False
        self._capture(self.content_losses, preprocess(content))
        self._capture(self.style_losses, preprocess(style))
        for module in self.content_losses + self.style_losses:
            module.mode = "loss"

    def _add(self, conv: nn.Conv2d, state: dict[str, Tensor]) -> None:
        index = sum(isinstance(m, (nn.Conv2d, nn.ReLU, nn.MaxPool2d)) for m in self.net)
        conv.weight.data.copy_(state[f"features.{index}.weight"])
        conv.bias.data.copy_(state[f"features.{index}.bias"])
        self.net.add_module(str(len(self.net)), conv)

    def _attach(self, name: str) -> None:
        if name in CONTENT_LAYERS:
            self.content_losses.append(ContentLoss(CONTENT_WEIGHT))
            self.net.add_module(str(len(self.net)), self.content_losses[-1])
        if name in STYLE_LAYERS:
            self.style_losses.append(StyleLoss(STYLE_WEIGHT))
            self.net.add_module(str(len(self.net)), self.style_losses[-1])

    def _capture(self, modules: list[nn.Module], image: Tensor) -> None:
        for module in modules:
            module.mode = "capture"
        with torch.no_grad():
            self.net(image)
        for module in modules:
            module.mode = "None"

    def terms(self, img: Tensor) -> dict[str, Tensor]:
        """feval's loss, split into its three sums, for ``img`` in its own (Caffe) units."""
        self.net(img)
        return {"content": sum(m.loss for m in self.content_losses), "style": sum(m.loss for m in self.style_losses),
                "tv": self.tv.loss}

    def objective(self, image: Tensor) -> dict[str, Tensor]:
        """The terms at a [0, 1] RGB image (differentiable in it)."""
        return self.terms(preprocess(image))

    def run(self, image: Tensor, num_iterations: int) -> Tensor:
        """main()'s L-BFGS loop from ``image`` ([0, 1] RGB, ``-init image``); the last iterate, unclamped."""
        img = nn.Parameter(preprocess(image).detach().clone())
        optimizer = optim.LBFGS([img], max_iter=num_iterations, tolerance_change=-1, tolerance_grad=-1)
        num_calls = [0]

        def feval() -> Tensor:
            num_calls[0] += 1
            optimizer.zero_grad()
            loss = sum(self.terms(img).values())
            loss.backward()
            return loss

        while num_calls[0] <= 1:
            optimizer.step(feval)
        return deprocess(img.detach())
