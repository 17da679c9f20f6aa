"""Optimise an image too large for one pass as overlapping tiles against global style targets.

The objective of each tile is the run's own (same layers, weights, loss) with two changes:
style targets are the Gram matrices of the *whole* style image (``core.tiles.tiled_grams``,
computed once), so every tile is pulled toward the same statistics; content targets are the
tile's own content crop, so each tile keeps its part of the picture. Tiles are optimised one
after another, each starting from the current image (its overlap already holds the
neighbours' result) and pasted back through a feathered mask; every other pass shifts the
grid by half a stride so that the previous pass's seams fall inside tiles.

This loop is plain torch (no Trainer per tile: a 4096 px image is ~150 tiles a pass); the
caller gets a hook after every tile for metrics, snapshots and checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nst_exp.core.lbfgs import quasi_newton
from nst_exp.core.objective import Objective, Seen, balance_scales
from nst_exp.core.tiles import Box, crop, feather, gram_target, paste, tile_grid, tiled_grams
from nst_exp.engine.module import StyleTransferModule

log = logging.getLogger(__name__)


@dataclass
class TilePlan:
    """How to tile: tile edge and overlap (px), passes over the image, optimiser steps per tile."""

    tile: int
    overlap: int
    passes: int
    steps: int
    bf16: bool = False  # bf16 autocast for the network (Adam only: L-BFGS needs exact losses)


@dataclass
class TileProgress:
    """Where a tiled optimisation stands: the next tile to do, and what the done ones reported."""

    pass_index: int = 0
    tile_index: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


TileHook = Callable[[Tensor, TileProgress], None]


def grid(plan: TilePlan, height: int, width: int, pass_index: int) -> list[Box]:
    """The tiles of pass ``pass_index``: odd passes use the grid shifted by half a stride."""
    return tile_grid(height, width, plan.tile, plan.overlap, shift=pass_index % 2 == 1)


def run_tiles(module: StyleTransferModule, plan: TilePlan, progress: TileProgress | None = None,
              on_tile: TileHook | None = None) -> tuple[Tensor, TileProgress]:
    """Optimise ``module.image`` tile by tile; returns the image and the progress (all done).

    ``module`` supplies the objective (terms, network, layers, weights, loss options, optimiser)
    and the full-size image, content and style; ``progress`` continues an interrupted run. A
    tile whose optimisation diverged (a non-finite loss or pixel) is not pasted: the image keeps
    what it had there, and the tile's row says ``diverged``.
    """
    progress = progress or TileProgress()
    image = module.image.detach().clone()
    height, width = image.shape[-2:]
    objectives = TileObjectives(module, plan)
    while progress.pass_index < plan.passes:
        boxes = grid(plan, height, width, progress.pass_index)
        while progress.tile_index < len(boxes):
            box = boxes[progress.tile_index]
            objective = objectives.for_box(box)
            result, losses = optimise_tile(module, objective, crop(image, box), plan)
            diverged = not (torch.isfinite(result).all() and math.isfinite(losses.get("loss", math.nan)))
            if not diverged:
                paste(image, result, box, feather(box, height, width, plan.overlap))
            progress.rows.append({"pass": progress.pass_index, "tile": progress.tile_index, **losses,
                                  "diverged": int(diverged)})
            progress.tile_index += 1
            if on_tile is not None:
                on_tile(image, progress)
        log.info("Tiled pass %d/%d done (%d tiles)", progress.pass_index + 1, plan.passes, len(boxes))
        progress.pass_index, progress.tile_index = progress.pass_index + 1, 0
    return image, progress


class TileObjectives:
    """The run's objective for any tile: the tile's own content targets, the whole painting's
    style statistics (``core.tiles.tiled_grams``, computed once, sized to the tile by
    ``gram_target``), and the run's balance (``loss.reference_edge``) with the mean target
    energies of the first pass's tiles standing for the image's (a tile is balanced like a
    whole image)."""

    def __init__(self, module: StyleTransferModule, plan: TilePlan) -> None:
        self.module, self.plan = module, plan
        layers = list(module.style_layers)
        self.per_position = tiled_grams(module.style, lambda x: module.extractor(module.view(x), layers), plan.tile,
                                        margin=plan.overlap)
        self.scales: dict[str, float] = {}
        self._positions: dict[tuple[int, ...], dict[str, int]] = {}
        if module.spec.reference is not None:
            self.scales = balance_scales(module.reference_energies(), self.mean_energies())

    @torch.no_grad()
    def for_box(self, box: Box) -> Objective:
        """The objective of the tile at ``box``."""
        content = crop(self.module.content[:1], box)
        positions = self.positions(content)
        norm = self.module.spec.options.gram_norm
        targets = {name: gram_target(self.per_position[name], positions[name], norm) for name in self.per_position}
        objective = self.module.objective_for(content, self.module.styles, style_targets=targets)
        objective.set_scales(self.scales)
        return objective

    def positions(self, tile: Tensor) -> dict[str, int]:
        """Feature positions (H x W) of each style layer for a tile of this shape: one forward
        pass per tile shape (most tiles of a grid share one), not one per tile."""
        shape = tuple(tile.shape[-2:])
        if shape not in self._positions:
            features = self.module.extractor(tile, list(self.per_position))
            self._positions[shape] = {name: f.shape[-2] * f.shape[-1] for name, f in features.items()}
        return self._positions[shape]

    def mean_energies(self) -> dict[str, float]:
        height, width = self.module.content.shape[-2:]
        boxes = grid(self.plan, height, width, 0)
        total: dict[str, float] = {}
        for box in boxes:
            for key, value in self.for_box(box).energies().items():
                total[key] = total.get(key, 0.0) + value / len(boxes)
        return total


def optimise_tile(module: StyleTransferModule, objective: Objective, start: Tensor, plan: TilePlan
                  ) -> tuple[Tensor, dict[str, float]]:
    """``plan.steps`` optimiser steps on one tile; returns it (clamped) and the weighted losses
    at the start of its last step (what the step improved on: no extra evaluation)."""
    pixels = nn.Parameter(start.detach().clone().contiguous())
    optimizer = module.optimizer_factory([pixels])
    lbfgs = quasi_newton(optimizer)  # clamp=auto: bounded to [0, 1] itself (core.lbfgs.image_lbfgs)
    per_image = getattr(optimizer, "per_image_loss", False)
    autocast = (lambda: torch.autocast(pixels.device.type, dtype=torch.bfloat16)) if plan.bf16 and not lbfgs \
        else contextlib.nullcontext
    last: dict[str, float] = {}

    def closure() -> Tensor:
        optimizer.zero_grad()
        with autocast():
            seen = module.view(pixels)
            parts = objective(Seen(module.extractor(seen), seen, pixels))
        parts["loss"].sum().backward()
        if not last:
            last.update({key: float(value.detach().sum()) for key, value in parts.items()})
        loss = parts["loss"].detach()
        return loss if per_image else loss.sum()

    for _ in range(plan.steps):
        last.clear()
        optimizer.step(closure)
        if not lbfgs:
            with torch.no_grad():
                pixels.clamp_(0, 1)
    return pixels.detach().clamp(0, 1), last
