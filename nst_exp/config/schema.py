"""The schema of the whole run config (``conf/train.yaml`` lists it first: ``base_train``).

Fields with one shape of group file are typed here (``pair``, ``layers``, ``model``, ...);
``optimizer``, ``scheduler`` and ``augment`` hold one of several schemas (their files name it,
nst_exp/config/groups.py); ``trainer`` and ``logger`` are Lightning's and W&B's keyword arguments.
``check`` holds the top-level ranges and the rules that span groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from nst_exp.config.checks import at_least, finite, int_list, integer, option, show, within
from nst_exp.config.choices import Clamp, Color, DenoiseMethod, Precision, StopOn
from nst_exp.config.groups import CallbacksConf, InitConf, LayersConf, LossConf, ModelConf, PairConf, PathsConf
from nst_exp.engine.judge import JUDGE_KEYS
from nst_exp.engine.placement import check_accelerator
from nst_exp.errors import ConfigError

CALLBACK_ENTRIES = {entry.name for entry in fields(CallbacksConf)}  # the project's own callbacks

SEED_LIMIT = 2**32  # numpy (seeded by Lightning) takes seeds in [0, 2**32)


@dataclass
class TrainConf:
    # the objective
    content_weight: float = MISSING
    style_weight: float = MISSING
    tv_weight: float = MISSING
    objective: dict[str, Any] = field(default_factory=dict)  # term name -> {_target_, weight, options}
    # artistic controls
    color: Color = Color["none"]  # type: ignore[valid-type]
    style_blend: Any = None  # null, a list of weights, or for two styles one number t
    # the run
    steps: int = MISSING
    image_size: int = MISSING
    style_scale: Any = None  # a number > 0, "content" or null
    style_transpose: bool = False  # with style_scale=content: the content's shape transposed (yunjey)
    clamp: Clamp = Clamp["auto"]  # type: ignore[valid-type]
    stop_eps: float = 0.0
    stop_on: StopOn = StopOn["loss"]  # type: ignore[valid-type]
    denoise: float = 0.0
    denoise_method: DenoiseMethod = DenoiseMethod["gaussian"]  # type: ignore[valid-type]
    grad_clip: float | None = None
    seed: int = 0
    deterministic: bool | None = None
    max_image_pixels: int | None = None
    resume: Any = "auto"  # auto | true | false
    checkpoint_every: int = 0
    channels_last: Any = "auto"  # auto | true | false
    compile: bool = False
    precision: Precision | None = None  # type: ignore[valid-type]
    scales: list[int] | None = None
    steps_per_scale: list[int] | None = None
    scale_detail: float = 0.0
    tile_size: int | None = None
    tile_overlap: int = 64
    tile_passes: int = 2
    # what gets written
    log_every: int = 10
    snapshot_every: int = 0
    tags: list[str] = field(default_factory=list)
    optimized_metric: str = "final_loss"
    gatys_alpha_beta: dict[str, float] | None = None  # experiment=gatys_fig3: alpha/beta per pair
    # the groups
    pair: PairConf = field(default_factory=PairConf)
    layers: LayersConf = field(default_factory=LayersConf)
    model: ModelConf = field(default_factory=ModelConf)
    loss: LossConf = field(default_factory=LossConf)
    init: InitConf = field(default_factory=InitConf)
    paths: PathsConf = field(default_factory=PathsConf)
    callbacks: CallbacksConf = field(default_factory=CallbacksConf)
    optimizer: Any = None
    scheduler: Any = None
    augment: Any = None
    logger: Any = None
    trainer: Any = None

    def check(self) -> None:
        for name in ("style_weight", "content_weight", "tv_weight"):
            at_least(name, getattr(self, name), 0)
        check_objective(self.objective)
        for name, low in (("steps", 1), ("image_size", 1), ("log_every", 1), ("snapshot_every", 0),
                          ("checkpoint_every", 0)):
            integer(name, getattr(self, name), low)
        integer("seed", self.seed, 0, SEED_LIMIT - 1)
        if self.style_scale is not None and self.style_scale != "content" and (
                not finite(self.style_scale) or self.style_scale <= 0):
            raise ConfigError(f"style_scale={self.style_scale!r}: must be a finite number > 0, content or null (= 1)")
        if self.max_image_pixels is not None:
            integer("max_image_pixels", self.max_image_pixels, 1, note=" or null (no limit)")
        for name in ("stop_eps", "denoise", "scale_detail"):
            within(name, getattr(self, name), "[0, 1]")
        if self.grad_clip is not None:
            at_least("grad_clip", self.grad_clip, 0, strict=True, note=" or null (no clipping)")
        for name in ("resume", "channels_last"):  # a tri-state: no Enum holds YAML's true and false
            value = getattr(self, name)
            if value != "auto" and not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r}: must be auto, true or false")
        if self.style_transpose and self.style_scale != "content":
            raise ConfigError(f"style_transpose=true: needs style_scale=content (the stretch it transposes), "
                              f"not style_scale={self.style_scale!r}")
        check_yardstick(self)
        check_blend(self.style_blend, self.pair.style)
        check_line_search(self)
        check_scales(self)
        check_tiling(self)
        check_accelerator(str(option(self.trainer, "accelerator", "auto")))


def check_yardstick(cfg: TrainConf) -> None:
    """``optimized_metric``: a summary.json key; a yardstick score needs the yardstick callback."""
    metric = cfg.optimized_metric
    if not metric:
        raise ConfigError(f"optimized_metric={metric!r}: must be a summary.json key, e.g. final_loss or judge_loss")
    if metric.startswith("judge_") and metric not in JUDGE_KEYS:
        raise ConfigError(f"optimized_metric={metric}: no such yardstick score; one of {list(JUDGE_KEYS)}")
    if metric in JUDGE_KEYS and option(cfg.callbacks, "judge") is None:
        raise ConfigError(f"optimized_metric={metric}: needs the yardstick, but callbacks.judge is null")


def check_objective(objective: Any) -> None:
    """Each term of ``objective``: an importable ``_target_`` and a finite weight >= 0 (null drops it)."""
    if not objective or all(entry is None for entry in objective.values()):
        raise ConfigError("objective={}: no terms, nothing to optimise")
    for name, entry in objective.items():
        if entry is None:
            continue
        if not isinstance(option(entry, "_target_"), str):
            raise ConfigError(f"objective.{name}={show(entry)}: needs a _target_ (the term's class) and a weight")
        at_least(f"objective.{name}.weight", option(entry, "weight", 1.0), 0)


def check_blend(blend: Any, style: Any) -> None:
    """``style_blend``: null, a list of weights >= 0 (not all 0), one per style, or for 2 styles t in [0, 1]."""
    count = 1 if isinstance(style, str) else len(style)
    if blend is None:
        return
    if isinstance(blend, (int, float)) and not isinstance(blend, bool):
        if count != 2 or not finite(blend) or not 0 <= blend <= 1:
            raise ConfigError(f"style_blend={blend!r}: one number t (= [t, 1-t]) needs exactly 2 styles and "
                              f"0 <= t <= 1; {count} style(s) here: give a list of {count} weights")
        return
    weights = None if isinstance(blend, (str, bool)) else list(blend)
    if weights is None or len(weights) != count or not all(finite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"style_blend={show(blend)}: must be {count} finite weights >= 0, not all 0 "
                          f"(one per pair.style image), or null for equal weights")


def check_line_search(cfg: TrainConf) -> None:
    """A normalised gradient is not the loss's gradient, which a line search needs."""
    search = option(cfg.optimizer, "line_search_fn")
    if cfg.loss.normalize_gradients and search:  # measured: 8.5x the evaluations per L-BFGS step (48 px)
        raise ConfigError(f"loss.normalize_gradients=true with optimizer.line_search_fn={search}: "
                          "a normalised gradient is not the loss's gradient, which a line search needs; add "
                          "optimizer=adam, or optimizer.line_search_fn=null (jcjohnson/neural-style; can diverge)")


