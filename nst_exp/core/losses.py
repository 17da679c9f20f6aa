"""The comparisons the objective's terms are made of (core/objective.py composes them).

D is the L2 (squared) or L1 distance, averaged ("mean") or summed ("sum") over elements; G is
the Gram matrix with a selectable normalisation; layer weights w_l, v_l are normalised to sum
to 1 (Gatys et al.'s w_l = 1/|layers|), so a term's weight keeps its meaning across layer sets,
unless ``layers.normalize=false`` keeps them as given (recipes that sum their layer losses).
TV is the squared (l2) or absolute (l1) neighbour difference, averaged or (``tv_reduction=sum``,
jcjohnson's TVLoss) summed. Each loss owns its target as a buffer, computed once. Several
styles: their Grams are blended, A = sum_k b_k G(s_k); with masks, each style is matched in its
own region (core/guided.py). The Gram's backward is one product (``_Gram``).

Gram matrices and distances are computed in fp32 even under bf16/fp16 autocast: the loss is a
small difference of large Gram entries, which 8 mantissa bits would round away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from nst_exp.core.guided import guided_regions

GRAM_NORMS = ("chw", "gatys", "sqrt_chw", "none")
DISTANCES = ("l2", "l1")
REDUCTIONS = ("mean", "sum")
TV_SPACES = ("pixels", "network")  # loss.tv_space: TV of the [0, 1] image or of the network's input


class _Gram(torch.autograd.Function):
    """F F^T with a one-product backward: dL/dF = (dG + dG^T) F.

    Autograd would differentiate ``bmm(F, F^T)`` through both operands: two products the size
    of the forward one and an accumulation of two F-sized gradients. G's symmetry makes that
    one product plus a C x C addition (the Gram's backward costs half as much). The gradient is
    written into a new tensor in the features' own layout, not returned as a view: autograd
    then adds the next layer's gradient to it in place (a view, or another layout, costs a new
    F-sized tensor and a strided copy per style layer).
    """

    @staticmethod
    def forward(ctx, features: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(features)
        return _gram_product(features)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (features,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        out = torch.empty_like(features)  # preserves channels_last
        flat, nhwc = _flat(features)
        if nhwc:
            torch.bmm(flat, sym, out=_flat(out)[0])
        else:
            torch.bmm(sym, flat, out=_flat(out)[0])
        return out


def _nhwc(values: Tensor) -> bool:
    """Are these (B, C, H, W) values stored NHWC (channels_last, speed.py)?"""
    return values.dim() == 4 and values.is_contiguous(memory_format=torch.channels_last) \
        and not values.is_contiguous()


def _flat(features: Tensor) -> tuple[Tensor, bool]:
    """A view of (B, C, H, W) features as (B, C, H*W), or as (B, H*W, C) if they are NHWC:
    no copy either way; and whether they are NHWC."""
    b, c, h, w = features.shape
    nhwc = _nhwc(features)
    return (features.permute(0, 2, 3, 1).reshape(b, h * w, c) if nhwc else features.reshape(b, c, h * w)), nhwc


def _gram_product(features: Tensor) -> Tensor:
    """F F^T of (B, C, H, W) features, whatever their layout."""
    flat, nhwc = _flat(features)
    return torch.bmm(flat.transpose(1, 2), flat) if nhwc else torch.bmm(flat, flat.transpose(1, 2))


def gram_matrix(features: Tensor, norm: str = "chw") -> Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix F F^T.

    ``chw`` divides by C*H*W (size independent); ``gatys`` divides by 2*N*M (N = C, M = H*W)
    so that a summed squared difference equals the paper's sum (G - A)^2 / (4 N^2 M^2);
    ``sqrt_chw`` divides by sqrt(C*H*W), so a mean squared difference is yunjey's
    mean((G - A)^2) / (c*h*w) of raw Grams; ``none`` keeps the raw sum.
    """
    features = features.float()
    _, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):  # fp32 even under bf16 autocast
        # One product backward where it is cheaper than autograd's two (positions >= channels / 2)
        gram = _Gram.apply(features) if 2 * h * w >= c else _gram_product(features)
    return gram / gram_scale(norm, c, h * w)


def gram_scale(norm: str, channels: int, positions: int) -> float:
    """What ``gram_matrix`` divides F F^T by, for C channels at M positions (see there)."""
    return {"chw": channels * positions, "gatys": 2 * channels * positions,
            "sqrt_chw": (channels * positions) ** 0.5, "none": 1}[norm]


def distance(input: Tensor, target: Tensor, norm: str = "l2", reduction: str = "mean") -> Tensor:
    """Per-image L2 (squared) or L1 distance, reduced over all but the batch dim -> (B,)."""
    diff = _rows(input.float() - target.float())
    per_element = diff.square() if norm == "l2" else diff.abs()
    return per_element.mean(1) if reduction == "mean" else per_element.sum(1)


def _rows(values: Tensor) -> Tensor:
    """(B, ...) -> (B, N) in memory order: a view of channels_last features too (flatten(1)
    would copy them, and hand their gradient back in the other layout)."""
    if _nhwc(values):
        return values.permute(0, 2, 3, 1).reshape(values.shape[0], -1)
    return values.flatten(1)


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
    sums): what ``Objective.rebalance`` compares between sizes."""
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


def normalise_weights(layers: Sequence[str], weights: Mapping[str, float] | None,
                      normalize: bool = True) -> dict[str, float]:
    """Layer -> weight (default 1), scaled to sum to 1 unless ``normalize`` is false."""
    raw = {layer: float((weights or {}).get(layer, 1.0)) for layer in layers}
    total = sum(raw.values())
    return {layer: w / total for layer, w in raw.items()} if total > 0 and normalize else raw
