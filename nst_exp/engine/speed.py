"""Device speed-ups that do not change the maths: precision per optimiser, channels_last, compile.

- ``precision_for`` (config resolver ``nst_precision``): mixed precision only where it is
  allowed. Lightning's AMP refuses L-BFGS ("AMP and the LBFGS optimizer are not compatible"),
  and an L-BFGS line search needs exact function values anyway, so L-BFGS always runs fp32.
  ``auto`` picks bf16 autocast where the device has bf16 arithmetic of its own (CUDA GPUs from
  Ampere on, CPUs with AMX or AVX512-BF16, where oneDNN's bf16 convolutions ran Adam 1.9x
  faster here) and fp32 where bf16 would be emulated, i.e. slower.
- ``SpeedUps`` (callback): channels_last convolutions (NHWC tensor-core kernels on GPUs; no
  gain measured on CPU, so ``auto`` turns it on for CUDA only) and ``torch.compile`` of the
  feature extractor. The image parameter stays contiguous (L-BFGS flattens it with ``view``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from nst_exp.core.lbfgs import quasi_newton

log = logging.getLogger(__name__)
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "auto")  # the top-level ``precision`` knob


def precision_for(optimizer_target: str, requested: str, accelerator: str = "auto") -> str:
    """``requested`` Lightning precision (``auto``: see ``native_bf16``), or ``32-true`` for
    optimisers that need fp32."""
    if quasi_newton(str(optimizer_target)):  # its line search compares losses: fp32 only
        return "32-true"
    if requested == "auto":
        return "bf16-mixed" if native_bf16(accelerator) else "32-true"
    return requested


def native_bf16(accelerator: str = "auto") -> bool:
    """Does the device the Trainer will pick compute in bf16 natively (so autocast pays)?"""
    use_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if use_cuda:
        return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8  # Ampere on
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence the getattr
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


class ToChannelsLast(nn.Module):
    """Hand the convolutions NHWC input; autograd returns the gradient in the caller's layout."""

    def forward(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)


class SpeedUps(pl.Callback):
    """Apply channels_last and torch.compile to the module's feature extractor at fit start.

    Runs before the module encodes its targets (callback hooks precede the module's own), so
    targets and steps go through the same, converted network.
    """

    def __init__(self, channels_last: bool | str = "auto", compile: bool = False,
                 compile_options: dict[str, Any] | None = None) -> None:
        self.channels_last, self.compile = channels_last, bool(compile)
        self.compile_options = dict(compile_options or {})

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module = trainer.lightning_module  # the module itself, also when a batch hands a job view
        extractor = pl_module.extractor
        use_nhwc = self.channels_last is True or (self.channels_last == "auto" and pl_module.device.type == "cuda")
        if use_nhwc and not getattr(extractor, "channels_last", False):
            to_channels_last(extractor)
        if self.compile and not isinstance(extractor, torch._dynamo.eval_frame.OptimizedModule):
            log.info("Compiling the feature extractor with torch.compile(%s)", self.compile_options or "")
            pl_module.extractor = torch.compile(extractor, **self.compile_options)


def to_channels_last(extractor: nn.Module) -> nn.Module:
    """Store conv weights NHWC and convert the extractor's input to NHWC (in place)."""
    for module in extractor.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and weight.dim() == 4:
            module.weight = weight.contiguous(memory_format=torch.channels_last)
    extractor.preprocess = nn.Sequential(extractor.preprocess, ToChannelsLast())
    extractor.channels_last = True
    return extractor
