"""The yardstick: every run's final image scored the same way, whatever the run optimised.

A run's own ``final_loss`` cannot rank a sweep: it is measured with the run's own weights and
layers, so lowering style_weight "wins". ``JudgeScore`` re-scores the final image under fixed
choices instead, and RunSummary writes the scores into summary.json (then W&B's summary, the
report, and Optuna's objective through ``optimized_metric``):

    judge_content  content distance at relu4_2 (L2, mean)                        lower is better
    judge_style    mean Gram distance over relu1_1..relu5_1 (L2, Gram / CHW)      lower is better
    judge_loss     judge_content_weight * judge_content + judge_style_weight * judge_style
                   (the shipped default's trade-off: 1 and 1e5)                   lower is better
    judge_ssim     SSIM to the content photo (structure kept, 1 = identical)      higher is better
    judge_color    colour-histogram distance to the painting (EMD, 0..1)          lower is better

The network is the run's weights file with max pooling and a fixed seed (model.weights=random:
the same random net for every job), so runs that differ only in loss weights, layers, optimiser,
init or augmentation are scored by one and the same net. A sweep over ``model.*`` changes the
net too: compare such runs by judge_ssim and judge_color, which need no network.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from nst_exp.core.layers import layer_weights
from nst_exp.core.metrics import color_distance, ssim
from nst_exp.core.objective import LossOptions, Seen, from_features
from nst_exp.core.weights import build_extractor
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.summary import SummaryPart

log = logging.getLogger(__name__)
JUDGE_KEYS = ("judge_loss", "judge_content", "judge_style", "judge_ssim", "judge_color")
_EXTRACTORS: dict[str, nn.Module] = {}  # one per network: a sweep's jobs in one process share it


class JudgeScore(SummaryPart, pl.Callback):
    """Add the ``JUDGE_KEYS`` scores of the final image to summary.json.

    RunSummary asks for them (``summary_fields``) when it writes the summary, so the order of
    the callbacks does not matter and the file is written once.
    """

    def __init__(self, model: dict[str, Any], content_layers: list[str],
                 style_layers: list[str], content_weight: float = 1.0, style_weight: float = 1.0e5,
                 loss: dict[str, str] | None = None, pooling: str = "max", seed: int = 0) -> None:
        self.model = {**dict(model), "pooling": pooling, "seed": int(seed)}
        self.content_layers = layer_weights(self.model["arch"], list(content_layers), None, "judge content_layers")
        self.style_layers = layer_weights(self.model["arch"], list(style_layers), None, "judge style_layers")
        self.content_weight, self.style_weight = float(content_weight), float(style_weight)
        self.loss = dict(loss or {"norm": "l2", "reduction": "mean", "gram_norm": "chw"})
        self._module: StyleTransferModule | None = None

    def extractor(self, device: torch.device) -> nn.Module:
        """The judge's network, built once per process (Caffe weights are decoded once anyway)."""
        layers = [*self.content_layers, *self.style_layers]
        key = repr((sorted(self.model.items()), layers))
        if key not in _EXTRACTORS:
            options = {k: v for k, v in self.model.items() if k != "_target_"}  # always build_extractor
            _EXTRACTORS[key] = build_extractor(**options, layers=layers)
        return _EXTRACTORS[key].to(device)

    @torch.no_grad()
    def score(self, module: StyleTransferModule) -> dict[str, float | None]:
        """The yardstick's scores of the module's (clamped, first) image, in fp32; several styles
        are blended and placed (masks) as the run has them."""
        extractor = self.extractor(module.device)
        content, style = module.content[:1].float(), module.style.float()
        image = module.image.detach()[:1].float().clamp(0, 1)
        styles = [extractor(s.float(), list(self.style_layers)) for s in module.styles]
        objective = from_features(extractor(content, list(self.content_layers)), styles,
                                  self.content_layers, self.style_layers, LossOptions(**self.loss),
                                  weights={"tv": 0.0}, style_blend=module.style_blend, masks=module.masks)
        parts = objective(Seen(extractor(image), image, image))
        raw = {"content": float(parts["content_loss"].sum()), "style": float(parts["style_loss"].sum())}
        scores = {
            "judge_loss": self.content_weight * raw["content"] + self.style_weight * raw["style"],
            "judge_content": raw["content"],
            "judge_style": raw["style"],
            "judge_ssim": float(ssim(image, content).sum()),
            "judge_color": float(color_distance(image, style[:1]).sum()),
        }
        return {key: value if math.isfinite(value) else None for key, value in scores.items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        self._module = pl_module

    def summary_fields(self) -> dict[str, float | None]:
        """What RunSummary adds to summary.json: the judge's scores of the current image."""
        if self._module is None:
            return {}
        scores = self.score(self._module)
        log.info("Yardstick: %s", ", ".join(f"{key[6:]} {_short(value)}" for key, value in scores.items()))
        return scores


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
