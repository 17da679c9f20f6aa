"""Build the parts of one run from a composed config: module, callbacks, loggers, trainer."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from nst_exp.core.color import with_chroma
from nst_exp.core.features import min_input_size
from nst_exp.core.layers import layer_weights
from nst_exp.core.lbfgs import image_lbfgs
from nst_exp.core.objective import LossOptions, TermFactory
from nst_exp.core.tiles import upsample_with_detail
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.progress import LossProgressBar
from nst_exp.engine.spec import ObjectiveSpec
from nst_exp.engine.speed import native_bf16
from nst_exp.errors import ConfigError
from nst_exp.runtime.controls import build_init, load_content_and_style, load_controls
from nst_exp.runtime.devices import skip_nan_fill
from nst_exp.runtime.job_loggers import job_overrides
from nst_exp.runtime.reference import reference_images

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, init: torch.Tensor | None = None) -> StyleTransferModule:
    """Load images and weights, and assemble the LightningModule described by ``cfg``.

    ``init`` (coarse-to-fine: the previous scale's result) replaces ``cfg.init``, resampled to
    the content's size.
    """
    spec, min_edge, why = objective_spec(cfg)
    log.info("Instantiating feature extractor <%s, weights=%s>", cfg.model.arch, cfg.model.weights)
    extractor = instantiate(cfg.model, layers=[*spec.content_layers, *spec.style_layers])
    generator = torch.Generator().manual_seed(cfg.seed)
    image = build_init(cfg, spec.content, spec.styles[0], generator)
    if init is not None:  # the previous scale's result; with color=luminance, sharp chroma from this content
        image = upsample_with_detail(init, spec.content, float(cfg.get("scale_detail", 0.0)))
        image = with_chroma(image, spec.content) if spec.luminance_only else image
    return StyleTransferModule(
        image=image, spec=spec, extractor=extractor,
        optimizer=image_lbfgs(instantiate(cfg.optimizer), cfg.clamp),
        augment=instantiate(cfg.augment) if cfg.get("augment") else None, clamp=cfg.clamp,
        scheduler=instantiate(cfg.scheduler) if (cfg.get("scheduler") or {}).get("_target_") else None,
        grad_clip=cfg.get("grad_clip"),
    )


def objective_spec(cfg: DictConfig) -> tuple[ObjectiveSpec, int, str]:
    """The run's objective (terms, weights, layers, loss options, controls, images), and the
    smallest edge its deepest layer needs (with the reason, for error messages)."""
    arch = cfg.model.arch
    normalize = cfg.layers.get("normalize", True)  # false: the recipe sums its layer losses
    content_layers = layer_weights(arch, list(cfg.layers.content), cfg.layers.get("content_weights"), "layers.content",
                                   normalize)
    style_layers = layer_weights(arch, list(cfg.layers.style), cfg.layers.get("style_weights"), "layers.style",
                                 normalize)
    if not content_layers and not style_layers:
        raise ConfigError("layers.content=[] and layers.style=[]: both empty, nothing to optimise")
    min_edge, deepest = min_input_size(arch, [*content_layers, *style_layers])
    why = f" for layer {deepest} of {arch} (each pooling before it halves the size)"
    content, style = load_content_and_style(cfg, cfg.image_size, min_edge, why)
    controls = load_controls(cfg, content, style, min_edge, why)  # styles, blend, masks, colour
    terms, weights = objective_terms(cfg)
    loss = cfg.loss
    spec = ObjectiveSpec(
        terms=terms, weights={name: torch.tensor([weight]) for name, weight in weights.items()},
        content=content, styles=controls.style, content_layers=content_layers, style_layers=style_layers,
        options=LossOptions(norm=loss.get("norm", "l2"), reduction=loss.get("reduction", "mean"),
                            gram_norm=loss.get("gram_norm", "chw"), tv_norm=loss.get("tv_norm", "l2"),
                            tv_reduction=loss.get("tv_reduction", "mean"),
                            normalize_gradients=bool(loss.get("normalize_gradients", False))),
        tv_space=loss.get("tv_space", "pixels"), style_blend=controls.style_blend, masks=controls.masks,
        luminance_only=controls.luminance_only, reference=reference_images(cfg, min_edge, why))
    return spec, min_edge, why


def objective_terms(cfg: DictConfig) -> tuple[dict[str, TermFactory], dict[str, float]]:
    """The ``objective`` group: each entry a term's ``_target_`` (built with the run's inputs)
    and its ``weight``; an entry set to null is left out."""
    factories, weights = {}, {}
    for name, entry in (cfg.get("objective") or {}).items():
        if entry is None:
            continue
        options = OmegaConf.to_container(entry, resolve=True)
        assert isinstance(options, dict)
        weights[str(name)] = float(options.pop("weight", 1.0))
        factories[str(name)] = instantiate(options, _partial_=True)
    return factories, weights  # at least one: the schema's check_objective


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """Every ``_target_`` entry of ``cfg.callbacks``, in order.

    An entry with an ``overrides: null`` key gets the Hydra job's command-line overrides (read
    here, in the job's context: batched jobs are built inside it but run outside it).
    """
    callbacks = []
    for entry in (cfg.get("callbacks") or {}).values():
        if entry is not None and "_target_" in entry:
            extra = {"overrides": job_overrides()} if "overrides" in entry and entry.overrides is None else {}
            callbacks.append(instantiate(entry, **extra))
    return callbacks


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
    """The Lightning Trainer; when it turns on deterministic algorithms, without the NaN fill
    (``runtime.devices.skip_nan_fill`` says why).

    Warns (once per run, also for a batch of jobs) when bf16 was asked for on a device that
    would only emulate it.
    """
    trainer = instantiate(trainer_cfg, **_with_progress_bar(trainer_cfg, kwargs))
    skip_nan_fill()
    device = trainer.strategy.root_device.type
    if str(trainer.precision).startswith("bf16") and not native_bf16(device):
        log.warning("precision=%s on a %s without bf16 arithmetic of its own: bf16 is emulated and slower "
                    "than fp32 here; precision=auto picks what pays", trainer.precision, device.upper())
    return trainer


def _with_progress_bar(trainer_cfg: DictConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A progress bar that refreshes every ``log_every`` steps, not every step.

    Each refresh copies the logged loss to the host (a device sync); at the metrics flush's
    rate it adds none. A progress bar passed in, or none at all, is left as it is.
    """
    callbacks = list(kwargs.get("callbacks") or [])
    enabled = kwargs.get("enable_progress_bar", trainer_cfg.get("enable_progress_bar", True))
    if not enabled or any(isinstance(c, ProgressBar) for c in callbacks):
        return kwargs
    every = max(1, int(trainer_cfg.get("log_every_n_steps") or 1))
    # LossProgressBar: the loss converted at each refresh, not at every batch's end (engine/progress.py)
    return {**kwargs, "callbacks": [*callbacks, LossProgressBar(refresh_rate=every)]}