def check_scales(cfg: TrainConf) -> None:
    """Coarse-to-fine scales and tiling (nst_exp/strategies/pyramid.py, tiling.py)."""
    scales, per_scale = cfg.scales, cfg.steps_per_scale
    if scales is not None and (not int_list(scales, 16) or list(scales) != sorted(set(scales))):
        raise ConfigError(f"scales={show(scales)}: must be a list of increasing integers >= 16 (long edges, px)")
    if per_scale is not None:
        if scales is None:
            raise ConfigError(f"steps_per_scale={show(per_scale)}: needs scales=[...] (one entry per scale)")
        if not int_list(per_scale, 1) or len(per_scale) != len(scales):
            raise ConfigError(f"steps_per_scale={show(per_scale)}: must be {len(scales)} integers >= 1, "
                              f"one per scale of scales={show(scales)}")
    tile, overlap = cfg.tile_size, cfg.tile_overlap
    if tile is not None:
        integer("tile_size", tile, 32, note=" (px) or null (no tiling)")
    if overlap < 0 or (tile is not None and overlap * 2 >= tile):
        raise ConfigError(f"tile_overlap={overlap!r}: must be an integer >= 0 and under half of tile_size={tile}")
    integer("tile_passes", cfg.tile_passes, 1)


def check_tiling(cfg: TrainConf) -> None:
    """What tiles do not do (yet) is refused, not silently dropped: a tile is optimised against
    one style's global Grams, in colour, on the image itself (strategies/tile_loop.py)."""
    tile = cfg.tile_size
    if tile is None:
        return
    style, masks = cfg.pair.style, cfg.pair.masks
    augment = option(cfg.augment, "_target_")
    scheduler = option(cfg.scheduler, "_target_")
    restarts = option(option(cfg.callbacks, "divergence"), "restarts", 0)
    conflicts = [  # a tile is a few steps of a fresh optimiser: no plateau, schedule or restart to speak of
        ("stop_eps", cfg.stop_eps, cfg.stop_eps > 0, "stopping on a plateau"),
        ("grad_clip", cfg.grad_clip, cfg.grad_clip is not None, "gradient clipping"),
        ("scheduler._target_", scheduler, bool(scheduler), "a learning-rate schedule"),
        ("callbacks.divergence.restarts", restarts, bool(restarts),
         "divergence restarts (a diverged tile is left out instead)"),
        ("pair.style", style, not isinstance(style, str) and len(style) > 1, "several styles"),
        ("pair.masks", masks, masks is not None, "masks"),
        ("color", cfg.color, cfg.color == "luminance", "color=luminance"),
        ("augment", augment, bool(augment), "augmentation"),
    ]
    # Tiles run no Lightning callbacks: the run record is written by strategies/tiled.py itself.
    mine = {name: option(option(cfg.callbacks, name), "_target_") for name in (cfg.callbacks or {})
            if name not in CALLBACK_ENTRIES}
    conflicts += [(f"callbacks.{name}._target_", target, True, "a callback of your own")
                  for name, target in mine.items() if target]
    for name, value, conflict, what in conflicts:
        if conflict:
            raise ConfigError(f"{name}={show(value)}: {what} cannot be combined with tile_size={tile} yet; "
                              "drop one of them (scales=[...] without tile_size works with it)")
