"""Every check of a composed config, in one place, before any work is done.

A bad value raises ConfigError with one line that names the field and the value
(``error: steps=0: must be an integer >= 1``); the failure contract exits with status 2.
Checks that need the data (image sizes, layer names of the chosen network) run where the data
is loaded, and raise the same errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nst_exp.core.color import COLOR_MODES
from nst_exp.core.denoise import DENOISE_METHODS
from nst_exp.core.features import POOLINGS, VGG_CONFIGS
from nst_exp.core.images import INIT_KINDS
from nst_exp.core.losses import DISTANCES, GRAM_NORMS, REDUCTIONS, TV_SPACES
from nst_exp.engine.judge import JUDGE_KEYS
from nst_exp.engine.module import CLAMP_MODES
from nst_exp.engine.speed import PRECISIONS
from nst_exp.engine.stopping import STOP_ON
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
    if scale is not None and scale != "content" and (not _finite(scale) or scale <= 0):
        raise ConfigError(f"style_scale={scale!r}: must be a finite number > 0, content or null (= 1)")
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


# Keys whose value must be one of a fixed set of names: key -> (value when absent, the names).
CHOICES: dict[str, tuple[Any, Sequence[str]]] = {
    "loss.norm": (None, DISTANCES), "loss.reduction": (None, REDUCTIONS), "loss.gram_norm": (None, GRAM_NORMS),
    "loss.tv_norm": ("l2", DISTANCES), "loss.tv_space": ("pixels", TV_SPACES),
    "clamp": (None, CLAMP_MODES), "init.kind": (None, INIT_KINDS), "color": ("none", COLOR_MODES),
    "model.arch": (None, VGG_CONFIGS), "model.pooling": ("max", POOLINGS),
    "stop_on": ("loss", STOP_ON), "denoise_method": ("gaussian", DENOISE_METHODS),
}

# Keys that are true or false: key -> value when absent.
FLAGS: dict[str, bool] = {"layers.normalize": True, "model.normalize": False, "loss.normalize_gradients": False}


def check_choices(cfg: DictConfig) -> None:
    """Every key of ``CHOICES`` names one of its allowed values; every key of ``FLAGS`` is a bool."""
    for field, (default, allowed) in CHOICES.items():
        value = OmegaConf.select(cfg, field, default=default)
        if value not in allowed:
            raise ConfigError(f"{field}={value!r}: is not one of {sorted(allowed)}")
    for field, default in FLAGS.items():
        value = OmegaConf.select(cfg, field, default=default)
        if not isinstance(value, bool):
            raise ConfigError(f"{field}={value!r}: must be true or false")


def check_yardstick(cfg: DictConfig) -> None:
    """``optimized_metric``: a summary.json key; a yardstick score needs the yardstick callback."""
    metric = cfg.get("optimized_metric")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"optimized_metric={metric!r}: must be a summary.json key, e.g. final_loss or judge_loss")
    if metric.startswith("judge_") and metric not in JUDGE_KEYS:
        raise ConfigError(f"optimized_metric={metric}: no such yardstick score; one of {list(JUDGE_KEYS)}")
    if metric in JUDGE_KEYS and not (cfg.get("callbacks") or {}).get("judge"):
        raise ConfigError(f"optimized_metric={metric}: needs the yardstick, but callbacks.judge is null")


SEED_LIMIT = 2**32  # numpy (seeded by Lightning) takes seeds in [0, 2**32)


def check_limits(cfg: DictConfig) -> None:
    """The remaining numeric knobs: seed, checkpoints, init noise, optimiser and guard counts."""
    integers = {"seed": (cfg.get("seed", 0), 0, SEED_LIMIT - 1),
                "checkpoint_every": (cfg.get("checkpoint_every", 0), 0, None),
                "optimizer.history_size": (cfg.optimizer.get("history_size", 1), 1, None),
                "optimizer.max_iter": (cfg.optimizer.get("max_iter", 1), 1, None),
                "optimizer.max_eval": (cfg.optimizer.get("max_eval") or 1, 1, None),
                "callbacks.divergence.restarts": (_callback(cfg, "divergence", "restarts", 0), 0, None),
                "callbacks.stopping.window": (_callback(cfg, "stopping", "window", 1), 1, None)}
    for field, (value, low, high) in integers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
            span = f"in [{low}, {high}]" if high else f">= {low}"
            raise ConfigError(f"{field}={value!r}: must be an integer {span}")
    noise = cfg.init.get("noise", 0.0)
    if not _number(noise) or not 0 <= noise <= 1:
        raise ConfigError(f"init.noise={noise!r}: must be a number in [0, 1]")
    factor = _callback(cfg, "divergence", "lr_factor", 0.5)
    if not _finite(factor) or not 0 < factor < 1:
        raise ConfigError(f"callbacks.divergence.lr_factor={factor!r}: must be a number in (0, 1)")


def _callback(cfg: DictConfig, name: str, key: str, default: Any) -> Any:
    entry = (cfg.get("callbacks") or {}).get(name)
    return entry.get(key, default) if entry is not None else default


def check_recipe_options(cfg: DictConfig) -> None:
    """The knobs the seed recipes need: the pixel range (their names and flags: CHOICES, FLAGS)."""
    pixel_max = cfg.model.get("pixel_max", 255.0)
    if not _finite(pixel_max) or pixel_max <= 0:
        raise ConfigError(f"model.pixel_max={pixel_max!r}: must be a finite number > 0")


def check_optimisation(cfg: DictConfig) -> None:
    """Momentum, weight decay, gradient clipping and the learning-rate schedule."""
    options = cfg.optimizer
    momentum = options.get("momentum", 0.0)
    if not _finite(momentum) or not 0 <= momentum < 1:
        raise ConfigError(f"optimizer.momentum={momentum!r}: must be a number in [0, 1)")
    for field in ("weight_decay", "wd", "dampening"):
        value = options.get(field, 0.0)
        if not _finite(value) or value < 0:
            raise ConfigError(f"optimizer.{field}={value!r}: must be a finite number >= 0")
    clips = (("grad_clip", cfg.get("grad_clip")), ("optimizer.clip_gradient", options.get("clip_gradient")))
    for field, value in clips:
        if value is not None and (not _finite(value) or value <= 0):
            raise ConfigError(f"{field}={value!r}: must be a finite number > 0 or null (no clipping)")
    scheduler = cfg.get("scheduler") or {}
    step_size = scheduler.get("step_size", 1)
    if not isinstance(step_size, int) or isinstance(step_size, bool) or step_size < 1:
        raise ConfigError(f"scheduler.step_size={step_size!r}: must be an integer >= 1")
    gamma = scheduler.get("gamma", 1.0)
    if not _finite(gamma) or not 0 < gamma <= 1:
        raise ConfigError(f"scheduler.gamma={gamma!r}: must be a number in (0, 1]")


def check_controls(cfg: DictConfig) -> None:
    """The artistic controls: colour mode, several styles and their blend, masks, start image."""
    style = cfg.pair.style
    styles = list(style) if isinstance(style, ListConfig) else [style]
    if not styles or not all(isinstance(path, str) and path for path in styles):
        raise ConfigError(f"pair.style={_show(style)}: must be an image path or a non-empty list of paths")
    _check_blend(cfg.get("style_blend"), len(styles))
    masks = cfg.pair.get("masks")
    if masks is not None and (not isinstance(masks, ListConfig) or len(masks) != len(styles)
                              or not all(isinstance(path, str) and path for path in masks)):
        raise ConfigError(f"pair.masks={_show(masks)}: must be a list of {len(styles)} mask paths, "
                          "one per style image, or null")
    if cfg.init.kind == "image" and not (isinstance(cfg.init.get("path"), str) and cfg.init.path):
        raise ConfigError(f"init.path={cfg.init.get('path')!r}: init=image needs a picture: init.path=my.jpg")
    flag = cfg.loss.get("normalize_gradients", False)  # a bool: FLAGS
    search = cfg.optimizer.get("line_search_fn")
    if flag and search:  # measured: 8.5x the evaluations per L-BFGS step (strong Wolfe, 48 px)
        raise ConfigError(f"loss.normalize_gradients=true with optimizer.line_search_fn={search}: "
                          "a normalised gradient is not the loss's gradient, which a line search needs; add "
                          "optimizer=adam, or optimizer.line_search_fn=null (jcjohnson/neural-style; can diverge)")


def _check_blend(blend: Any, count: int) -> None:
    """``style_blend``: null, a list of ``count`` weights >= 0 (not all 0), or for 2 styles t in [0, 1]."""
    if blend is None:
        return
    if _number(blend):
        if count != 2 or not 0 <= blend <= 1:
            raise ConfigError(f"style_blend={blend!r}: one number t (= [t, 1-t]) needs exactly 2 styles and "
                              f"0 <= t <= 1; {count} style(s) here: give a list of {count} weights")
        return
    weights = list(blend) if isinstance(blend, ListConfig) else None
    if (weights is None or len(weights) != count or not all(_finite(w) and w >= 0 for w in weights)
            or sum(weights) <= 0):
        raise ConfigError(f"style_blend={_show(blend)}: must be {count} finite weights >= 0, not all 0 "
                          f"(one per pair.style image), or null for equal weights")


def check_paper_options(cfg: DictConfig) -> None:
    """Gatys et al.'s size-invariant balance (``model.normalize`` is a flag: FLAGS)."""
    pixels = cfg.loss.get("reference_pixels")
    if pixels is not None and (not isinstance(pixels, int) or isinstance(pixels, bool) or pixels <= 0):
        raise ConfigError(f"loss.reference_pixels={pixels!r}: must be a positive integer or null (raw sum)")


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
    detail = cfg.get("scale_detail", 0.0)
    if not _number(detail) or not 0 <= detail <= 1:
        raise ConfigError(f"scale_detail={detail!r}: must be a number in [0, 1] (the photo's fine band added "
                          "when a scale starts)")
    tile, overlap, passes = cfg.get("tile_size"), cfg.get("tile_overlap", 64), cfg.get("tile_passes", 2)
    if tile is not None and not _int_list([tile], 32):
        raise ConfigError(f"tile_size={tile!r}: must be an integer >= 32 (px) or null (no tiling)")
    if not _int_list([overlap], 0) or (tile is not None and overlap * 2 >= tile):
        raise ConfigError(f"tile_overlap={overlap!r}: must be an integer >= 0 and under half of tile_size={tile}")
    if not _int_list([passes], 1):
        raise ConfigError(f"tile_passes={passes!r}: must be an integer >= 1")


