"""The whole style-transfer objective on one screen.

    total = content_weight * sum_l w_l D(F_l(x), F_l(c))
          + style_weight   * sum_l v_l D(G(F_l(x)), G(F_l(s)))
          + tv_weight      * TV(x)

D is the L2 (squared) or L1 distance, averaged ("mean") or summed ("sum") over elements; G is
the Gram matrix with a selectable normalisation; layer weights w_l, v_l are normalised to sum
to 1 (Gatys et al.'s w_l = 1/|layers|), so style_weight keeps its meaning across layer sets,
unless ``layers.normalize=false`` keeps them as given (recipes that sum their layer losses).
TV is the squared (l2) or absolute (l1) neighbour difference, of the pixels or, with a
``tv_input`` transform, of what the network sees (d2l's TV on the normalised tensor), averaged
or (``tv_reduction=sum``, jcjohnson's TVLoss) summed.
Each loss owns its target as a buffer, computed once. Several styles: their Grams are blended,
A = sum_k b_k G(s_k); with masks, each style is matched in its own region (core/guided.py).
``normalize_gradients`` divides each term's gradient by its L1 norm (core/gradnorm.py).

Gram matrices and distances are computed in fp32 even under bf16/fp16 autocast: the loss is a
small difference of large Gram entries, which 8 mantissa bits would round away.
``rebalance`` keeps the content:style balance of a reference size at any size (see below).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from nst_exp.core.gradnorm import normalized_gradient
from nst_exp.core.guided import guided_regions

GRAM_NORMS = ("chw", "gatys", "sqrt_chw", "none")
DISTANCES = ("l2", "l1")
REDUCTIONS = ("mean", "sum")
TV_SPACES = ("pixels", "network")  # loss.tv_space: TV of the [0, 1] image or of the network's input


class _Gram(torch.autograd.Function):
    """F F^T with a one-product backward: dL/dF = (dG + dG^T) F.

    Autograd would differentiate ``bmm(F, F^T)`` through both operands: two products the size
    of the forward one and an accumulation of two F-sized gradients. G's symmetry makes that
    one product plus a C x C addition (the Gram's backward costs half as much).
    ``nhwc``: ``flat`` is (B, H*W, C) and G = flat^T flat (the channels_last view, no copy).
    """

    @staticmethod
    def forward(ctx, flat: Tensor, nhwc: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(flat)
        ctx.nhwc = nhwc
        return torch.bmm(flat.transpose(1, 2), flat) if nhwc else torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (flat,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        return (torch.bmm(flat, sym) if ctx.nhwc else torch.bmm(sym, flat)), None


def gram_matrix(features: Tensor, norm: str = "chw") -> Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix F F^T.

    ``chw`` divides by C*H*W (size independent); ``gatys`` divides by 2*N*M (N = C, M = H*W)
    so that a summed squared difference equals the paper's sum (G - A)^2 / (4 N^2 M^2);
    ``sqrt_chw`` divides by sqrt(C*H*W), so a mean squared difference is yunjey's
    mean((G - A)^2) / (c*h*w) of raw Grams; ``none`` keeps the raw sum.
    """
    features = features.float()
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):  # fp32 even under bf16 autocast
        if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
            flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # NHWC (speed.py): a view, no copy
            gram = _Gram.apply(flat, True)
        else:
            gram = _Gram.apply(features.reshape(b, c, h * w), False)
    scale = {"chw": c * h * w, "gatys": 2 * c * h * w, "sqrt_chw": (c * h * w) ** 0.5, "none": 1}[norm]
    return gram / scale


def distance(input: Tensor, target: Tensor, norm: str = "l2", reduction: str = "mean") -> Tensor:
    """Per-image L2 (squared) or L1 distance, reduced over all but the batch dim -> (B,)."""
    diff = (input.float() - target.float()).flatten(1)
    per_element = diff.square() if norm == "l2" else diff.abs()
    return per_element.mean(1) if reduction == "mean" else per_element.sum(1)


