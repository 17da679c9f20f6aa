"""Every check of a composed config, in one place, before any work is done.

A bad value raises ConfigError with one line that names the field and the value
(``error: steps=0: must be an integer >= 1``); the failure contract exits with status 2.
Checks that need the data (image sizes, layer names of the chosen network) run where the data
is loaded, and raise the same errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from nst_exp.core.features import POOLINGS, VGG_CONFIGS
from nst_exp.core.images import INIT_KINDS
from nst_exp.core.losses import DISTANCES, GRAM_NORMS, REDUCTIONS
from nst_exp.engine.module import CLAMP_MODES
from nst_exp.engine.speed import PRECISIONS
from nst_exp.errors import ConfigError


def check_config(cfg: DictConfig) -> None:
    """Run every check in ``CHECKS``; the first bad value raises ConfigError."""
    for check in CHECKS:
        check(cfg)


def check_weights(cfg: DictConfig) -> None:
    """The objective's weights: finite and >= 0."""
    for field in ("style_weight", "content_weight", "tv_weight"):
        value = cfg[field]
        if not _finite(value) or value < 0:
            raise ConfigError(f"{field}={value!r}: must be a finite number >= 0")


def check_run(cfg: DictConfig) -> None:
    """Step counts, sizes and fractions of the run."""
    for field, minimum in (("steps", 1), ("image_size", 1), ("log_every", 1), ("snapshot_every", 0)):
        value = cfg.get(field, minimum)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{field}={value!r}: must be an integer >= {minimum}")
    scale = cfg.get("style_scale")
    if scale is not None and (not _finite(scale) or scale <= 0):
        raise ConfigError(f"style_scale={scale!r}: must be a finite number > 0 or null (= 1)")
    pixels = cfg.get("max_image_pixels")
    if pixels is not None and (not isinstance(pixels, int) or pixels <= 0):
        raise ConfigError(f"max_image_pixels={pixels!r}: must be a positive integer or null (no limit)")
    for field in ("stop_eps", "denoise"):
        value = cfg.get(field, 0.0)
        if not _number(value) or not 0 <= value <= 1:
            raise ConfigError(f"{field}={value!r}: must be a number in [0, 1]")


def check_optimizer(cfg: DictConfig) -> None:
    """Learning rate and precision."""
    lr = cfg.optimizer.get("lr")
    if lr is not None and (not _finite(lr) or lr <= 0):
        raise ConfigError(f"optimizer.lr={lr!r}: must be a finite number > 0")
    precision = cfg.get("precision")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: is not one of {list(PRECISIONS)} or null (the trainer's)")


def check_choices(cfg: DictConfig) -> None:
    """Keys whose value must be one of a fixed set of names."""
    choices = {"loss.norm": (cfg.loss.norm, DISTANCES), "loss.reduction": (cfg.loss.reduction, REDUCTIONS),
               "loss.gram_norm": (cfg.loss.gram_norm, GRAM_NORMS), "clamp": (cfg.clamp, CLAMP_MODES),
               "init.kind": (cfg.init.kind, INIT_KINDS), "model.arch": (cfg.model.arch, VGG_CONFIGS),
               "model.pooling": (cfg.model.get("pooling", "max"), POOLINGS)}
    for field, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{field}={value!r}: is not one of {sorted(allowed)}")


def check_scales(cfg: DictConfig) -> None:
    """Coarse-to-fine scales and tiling (nst_exp/runtime/multiscale.py, tiling.py)."""
    scales, per_scale = cfg.get("scales"), cfg.get("steps_per_scale")
    if scales is not None and (not _int_list(scales, 16) or list(scales) != sorted(set(scales))):
        raise ConfigError(f"scales={_show(scales)}: must be a list of increasing integers >= 16 (long edges, px)")
    if per_scale is not None:
        if scales is None:
            raise ConfigError(f"steps_per_scale={_show(per_scale)}: needs scales=[...] (one entry per scale)")
        if not _int_list(per_scale, 1) or len(per_scale) != len(scales):
            raise ConfigError(f"steps_per_scale={_show(per_scale)}: must be {len(scales)} integers >= 1, "
                              f"one per scale of scales={_show(scales)}")
    tile, overlap, passes = cfg.get("tile_size"), cfg.get("tile_overlap", 64), cfg.get("tile_passes", 2)
    if tile is not None and not _int_list([tile], 32):
        raise ConfigError(f"tile_size={tile!r}: must be an integer >= 32 (px) or null (no tiling)")
    if not _int_list([overlap], 0) or (tile is not None and overlap * 2 >= tile):
        raise ConfigError(f"tile_overlap={overlap!r}: must be an integer >= 0 and under half of tile_size={tile}")
    if not _int_list([passes], 1):
        raise ConfigError(f"tile_passes={passes!r}: must be an integer >= 1")


# One entry per concern; a new feature adds its own check function and one line here.
CHECKS: list[Callable[[DictConfig], None]] = [
    check_weights,
    check_run,
    check_optimizer,
    check_choices,
    check_scales,
]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_list(values: Any, minimum: int) -> bool:
    """Is ``values`` a non-empty list of integers (not bools) >= ``minimum``?"""
    try:
        items = list(values)
    except TypeError:
        return False
    return bool(items) and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items)


def _show(value: Any) -> str:
    """A config list as the user typed it: [256,512], not ListConfig's repr."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return repr(value)
    return "[" + ",".join(str(v) for v in value) + "]"


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)