def check_tiling(cfg: DictConfig) -> None:
    """What tiles do not do (yet) is refused, not silently dropped: a tile is optimised against
    one style's global Grams, in colour, on the image itself (engine/tiled.py)."""
    tile = cfg.get("tile_size")
    if tile is None:
        return
    style, masks, color = cfg.pair.style, cfg.pair.get("masks"), cfg.get("color", "none")
    augment = (cfg.get("augment") or {}).get("_target_")
    divergence = (cfg.get("callbacks") or {}).get("divergence") or {}
    scheduler = (cfg.get("scheduler") or {}).get("_target_")
    conflicts = [  # (a tile is a few steps from a fresh optimiser: no plateau, schedule or restart to speak of)
        ("stop_eps", cfg.get("stop_eps", 0), float(cfg.get("stop_eps") or 0) > 0, "stopping on a plateau"),
        ("grad_clip", cfg.get("grad_clip"), cfg.get("grad_clip") is not None, "gradient clipping"),
        ("scheduler._target_", scheduler, bool(scheduler), "a learning-rate schedule"),
        ("callbacks.divergence.restarts", divergence.get("restarts", 0), bool(divergence.get("restarts", 0)),
         "divergence restarts (a diverged tile is left out instead)"),
        ("pair.style", style, isinstance(style, ListConfig) and len(style) > 1, "several styles"),
        ("pair.masks", masks, masks is not None, "masks"),
        ("color", color, color == "luminance", "color=luminance"),
        ("augment", augment, bool(augment), "augmentation"),
    ]
    for field, value, conflict, what in conflicts:
        if conflict:
            raise ConfigError(f"{field}={_show(value)}: {what} cannot be combined with tile_size={tile} yet; "
                              "drop one of them (scales=[...] without tile_size works with it)")


# One entry per concern; a new feature adds its own check function and one line here.
CHECKS: list[Callable[[DictConfig], None]] = [
    check_weights,
    check_run,
    check_optimizer,
    check_choices,
    check_yardstick,
    check_limits,
    check_recipe_options,
    check_optimisation,
    check_controls,
    check_paper_options,
    check_scales,
    check_tiling,
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