class ContentLoss(nn.Module):
    """D(F(x), F(c)) for one layer; the target is a buffer unless a step passes its own."""

    def __init__(self, target: Tensor, norm: str, reduction: str) -> None:
        super().__init__()
        self.register_buffer("target", target.detach(), persistent=False)
        self.norm, self.reduction = norm, reduction

    def forward(self, features: Tensor, target: Tensor | None = None) -> Tensor:
        return distance(features, self.target if target is None else target, self.norm, self.reduction)


class StyleLoss(nn.Module):
    """D(G(F(x)), G(F(s))) for one layer; ``get_target`` builds the target the same way.

    Several styles (a sequence of features): the target is their Gram matrices blended with
    ``blend``; with ``masks`` (K, 1, H, W) instead, style k is matched in region k with weight
    K * blend_k (equal blend: each region gets one whole style's pull).
    """

    def __init__(self, style_features: Tensor | Sequence[Tensor], norm: str, reduction: str, gram_norm: str,
                 blend: Sequence[float] | None = None, masks: Tensor | None = None) -> None:
        super().__init__()
        self.norm, self.reduction, self.gram_norm = norm, reduction, gram_norm
        styles = [style_features] if isinstance(style_features, Tensor) else list(style_features)
        blend = list(blend or [1.0 / len(styles)] * len(styles))
        grams = [self.get_target(f.detach(), gram_norm) for f in styles]
        target = torch.cat(grams) if masks is not None else sum(b * g for b, g in zip(blend, grams))
        self.register_buffer("target", target, persistent=False)  # (1, C, C), or (K, C, C) with masks
        self.register_buffer("masks", masks, persistent=False)
        self.region_weights = [len(styles) * b for b in blend]

    @staticmethod
    def get_target(features: Tensor, gram_norm: str) -> Tensor:
        return gram_matrix(features, gram_norm)

    def forward(self, features: Tensor) -> Tensor:
        if self.masks is None:
            return distance(self.get_target(features, self.gram_norm), self.target, self.norm, self.reduction)
        regions = guided_regions(features, self.masks)
        return sum(w * area * distance(self.get_target(region, self.gram_norm), target[None], self.norm,
                                       self.reduction)
                   for (region, area), target, w in zip(regions, self.target, self.region_weights))


def energy(target: Tensor) -> float:
    """A target's energy, the sum of its squares (in float64: Grams of large images are big
    sums): what ``StyleTransferLoss.rebalance`` compares between sizes."""
    return float(target.double().square().sum())


