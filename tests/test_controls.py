"""Artistic controls: colours, several styles, start image, normalised gradients, masks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import FAST, compose_cfg
from nst_exp.batched.batch import batch_key, build_batched_module
from nst_exp.core.color import luminance, match_histogram, match_luminance, with_chroma
from nst_exp.core.gradnorm import normalized_gradient
from nst_exp.core.images import load_image, to_tensor
from nst_exp.core.losses import StyleLoss, gram_matrix
from nst_exp.errors import ConfigError, ImageError
from nst_exp.runtime.build import build_module
from nst_exp.runtime.validate import check_config
from nst_exp.train import train


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _flat(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (30, 40)) -> str:
    Image.new("RGB", size, rgb).save(path)
    return str(path)


def _halves(tmp_path: Path, size: tuple[int, int] = (40, 30)) -> list[str]:
    """Two complementary masks: left half white, right half white (saved at another size)."""
    left = Image.new("L", size, 0)
    left.paste(255, (0, 0, size[0] // 2, size[1]))
    paths = [tmp_path / "left.png", tmp_path / "right.png"]
    left.save(paths[0])
    Image.eval(left, lambda v: 255 - v).save(paths[1])
    return [str(p) for p in paths]


def _chroma(image: torch.Tensor) -> torch.Tensor:
    return image - image.mean(1, keepdim=True)


# --- colour ----------------------------------------------------------------------------------
def test_luminance_run_keeps_the_content_chroma_and_changes_the_luminance(tmp_path: Path,
                                                                          tiny_pair: tuple[Path, Path]) -> None:
    content = _rand(1, 3, 24, 32) * 0.5 + 0.25  # 4 Adam steps of 0.02 never reach the gamut's edge
    Image.fromarray((content[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(tmp_path / "c.png")
    cfg = compose_cfg(*FAST, f"pair.content={tmp_path / 'c.png'}", f"pair.style={tiny_pair[1]}",
                      "color=luminance", "optimizer=adam", output_dir=tmp_path)
    train(cfg)
    final = to_tensor(load_image(tmp_path / "final.png", "final"))
    source = to_tensor(load_image(tmp_path / "c.png", "content"))
    assert (_chroma(final) - _chroma(source)).abs().max() < 2.5 / 255  # 8-bit rounding only
    assert (final.mean(1) - source.mean(1)).abs().mean() > 0.01  # the luminance was optimised


def test_luminance_only_module_shows_the_network_grey_images(tiny_pair: tuple[Path, Path]) -> None:
    module = build_module(compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style={tiny_pair[1]}",
                                      "color=luminance", "init=noise"))
    assert module.luminance_only and torch.equal(module.view(module.image), luminance(module.image))
    assert torch.allclose(_chroma(module.image), _chroma(module.content), atol=1e-6)  # noise start, photo chroma
    assert torch.allclose(module.style, luminance(module.style))  # grey, luminance-matched style


def test_luminance_helpers() -> None:
    content, style = _rand(1, 3, 16, 16) * 0.5 + 0.25, _rand(1, 3, 20, 12, seed=1) * 0.3
    matched = match_luminance(style, content)
    assert torch.equal(matched[:, 0], matched[:, 2])
    assert torch.allclose(matched.mean(), content.mean(1).mean(), atol=1e-4)
    assert torch.allclose(matched[:, 0].std(), content.mean(1).std(), atol=1e-4)
    grey = _rand(1, 3, 16, 16, seed=2) * 0.3 + 0.3
    mixed = with_chroma(grey, content)
    assert torch.allclose(_chroma(mixed), _chroma(content), atol=1e-6)
    assert torch.allclose(mixed.mean(1), grey.mean(1), atol=1e-6)


def test_histogram_matching_gives_the_style_the_content_colour_statistics() -> None:
    content = torch.stack([_rand(32, 32) * 0.3 + 0.5, _rand(32, 32, seed=1) * 0.2 + 0.2,
                           _rand(32, 32, seed=2) * 0.1 + 0.1]).unsqueeze(0)  # orange-ish
    style = _rand(1, 3, 40, 24, seed=3) * 0.4 + 0.3
    matched = match_histogram(style, content)
    assert matched.shape == style.shape
    mean = lambda x: x.flatten(2)[0].mean(1)  # noqa: E731
    cov = lambda x: torch.cov(x.flatten(2)[0])  # noqa: E731
    assert torch.allclose(mean(matched), mean(content), atol=2e-3)
    assert torch.allclose(cov(matched), cov(content), atol=2e-4)
    grey = match_histogram(torch.full((1, 3, 8, 8), 0.5), content)  # singular covariance: no NaN
    assert torch.isfinite(grey).all()


def test_histogram_run_recolours_the_style(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    red = _flat(tmp_path / "red.png", (200, 30, 30))
    plain = build_module(compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style={red}"))
    recoloured = build_module(compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style={red}",
                                          "color=histogram"))
    assert torch.allclose(recoloured.style.mean((2, 3)), plain.content.mean((2, 3)), atol=0.02)


# --- several styles --------------------------------------------------------------------------
def test_blended_style_target_is_the_weighted_gram() -> None:
    a, b = _rand(1, 4, 6, 6), _rand(1, 4, 5, 7, seed=1)
    loss = StyleLoss([a, b], "l2", "mean", "chw", blend=[0.7, 0.3])
    assert torch.allclose(loss.target, 0.7 * gram_matrix(a) + 0.3 * gram_matrix(b))
    assert torch.equal(StyleLoss([a], "l2", "mean", "chw").target, StyleLoss(a, "l2", "mean", "chw").target)


def test_two_styles_with_blend_one_zero_equal_the_first_alone(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other = _flat(tmp_path / "blue.png", (20, 40, 220))
    base = [*FAST, f"pair.content={tiny_pair[0]}"]
    alone = build_module(compose_cfg(*base, f"pair.style={tiny_pair[1]}")).build_objective()
    both = build_module(compose_cfg(*base, f"pair.style=[{tiny_pair[1]},{other}]", "style_blend=1.0"))
    assert both.style_blend == [1.0, 0.0] and len(both.styles) == 2
    for layer, loss in both.build_objective().terms["style"].losses.items():
        assert torch.equal(loss.target, alone.terms["style"].losses[layer].target)


def test_style_blend_list_is_normalised_and_runs(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other = _flat(tmp_path / "blue.png", (20, 40, 220))
    cfg = compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style=[{tiny_pair[1]},{other}]",
                      "style_blend=[7,3]", output_dir=tmp_path / "run")
    assert build_module(cfg).style_blend == pytest.approx([0.7, 0.3])
    assert train(cfg)["status"] == "ok"


# --- start image -----------------------------------------------------------------------------
def test_init_image_starts_from_the_picture_resized_to_the_content(tiny_pair: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    start = _flat(tmp_path / "green.png", (10, 200, 60), size=(64, 64))
    for size in (32, 48):  # a rebuild at another size resizes the start image again
        module = build_module(compose_cfg(*FAST, f"image_size={size}", f"pair.content={tiny_pair[0]}",
                                          "init=image", f"init.path={start}"))
        assert module.image.shape == module.content.shape
        assert torch.allclose(module.image, torch.tensor([10, 200, 60]).view(1, 3, 1, 1) / 255, atol=1e-5)


# --- normalised gradients --------------------------------------------------------------------
def test_normalized_gradient_keeps_the_value_and_sets_the_l1_norm_per_image() -> None:
    features = _rand(2, 3, 4, 4).requires_grad_()
    value = (features * torch.tensor([1.0, 50.0]).view(2, 1, 1, 1)).square().flatten(1).sum(1)
    normalized = normalized_gradient(value, features)
    assert torch.equal(normalized, value)
    (normalized * torch.tensor([3.0, 3.0])).sum().backward()
    assert torch.allclose(features.grad.flatten(1).abs().sum(1), torch.tensor([3.0, 3.0]), rtol=1e-5)
    with torch.no_grad():
        assert normalized_gradient(value, features) is value


def test_normalize_gradients_run_reports_the_true_losses(tmp_path: Path) -> None:
    base = [*FAST, "optimizer.line_search_fn=null", "steps=1"]
    plain = build_module(compose_cfg(*base)).evaluate()
    normalized = build_module(compose_cfg(*base, "loss.normalize_gradients=true"))
    assert normalized.evaluate() == pytest.approx(plain)
    assert train(compose_cfg(*base, "steps=3", "loss.normalize_gradients=true", output_dir=tmp_path))["status"] == "ok"


# --- spatial control -------------------------------------------------------------------------
def test_white_mask_gives_the_unguided_loss_and_a_half_mask_only_pulls_its_half() -> None:
    style, features = _rand(1, 4, 6, 6), _rand(2, 4, 8, 8, seed=1).requires_grad_()
    plain = StyleLoss(style, "l2", "mean", "chw")
    white = StyleLoss([style], "l2", "mean", "chw", masks=torch.ones(1, 1, 32, 32))
    assert torch.allclose(white(features), plain(features), rtol=1e-5)
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1
    StyleLoss([style], "l2", "mean", "chw", masks=left)(features).sum().backward()
    assert features.grad[..., 4:].abs().max() == 0 and features.grad[..., :4].abs().max() > 0


def test_masks_put_each_style_in_its_region(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    red, blue = _flat(tmp_path / "red.png", (230, 20, 20)), _flat(tmp_path / "blue.png", (20, 20, 230))
    cfg = compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style=[{red},{blue}]", "init=gray",
                      f"pair.masks=[{','.join(_halves(tmp_path))}]", "layers.style=[relu1_1,relu2_1]",
                      "content_weight=0", "steps=15", "model.weights=random", output_dir=tmp_path / "run")
    module = build_module(cfg)
    assert module.masks.shape == (2, 1, *module.content.shape[-2:])  # resized to the content
    train(cfg)
    final = to_tensor(load_image(tmp_path / "run" / "final.png", "final"))
    half = final.shape[-1] // 2
    redness = (final[:, 0] - final[:, 2]).mean(1)  # (1, W): red minus blue per column
    assert redness[:, :half - 2].mean() > redness[:, half + 2:].mean() + 0.1


# --- bad values ------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, field", [
    (["color=sepia"], "color"),
    (["pair.style=[]"], "pair.style"),
    (["style_blend=0.5"], "style_blend"),
    (["pair.style=[a.jpg,b.jpg]", "style_blend=[1]"], "style_blend"),
    (["pair.style=[a.jpg,b.jpg]", "style_blend=[-1,2]"], "style_blend"),
    (["pair.style=[a.jpg,b.jpg]", "style_blend=[0,0]"], "style_blend"),
    (["pair.style=[a.jpg,b.jpg]", "style_blend=1.5"], "style_blend"),
    (["pair.style=[a.jpg,b.jpg]", "pair.masks=[a.png]"], "pair.masks"),
    (["pair.masks=a.png"], "pair.masks"),
    (["init=image"], "init.path"),
    (["loss.normalize_gradients=maybe"], "loss.normalize_gradients"),
    (["loss.normalize_gradients=true"], "line_search_fn"),
])
def test_bad_control_values_are_one_line_config_errors(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_config(compose_cfg(*FAST, *overrides))
    message = str(error.value)
    assert field in message.split(": ")[0] and "\n" not in message


def test_black_mask_and_missing_files_name_the_field(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    Image.new("L", (8, 8), 0).save(tmp_path / "black.png")
    base = [*FAST, f"pair.content={tiny_pair[0]}", f"pair.style={tiny_pair[1]}"]
    with pytest.raises(ImageError, match=r"pair.masks\[0\]=.*black everywhere"):
        build_module(compose_cfg(*base, f"pair.masks=[{tmp_path / 'black.png'}]"))
    with pytest.raises(ImageError, match=r"pair.style\[1\]=.*no such file"):
        build_module(compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style=[{tiny_pair[1]},nope.jpg]"))
    with pytest.raises(ImageError, match=r"init.path=.*no such file"):
        build_module(compose_cfg(*base, "init=image", "init.path=nope.jpg"))


# --- batched sweeps --------------------------------------------------------------------------
def test_batched_launcher_groups_and_builds_controlled_jobs(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other = _flat(tmp_path / "blue.png", (20, 40, 220))
    start = _flat(tmp_path / "green.png", (10, 200, 60))
    base = [*FAST, f"pair.content={tiny_pair[0]}", f"pair.style=[{tiny_pair[1]},{other}]", "color=luminance",
            f"pair.masks=[{','.join(_halves(tmp_path))}]"]
    cfgs = [compose_cfg(*base, "style_weight=1e4", output_dir=tmp_path),
            compose_cfg(*base, "init=image", f"init.path={start}", output_dir=tmp_path)]
    assert batch_key(cfgs[0]) == batch_key(cfgs[1])  # start image and weights vary within a batch
    other_blend = compose_cfg(*base, "style_blend=0.3", output_dir=tmp_path)
    assert batch_key(other_blend) != batch_key(cfgs[0])  # other targets: another batch
    module = build_batched_module(cfgs)
    assert len(module.styles) == 2 and module.masks.shape[0] == 2 and module.luminance_only
    assert torch.allclose(_chroma(module.image), _chroma(module.content), atol=1e-5)  # both starts: photo chroma
    assert not torch.allclose(module.image[0], module.image[1])  # each job its own start
