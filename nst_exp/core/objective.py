"""The objective as named terms: total = sum over terms of weight_t * term_t(x).

Each term is a small module that owns its targets (encoded once) and returns one unweighted
value per image, shape (B,). ``Objective`` weights them per image (a batch of images can be a
batch of sweep jobs) and names its outputs ``<term>_loss``: every file, logger and report
downstream iterates ``Objective.columns`` instead of spelling out term names, so a new term is
one class here (or anywhere importable) and one entry in the config's ``objective`` group:

    objective:
      brightness: {_target_: my_terms.Brightness, weight: 0.1}   # my_terms.Brightness(inputs)

The three terms of Gatys et al. (the maths: core/losses.py):

    content = sum_l w_l D(F_l(x), F_l(c))           ContentTerm
    style   = sum_l v_l D(G(F_l(x)), A_l)            StyleTerm (A_l: blended or guided Grams)
    tv      = TV(x)                                  TVTerm

Everything is computed in fp32 even under bf16/fp16 autocast: a loss is a small difference of
large Gram entries, which 8 mantissa bits would round away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nst_exp.core.gradnorm import normalized_gradient
from nst_exp.core.losses import ContentLoss, StyleLoss, energy, tv_loss

Encode = Callable[[Tensor, Sequence[str]], dict[str, Tensor]]


@dataclass(frozen=True)
class LossOptions:
    """How features are compared (the ``loss`` config group; core/losses.py has the maths)."""

    norm: str = "l2"
    reduction: str = "mean"
    gram_norm: str = "chw"
    tv_norm: str = "l2"
    tv_reduction: str = "mean"  # sum: jcjohnson's TVLoss
    normalize_gradients: bool = False


@dataclass
class TermInputs:
    """What a term builds its targets from: the run's images as the network sees them.

    ``style_targets`` replaces the Grams of ``styles`` when given (tiled runs: the whole
    painting's, computed in pieces); ``tv_input`` maps the image before TV (d2l: the network's
    normalised input).
    """

    encode: Encode
    content: Tensor
    styles: list[Tensor]
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    options: LossOptions = field(default_factory=LossOptions)
    style_blend: list[float] | None = None
    masks: Tensor | None = None
    style_targets: dict[str, Tensor] | None = None
    tv_input: nn.Module | None = None


@dataclass
class Seen:
    """One evaluation, as every term receives it.

    ``features``: the network's activations of ``image`` (what it saw, possibly warped);
    ``pixels``: the image being optimised (TV and pixel priors act on it, not on a warped
    crop); ``content_features``: content targets seen through the same warp, if any.
    """

    features: Mapping[str, Tensor]
    image: Tensor
    pixels: Tensor
    content_features: Mapping[str, Tensor] | None = None


class Term(nn.Module):
    """One named part of the objective: ``forward(seen)`` -> unweighted value per image (B,).

    ``layers`` are the network layers it reads. ``energies``/``rescale`` take part in the
    size-invariant balance (``Objective.rebalance``); a term without targets has none.
    """

    layers: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.layers = []
        self.scales: dict[str, float] = {}

    def energies(self) -> dict[str, float]:
        return {}

    def rescale(self, scales: Mapping[str, float]) -> None:
        self.scales = dict(scales)


def _as_is(value: Tensor, features: Tensor) -> Tensor:
    return value


class _LayerTerm(Term):
    """A weighted sum over layers of one comparison each (content and style share this)."""

    def __init__(self, weights: Mapping[str, float], losses: Mapping[str, nn.Module], options: LossOptions) -> None:
        super().__init__()
        self.weights = dict(weights)
        self.layers = list(weights)
        self.losses = nn.ModuleDict(dict(losses))
        self.gradient = normalized_gradient if options.normalize_gradients else _as_is

    def layer_value(self, layer: str, seen: Seen) -> Tensor:
        raise NotImplementedError

    def forward(self, seen: Seen) -> Tensor:
        total = seen.image.new_zeros(seen.image.shape[0], dtype=torch.float32)
        for layer, weight in self.weights.items():
            value = self.gradient(self.layer_value(layer, seen), seen.features[layer])
            total = total + weight * self.scales.get(layer, 1.0) * value
        return total

    def energies(self) -> dict[str, float]:
        return {layer: energy(loss.target) for layer, loss in self.losses.items()}

    def retarget(self, targets: Mapping[str, Tensor]) -> None:
        """New targets, same layers (tiles: each tile's own content, the whole painting's Grams)."""
        for layer, target in targets.items():
            self.losses[layer].target = target.detach()


class ContentTerm(_LayerTerm):
    """D(F_l(x), F_l(c)) at the content layers."""

    def __init__(self, inputs: TermInputs) -> None:
        options = inputs.options
        targets = inputs.encode(inputs.content, list(inputs.content_layers)) if inputs.content_layers else {}
        super().__init__(inputs.content_layers,
                         {l: ContentLoss(targets[l], options.norm, options.reduction) for l in inputs.content_layers},
                         options)

    def layer_value(self, layer: str, seen: Seen) -> Tensor:
        target = (seen.content_features or {}).get(layer)
        return self.losses[layer](seen.features[layer], target)


class StyleTerm(_LayerTerm):
    """D(G(F_l(x)), A_l) at the style layers; several styles blended, or placed by masks."""

    def __init__(self, inputs: TermInputs) -> None:
        options, layers = inputs.options, list(inputs.style_layers)
        encoded = [inputs.encode(style, layers) for style in inputs.styles] if layers and not inputs.style_targets \
            else [{l: torch.zeros(1, 1, 1, 1) for l in layers}]
        losses = {l: StyleLoss([e[l] for e in encoded], options.norm, options.reduction, options.gram_norm,
                               inputs.style_blend, inputs.masks) for l in layers}
        super().__init__(inputs.style_layers, losses, options)
        if inputs.style_targets:
            self.retarget(inputs.style_targets)

    def layer_value(self, layer: str, seen: Seen) -> Tensor:
        return self.losses[layer](seen.features[layer])


class TVTerm(Term):
    """Total variation of the optimised image (or of what the network sees: ``tv_input``)."""

    def __init__(self, inputs: TermInputs) -> None:
        super().__init__()
        self.norm, self.reduction = inputs.options.tv_norm, inputs.options.tv_reduction
        self.tv_input = inputs.tv_input or nn.Identity()

    def forward(self, seen: Seen) -> Tensor:
        return tv_loss(self.tv_input(seen.pixels.float()), self.norm, self.reduction)


TermFactory = Callable[[TermInputs], Term]
DEFAULT_TERMS: dict[str, TermFactory] = {"content": ContentTerm, "style": StyleTerm, "tv": TVTerm}


def column(name: str) -> str:
    """The key of a term's weighted value in metrics.csv, summary.json and the loggers."""
    return f"{name}_loss"


