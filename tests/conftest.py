"""Shared fixtures: tiny images, composed configs pointed at tmp dirs, random tiny VGG runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, open_dict
from PIL import Image

from nst_exp import CONFIG_DIR
from nst_exp.config import check_config
from nst_exp.config.errors import describe
from nst_exp.errors import ConfigError
from nst_exp.runtime.console import quiet_third_party
from nst_exp.runtime.resolvers import register_resolvers

register_resolvers()
quiet_third_party()
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout: scripts/ live here
CONF_DIR = str(CONFIG_DIR)
# Small and fast: random weights, 32 px, CPU, no W&B unless a test asks for it; the yardstick at 64 px.
FAST = ["model.weights=random", "image_size=32", "steps=4", "trainer=cpu", "logger=none", "callbacks.judge.edge=64",
        "log_every=2", "snapshot_every=2"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip without CUDA (scripts/gpu_check.py runs them where there is one)."""
    if not torch.cuda.is_available():
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test sends SIGINT: a shell's background job (and so
    pytest run as one) inherits SIGINT ignored, and a run rightly leaves it so; give the child
    the default, as a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    """The project's own warning filters, in every test as in every run. (pytest restores the
    filters after collecting, so those installed when conftest or nst_exp.train was imported are gone.)"""
    quiet_third_party()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the network, and W&B never asks for a key."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")


def compose_cfg(*overrides: str, output_dir: Path | None = None) -> DictConfig:
    """The job config for ``overrides``, as ``python -m nst_exp.train`` would see it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def config_error(*overrides: str) -> str:
    """The one line a bad config gets: Hydra's, while composing (an unknown key, a wrong type or
    choice: nst_exp/config/errors.py), or the schema's range check. Fails if the config is fine."""
    try:
        check_config(compose_cfg(*overrides))
    except ConfigCompositionException as error:
        return describe(error)
    except ConfigError as error:
        return str(error)
    raise AssertionError(f"{overrides} passed the config checks")


def run_cli(*args: str, cwd: Path, timeout: int = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nst_exp.train ARGS`` in a subprocess, as a user would."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nst_exp.train", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A 40x30 content image and a 30x40 style image with real structure."""
    content = Image.linear_gradient("L").resize((40, 30)).convert("RGB")
    style = Image.effect_mandelbrot((30, 40), (-2, -1.5, 1, 1.5), 50).convert("RGB")
    paths = tmp_path / "content.png", tmp_path / "style.png"
    content.save(paths[0])
    style.save(paths[1])
    return paths
