"""Which VGG layers define content and style, and how much each one weighs."""

from __future__ import annotations

import math
from typing import Any

from nst_exp.core.features import resolve_layer
from nst_exp.core.losses import normalise_weights
from nst_exp.errors import ConfigError


def layer_weights(arch: str, layers: list[Any], weights: dict[str, float] | None, field: str,
                  normalize: bool = True) -> dict[str, float]:
    """Checked layer names -> weights, normalised to sum to 1 unless ``normalize`` is false;
    indices (torchvision ``features``) allowed."""
    try:
        names = [resolve_layer(arch, layer) for layer in layers]
    except ValueError as error:
        raise ConfigError(f"{field}={list(layers)}: {error}") from None
    unknown = set(weights or {}) - set(names)
    if unknown:
        raise ConfigError(f"{field}_weights names layers not in {field}: {sorted(unknown)}")
    if any(not math.isfinite(w) or w < 0 for w in (weights or {}).values()):
        raise ConfigError(f"{field}_weights={dict(weights or {})}: must be finite and >= 0")
    return normalise_weights(names, {resolve_layer(arch, k): v for k, v in (weights or {}).items()}, normalize)
