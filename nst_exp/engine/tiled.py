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
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nst_exp.core.lbfgs import quasi_newton
from nst_exp.core.losses import StyleTransferLoss, energy
from nst_exp.core.tiles import Box, crop, feather, paste, tile_grid, tiled_grams
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

    ``module`` supplies the objective (network, layers, weights, loss options, optimiser) and
    the full-size image, content and style; ``progress`` continues an interrupted run.
    """
    progress = progress or TileProgress()
    image = module.image.detach().clone()
    height, width = image.shape[-2:]
    objective = global_objective(module, plan)
    while progress.pass_index < plan.passes:
        boxes = grid(plan, height, width, progress.pass_index)
        while progress.tile_index < len(boxes):
            box = boxes[progress.tile_index]
            result, losses = optimise_tile(module, objective, crop(image, box), crop(module.content[:1], box), plan)
            paste(image, result, box, feather(box, height, width, plan.overlap))
            progress.rows.append({"pass": progress.pass_index, "tile": progress.tile_index, **losses})
            progress.tile_index += 1
            if on_tile is not None:
                on_tile(image, progress)
        log.info("Tiled pass %d/%d done (%d tiles)", progress.pass_index + 1, plan.passes, len(boxes))
        progress.pass_index, progress.tile_index = progress.pass_index + 1, 0
    return image, progress


def global_objective(module: StyleTransferModule, plan: TilePlan) -> nn.Module:
    """The module's loss with style targets from the whole style image (tiled if large).

    The content targets are placeholders: ``optimise_tile`` sets each tile's own.
    """
    style_layers = list(module.style_layers)
    grams = tiled_grams(module.style, lambda x: module.extractor(x, style_layers), plan.tile,
                        margin=plan.overlap, norm=module.loss_options.get("gram_norm", "chw"))
    placeholder = torch.zeros(1, 1, 1, 1)
    objective = StyleTransferLoss({name: placeholder for name in module.content_layers},
                                  {name: placeholder for name in style_layers},
                                  module.content_layers, module.style_layers, **module.objective_options())
    for name, gram in grams.items():
        objective.style[name].target = gram
    if module.reference is not None:
        objective.rebalance(module.reference_energies(), tiled_energies(module, plan, grams))
    return objective


@torch.no_grad()
def tiled_energies(module: StyleTransferModule, plan: TilePlan, grams: dict[str, Tensor]) -> dict[str, float]:
    """Target energies of a tile's objective: the global style Grams', and the mean over the
    first pass's tiles of a tile's content features' (a tile is balanced like a whole image)."""
    height, width = module.content.shape[-2:]
    boxes = grid(plan, height, width, 0)
    content: dict[str, float] = {}
    for box in boxes:
        for name, feats in module.extractor(crop(module.content[:1], box), list(module.content_layers)).items():
            content[name] = content.get(name, 0.0) + energy(feats) / len(boxes)
    return {**{f"style.{name}": energy(gram) for name, gram in grams.items()},
            **{f"content.{name}": energy for name, energy in content.items()}}


def optimise_tile(module: StyleTransferModule, objective: nn.Module, start: Tensor, content: Tensor,
                  plan: TilePlan) -> tuple[Tensor, dict[str, float]]:
    """``plan.steps`` optimiser steps on one tile; returns it (clamped) and the weighted losses
    at the start of its last step (what the step improved on: no extra evaluation)."""
    layers = list(module.content_layers)
    with torch.no_grad():
        for name, target in module.extractor(content, layers).items():
            objective.content[name].target = target
    pixels = nn.Parameter(start.detach().clone().contiguous())
    optimizer = module.optimizer_factory([pixels])
    lbfgs = quasi_newton(optimizer)  # clamp=auto: bounded to [0, 1] itself (core.lbfgs.image_lbfgs)
    weights = {name: float(getattr(module, f"{name}_weight")[0]) for name in ("content", "style", "tv")}
    last: dict[str, float] = {}

    def closure() -> Tensor:
        optimizer.zero_grad()
        autocast = torch.autocast(pixels.device.type, dtype=torch.bfloat16) if plan.bf16 and not lbfgs \
            else contextlib.nullcontext()
        with autocast:
            parts = objective(module.extractor(pixels), pixels, with_tv=weights["tv"] != 0)
        weighted = {f"{name}_loss": weights[name] * parts[name].float().sum() for name in ("content", "style", "tv")}
        loss = sum(weighted.values())
        loss.backward()
        if not last:
            last.update({"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in weighted.items()}})
        return loss

    for _ in range(plan.steps):
        last.clear()
        optimizer.step(closure)
        if not lbfgs:
            with torch.no_grad():
                pixels.clamp_(0, 1)
    return pixels.detach().clamp(0, 1), last
