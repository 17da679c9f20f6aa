"""The LightningModule: its only parameter is the image being optimised.

The network and the loss targets are buffers (frozen, never trained, never checkpointed); the
optimiser is built from a config partial, so Adam and L-BFGS share one code path. Optimisation
is manual so that an L-BFGS step can reuse the function value its line search already paid for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import LBFGS, Optimizer
from torch.utils.data import DataLoader, IterableDataset

from nst_exp.core.augment import NoAugment, Warp
from nst_exp.core.features import VGGFeatures
from nst_exp.core.losses import StyleTransferLoss

OptimizerFactory = Callable[[list[nn.Parameter]], Optimizer]
CLAMP_MODES = ("auto", "step", "end")


class Forever(IterableDataset):
    """A dummy, endless one-item-per-step dataset: the Trainer's max_steps ends the run."""

    def __iter__(self) -> Iterator[int]:
        while True:
            yield 0


class StyleTransferModule(pl.LightningModule):
    """Optimise ``image`` (B, 3, H, W), RGB in [0, 1], against a fixed objective.

    ``weights`` holds per-image content/style/TV weights, each a tensor of shape (B,), so a
    batch of images can be a batch of sweep jobs.
    """

    def __init__(self, image: Tensor, content: Tensor, style: Tensor, extractor: VGGFeatures,
                 content_layers: dict[str, float], style_layers: dict[str, float], optimizer: OptimizerFactory,
                 weights: dict[str, Tensor], loss: dict[str, str] | None = None,
                 augment: NoAugment | None = None, clamp: str = "auto") -> None:
        super().__init__()
        if clamp not in CLAMP_MODES:
            raise ValueError(f"clamp={clamp!r} is not one of {list(CLAMP_MODES)}")
        self.automatic_optimization = False
        # LBFGS flattens grads with .view(): the parameter must be contiguous.
        self.image = nn.Parameter(image.detach().clone().contiguous())
        self.extractor = extractor
        self.register_buffer("content", content.expand_as(image).contiguous(), persistent=False)
        self.register_buffer("style", style, persistent=False)
        for name in ("content", "style", "tv"):
            self.register_buffer(f"{name}_weight", weights[name].float().reshape(-1), persistent=False)
        self.uses_tv = bool((weights["tv"] != 0).any())  # decided once, here: no device sync per step
        self.content_layers, self.style_layers = dict(content_layers), dict(style_layers)
        self.loss_options = dict(loss or {})
        self.objective: StyleTransferLoss | None = None
        self.augment = augment or NoAugment()
        self.optimizer_factory = optimizer
        self.clamp = clamp
        self.last_components: dict[str, Tensor] = {}
        self.evaluations = 0  # forward/backward passes so far (cache hits are free): metrics.csv's evals
        self._cache: tuple[Tensor, Tensor, Tensor, dict[str, Tensor]] | None = None

    @torch.no_grad()
    def build_objective(self) -> StyleTransferLoss:
        """Encode content and style once, where the module lives (on the GPU if it is there)."""
        content = self.extractor(self.content[:1], list(self.content_layers))
        style = self.extractor(self.style, list(self.style_layers))
        self.objective = StyleTransferLoss(content, style, self.content_layers, self.style_layers,
                                           **self.loss_options)
        return self.objective

    def on_fit_start(self) -> None:
        if self.objective is None:
            self.build_objective()

    # --- the objective -------------------------------------------------------------------
    def components(self, image: Tensor, warp: Warp | None = None) -> dict[str, Tensor]:
        """Weighted per-image losses of ``image``: content, style, tv and their sum ``loss``."""
        content_targets = None
        if warp is not None:  # the content target must see the same warp as the image
            with torch.no_grad():
                content_targets = self.extractor(self.augment(self.content, warp), list(self.content_layers))
        seen = self.augment(image, warp)
        objective = self.objective or self.build_objective()
        # TV regularises the image being optimised, not the warped crop the network sees.
        parts = objective(self.extractor(seen), seen, content_targets, with_tv=self.uses_tv, tv_image=image)
        weighted = {
            "content_loss": self.content_weight * parts["content"],
            "style_loss": self.style_weight * parts["style"],
            "tv_loss": self.tv_weight * parts["tv"],
        }
        weighted["loss"] = weighted["content_loss"] + weighted["style_loss"] + weighted["tv_loss"]
        return weighted

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss components of the current image, clamped as it will be saved (no augmentation)."""
        parts = self.components(self.image.clamp(0, 1))
        return {key: float(value.sum()) for key, value in parts.items()}

    # --- the loop ------------------------------------------------------------------------
    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        optimizer = self.optimizers()
        warp = self.augment.sample(*self.image.shape[-2:])
        first: list[dict[str, Tensor]] = []

        def closure() -> Tensor:
            loss, parts = self._loss_and_grad(optimizer, warp)
            if not first:
                first.append(parts)
            return loss

        optimizer.step(closure=closure)
        self.last_components = first[0]  # the loss at the image this step started from
        # auto: L-BFGS is box-constrained itself (nst_exp.core.box_lbfgs); clamping it would corrupt its pairs
        if self.clamp == "step" or (self.clamp == "auto" and not self._quasi_newton):
            with torch.no_grad():
                self.image.clamp_(0, 1)

    def _loss_and_grad(self, optimizer: Optimizer, warp: Warp | None) -> tuple[Tensor, dict[str, Tensor]]:
        """One function + gradient evaluation, reusing the last one if the image is unchanged.

        torch's L-BFGS re-evaluates, at the start of every step, the point its previous line
        search ended on; the cache makes that free (about a third of the evaluations).
        """
        if self._cache is not None and warp is None and torch.equal(self._cache[0], self.image):
            _, loss, grad, parts = self._cache
            self.image.grad = grad.clone()
            return loss, parts
        optimizer.zero_grad(set_to_none=False)
        self.evaluations += 1
        parts = self.components(self.image, warp)
        self.manual_backward(parts["loss"].sum())
        detached = {key: value.detach() for key, value in parts.items()}
        # Batched optimisers (nst_exp.batched.optim) need each image's loss, not the batch total.
        loss = detached["loss"] if getattr(optimizer, "per_image_loss", False) else detached["loss"].sum()
        if self._quasi_newton:
            self._cache = (self.image.detach().clone(), loss, self.image.grad.detach().clone(), detached)
        return loss, detached

    @property
    def _quasi_newton(self) -> bool:
        optimizer = self.trainer.optimizers[0] if self._trainer is not None else None
        return isinstance(optimizer, LBFGS)

    def on_train_end(self) -> None:
        with torch.no_grad():
            self.image.clamp_(0, 1)
        self._cache = None

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory([self.image])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Forever(), batch_size=None)