def tv_loss(image: Tensor, norm: str = "l2", reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared (l2) or absolute (l1) difference of neighbouring pixels -> (B,).

    Horizontal and vertical means are added (d2l halves their sum: tv_weight 10 there is 5 here).
    A sum (neural-style's TVLoss) is not a rescaled mean: the two directions have different
    pair counts, 3H(W-1) and 3(H-1)W, so no single weight converts one into the other.
    """
    dx = distance(image[..., :, 1:], image[..., :, :-1], norm, reduction)
    dy = distance(image[..., 1:, :], image[..., :-1, :], norm, reduction)
    return dx + dy


def _value(value: Tensor, features: Tensor) -> Tensor:
    """A term as it is (``normalize_gradients=false``)."""
    return value


def normalise_weights(layers: Sequence[str], weights: Mapping[str, float] | None,
                      normalize: bool = True) -> dict[str, float]:
    """Layer -> weight (default 1), scaled to sum to 1 unless ``normalize`` is false."""
    raw = {layer: float((weights or {}).get(layer, 1.0)) for layer in layers}
    total = sum(raw.values())
    return {layer: w / total for layer, w in raw.items()} if total > 0 and normalize else raw


class StyleTransferLoss(nn.Module):
    """Weighted content + style + TV objective over a dict of layer activations.

    Returns per-image tensors of shape (B,) so batched sweeps can weight each image apart.

    ``rebalance``: a summed content term grows with the pixel count, and every target's size
    changes with the image's (a painting shrunk to 128 px has more detail per location, so
    larger Gram entries), so the balance of fixed weights moves with ``image_size``. Once
    rebalanced, each layer's term is scaled by its target's energy at a reference size over
    its energy here: at the reference size the objective is unchanged, and at any other size
    each term pulls as hard, relative to the others, as it does there.
    """

    def __init__(
        self,
        content_features: Mapping[str, Tensor],
        style_features: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
        content_layer_weights: Mapping[str, float],
        style_layer_weights: Mapping[str, float],
        norm: str = "l2",
        reduction: str = "mean",
        gram_norm: str = "chw",
        tv_norm: str = "l2",
        tv_reduction: str = "mean",
        tv_input: nn.Module | None = None,
        style_blend: Sequence[float] | None = None,
        masks: Tensor | None = None,
        normalize_gradients: bool = False,
    ) -> None:
        super().__init__()
        self.tv_norm, self.tv_reduction, self.tv_input = tv_norm, tv_reduction, tv_input or nn.Identity()
        self.scales: dict[str, float] = {}  # "content.<layer>" / "style.<layer>" -> factor (rebalance)
        styles = [style_features] if isinstance(style_features, Mapping) else list(style_features)
        self.content = nn.ModuleDict({l: ContentLoss(content_features[l], norm, reduction)
                                      for l in content_layer_weights})
        self.style = nn.ModuleDict({l: StyleLoss([s[l] for s in styles], norm, reduction, gram_norm,
                                                 style_blend, masks) for l in style_layer_weights})
        self.term: Callable[[Tensor, Tensor], Tensor] = normalized_gradient if normalize_gradients else _value
        self.content_layer_weights = dict(content_layer_weights)
        self.style_layer_weights = dict(style_layer_weights)

    def forward(self, features: Mapping[str, Tensor], image: Tensor,
                content_targets: Mapping[str, Tensor] | None = None, with_tv: bool = True,
                tv_image: Tensor | None = None) -> dict[str, Tensor]:
        """Unweighted components: content, style, tv (each (B,); tv is 0 unless ``with_tv``).

        ``image`` is what the network saw; TV is taken on ``tv_image`` when given (the image
        parameter itself, not an augmented crop of it), in fp32 like the rest.
        """
        with torch.autocast(image.device.type, enabled=False):
            zero = image.new_zeros(image.shape[0], dtype=torch.float32)
            content = sum((w * self.scales.get(f"content.{l}", 1.0)
                           * self.term(self.content[l](features[l], (content_targets or {}).get(l)), features[l])
                           for l, w in self.content_layer_weights.items()), zero)
            style = sum((w * self.scales.get(f"style.{l}", 1.0) * self.term(self.style[l](features[l]), features[l])
                         for l, w in self.style_layer_weights.items()), zero)
            tv_source = (image if tv_image is None else tv_image).float()
            tv = tv_loss(self.tv_input(tv_source), self.tv_norm, self.tv_reduction) if with_tv else zero
        return {"content": content, "style": style, "tv": tv}

    def target_energies(self) -> dict[str, float]:
        """Each layer's target energy (sum of squares): content F_l(c), style A_l."""
        targets = {**{f"content.{l}": m.target for l, m in self.content.items()},
                   **{f"style.{l}": m.target for l, m in self.style.items()}}
        return {key: energy(target) for key, target in targets.items()}

    def rebalance(self, reference: Mapping[str, float], current: Mapping[str, float] | None = None) -> None:
        """Scale each term by ``reference`` / ``current`` target energy (default: this loss's own)."""
        current = current or self.target_energies()
        self.scales = {key: reference[key] / value for key, value in current.items() if value > 0 and key in reference}

    def extra_repr(self) -> str:
        return f"content={self.content_layer_weights}, style={self.style_layer_weights}"
