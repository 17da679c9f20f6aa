"""What a checkpoint must match to be resumed: the fingerprint of a run.

It covers the objective (targets, weights, layers, loss), the optimiser, augmentation and
clamp, the image size, the seed, and the network itself: architecture and pooling (the module
tree), weights and preprocessing (a digest of every parameter and buffer).
"""

from __future__ import annotations

import hashlib
import json
import weakref
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
    """What defines a run: resuming with any of it changed is an error."""
    spec = module.spec
    augment = {k: v for k, v in vars(module.augment).items() if isinstance(v, (bool, int, float, str))}
    return {
        "image": list(module.image.shape),
        "content": _digest(spec.content),
        "style": _digest(spec.styles[0]),
        "controls": [[_digest(style) for style in spec.styles[1:]], spec.style_blend,
                     _digest(spec.masks), spec.luminance_only],  # several styles, masks, color=luminance
        "network": network_digest(module.extractor),
        "seed": seed,
        "terms": {name: describe(factory) for name, factory in spec.terms.items()},
        "weights": {name: weight.tolist() for name, weight in spec.weights.items()},
        "layers": [dict(spec.content_layers), dict(spec.style_layers)],
        "loss": f"{spec.options}, tv_space={spec.tv_space}, reference={_digest(*_reference(spec))}",
        "optimizer": describe(module.optimizer_factory),
        "augment": f"{type(module.augment).__name__}{sorted(augment.items())}",
        "clamp": module.clamp,
    }


def _reference(spec: Any) -> list[torch.Tensor | None]:
    """The reference-size images (``loss.reference_pixels``), if the run rebalances."""
    return [None] if spec.reference is None else [spec.reference[0], *spec.reference[1]]


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
