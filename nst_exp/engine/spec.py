"""What defines a run's objective before its targets are encoded: ``ObjectiveSpec``.

The config is turned into a spec once (runtime/build.py); the module encodes it on its device
(``StyleTransferModule.build_objective``), the fingerprint digests it (a resume must match it),
and a batch of sweep jobs is one spec with a weight per job. A new control or term is a field
here and in the builder; everything else reads the spec as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import Tensor

from nst_exp.core.objective import LossOptions, TermFactory


@dataclass
class ObjectiveSpec:
    """The objective's terms and per-image weights, layers, loss options and artistic controls.

    ``content`` (1, 3, H, W) and ``styles`` are the images the targets come from;
    ``reference``: the same at ``loss.reference_edge`` (the balance every size keeps);
    ``tv_space="network"``: TV of what the network sees (d2l).
    """

    terms: dict[str, TermFactory]
    weights: dict[str, Tensor]
    content: Tensor
    styles: list[Tensor]
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    options: LossOptions = field(default_factory=LossOptions)
    tv_space: str = "pixels"
    style_blend: list[float] | None = None
    masks: Tensor | None = None
    luminance_only: bool = False
    reference: tuple[Tensor, list[Tensor]] | None = None

    def __post_init__(self) -> None:
        self.style_blend = list(self.style_blend or [1.0 / len(self.styles)] * len(self.styles))
        self.weights = {name: weight.float().reshape(-1) for name, weight in self.weights.items()}

    def with_weights(self, weights: dict[str, Tensor]) -> ObjectiveSpec:
        """The same objective with other per-image weights (a batch of sweep jobs)."""
        return replace(self, weights=weights)
