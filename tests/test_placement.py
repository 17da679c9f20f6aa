"""Every strategy runs where its ``trainer`` config says (engine/placement.py).

Single, batched and coarse-to-fine jobs get their device from a Lightning Trainer; a tiled job
has none and reads the same config through ``trainer_device``, so ``trainer=gpu`` cannot leave
its tiles on the CPU. A GPU accelerator this machine lacks is a one-line config error for
every strategy (tests/test_bad_input.py has the CLI's side of it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nst_exp.strategies.tiled as tiled
from conftest import FAST, compose_cfg
from nst_exp.config import check_config
from nst_exp.engine.placement import trainer_device
from nst_exp.errors import ConfigError
from nst_exp.train import train

TILED = [*FAST, "optimizer=adam", "image_size=96", "tile_size=48", "tile_overlap=8", "steps=2", "tile_passes=1"]
ABSENT = "mps" if torch.cuda.is_available() else "cuda"  # a GPU kind this machine does not have


def test_the_cpu_and_auto_without_a_gpu_are_the_cpu() -> None:
    assert trainer_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert trainer_device("auto") == torch.device("cpu")


def test_a_gpu_is_the_one_the_devices_list_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer_device("gpu", [2]) == torch.device("cuda", 2)  # a sweep slot's GPU (runtime/devices.py)
    assert trainer_device("cuda", 1) == torch.device("cuda", 0)
    assert trainer_device("auto", "auto") == torch.device("cuda", 0)
    assert trainer_device("cpu", [2]) == torch.device("cpu")


@pytest.mark.parametrize("strategy", [[], ["tile_size=48", "tile_overlap=8", "image_size=96"], ["scales=[32,48]"]])
def test_an_absent_gpu_is_refused_in_one_line(strategy: list[str]) -> None:
    with pytest.raises(ConfigError, match=f"^trainer.accelerator={ABSENT}: torch sees no such device"):
        check_config(compose_cfg(*FAST, *strategy, f"trainer.accelerator={ABSENT}"))


def test_a_tiled_run_refuses_an_accelerator_it_cannot_place() -> None:
    with pytest.raises(ConfigError, match="^trainer.accelerator=tpu: a tiled run"):
        tiled.device_of(compose_cfg(*TILED, "trainer.accelerator=tpu"))


def test_a_tiled_run_places_its_tiles_where_the_trainer_config_says(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, object]] = []

    def spy(accelerator: str = "auto", devices: object = 1) -> torch.device:
        asked.append((accelerator, devices))
        return trainer_device(accelerator, devices)

    monkeypatch.setattr(tiled, "trainer_device", spy)
    summary = train(compose_cfg(*TILED, "trainer.devices=1", output_dir=tmp_path))
    assert asked == [("cpu", 1)] and summary["status"] == "ok"
    assert json.loads((tmp_path / "summary.json").read_text())["peak_gpu_mb"] is None  # the key every run has


@pytest.mark.gpu
def test_a_tiled_run_on_a_gpu_runs_its_tiles_there(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    overrides = [item for item in TILED if item != "trainer=cpu"]
    summary = train(compose_cfg(*overrides, "trainer=gpu", output_dir=tmp_path))
    assert summary["status"] == "ok" and summary["peak_gpu_mb"] > 0
    assert "on cuda:0" in caplog.text
