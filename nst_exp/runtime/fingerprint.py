"""What a checkpoint must match to be resumed: the fingerprint of a run.

It covers the objective (targets, weights, layers, loss), the optimiser, augmentation and
clamp, the image size, the seed, and the network itself: architecture and pooling (the module
tree), weights and preprocessing (a digest of every parameter and buffer).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import fields
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nst_exp.engine.module import StyleTransferModule


def _digest(*tensors: torch.Tensor | None) -> str | None:
    if all(t is None for t in tensors):
        return None
    sha = hashlib.sha1()
    for tensor in tensors:
        if tensor is not None:
            sha.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


_NETWORKS: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def network_digest(extractor: torch.nn.Module) -> str:
    """Architecture and pooling (the module tree), weights and preprocessing (every tensor)."""
    extractor = getattr(extractor, "_orig_mod", extractor)  # torch.compile's wrapper
    if extractor not in _NETWORKS:
        tensors = [t for _, t in sorted([*extractor.named_parameters(), *extractor.named_buffers()])]
        structure = hashlib.sha1(repr(extractor).encode()).hexdigest()[:16]
        _NETWORKS[extractor] = f"{structure}-{_digest(*tensors)}"
    return _NETWORKS[extractor]


def describe(factory: object) -> str:
    """A term factory or optimiser partial as ``name[sorted keyword arguments]``."""
    return f"{getattr(factory, 'func', factory).__qualname__}{sorted(getattr(factory, 'keywords', {}).items())}"


def fingerprint(module: StyleTransferModule, seed: int | None = None) -> dict[str, Any]:
    """What defines a run: resuming with any of it changed is an error.

    Every field of the objective's spec is in it, whatever the field (a new control or term is
    covered without a line here), with the network, optimiser, augmentation, clamp, image size
    and seed.
    """
    augment = {k: v for k, v in vars(module.augment).items() if isinstance(v, (bool, int, float, str))}
    spec = {f"spec.{item.name}": _summarise(getattr(module.spec, item.name)) for item in fields(module.spec)}
    return {
        "image": list(module.image.shape),
        **spec,
        "network": network_digest(module.extractor),
        "seed": seed,
        "optimizer": describe(module.optimizer_factory),
        "augment": f"{type(module.augment).__name__}{sorted(augment.items())}",
        "clamp": module.clamp,
    }


def _summarise(value: Any) -> Any:
    """A spec field as comparable, JSON-like data: tensors by digest, factories by description."""
    if isinstance(value, torch.Tensor):
        return _digest(value)
    if isinstance(value, dict):
        return {str(key): _summarise(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_summarise(item) for item in value]
    if callable(value) and not isinstance(value, type):
        return describe(value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


# Where a run's files go, what it logs and how often, whether it resumes: none of it changes the
# image. Callbacks only record and guard the run (as for a checkpoint's fingerprint above).
RUN_LOCAL = ("paths", "logger", "callbacks", "tags", "resume", "log_every", "snapshot_every", "checkpoint_every")


def config_digest(cfg: DictConfig) -> str:
    """A digest of everything in a resolved config that can change a run's result (where its
    files go, how often it logs and whether it resumes cannot): what a coarse-to-fine job's
    finished scales are checked against before they are reused."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    for key in RUN_LOCAL:
        resolved.pop(key, None)
    return hashlib.sha1(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]
