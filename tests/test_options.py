"""stop_eps early stopping, the final denoise, the gray start and style-only runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import FAST, compose_cfg
from nst_exp.config import check_config
from nst_exp.core.denoise import gaussian_denoise
from nst_exp.core.images import init_image, load_image, to_tensor
from nst_exp.errors import ConfigError
from nst_exp.train import train


def test_stop_eps_ends_a_plateaued_run_and_says_so(tmp_path: Path) -> None:
    # Adam at lr 1e-9 barely moves: the loss is flat, so the first comparison (step 2 x window) stops it.
    cfg = compose_cfg(*FAST, "steps=50", "optimizer=adam", "optimizer.lr=1e-9", "stop_eps=0.01",
                      "callbacks.stopping.window=3", output_dir=tmp_path)
    summary = train(cfg)
    assert summary["status"] == "ok" and summary["stopped_early_at"] == 6 and summary["steps"] == 6
    assert (tmp_path / "final.png").is_file()


def test_stop_eps_zero_runs_every_step(tmp_path: Path) -> None:
    summary = train(compose_cfg(*FAST, "steps=12", output_dir=tmp_path))
    assert summary["steps"] == 12 and summary["stopped_early_at"] is None


def test_denoise_smooths_final_png_only(tmp_path: Path) -> None:
    summary = train(compose_cfg(*FAST, "steps=2", "init=noise", "denoise=1.0", output_dir=tmp_path))
    final = to_tensor(load_image(tmp_path / "final.png", "final"))
    noise = init_image("noise", final, final, torch.Generator().manual_seed(0))
    assert final.diff(dim=-1).abs().mean() < 0.6 * noise.diff(dim=-1).abs().mean()  # neighbours agree more
    assert json.loads((tmp_path / "summary.json").read_text())["final_loss"] == summary["final_loss"]


def test_gaussian_denoise_blends() -> None:
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(gaussian_denoise(image, 0.0), image)
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_denoise(flat, 1.0), flat)  # reflect padding: no dark borders
    half, full = gaussian_denoise(image, 0.5), gaussian_denoise(image, 1.0)
    assert torch.allclose(half, (image + full) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="denoise=1.5"):
        gaussian_denoise(image, 1.5)


@pytest.mark.parametrize("override", ["denoise=1.5", "stop_eps=-0.1"])
def test_bad_option_values_name_the_field(override: str) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        check_config(compose_cfg(*FAST, override))


def test_gray_start_is_low_amplitude_seeded_noise() -> None:
    content = torch.zeros(1, 3, 8, 8)
    gray = init_image("gray", content, content, torch.Generator().manual_seed(1), noise=0.1)
    assert (gray - 0.5).abs().max() <= 0.05 + 1e-6 and gray.std() > 0
    again = init_image("gray", content, content, torch.Generator().manual_seed(1), noise=0.1)
    assert torch.equal(gray, again)


def test_style_only_run_with_no_content_layers(tmp_path: Path) -> None:
    summary = train(compose_cfg(*FAST, "steps=2", "layers.content=[]", "content_weight=0", output_dir=tmp_path))
    assert summary["status"] == "ok" and summary["content_loss"] == 0.0
