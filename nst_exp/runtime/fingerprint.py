"""What a checkpoint must match to be resumed: the fingerprint of a run.

It covers the objective (targets, weights, layers, loss), the optimiser, augmentation and
clamp, the image size, the seed, and the network itself: architecture and pooling (the module
tree), weights and preprocessing (a digest of every parameter and buffer).
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch

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


def fingerprint(module: StyleTransferModule, seed: int | None = None) -> dict[str, Any]:
    """What defines a run: resuming with any of it changed is an error."""
    factory = module.optimizer_factory
    augment = {k: v for k, v in vars(module.augment).items() if isinstance(v, (bool, int, float, str))}
    return {
        "image": list(module.image.shape),
        "content": _digest(module.content),
        "style": _digest(module.style),
        "controls": [[_digest(style) for style in module.styles[1:]], module.style_blend,
                     _digest(module.masks),
                     module.luminance_only],  # several styles, masks, color=luminance
        "network": network_digest(module.extractor),
        "seed": seed,
        "weights": {name: getattr(module, f"{name}_weight").tolist() for name in ("content", "style", "tv")},
        "layers": [dict(module.content_layers), dict(module.style_layers)],
        "loss": str(sorted(module.loss_options.items())),
        "optimizer": f"{getattr(factory, 'func', factory).__name__}{sorted(getattr(factory, 'keywords', {}).items())}",
        "augment": f"{type(module.augment).__name__}{sorted(augment.items())}",
        "clamp": module.clamp,
    }
