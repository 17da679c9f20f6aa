"""The LightningModule: its only parameter is the image being optimised.

The network and the loss targets are buffers (frozen, never trained, never checkpointed); the
optimiser is built from a config partial, so Adam and L-BFGS share one code path. Optimisation
is manual so that an L-BFGS step can reuse the function value its line search already paid for,
and so that one Lightning batch can run several optimiser steps (engine/steps.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, IterableDataset

from nst_exp.core.augment import NoAugment, Warp
from nst_exp.core.color import luminance
from nst_exp.core.features import VGGFeatures
from nst_exp.core.lbfgs import quasi_newton
from nst_exp.core.objective import Objective, Seen, TermInputs, build_objective
from nst_exp.engine.shortcuts import direct_step_will_do, plain_backward_will_do, step_directly
from nst_exp.engine.spec import ObjectiveSpec
from nst_exp.engine.steps import StepHooks, batch_length, steps_per_batch

OptimizerFactory = Callable[[list[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]
CLAMP_MODES = ("auto", "step", "end")


class Forever(IterableDataset):
    """A dummy, endless one-item-per-step dataset: the Trainer's max_steps ends the run."""

    def __iter__(self) -> Iterator[int]:
        while True:
            yield 0


class StyleTransferModule(pl.LightningModule):
    """Optimise ``image`` (B, 3, H, W), RGB in [0, 1], against the objective ``spec`` describes.

    The spec's weights hold one value per image and term, so a batch of images can be a batch
    of sweep jobs. Artistic controls (runtime/controls.py prepares them): several styles,
    blended or placed by masks; ``luminance_only`` shows the network grey images
    (core/color.py: the image keeps the chroma it starts with).
    """

    def __init__(self, image: Tensor, spec: ObjectiveSpec, extractor: VGGFeatures, optimizer: OptimizerFactory,
                 augment: NoAugment | None = None, clamp: str = "auto", scheduler: SchedulerFactory | None = None,
                 grad_clip: float | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        # LBFGS flattens grads with .view(): the parameter must be contiguous.
        self.image = nn.Parameter(image.detach().clone().contiguous())
        self.extractor = extractor
        self.spec = spec
        self.register_buffer("content", spec.content.expand_as(image).contiguous(), persistent=False)
        for index, each in enumerate(spec.styles):  # style, style_1, ...: buffers follow the module's device
            self.register_buffer("style" if index == 0 else f"style_{index}", each, persistent=False)
        self.register_buffer("masks", spec.masks, persistent=False)
        self.objective: Objective | None = None
        self.augment = augment or NoAugment()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.grad_clip = grad_clip  # element-wise, each evaluation's gradient (engine/module.py)
        self.clamp = clamp
        self.last_components: dict[str, Tensor] = {}
        self.evaluations = 0  # forward/backward passes so far (cache hits are free): metrics.csv's evals
        self._cache: tuple[Tensor, Tensor, Tensor, dict[str, Tensor]] | None = None
        self._step_hooks: list[StepHooks] = []
        self._steps_per_batch = 1
        self._quasi_newton = False  # this fit's optimiser is L-BFGS-like (set in on_train_start)
        self._backward: Callable[[Tensor], None] = self.manual_backward
        self._step: Callable[[Any, Callable[[], Tensor]], Any] = self._lightning_step

    # --- what the spec says, as the callbacks read it ------------------------------------
    content_layers = property(lambda self: self.spec.content_layers)
    style_layers = property(lambda self: self.spec.style_layers)
    style_blend = property(lambda self: self.spec.style_blend)
    luminance_only = property(lambda self: self.spec.luminance_only)

    @property
    def styles(self) -> list[Tensor]:
        """Every style image (one unless the config lists several), on the module's device."""
        return [self.style, *(getattr(self, f"style_{index}") for index in range(1, len(self.spec.styles)))]

    @property
    def columns(self) -> list[str]:
        """``loss`` and each term's ``<name>_loss``: what metrics.csv, summary.json and loggers hold."""
        return (self.objective or self.build_objective()).columns

    # --- the objective -------------------------------------------------------------------
    @torch.no_grad()
    def build_objective(self) -> Objective:
        """Encode content and style once, where the module lives (on the GPU if it is there)."""
        self.objective = self.objective_for(self.content[:1], self.styles)
        if self.spec.reference is not None:
            self.objective.rebalance(self.reference_energies())
        return self.objective

    @torch.no_grad()
    def objective_for(self, content: Tensor, styles: Sequence[Tensor], **extra: object) -> Objective:
        """This run's terms, weights, layers and controls with these images' targets (``extra``:
        more TermInputs fields, e.g. a tiled run's whole-painting ``style_targets``)."""
        return build_objective(self.spec.terms, {name: w.to(self.device) for name, w in self.spec.weights.items()},
                               self.term_inputs(content, styles, **extra))

    def term_inputs(self, content: Tensor, styles: Sequence[Tensor], **extra: object) -> TermInputs:
        """What the terms build their targets from: these images, seen as this run's network sees them."""
        device, spec = self.image.device, self.spec

        def encode(image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
            return self.extractor(self.view(image.to(device)), list(layers))

        tv_input = self.extractor.preprocess if spec.tv_space == "network" else None  # TV of the network's input
        return TermInputs(encode=encode, content=content.to(device), styles=[s.to(device) for s in styles],
                          content_layers=spec.content_layers, style_layers=spec.style_layers, options=spec.options,
                          style_blend=spec.style_blend, masks=self.masks, tv_input=tv_input, **extra)

    def reference_energies(self) -> dict[str, float]:
        """The target energies this run's objective has with its content and styles at the
        reference size (``loss.reference_edge``): the balance every size keeps."""
        assert self.spec.reference is not None
        return self.objective_for(*self.spec.reference).energies()

    def view(self, image: Tensor) -> Tensor:
        """What the network sees of an image: itself, or its luminance (``color=luminance``)."""
        return luminance(image) if self.spec.luminance_only else image

    def on_fit_start(self) -> None:
        if self.objective is None:
            self.build_objective()

    def components(self, image: Tensor, warp: Warp | None = None) -> dict[str, Tensor]:
        """Weighted per-image losses of ``image``: each term's ``<name>_loss`` and their sum ``loss``."""
        objective = self.objective or self.build_objective()
        content_features = None
        if warp is not None:  # the content target must see the same warp as the image
            with torch.no_grad():
                content_features = self.extractor(self.view(self.augment(self.content, warp)),
                                                  list(self.spec.content_layers))
        seen = self.view(self.augment(image, warp))
        # TV regularises the image being optimised, not the warped crop the network sees.
        return objective(Seen(self.extractor(seen), seen, image, content_features))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss components of the current image, clamped as it will be saved (no augmentation)."""
        parts = self.components(self.image.clamp(0, 1))
        return {key: float(value.sum()) for key, value in parts.items()}

    # --- the loop ------------------------------------------------------------------------
    def on_train_start(self) -> None:
        """Plan the batches: several steps each, as the callbacks' cadences allow (engine/steps.py)."""
        callbacks = self.trainer.callbacks
        self._quasi_newton = quasi_newton(self.trainer.optimizers[0])  # asked at every evaluation
        self._backward = self._plain_backward if plain_backward_will_do(self) else self.manual_backward
        self._step = step_directly if direct_step_will_do(self) else self._lightning_step
        self._step_hooks = [callback for callback in callbacks if isinstance(callback, StepHooks)]
        self._steps_per_batch = steps_per_batch(callbacks)

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        """One Lightning batch: up to ``steps_per_batch`` optimiser steps, each framed by the
        callbacks' step hooks (engine/steps.py says why)."""
        trainer, hooks = self.trainer, self._step_hooks
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        # auto: L-BFGS is box-constrained itself (nst_exp.core.lbfgs); clamping it would corrupt its pairs
        clamp = self.clamp == "step" or (self.clamp == "auto" and not self._quasi_newton)
        for _ in range(batch_length(trainer.global_step, self._steps_per_batch, trainer.max_steps)):
            for hook in hooks:
                hook.before_step(trainer, self)
            self.optimizer_step_once(optimizer, scheduler, clamp)
            if any([hook.after_step(trainer, self) for hook in hooks]):  # a list: every hook runs
                break
        self._log_losses(self.last_components)

    def optimizer_step_once(self, optimizer: Any, scheduler: Any, clamp: bool) -> None:
        """One step (then the scheduler's, and the clamp to [0, 1] if ``clamp``);
        ``last_components`` = the losses at the image the step started from."""
        warp = self.augment.sample(*self.image.shape[-2:])
        first: list[dict[str, Tensor]] = []

        def closure() -> Tensor:
            loss, parts = self._loss_and_grad(optimizer, warp)
            if not first:
                first.append(parts)
            return loss

        self._step(optimizer, closure)
        if scheduler is not None:  # manual optimisation: Lightning leaves the stepping to us
            scheduler.step()
        self.last_components = first[0]
        if clamp:
            with torch.no_grad():
                self.image.clamp_(0, 1)

    def _log_losses(self, parts: dict[str, Tensor]) -> None:
        """The batch's last losses into ``trainer.callback_metrics`` as ``train/<key>``: stock
        EarlyStopping/ModelCheckpoint monitor ``train/loss`` there, the progress bar shows it.

        Device tensors, never floats, so this costs no sync: they are copied to the host only
        when the progress bar refreshes or someone reads them. Written into the dict directly,
        not through ``self.log``: that costs ~0.3 ms of Python per key and call (Lightning moves
        its result record to the device and validates it each time), 0.15 ms a step for the
        four default terms, a third of all the framework added to a 32 px step
        (docs/performance.md, fixed cost). Lightning only merges what ``self.log`` recorded into
        that dict, so these entries stay until the next batch's. metrics.csv and the loggers get
        their rows from MetricsRecorder.
        """
        metrics = self.trainer.callback_metrics
        for key, value in parts.items():
            metrics[f"train/{key}"] = value.sum()

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
        self._backward(parts["loss"].sum())
        if self.grad_clip is not None:  # Trainer(gradient_clip_val) refuses manual optimisation
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="value")
        detached = {key: value.detach() for key, value in parts.items()}
        # Batched optimisers (nst_exp.strategies.batched.optim) need each image's loss, not the batch total.
        loss = detached["loss"] if getattr(optimizer, "per_image_loss", False) else detached["loss"].sum()
        if self._quasi_newton:
            self._cache = (self.image.detach().clone(), loss, self.image.grad.detach().clone(), detached)
        return loss, detached

    @staticmethod
    def _plain_backward(loss: Tensor) -> None:
        loss.backward()

    @staticmethod
    def _lightning_step(optimizer: Any, closure: Callable[[], Tensor]) -> Any:
        return optimizer.step(closure=closure)

    def on_train_end(self) -> None:
        with torch.no_grad():
            self.image.clamp_(0, 1)
        self._cache = None

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        optimizer = self.optimizer_factory([self.image])
        if self.scheduler_factory is None:
            return optimizer
        # One scheduler step per optimiser step; checkpoints keep its state for a resume.
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Forever(), batch_size=None)

