"""The yardstick: image scores (SSIM, colour distance) and JudgeScore's independence from the run."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.utils import instantiate

from conftest import FAST, compose_cfg
from nst_exp.config import check_config
from nst_exp.core.metrics import HIST_BINS, color_distance, ssim
from nst_exp.engine.judge import JUDGE_KEYS, JudgeScore
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_module


def test_ssim_is_one_for_the_same_image_and_falls_with_damage() -> None:
    image = torch.rand(1, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    noisy = (image + 0.2 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(image, image).item() == pytest.approx(1.0)
    assert 0 < ssim(noisy, image).item() < 0.9
    assert ssim(1 - image, image).item() < ssim(noisy, image).item()
    assert ssim(torch.stack([image[0], noisy[0]]), image).shape == (2,)  # one score per image
    tiny = torch.rand(1, 3, 6, 8)
    assert ssim(tiny, tiny).item() == pytest.approx(1.0)  # smaller than the 11 px window


def test_color_distance_is_zero_for_the_same_palette_and_one_for_black_against_white() -> None:
    image = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(0))
    shuffled = image.flatten(2)[..., torch.randperm(1200)].reshape(1, 3, 20, 60)  # other size, same colours
    assert color_distance(image, shuffled).item() == pytest.approx(0.0)
    black, white = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 16, 16)
    assert color_distance(black, white).item() == pytest.approx((HIST_BINS - 1) / HIST_BINS)
    assert color_distance(image * 0.9, image).item() < color_distance(image * 0.5, image).item()


def judge_scores(*overrides: str) -> dict[str, float | None]:
    cfg = compose_cfg(*FAST, *overrides)
    module = build_module(cfg)
    judge: JudgeScore = instantiate(cfg.callbacks.judge)
    return judge.score(module)


def test_judge_scores_do_not_depend_on_the_runs_weights_layers_or_loss() -> None:
    """Same image (the content init), different objectives: the same yardstick."""
    default = judge_scores()
    assert set(default) == set(JUDGE_KEYS) and all(isinstance(v, float) for v in default.values())
    other = judge_scores("style_weight=1e2", "content_weight=7", "layers=tutorial", "loss=l1",
                         "model.pooling=avg", "seed=3")
    assert other == pytest.approx(default)
    assert default["judge_ssim"] == pytest.approx(1.0)  # the content init is the content image
    assert default["judge_content"] == pytest.approx(0.0, abs=1e-9)


def test_judge_loss_is_the_default_objective() -> None:
    """Under the shipped default objective, judge_loss is the run's own loss."""
    cfg = compose_cfg(*FAST, "init=noise")
    module = build_module(cfg)
    judge: JudgeScore = instantiate(cfg.callbacks.judge)
    assert judge.score(module)["judge_loss"] == pytest.approx(module.evaluate()["loss"], rel=1e-5)


@pytest.mark.parametrize(("overrides", "message"), [
    (["optimized_metric=judge_nope"], "optimized_metric=judge_nope: no such yardstick score"),
    (["optimized_metric=judge_ssim", "callbacks.judge=null"], "optimized_metric=judge_ssim: needs the yardstick"),
    (["optimized_metric="], "optimized_metric='': must be a summary.json key"),
])
def test_optimized_metric_is_checked(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(compose_cfg(*FAST, *overrides))
    check_config(compose_cfg(*FAST, "optimized_metric=judge_color"))
