"""Objectives built from features already computed: the terms' maths without a network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from nst_exp.core.objective import DEFAULT_TERMS, LossOptions, Objective, TermInputs, build_objective


def from_features(content: Mapping[str, Tensor], styles: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
                  content_layers: Mapping[str, float], style_layers: Mapping[str, float],
                  options: LossOptions | None = None, tv_input: nn.Module | None = None,
                  weights: Mapping[str, float] | None = None, **extra: object) -> Objective:
    """The default terms with targets from features already computed, each weighted by
    ``weights`` (default 1): an objective without a network, for tests of the maths."""
    styles = [styles] if isinstance(styles, Mapping) else list(styles)
    features = {"content": dict(content), **{f"style_{index}": dict(style) for index, style in enumerate(styles)}}
    images = {key: torch.empty(0) for key in features}
    keys = {id(image): key for key, image in images.items()}

    def encode(image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        return {layer: features[keys[id(image)]][layer] for layer in layers}

    inputs = TermInputs(encode=encode, content=images["content"],
                        styles=[images[f"style_{index}"] for index in range(len(styles))],
                        content_layers=dict(content_layers), style_layers=dict(style_layers),
                        options=options or LossOptions(), tv_input=tv_input, **extra)  # type: ignore[arg-type]
    return build_objective(DEFAULT_TERMS, {name: torch.tensor([float((weights or {}).get(name, 1.0))])
                                           for name in DEFAULT_TERMS}, inputs)
