"""Optimisers compared at equal cost (metrics.csv's evals, per-evaluation and per-second loss
plots), and the numerics of the loss (fp32 Grams under bf16 autocast, TV on the image parameter)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import FAST, compose_cfg
from nst_exp.core.augment import RandomAffine
from nst_exp.core.losses import gram_matrix, tv_loss
from nst_exp.core.objective import LossOptions, Seen
from nst_exp.reporting.drawing import loss_plot
from nst_exp.reporting.multirun import grid_of, load_jobs
from nst_exp.reporting.report import LOSS_PLOTS, write_report
from nst_exp.runtime.build import build_module
from nst_exp.train import train
from objectives import from_features


def metrics(job_dir: Path) -> list[dict[str, str]]:
    with open(job_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_metrics_count_every_evaluation(tmp_path: Path, optimizer: str) -> None:
    """Adam: one evaluation per step. L-BFGS: its line search's trials too, the cached re-evaluation not."""
    train(compose_cfg(*FAST, f"optimizer={optimizer}", "steps=6", output_dir=tmp_path))
    evals = [int(row["evals"]) for row in metrics(tmp_path)]
    assert len(evals) == 6
    if optimizer == "adam":
        assert evals == [1, 2, 3, 4, 5, 6]
    else:
        steps = [b - a for a, b in zip([0, *evals], evals)]
        assert all(step >= 1 for step in steps) and evals[-1] > 6  # at least one trial per step, some more


def test_report_plots_loss_per_step_evaluation_and_second(tmp_path: Path) -> None:
    """Two jobs with the same losses per step, one paying 3 evaluations and 3x the time per step:
    the per-step plot overlays them, the per-evaluation and per-second plots separate them."""
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"sweeper": {"params": {"optimizer": "adam,lbfgs"}}, "overrides": {"task": []}}}))
    for num, (name, cost) in enumerate((("adam", 1), ("lbfgs", 3))):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizer={name}"]))
        (job / "summary.json").write_text('{"status": "ok", "final_loss": 1.0, "steps": 4}')
        Image.new("RGB", (40, 30), (200, 40, 40)).save(job / "final.png")
        rows = [f"{s},{10.0 ** (3 - s)},{0.5 * cost * (s + 1)},{cost * (s + 1)}" for s in range(4)]
        (job / "metrics.csv").write_text("step,loss,wall_time_s,evals\n" + "\n".join(rows) + "\n")
    paths = write_report(tmp_path)
    assert all(paths[name].is_file() for name in LOSS_PLOTS)
    grid = grid_of(load_jobs(tmp_path))
    per_step, per_eval = loss_plot(grid, x="step"), loss_plot(grid, x="evals")
    per_second = loss_plot(grid, x="wall_time_s")
    assert per_eval.tobytes() != per_step.tobytes() and per_second.tobytes() != per_step.tobytes()
    report = (tmp_path / "report.md").read_text()
    assert "](losses_evals.png)" in report and "](losses_time.png)" in report


def test_adam_vs_lbfgs_header_points_at_the_fair_plots() -> None:
    from nst_exp import CONFIG_DIR

    header = (Path(CONFIG_DIR) / "experiment" / "adam_vs_lbfgs.yaml").read_text()
    assert "losses_evals.png" in header and "losses_time.png" in header


def test_gram_and_losses_stay_fp32_under_bf16_autocast() -> None:
    """Under autocast the features arrive in bf16; the Gram and the distances must not round to 8 bits."""
    generator = torch.Generator().manual_seed(0)
    style = {"relu1_1": torch.rand(1, 8, 12, 12, generator=generator) + 1}
    content = {"relu2_1": torch.rand(1, 8, 6, 6, generator=generator)}
    loss = from_features(content, style, {"relu2_1": 1.0}, {"relu1_1": 1.0},
                         LossOptions(gram_norm="gatys", reduction="sum"))
    features = {"relu1_1": (style["relu1_1"] * 1.01).bfloat16(), "relu2_1": content["relu2_1"].bfloat16() + 0.1}
    image = torch.rand(1, 3, 24, 24, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = image.bfloat16()
        parts = loss(Seen(features, low, low))
        assert gram_matrix(features["relu1_1"]).dtype == torch.float32
    assert all(value.dtype == torch.float32 for value in parts.values())
    exact_image = image.bfloat16().float()
    exact = loss(Seen({k: v.float() for k, v in features.items()}, exact_image, exact_image))
    for key in parts:
        torch.testing.assert_close(parts[key], exact[key], rtol=1e-5, atol=0)
    # what a bf16 Gram would have given: the small difference of large entries is lost
    bf16_gram = torch.bmm(features["relu1_1"].flatten(2), features["relu1_1"].flatten(2).transpose(1, 2))
    assert not torch.allclose(bf16_gram.float() / (2 * 8 * 144), gram_matrix(features["relu1_1"], "gatys"),
                              rtol=1e-3)


def test_tv_is_taken_on_the_image_parameter_not_the_warped_crop(tmp_path: Path) -> None:
    module = build_module(compose_cfg(*FAST, "augment=fv", "augment.strength=2", "tv_weight=3",
                                      output_dir=tmp_path))
    assert isinstance(module.augment, RandomAffine)
    warp = module.augment.sample(*module.image.shape[-2:])
    with torch.no_grad():
        parts = module.components(module.image, warp)
        crop = module.augment(module.image, warp)
    torch.testing.assert_close(parts["tv_loss"], 3 * tv_loss(module.image))
    assert crop.shape[-1] < module.image.shape[-1]  # the network saw a smaller crop
