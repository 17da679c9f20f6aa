"""The GPU path's CPU-visible parts: precision follows the optimiser, channels_last, compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_cfg

from nst_exp.losses import gram_matrix
from nst_exp.speed import SpeedUps, precision_for
from nst_exp.train import train


@pytest.mark.parametrize(("optimizer", "precision"), [("adam", "bf16-mixed"), ("lbfgs", "32-true")])
def test_gpu_trainer_precision_follows_the_optimizer(optimizer: str, precision: str) -> None:
    cfg = compose_cfg("trainer=gpu", f"optimizer={optimizer}")
    assert cfg.trainer.precision == precision and cfg.trainer.accelerator == "gpu"


def test_lbfgs_is_never_mixed_precision() -> None:
    assert precision_for("torch.optim.LBFGS", "16-mixed") == "32-true"
    assert precision_for("nst_exp.batched_optim.BatchedLBFGS", "bf16-mixed") == "32-true"
    assert precision_for("torch.optim.Adam", "16-mixed") == "16-mixed"


def test_gram_of_channels_last_features_is_the_same_matrix() -> None:
    features = torch.randn(2, 8, 5, 7)
    nhwc = features.contiguous(memory_format=torch.channels_last)
    assert not nhwc.is_contiguous()
    torch.testing.assert_close(gram_matrix(nhwc), gram_matrix(features))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_channels_last_on_cpu_gives_the_same_run(tmp_path: Path, optimizer: str) -> None:
    losses = {}
    for layout in ("false", "true"):
        out = tmp_path / layout
        train(compose_cfg(*FAST, f"optimizer={optimizer}", f"channels_last={layout}", output_dir=out))
        losses[layout] = json.loads((out / "summary.json").read_text())["final_loss"]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)


def test_bad_channels_last_value_is_refused() -> None:
    with pytest.raises(ValueError, match="channels_last='yes'"):
        SpeedUps(channels_last="yes")


@pytest.mark.slow
def test_compiled_extractor_gives_the_same_run(tmp_path: Path) -> None:
    """torch.compile on CPU (inductor, needs a C++ compiler): about a minute of compiling."""
    losses = []
    for compiled in ("false", "true"):
        out = tmp_path / compiled
        train(compose_cfg(*FAST, "optimizer=adam", f"compile={compiled}", output_dir=out))
        losses.append(json.loads((out / "summary.json").read_text())["final_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
