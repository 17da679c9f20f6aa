"""The knobs the seed recipes need: lr schedules, SGD and MXNet's SGD, gradient clipping, the
image-change stop test, summed layer weights, L1 TV on the network's input, stretched styles,
MXNet's 0-256 input, TV-Chambolle on saved images; bad values refused, unbatchable ones too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import FAST, compose_cfg, config_error
from nst_exp.core.images import load_image, load_pair, to_tensor
from nst_exp.core.losses import tv_loss
from nst_exp.core.mxnet_sgd import MXNetSGD
from nst_exp.core.objective import LossOptions, Seen
from nst_exp.core.weights import CaffePreprocess
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_module, build_trainer
from nst_exp.strategies.batched.batch import Job, train_batch
from nst_exp.train import train
from objectives import from_features


def fit(tmp_path: Path, *overrides: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Build and fit a tiny run in-process (no callbacks); return the module and its optimiser."""
    cfg = compose_cfg(*FAST, *overrides, output_dir=tmp_path)
    module = build_module(cfg)
    trainer = build_trainer(cfg.trainer, logger=False, enable_progress_bar=False)
    trainer.fit(module)
    return module, trainer.optimizers[0]


@pytest.mark.parametrize("scheduler, options, lr", [
    ("step", ["scheduler.step_size=2", "scheduler.gamma=0.5"], 0.1 * 0.5**2),  # 4 steps: two decays
    ("exponential", ["scheduler.gamma=0.5"], 0.1 * 0.5**4),
    ("none", [], 0.1),
])
def test_schedulers_step_once_per_optimiser_step(tmp_path: Path, scheduler: str, options: list[str],
                                                  lr: float) -> None:
    _, optimizer = fit(tmp_path, "optimizer=adam", "optimizer.lr=0.1", f"scheduler={scheduler}", *options)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)


def test_mxnet_sgd_is_mxnets_update_in_its_pixel_units() -> None:
    """mom = m*mom - lr*(clip(g) + wd*img); img += mom, with img = 256 x - mean; lr changes
    between steps do not rescale the velocity (torch's SGD would)."""
    x = torch.full((1, 3, 1, 2), 0.25, requires_grad=True)
    mean = torch.tensor([100.0, 110.0, 120.0]).view(1, 3, 1, 1)
    optimizer = MXNetSGD([x], lr=0.1, momentum=0.9, wd=0.01, clip_gradient=2.0, pixel_max=256.0,
                         mean=[100.0, 110.0, 120.0])
    img, mom = (x.detach() * 256 - mean), torch.zeros_like(x)
    for step, (grad_img, lr) in enumerate([(torch.tensor(5.0), 0.1), (torch.tensor(-1.0), 0.05)]):
        optimizer.param_groups[0]["lr"] = lr
        x.grad = torch.full_like(x, float(grad_img) * 256)  # dL/dx = 256 dL/dimg
        optimizer.step()
        mom = 0.9 * mom - lr * (grad_img.clamp(-2, 2) + 0.01 * img)
        img = img + mom
        assert torch.allclose(x.detach() * 256 - mean, img, atol=1e-4), step
    x.grad = torch.zeros_like(x)
    optimizer.param_groups[0]["lr"] = 1.0
    for _ in range(300):  # weight decay alone pulls toward the mean pixel, not toward black
        optimizer.step()
    assert torch.allclose(x.detach(), mean / 256, atol=0.02)


def test_sgd_and_mxnet_sgd_runs(tmp_path: Path) -> None:
    for name in ("sgd", "mxnet_sgd"):
        summary = train(compose_cfg(*FAST, f"optimizer={name}", "optimizer.lr=1e-3", output_dir=tmp_path / name))
        assert summary["status"] == "ok" and summary["steps"] == 4


def test_grad_clip_bounds_each_pixels_step(tmp_path: Path) -> None:
    """SGD lr 1, no momentum: each pixel moves by at most lr * grad_clip per step."""
    module, _ = fit(tmp_path, "optimizer=sgd", "optimizer.lr=1.0", "optimizer.momentum=0.0", "grad_clip=1e-4",
                    "steps=2", "clamp=end")
    moved = (module.image.detach() - module.content).abs()
    assert 0 < moved.max() <= 2e-4 + 1e-7


def test_stop_on_image_change_is_mxnets_test(tmp_path: Path) -> None:
    cfg = compose_cfg(*FAST, "steps=20", "optimizer=adam", "optimizer.lr=1e-9", "stop_eps=0.01", "stop_on=image",
                      "callbacks.stopping.window=1", "callbacks.stopping.center=[0.5,0.5,0.5]", output_dir=tmp_path)
    summary = train(cfg)
    assert summary["stopped_early_at"] == 1 and summary["steps"] == 1  # step 1 against the start image
    moving = train(compose_cfg(*FAST, "steps=3", "optimizer=adam", "optimizer.lr=0.05", "stop_eps=1e-6",
                               "stop_on=image", output_dir=tmp_path / "moving"))
    assert moving["stopped_early_at"] is None and moving["steps"] == 3


