"""The whole style-transfer objective on one screen.

    total = content_weight * sum_l w_l D(F_l(x), F_l(c))
          + style_weight   * sum_l v_l D(G(F_l(x)), G(F_l(s)))
          + tv_weight      * TV(x)

D is the L2 (squared) or L1 distance, averaged ("mean") or summed ("sum") over elements; G is
the Gram matrix with a selectable normalisation; layer weights w_l, v_l are normalised to sum
to 1 (Gatys et al.'s w_l = 1/|layers|), so style_weight keeps its meaning across layer sets.
Each loss owns its target as a buffer, computed once.

Gram matrices and distances are computed in fp32 even under bf16/fp16 autocast: the loss is a
small difference of large Gram entries, which 8 mantissa bits would round away.
``reference_pixels`` makes a summed content term size-invariant (see StyleTransferLoss).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

GRAM_NORMS = ("chw", "gatys", "none")
DISTANCES = ("l2", "l1")
REDUCTIONS = ("mean", "sum")


def gram_matrix(features: Tensor, norm: str = "chw") -> Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix F F^T.

    ``chw`` divides by C*H*W (size independent); ``gatys`` divides by 2*N*M (N = C, M = H*W)
    so that a summed squared difference equals the paper's sum (G - A)^2 / (4 N^2 M^2);
    ``none`` keeps the raw sum.
    """
    features = features.float()
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):  # fp32 even under bf16 autocast
        if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
            flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # NHWC (speed.py): a view, no copy
            gram = torch.bmm(flat.transpose(1, 2), flat)
        else:
            flat = features.reshape(b, c, h * w)
            gram = torch.bmm(flat, flat.transpose(1, 2))
    scale = {"chw": c * h * w, "gatys": 2 * c * h * w, "none": 1}[norm]
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
    """D(G(F(x)), G(F(s))) for one layer; ``get_target`` builds the target the same way."""

    def __init__(self, style_features: Tensor, norm: str, reduction: str, gram_norm: str) -> None:
        super().__init__()
        self.norm, self.reduction, self.gram_norm = norm, reduction, gram_norm
        self.register_buffer("target", self.get_target(style_features.detach(), gram_norm), persistent=False)

    @staticmethod
    def get_target(features: Tensor, gram_norm: str) -> Tensor:
        return gram_matrix(features, gram_norm)

    def forward(self, features: Tensor) -> Tensor:
        return distance(self.get_target(features, self.gram_norm), self.target, self.norm, self.reduction)


def tv_loss(image: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels (smoothness prior), per image -> (B,)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).square().flatten(1).mean(1)
    dy = (image[..., 1:, :] - image[..., :-1, :]).square().flatten(1).mean(1)
    return dx + dy


def normalise_weights(layers: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Layer -> weight (default 1), scaled to sum to 1."""
    raw = {layer: float((weights or {}).get(layer, 1.0)) for layer in layers}
    total = sum(raw.values())
    return {layer: w / total for layer, w in raw.items()} if total > 0 else raw


class StyleTransferLoss(nn.Module):
    """Weighted content + style + TV objective over a dict of layer activations.

    Returns per-image tensors of shape (B,) so batched sweeps can weight each image apart.

    ``reference_pixels``: a summed content term grows with the pixel count while the paper's
    E_l does not, so the content:style balance of fixed weights moves with ``image_size``.
    With this set, the content term is rescaled to what it would be for an image of this many
    pixels (Gatys et al. rendered about 512 x 512 = 262144): the same alpha/beta balance at
    any size. None keeps the raw term.
    """

    def __init__(
        self,
        content_features: Mapping[str, Tensor],
        style_features: Mapping[str, Tensor],
        content_layer_weights: Mapping[str, float],
        style_layer_weights: Mapping[str, float],
        norm: str = "l2",
        reduction: str = "mean",
        gram_norm: str = "chw",
        reference_pixels: int | None = None,
    ) -> None:
        super().__init__()
        self.reference_pixels = reference_pixels
        self.content = nn.ModuleDict({l: ContentLoss(content_features[l], norm, reduction)
                                      for l in content_layer_weights})
        self.style = nn.ModuleDict({l: StyleLoss(style_features[l], norm, reduction, gram_norm)
                                    for l in style_layer_weights})
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
            content = sum((w * self.content[l](features[l], (content_targets or {}).get(l))
                           for l, w in self.content_layer_weights.items()), zero)
            if self.reference_pixels:
                content = content * (self.reference_pixels / (image.shape[-2] * image.shape[-1]))
            style = sum((w * self.style[l](features[l]) for l, w in self.style_layer_weights.items()), zero)
            tv = tv_loss((image if tv_image is None else tv_image).float()) if with_tv else zero
        return {"content": content, "style": style, "tv": tv}

    def extra_repr(self) -> str:
        return f"content={self.content_layer_weights}, style={self.style_layer_weights}"
