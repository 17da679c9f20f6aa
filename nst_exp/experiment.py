"""Build the parts of one run from a composed config: module, callbacks, loggers, trainer."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nst_exp.features import POOLINGS, VGG_CONFIGS, min_input_size, resolve_layer
from nst_exp.images import INIT_KINDS, init_image, load_pair
from nst_exp.losses import DISTANCES, GRAM_NORMS, REDUCTIONS, normalise_weights
from nst_exp.module import CLAMP_MODES, StyleTransferModule
from nst_exp.speed import PRECISIONS, native_bf16

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value is out of range; the message names the field and the value."""


def check_config(cfg: DictConfig) -> None:
    """Reject bad top-level values before any work is done (one line, names the field)."""
    for field in ("style_weight", "content_weight", "tv_weight"):
        value = cfg[field]
        if not _finite(value) or value < 0:
            raise ConfigError(f"{field}={value!r}: must be a finite number >= 0")
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
    lr = cfg.optimizer.get("lr")
    if lr is not None and (not _finite(lr) or lr <= 0):
        raise ConfigError(f"optimizer.lr={lr!r}: must be a finite number > 0")
    for field in ("stop_eps", "denoise"):
        value = cfg.get(field, 0.0)
        if not _number(value) or not 0 <= value <= 1:
            raise ConfigError(f"{field}={value!r}: must be a number in [0, 1]")
    precision = cfg.get("precision")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: is not one of {list(PRECISIONS)} or null (the trainer's)")
    choices = {"loss.norm": (cfg.loss.norm, DISTANCES), "loss.reduction": (cfg.loss.reduction, REDUCTIONS),
               "loss.gram_norm": (cfg.loss.gram_norm, GRAM_NORMS), "clamp": (cfg.clamp, CLAMP_MODES),
               "init.kind": (cfg.init.kind, INIT_KINDS), "model.arch": (cfg.model.arch, VGG_CONFIGS),
               "model.pooling": (cfg.model.get("pooling", "max"), POOLINGS)}
    for field, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{field}={value!r}: is not one of {sorted(allowed)}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def layer_weights(arch: str, layers: list[Any], weights: dict[str, float] | None, field: str) -> dict[str, float]:
    """Checked layer names -> normalised weights; indices (torchvision ``features``) allowed."""
    try:
        names = [resolve_layer(arch, layer) for layer in layers]
    except ValueError as error:
        raise ConfigError(f"{field}={list(layers)}: {error}") from None
    unknown = set(weights or {}) - set(names)
    if unknown:
        raise ConfigError(f"{field}_weights names layers not in {field}: {sorted(unknown)}")
    if any(not math.isfinite(w) or w < 0 for w in (weights or {}).values()):
        raise ConfigError(f"{field}_weights={dict(weights or {})}: must be finite and >= 0")
    return normalise_weights(names, {resolve_layer(arch, k): v for k, v in (weights or {}).items()})


def build_module(cfg: DictConfig) -> StyleTransferModule:
    """Load images and weights, and assemble the LightningModule described by ``cfg``."""
    check_config(cfg)
    arch = cfg.model.arch
    content_layers = layer_weights(arch, list(cfg.layers.content), cfg.layers.get("content_weights"), "layers.content")
    style_layers = layer_weights(arch, list(cfg.layers.style), cfg.layers.get("style_weights"), "layers.style")
    if not content_layers and not style_layers:
        raise ConfigError("layers.content=[] and layers.style=[]: both empty, nothing to optimise")
    min_edge, deepest = min_input_size(arch, [*content_layers, *style_layers])
    content, style = load_pair(cfg.pair.content, cfg.pair.style, cfg.image_size, cfg.get("style_scale"),
                               cfg.get("max_image_pixels", 89_478_485), min_edge,
                               f" for layer {deepest} of {arch} (each pooling before it halves the size)")
    log.info("Instantiating feature extractor <%s, weights=%s>", arch, cfg.model.weights)
    extractor = instantiate(cfg.model, layers=[*content_layers, *style_layers])
    generator = torch.Generator().manual_seed(cfg.seed)
    image = init_image(cfg.init.kind, content, style, generator, cfg.init.get("noise", 0.0))
    weights = {name: torch.tensor([float(cfg[f"{name}_weight"])]) for name in ("content", "style", "tv")}
    return StyleTransferModule(
        image=image, content=content, style=style, extractor=extractor,
        content_layers=content_layers, style_layers=style_layers,
        optimizer=instantiate(cfg.optimizer), weights=weights,
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        augment=instantiate(cfg.augment) if cfg.get("augment") else None, clamp=cfg.clamp,
    )


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """Every ``_target_`` entry of ``cfg.callbacks``, in order."""
    return [instantiate(entry) for entry in (cfg.get("callbacks") or {}).values()
            if entry is not None and "_target_" in entry]


def build_loggers(cfg: DictConfig) -> list[pl.loggers.Logger]:
    """Every ``_target_`` entry of ``cfg.logger``; a logger that could not start is skipped.

    Entries with a ``run_config`` key get the whole resolved run config (W&B shows it per run).
    """
    loggers = []
    for name, entry in (cfg.get("logger") or {}).items():
        if entry is not None and "_target_" in entry:
            log.info("Instantiating logger <%s>", name)
            extra = {"run_config": OmegaConf.to_container(cfg, resolve=True)} if "run_config" in entry else {}
            logger = instantiate(entry, _partial_=True)(**extra)
            if logger is not None:
                loggers.append(logger)
    return loggers


def build_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """The Lightning Trainer; when it turns on deterministic algorithms, without the NaN fill.

    Warns (once per run, also for a batch of jobs) when bf16 was asked for on a device that
    would only emulate it.

    ``torch.use_deterministic_algorithms(True)`` also fills every new ``torch.empty`` tensor
    with NaN, so that a kernel reading memory it never wrote reads the same thing on each run.
    Every op of a step writes its whole output, so here the fill is pure cost (4 full-size
    64-channel maps per step, 3% of a 512 px step); kernel choice, i.e. determinism, is
    unchanged (tests/test_faults.py and test_resume.py rerun and resume bit-for-bit).
    """
    trainer = instantiate(trainer_cfg, **kwargs)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    device = trainer.strategy.root_device.type
    if str(trainer.precision).startswith("bf16") and not native_bf16(device):
        log.warning("precision=%s on a %s without bf16 arithmetic of its own: bf16 is emulated and slower "
                    "than fp32 here; precision=auto picks what pays", trainer.precision, device.upper())
    return trainer
