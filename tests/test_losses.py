"""The objective against hand computations: Gram normalisations, L1/L2, TV, layer weights."""

import pytest
import torch

from nst_exp.core.losses import distance, gram_matrix, normalise_weights, tv_loss
from nst_exp.core.objective import Seen
from objectives import from_features


def hand_gram(features: torch.Tensor) -> torch.Tensor:
    """Sum over positions of F_i * F_j, written out with loops."""
    _, c, h, w = features.shape
    out = torch.zeros(c, c)
    for i in range(c):
        for j in range(c):
            out[i, j] = sum(features[0, i, y, x] * features[0, j, y, x] for y in range(h) for x in range(w))
    return out


@pytest.mark.parametrize("norm, divisor", [("none", 1), ("chw", 3 * 2 * 4), ("gatys", 2 * 3 * 8)])
def test_gram_normalisations(norm: str, divisor: int) -> None:
    features = torch.randn(1, 3, 2, 4)
    assert torch.allclose(gram_matrix(features, norm)[0], hand_gram(features) / divisor, atol=1e-5)


def test_gatys_norm_with_sum_is_the_papers_style_term() -> None:
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2 with raw Gram matrices G, A."""
    x, s = torch.randn(1, 4, 3, 5), torch.randn(1, 4, 3, 5)
    n, m = 4, 15
    paper = ((hand_gram(x) - hand_gram(s)) ** 2).sum() / (4 * n**2 * m**2)
    ours = distance(gram_matrix(x, "gatys"), gram_matrix(s, "gatys"), "l2", "sum")
    assert ours.item() == pytest.approx(paper.item(), rel=1e-4)


def test_l1_and_l2_distances_per_image() -> None:
    a = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.zeros(2, 3)
    assert distance(a, b, "l2", "mean").tolist() == pytest.approx([14 / 3, 0])
    assert distance(a, b, "l2", "sum").tolist() == pytest.approx([14, 0])
    assert distance(a, b, "l1", "mean").tolist() == pytest.approx([2, 0])
    assert distance(a, b, "l1", "sum").tolist() == pytest.approx([6, 0])


def test_tv_loss_of_a_step_edge() -> None:
    image = torch.zeros(1, 1, 2, 3)
    image[..., 2] = 1.0  # one vertical edge: 2 of the 4 horizontal differences are 1
    assert tv_loss(image).item() == pytest.approx(2 / 4)
    assert tv_loss(torch.ones(1, 3, 5, 5)).item() == 0


def test_layer_weights_are_normalised_to_sum_to_one() -> None:
    assert normalise_weights(["a", "b"], None) == {"a": 0.5, "b": 0.5}
    assert normalise_weights(["a", "b"], {"a": 3}) == {"a": 0.75, "b": 0.25}
    assert normalise_weights([], None) == {}


def test_objective_components_and_targets_are_buffers() -> None:
    c = {"l1": torch.randn(1, 2, 3, 3)}
    s = {"l1": torch.randn(1, 2, 4, 4), "l2": torch.randn(1, 5, 2, 2)}
    loss = from_features(c, s, {"l1": 1.0}, {"l1": 0.5, "l2": 0.5})
    assert list(loss.parameters()) == [] and len(list(loss.buffers())) == 3 + 3  # targets + one weight per term
    assert loss.columns == ["loss", "content_loss", "style_loss", "tv_loss"] and loss.layers == ["l1", "l2"]
    feats = {"l1": c["l1"].clone(), "l2": s["l2"].clone()}
    image = torch.rand(1, 3, 4, 4)
    parts = loss(Seen(feats, image, image))
    assert parts["content_loss"].item() == pytest.approx(0.0)
    expected_style = 0.5 * distance(gram_matrix(c["l1"]), gram_matrix(s["l1"])).item()
    assert parts["style_loss"].item() == pytest.approx(expected_style, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(expected_style + tv_loss(image).item(), rel=1e-5)


def test_content_target_can_be_replaced_per_step() -> None:
    target = torch.randn(1, 2, 3, 3)
    loss = from_features({"l": target}, {}, {"l": 1.0}, {})
    moved, image = target + 1, torch.rand(1, 3, 2, 2)
    assert loss(Seen({"l": moved}, image, image, {"l": moved}))["content_loss"].item() == 0
