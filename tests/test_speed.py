"""Speed knobs: precision follows the optimiser (bf16 on CPUs that have it), channels_last, compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import FAST, compose_cfg, config_error
from nst_exp.core.losses import gram_matrix
from nst_exp.engine.speed import native_bf16, precision_for
from nst_exp.train import train


@pytest.mark.parametrize(("optimizer", "precision"), [("adam", "bf16-mixed"), ("lbfgs", "32-true")])
def test_gpu_trainer_precision_follows_the_optimizer(optimizer: str, precision: str) -> None:
    cfg = compose_cfg("trainer=gpu", f"optimizer={optimizer}")
    assert cfg.trainer.precision == precision and cfg.trainer.accelerator == "gpu"


def test_lbfgs_is_never_mixed_precision() -> None:
    assert precision_for("torch.optim.LBFGS", "16-mixed") == "32-true"
    assert precision_for("nst_exp.core.lbfgs.ImageLBFGS", "bf16-mixed") == "32-true"
    assert precision_for("torch.optim.Adam", "16-mixed") == "16-mixed"


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu"])
def test_top_level_precision_overrides_the_trainer_for_adam_only(trainer: str) -> None:
    assert compose_cfg(f"trainer={trainer}", "optimizer=adam", "precision=16-mixed").trainer.precision == "16-mixed"
    assert compose_cfg(f"trainer={trainer}", "optimizer=lbfgs", "precision=16-mixed").trainer.precision == "32-true"
    default = "bf16-mixed" if trainer == "gpu" else "32-true"
    assert compose_cfg(f"trainer={trainer}", "optimizer=adam").trainer.precision == default


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for has_bf16 in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=has_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=has_bf16: v, raising=False)
        assert native_bf16("cpu") is has_bf16
        cfg = compose_cfg("trainer=cpu", "optimizer=adam", "precision=auto")
        assert cfg.trainer.precision == ("bf16-mixed" if has_bf16 else "32-true")
    assert precision_for("torch.optim.LBFGS", "auto", "cpu") == "32-true"


@pytest.mark.slow  # emulated bf16 on most CPUs, > 10 s
def test_bf16_on_cpu_runs_adam_to_the_fp32_loss(tmp_path: Path) -> None:
    """bf16 autocast on the CPU (oneDNN; AMX where the CPU has it, emulated elsewhere): the steps
    run in bf16, the final loss is measured in fp32 and lands where the fp32 run's does."""
    summaries = {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / precision
        train(compose_cfg(*FAST, "optimizer=adam", "steps=20", f"precision={precision}", output_dir=out))
        summaries[precision] = json.loads((out / "summary.json").read_text())
    assert summaries["bf16-mixed"]["precision"] == "bf16-mixed" and summaries["32-true"]["precision"] == "32-true"
    first = summaries["32-true"]["final_loss"]
    # rel 0.05: bf16 keeps 8 bits of mantissa (AMX or emulated alike); 20 Adam steps land within
    # a few percent of fp32, a broken autocast (no steps, NaN) far outside.
    assert summaries["bf16-mixed"]["final_loss"] == pytest.approx(first, rel=0.05)
    assert summaries["bf16-mixed"]["final_loss"] != first  # the steps really ran in bf16


def test_gram_of_channels_last_features_is_the_same_matrix() -> None:
    features = torch.randn(2, 8, 5, 7)
    nhwc = features.contiguous(memory_format=torch.channels_last)
    assert not nhwc.is_contiguous()
    torch.testing.assert_close(gram_matrix(nhwc), gram_matrix(features))


@pytest.mark.slow  # two runs per optimiser; no gain on CPU, auto turns it on for CUDA only
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_channels_last_on_cpu_gives_the_same_run(tmp_path: Path, optimizer: str) -> None:
    losses = {}
    for layout in ("false", "true"):
        out = tmp_path / layout
        train(compose_cfg(*FAST, f"optimizer={optimizer}", f"channels_last={layout}", output_dir=out))
        losses[layout] = json.loads((out / "summary.json").read_text())["final_loss"]
    # rel 1e-3: NHWC and NCHW run other convolution kernels, whose rounding differs by CPU (AMX or
    # not, oneDNN's choice); L-BFGS amplifies it: 1.2e-4 measured on a CI machine, < 1e-5 on another.
    # A wrong layout (channels mixed up) is off by tens of percent.
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)


def test_bad_channels_last_value_is_refused() -> None:
    """By the config's one check (nst_exp/config/schema.py); SpeedUps trusts it."""
    assert config_error(*FAST, "channels_last=yes") == "channels_last='yes': must be auto, true or false"


@pytest.mark.slow
def test_compiled_extractor_gives_the_same_run(tmp_path: Path) -> None:
    """torch.compile on CPU (inductor, needs a C++ compiler): about a minute of compiling."""
    losses = []
    for compiled in ("false", "true"):
        out = tmp_path / compiled
        train(compose_cfg(*FAST, "optimizer=adam", f"compile={compiled}", output_dir=out))
        losses.append(json.loads((out / "summary.json").read_text())["final_loss"])
    # rel 1e-3: inductor fuses and reorders the float sums (other kernels, as for channels_last),
    # so the runs are close on every CPU, not bit-identical; a miscompiled extractor is off by far more.
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


def test_deterministic_runs_skip_the_nan_fill_of_new_tensors(tmp_path: Path) -> None:
    """deterministic=true keeps deterministic kernels but not the NaN fill of torch.empty (3% at 512 px)."""
    torch.utils.deterministic.fill_uninitialized_memory = True
    train(compose_cfg(*FAST, "deterministic=true", output_dir=tmp_path))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False


def test_bf16_where_it_would_be_emulated_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    train(compose_cfg(*FAST, "optimizer=adam", "steps=2", "precision=bf16-mixed", output_dir=tmp_path))
    assert "bf16 is emulated and slower than fp32 here; precision=auto" in caplog.text