class Objective(nn.Module):
    """Named terms, each weighted per image: ``forward(seen)`` -> ``{<term>_loss: (B,), loss: (B,)}``.

    A term whose weight is 0 for every image is not evaluated (decided once, here: no device
    sync per step), and reports 0.
    """

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, Tensor]) -> None:
        super().__init__()
        missing = sorted(set(terms) - set(weights))
        if missing:
            raise ValueError(f"objective terms without a weight: {missing}")
        self.terms = nn.ModuleDict(dict(terms))
        for name in terms:
            self.register_buffer(f"weight_{name}", weights[name].float().reshape(-1), persistent=False)
        self.active = {name: bool((weights[name] != 0).any()) for name in terms}

    @property
    def names(self) -> list[str]:
        return list(self.terms)

    @property
    def columns(self) -> list[str]:
        """``loss`` and every term's column, in order: metrics.csv and summary.json use these."""
        return ["loss", *(column(name) for name in self.terms)]

    @property
    def layers(self) -> list[str]:
        """Every layer some term reads, each once, in first-use order."""
        return list(dict.fromkeys(layer for term in self.terms.values() for layer in term.layers))

    def weight(self, name: str) -> Tensor:
        return getattr(self, f"weight_{name}")

    def forward(self, seen: Seen) -> dict[str, Tensor]:
        with torch.autocast(seen.image.device.type, enabled=False):
            zero = seen.image.new_zeros(seen.image.shape[0], dtype=torch.float32)
            parts = {column(name): self.weight(name) * term(seen) if self.active[name] else zero
                     for name, term in self.terms.items()}
        parts["loss"] = sum(parts.values(), zero)
        return parts

    # --- the size-invariant balance (loss.reference_edge) --------------------------------
    def energies(self) -> dict[str, float]:
        """``{"<term>.<layer>": energy}`` of every term's targets."""
        return {f"{name}.{key}": value for name, term in self.terms.items() for key, value in term.energies().items()}

    def rebalance(self, reference: Mapping[str, float], current: Mapping[str, float] | None = None) -> None:
        """Scale each layer of each term by its target energy at the reference size over here."""
        self.set_scales(balance_scales(reference, current or self.energies()))

    def set_scales(self, scales: Mapping[str, float]) -> None:
        for name, term in self.terms.items():
            prefix = f"{name}."
            term.rescale({key[len(prefix):]: value for key, value in scales.items() if key.startswith(prefix)})

    @property
    def scales(self) -> dict[str, float]:
        return {f"{name}.{layer}": value for name, term in self.terms.items() for layer, value in term.scales.items()}


def balance_scales(reference: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float]:
    """``reference / current`` energy for every key both have (and a non-zero current)."""
    return {key: reference[key] / value for key, value in current.items() if value > 0 and key in reference}


def build_objective(factories: Mapping[str, TermFactory], weights: Mapping[str, Tensor],
                    inputs: TermInputs) -> Objective:
    """Every term built from ``inputs`` (targets encoded now), weighted by ``weights``."""
    return Objective({name: factory(inputs) for name, factory in factories.items()}, weights)
