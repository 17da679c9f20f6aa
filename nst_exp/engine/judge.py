"""A fixed yardstick for hyperparameter searches: ``judge_loss`` in summary.json.

Each run's own ``final_loss`` cannot rank a search: it is measured with the run's own weights
and layers, so lowering style_weight "wins". ``JudgeScore`` re-scores the final image under
one fixed objective instead, the shipped default (Gatys layers, content_weight 1,
style_weight 1e5, L2), so every trial is judged alike whatever it optimised:

    judge_loss = judge_content_weight * content(relu4_2) + judge_style_weight * mean_l style(l)

Lower is better: an image that is both close to the photo's content and to the painting's
style statistics, as the shipped default trades them off.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from nst_exp.core.layers import layer_weights
from nst_exp.core.losses import StyleTransferLoss
from nst_exp.engine.module import StyleTransferModule

log = logging.getLogger(__name__)


class JudgeScore(pl.Callback):
    """Add ``judge_loss``/``judge_content``/``judge_style`` to summary.json.

    RunSummary asks for them (``summary_fields``) when it writes the summary, so the order of
    the callbacks does not matter and the file is written once.
    """

    def __init__(self, model: dict[str, Any], content_layers: list[str],
                 style_layers: list[str], content_weight: float = 1.0, style_weight: float = 1.0e5,
                 loss: dict[str, str] | None = None) -> None:
        self.model = dict(model)
        self.content_layers = layer_weights(self.model["arch"], list(content_layers), None, "judge content_layers")
        self.style_layers = layer_weights(self.model["arch"], list(style_layers), None, "judge style_layers")
        self.content_weight, self.style_weight = float(content_weight), float(style_weight)
        self.loss = dict(loss or {"norm": "l2", "reduction": "mean", "gram_norm": "chw"})
        self._module: StyleTransferModule | None = None

    @torch.no_grad()
    def score(self, module: StyleTransferModule) -> dict[str, float | None]:
        """The judge's content, style and weighted total for the module's (clamped) first image."""
        extractor = instantiate(self.model, layers=[*self.content_layers, *self.style_layers]).to(module.device)
        content = extractor(module.content[:1], list(self.content_layers))
        styles = [extractor(style, list(self.style_layers)) for style in module.styles]  # blended, placed as run
        objective = StyleTransferLoss(content, styles, self.content_layers, self.style_layers,
                                      style_blend=module.style_blend, masks=module.masks, **self.loss)
        image = module.image.detach()[:1].clamp(0, 1)
        parts = objective(extractor(image), image)
        raw = {"content": float(parts["content"].sum()), "style": float(parts["style"].sum())}
        total = self.content_weight * raw["content"] + self.style_weight * raw["style"]
        return {"judge_loss": total if math.isfinite(total) else None,
                "judge_content": raw["content"], "judge_style": raw["style"]}

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        self._module = pl_module

    def summary_fields(self) -> dict[str, float | None]:
        """What RunSummary adds to summary.json: the judge's scores of the current image."""
        if self._module is None:
            return {}
        scores = self.score(self._module)
        log.info("Judge: loss %s (content %.4g, style %.4g)", scores["judge_loss"], scores["judge_content"],
                 scores["judge_style"])
        return scores
