"""The reference images of ``loss.reference_edge``: the size whose content:style balance a
Gatys run keeps at any ``image_size`` (Objective.rebalance, docs/experiments.md).

The reference is what the run itself would load with ``image_size`` = the reference edge: the
same aspect, the same style rule (``style_scale``), the same colour controls. So a run *at*
that size has reference energies equal to its own, every factor is exactly 1 and the objective
is the paper's sums. A source file is never upsampled for the reference: the edge is lowered
to the largest at which every source is read at or below its own size (for the shipped 512 px
files that is 512, the paper's size), since energies measured on an interpolated image would
partly measure the interpolation.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from PIL import Image

from nst_exp.errors import ConfigError
from nst_exp.runtime.controls import load_content_and_style, load_styles, style_paths


def reference_images(cfg: DictConfig, min_edge: int, why: str) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """Content and styles as loaded for a run at ``reference_edge(cfg)``; None without one."""
    edge = reference_edge(cfg)
    if edge is None:
        return None
    reference, style = load_content_and_style(cfg, edge, min_edge, why)
    return reference, load_styles(cfg, reference, style, min_edge, why)


def reference_edge(cfg: DictConfig) -> int | None:
    """``loss.reference_edge``, lowered to ``unstretched_edge``; None when it is null."""
    edge = cfg.loss.get("reference_edge")
    if edge is None:
        return None
    if not isinstance(edge, int) or isinstance(edge, bool) or edge <= 0:
        raise ConfigError(f"loss.reference_edge={edge!r}: must be a positive integer (px) or null (raw sums)")
    return min(edge, unstretched_edge(cfg))


def unstretched_edge(cfg: DictConfig) -> int:
    """The longest content edge at which neither the content nor any style file is upsampled."""
    content_w, content_h = _size(cfg.pair.content)
    limit = max(content_w, content_h)
    scale = cfg.get("style_scale")
    for path in style_paths(cfg):
        style_w, style_h = _size(path)
        if scale == "content":  # stretched to the content's exact size (or its transpose)
            if cfg.get("style_transpose"):
                style_w, style_h = style_h, style_w
            limit = min(limit, math.floor(max(content_w, content_h) * min(style_w / content_w, style_h / content_h)))
        else:  # style long edge = content long edge * style_scale
            limit = min(limit, math.floor(max(style_w, style_h) / float(scale or 1.0)))
    return max(1, limit)


def _size(path: str) -> tuple[int, int]:
    """A file's upright (W, H) without decoding it (the run's own load reports a bad file)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (OSError, ValueError):
        return (2**31, 2**31)  # no limit from here: the run's load raises the file's error
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
