"""The artistic controls of a config, turned into what the module needs (issue #14).

- ``color``: ``none`` | ``luminance`` (grey transfer, the content's chroma kept) | ``histogram``
  (each style recoloured to the content's colour mean and covariance before the run).
- ``pair.style``: one path or a list; ``style_blend``: null (equal), a list of weights, or,
  for two styles, one number t (= [t, 1 - t], a natural sweep axis).
- ``pair.masks``: null or one mask per style, resized to the content.
- ``init=image``: ``init.path``, resized to the content.

Everything is derived from the config and the content image of this build, so a module rebuilt
at another ``image_size`` gets its styles, masks and start image at that size too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor

from nst_exp.core.color import match_histogram, match_luminance, with_chroma
from nst_exp.core.images import init_image, load_image, load_mask, load_pair, load_style, to_tensor
from nst_exp.core.yardstick import blend_weights


@dataclass
class Controls:
    """The StyleTransferModule arguments the controls decide."""

    style: list[Tensor]
    style_blend: list[float]
    masks: Tensor | None
    luminance_only: bool


def style_paths(cfg: DictConfig) -> list[str]:
    """``pair.style`` as a list of paths (one path stays one path)."""
    style = cfg.pair.style
    return [str(path) for path in style] if isinstance(style, (list, ListConfig)) else [str(style)]


def style_blend(cfg: DictConfig, count: int) -> list[float]:
    """The blend weights of ``count`` styles, summing to 1 (checked by config/schema.py check_blend)."""
    return blend_weights(cfg.get("style_blend"), count)  # the yardstick weighs its paintings alike


def load_content_and_style(cfg: DictConfig, edge: int, min_edge: int, why: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The content at long edge ``edge`` and the first style image for it (``style_scale``)."""
    return load_pair(cfg.pair.content, style_paths(cfg)[0], edge, cfg.get("style_scale"),
                     cfg.get("max_image_pixels", 89_478_485), min_edge, why, style_transpose(cfg))


def style_transpose(cfg: DictConfig) -> bool:
    """``style_transpose``: the content's shape transposed for the style (yunjey's loader; the
    schema allows it only with ``style_scale=content``, the stretch it transposes)."""
    return bool(cfg.get("style_transpose", False))


def load_controls(cfg: DictConfig, content: Tensor, first_style: Tensor, min_edge: int = 1,
                  why: str = "") -> Controls:
    """Load the other styles and the masks, and apply the colour mode to the styles."""
    styles = load_styles(cfg, content, first_style, min_edge, why)
    mask_paths = (cfg.pair.get("masks") or [])
    masks = torch.cat([load_mask(str(path), f"pair.masks[{index}]", tuple(content.shape[-2:]))
                       for index, path in enumerate(mask_paths)]) if mask_paths else None
    return Controls(styles, style_blend(cfg, len(styles)), masks, cfg.get("color", "none") == "luminance")


def load_styles(cfg: DictConfig, content: Tensor, first_style: Tensor, min_edge: int = 1,
                why: str = "") -> list[Tensor]:
    """Every style image for this content (the first one already loaded), colour mode applied."""
    paths = style_paths(cfg)
    styles = [first_style] + [load_style(path, f"pair.style[{index}]", tuple(content.shape[-2:]),
                                         cfg.get("style_scale"), min_edge, why, style_transpose(cfg))
                              for index, path in enumerate(paths[1:], 1)]
    color = cfg.get("color", "none")
    if color == "histogram":
        return [match_histogram(style, content) for style in styles]
    if color == "luminance":
        return [match_luminance(style, content) for style in styles]
    return styles


def build_init(cfg: DictConfig, content: Tensor, style: Tensor, generator: torch.Generator) -> Tensor:
    """The starting image of ``cfg.init`` (``init=image``: ``init.path``, resized to the content);
    with ``color=luminance``, given the content's chroma, which the run then keeps."""
    start = to_tensor(load_image(cfg.init.path, "init.path")) if cfg.init.kind == "image" else None
    image = init_image(cfg.init.kind, content, style, generator, cfg.init.get("noise", 0.0), start)
    return with_chroma(image, content) if cfg.get("color", "none") == "luminance" else image