def test_layers_normalize_false_keeps_weights_as_given() -> None:
    module = build_module(compose_cfg(*FAST, "layers.normalize=false", "+layers.style_weights.relu1_1=3"))
    assert module.style_layers == {"relu1_1": 3.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 1.0}
    summed = build_module(compose_cfg(*FAST))
    assert sum(summed.style_layers.values()) == pytest.approx(1.0)


def test_l1_tv_and_tv_of_the_network_input() -> None:
    image = torch.zeros(1, 1, 2, 3)
    image[..., 2] = 1.0
    assert tv_loss(image, "l1").item() == pytest.approx(2 / 4) and tv_loss(2 * image, "l1").item() == pytest.approx(1)
    x = torch.rand(1, 3, 5, 6)
    double = from_features({}, {}, {}, {}, LossOptions(tv_norm="l1"), tv_input=torch.nn.Identity())
    assert double(Seen({}, x, x))["tv_loss"].item() == pytest.approx(tv_loss(x, "l1").item())
    scaled = from_features({}, {}, {}, {}, LossOptions(tv_norm="l1"), tv_input=CaffePreprocess(scale=2.0))
    assert scaled(Seen({}, x, x))["tv_loss"].item() == pytest.approx(255 / 2 * tv_loss(x, "l1").item(), rel=1e-5)


def test_network_tv_space_goes_through_the_extractors_preprocess() -> None:
    module = build_module(compose_cfg(*FAST, "loss.tv_space=network", "tv_weight=1"))
    objective = module.build_objective()
    assert objective.terms["tv"].tv_input is module.extractor.preprocess


def test_style_stretched_to_the_content_and_mxnets_256_scale(tiny_pair: tuple[Path, Path]) -> None:
    content, style = load_pair(str(tiny_pair[0]), str(tiny_pair[1]), image_size=20, style_scale="content")
    assert content.shape == style.shape == (1, 3, 15, 20)
    assert torch.allclose(style, to_tensor(load_image(tiny_pair[1], "s").resize((20, 15), 1)), atol=1 / 255)
    white = torch.ones(1, 3, 1, 1)
    assert CaffePreprocess(scale=1.0, pixel_max=256.0)(white).flatten().tolist() == \
        pytest.approx([256 - 103.939, 256 - 116.779, 256 - 123.68])


def test_chambolle_denoise_of_final_and_snapshots(tmp_path: Path) -> None:
    train(compose_cfg(*FAST, "steps=2", "init=noise", "denoise=0.2", "denoise_method=chambolle",
                      "callbacks.snapshots.denoise=0.2", output_dir=tmp_path))
    noise = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    for path in (tmp_path / "final.png", tmp_path / "snapshots" / "step_000002.png"):
        image = to_tensor(load_image(path, "image"))
        assert image.diff(dim=-1).abs().mean() < 0.5 * noise.diff(dim=-1).abs().mean()


@pytest.mark.parametrize("override, message", [
    ("loss.tv_norm=l3", "loss.tv_norm='l3'"), ("loss.tv_space=input", "loss.tv_space='input'"),
    ("stop_on=time", "stop_on='time'"), ("denoise_method=median", "denoise_method='median'"),
    ("layers.normalize=sometimes", "layers.normalize='sometimes'"), ("model.pixel_max=0", "model.pixel_max=0"),
    ("grad_clip=-1", "grad_clip=-1"), ("optimizer.clip_gradient=0", "optimizer.clip_gradient=0"),
    ("scheduler.gamma=0", "scheduler.gamma=0"), ("scheduler.step_size=0", "scheduler.step_size=0"),
    ("optimizer.momentum=1.5", "optimizer.momentum=1.5"), ("optimizer.wd=-1", "optimizer.wd=-1"),
    ("style_scale=fit", "style_scale='fit'"),
])
def test_bad_recipe_values_are_refused(override: str, message: str) -> None:
    extra = ["optimizer=mxnet_sgd", "scheduler=step"] if not override.startswith("optimizer.momentum") \
        else ["optimizer=sgd", "scheduler=step"]
    assert message in config_error(*FAST, *extra, override)


@pytest.mark.parametrize("override, message", [("scheduler=step", "scheduler._target_="),
                                               ("grad_clip=0.1", "grad_clip=0.1")])
def test_batched_launcher_refuses_what_it_cannot_batch(tmp_path: Path, override: str, message: str) -> None:
    cfgs = [compose_cfg(*FAST, "optimizer=adam", override, output_dir=tmp_path / str(n)) for n in range(2)]
    with pytest.raises(ConfigError, match=f"{message}.*cannot be batched"):
        train_batch([Job(cfg, [], []) for cfg in cfgs])
