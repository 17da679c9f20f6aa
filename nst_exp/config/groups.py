"""The schemas of the config groups: one dataclass per shape of file in ``conf/<group>/``.

Typed fields make Hydra check every file, override and sweep value while it composes; the
``check`` method beside the fields holds their range checks. ``check`` is called by
``nst_exp.config.check_config`` with the composed node as ``self`` (a typed node reads like the
dataclass), so it reads fields only: nothing is resolved that it does not look at.

``_target_`` / ``_partial_`` stay: these nodes are what ``hydra.utils.instantiate`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, ListConfig

from nst_exp.config.checks import at_least, integer, show, within
from nst_exp.config.choices import (
    Arch,
    Distance,
    GramNorm,
    InitKind,
    LineSearch,
    Pooling,
    Preprocess,
    Reduction,
    StopOn,
    TvSpace,
)
from nst_exp.errors import ConfigError


@dataclass
class PairConf:
    """``pair``: the content photo and one painting, or several blended (and masked)."""

    content: str = MISSING
    style: Any = MISSING  # one path, or a list of paths (blended: style_blend)
    masks: list[str] | None = None  # one per style image

    def check(self) -> None:
        styles = [self.style] if isinstance(self.style, str) else list(self.style) if isinstance(
            self.style, (list, ListConfig)) else []
        if not styles or not all(isinstance(path, str) and path for path in styles):
            raise ConfigError(f"pair.style={show(self.style)}: must be an image path or a non-empty list of paths")
        if self.masks is not None and (len(self.masks) != len(styles) or not all(self.masks)):
            raise ConfigError(f"pair.masks={show(self.masks)}: must be a list of {len(styles)} mask paths, "
                              "one per style image, or null")


@dataclass
class LayersConf:
    """``layers``: which VGG layers define content and style, and their relative weights."""

    content: list[str] = MISSING
    style: list[str] = MISSING
    content_weights: dict[str, float] = field(default_factory=dict)
    style_weights: dict[str, float] = field(default_factory=dict)
    normalize: bool = True


@dataclass
class ModelConf:
    """``model``: the network, its pooling and weights (core.weights.build_extractor)."""

    _target_: str = MISSING
    arch: Arch = MISSING  # type: ignore[valid-type]
    pooling: Pooling = Pooling["max"]  # type: ignore[valid-type]
    weights: str = MISSING
    preprocess: Preprocess | None = None  # type: ignore[valid-type]
    normalize: bool = False
    seed: int = 0
    pixel_max: float = 255.0

    def check(self) -> None:
        at_least("model.pixel_max", self.pixel_max, 0, strict=True)


@dataclass
class LossConf:
    """``loss``: how features and Grams are compared, and the TV prior."""

    norm: Distance = MISSING  # type: ignore[valid-type]
    reduction: Reduction = MISSING  # type: ignore[valid-type]
    gram_norm: GramNorm = MISSING  # type: ignore[valid-type]
    tv_norm: Distance = Distance["l2"]  # type: ignore[valid-type]
    tv_space: TvSpace = TvSpace["pixels"]  # type: ignore[valid-type]
    tv_reduction: Reduction = Reduction["mean"]  # type: ignore[valid-type]  # sum: jcjohnson's TVLoss
    reference_edge: int | None = None  # the Gatys rebalance's reference long edge (runtime/reference.py)
    normalize_gradients: bool = False

    def check(self) -> None:
        if self.reference_edge is not None and self.reference_edge < 1:
            raise ConfigError(f"loss.reference_edge={self.reference_edge}: must be a positive integer (px) or null "
                              "(raw sums)")


@dataclass
class InitConf:
    """``init``: where the image starts."""

    kind: InitKind = MISSING  # type: ignore[valid-type]
    noise: float = 0.0
    path: str | None = None  # init=image: the picture

    def check(self) -> None:
        within("init.noise", self.noise, "[0, 1]")
        if self.kind == "image" and not self.path:
            raise ConfigError(f"init.path={self.path!r}: init=image needs a picture: init.path=my.jpg")


@dataclass
class PathsConf:
    data_dir: str = MISSING
    output_root: str = MISSING
    output_dir: str | None = MISSING  # ${hydra:runtime.output_dir}: None for --cfg job --resolve


# --- optimizers: a base per file (optimizer/<name>.yaml lists base_<name> first) -------------
@dataclass
class OptimizerConf:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING

    def check(self) -> None:
        at_least("optimizer.lr", self.lr, 0, strict=True)


@dataclass
class AdamConf(OptimizerConf):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class LBFGSConf(OptimizerConf):
    max_iter: int = 1
    max_eval: int | None = None
    history_size: int = 100
    line_search_fn: LineSearch | None = None  # type: ignore[valid-type]
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9

    def check(self) -> None:
        OptimizerConf.check(self)
        integer("optimizer.history_size", self.history_size, 1)
        integer("optimizer.max_iter", self.max_iter, 1)
        integer("optimizer.max_eval", self.max_eval or 1, 1)


@dataclass
class PixelLBFGSConf(LBFGSConf):
    """``optimizer=pixel_lbfgs``: L-BFGS taking its steps in 0..pixel_scale units (neural-style's)."""

    pixel_scale: float = 256.0

    def check(self) -> None:
        LBFGSConf.check(self)
        at_least("optimizer.pixel_scale", self.pixel_scale, 0, strict=True)


@dataclass
class SGDConf(OptimizerConf):
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def check(self) -> None:
        OptimizerConf.check(self)
        within("optimizer.momentum", self.momentum, "[0, 1)")
        at_least("optimizer.dampening", self.dampening, 0)
        at_least("optimizer.weight_decay", self.weight_decay, 0)


@dataclass
class MXNetSGDConf(OptimizerConf):
    momentum: float = 0.0
    wd: float = 0.0
    clip_gradient: float | None = None
    pixel_max: float = 256.0
    mean: list[float] = field(default_factory=lambda: [123.68, 116.779, 103.939])

    def check(self) -> None:
        OptimizerConf.check(self)
        within("optimizer.momentum", self.momentum, "[0, 1)")
        at_least("optimizer.wd", self.wd, 0)
        if self.clip_gradient is not None:
            at_least("optimizer.clip_gradient", self.clip_gradient, 0, strict=True, note=" or null (no clipping)")


# --- schedulers, augmentation --------------------------------------------------------------
@dataclass
class SchedulerConf:
    _target_: str = MISSING
    _partial_: bool = True
    gamma: float = MISSING

    def check(self) -> None:
        within("scheduler.gamma", self.gamma, "(0, 1]")


@dataclass
class StepLRConf(SchedulerConf):
    step_size: int = MISSING

    def check(self) -> None:
        integer("scheduler.step_size", self.step_size, 1)
        SchedulerConf.check(self)


@dataclass
class RandomAffineConf:
    """``augment=fv``: each step's random rotation, zoom and shift (core.augment.RandomAffine)."""

    _target_: str = MISSING
    strength: float = 1.0
    degrees: float = 0.0
    scale: float = 0.0
    translate: float = 0.0
    seed: int = 0

    def check(self) -> None:
        for name in ("strength", "degrees", "scale", "translate"):
            at_least(f"augment.{name}", getattr(self, name), 0)


# --- the callbacks whose knobs users turn -----------------------------------------------------
@dataclass
class StoppingConf:
    _target_: str = MISSING
    eps: float = 0.0
    window: int = 10
    measure: StopOn = StopOn["loss"]  # type: ignore[valid-type]
    center: list[float] | None = None

    def check(self) -> None:
        integer("callbacks.stopping.window", self.window, 1)


@dataclass
class DivergenceConf:
    _target_: str = MISSING
    explode_factor: float | None = 1e3  # null: only NaN/Inf count
    restarts: int = 0
    lr_factor: float = 0.1
    check_every: int = 10

    def check(self) -> None:
        if self.explode_factor is not None:
            at_least("callbacks.divergence.explode_factor", self.explode_factor, 1, strict=True, note=" or null")
        integer("callbacks.divergence.restarts", self.restarts, 0)
        within("callbacks.divergence.lr_factor", self.lr_factor, "(0, 1)")
        integer("callbacks.divergence.check_every", self.check_every, 1)


@dataclass
class CallbacksConf:
    """``callbacks``: the typed entries; the others are instantiated as they are (null drops one)."""

    speed: Any = None
    metrics: Any = None
    snapshots: Any = None
    stopping: StoppingConf | None = None
    divergence: DivergenceConf | None = None
    judge: Any = None
    wandb: Any = None
    summary: Any = None
    checkpoint: Any = None
