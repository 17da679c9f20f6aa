"""nst-exp installs like a library: a built wheel, not an editable checkout, runs from anywhere.

The wheel is built from this checkout and installed without ``-e`` into a fresh venv. That venv
borrows the test environment's third-party packages through a ``.pth`` line (installing torch
again would need the network), but sees nst-exp only through the wheel: a ``.pth`` line adds a
directory to ``sys.path`` without running the editable install's finder that lives there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(PROJECT_ROOT)], check=True, capture_output=True)
    (built,) = out.glob("nst_exp-*.whl")
    return built


def pip_install(python: Path, *args: str) -> None:
    # no PYTHONPATH: pip would take the checkout's nst_exp.egg-info (left by a build) as installed
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", *args], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": ""})


def borrow_deps(python: Path) -> None:
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ directory."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    pip_install(env_dir / "bin" / "python", str(wheel))
    borrow_deps(env_dir / "bin" / "python")
    return env_dir / "bin"


def test_wheel_ships_configs_and_sample_images(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nst_exp/conf/train.yaml" in names
    assert "nst_exp/conf/experiment/gatys_fig3.yaml" in names
    assert "nst_exp/data/images/content/tubingen.jpg" in names
    assert "nst_exp/data/images/SOURCES.md" in names
    assert "hydra_plugins/nst_batched_launcher/batched_launcher.py" in names


def test_wheel_holds_every_module_and_config_of_the_checkout(wheel: Path) -> None:
    """pyproject lists the packages (conf/ is mapped into nst_exp/conf/): a new one must be listed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(PROJECT_ROOT)) for top in ("nst_exp", "hydra_plugins")
               for p in (PROJECT_ROOT / top).rglob("*.py")}
    configs = {"nst_exp/" + str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "conf").rglob("*.yaml")
               if "local" not in p.parts}
    assert not (modules | configs) - names


def test_installed_wheel_runs_a_job_from_another_directory(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": ""}
    where = subprocess.run([str(installed / "python"), "-c", "import nst_exp; print(nst_exp.__file__)"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    assert str(PROJECT_ROOT) not in where, f"nst_exp came from the checkout: {where}"
    config_dir = subprocess.run([str(installed / "python"), "-c", "import nst_exp; print(nst_exp.CONFIG_DIR)"],
                                cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert config_dir == str(Path(where).parent / "conf")  # the wheel's own copy, not the checkout's conf/
    # A user's own config directory, added in front of the packaged configs.
    mine = tmp_path / "myconf" / "pair"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("content: ${paths.data_dir}/content/chelsea.jpg\n"
                                    "style: ${paths.data_dir}/style/great_wave.jpg\n")
    job = tmp_path / "job"
    result = subprocess.run([str(installed / "nst-train"), "--config-dir", str(tmp_path / "myconf"), "pair=mine",
                             "model.weights=random", "image_size=32", "steps=3", "trainer=cpu", "logger=none",
                             f"hydra.run.dir={job}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "ok" and (job / "final.png").is_file()
    assert "chelsea.jpg" in (job / ".hydra" / "config.yaml").read_text()


def test_an_editable_install_reads_the_checkouts_conf(tmp_path: Path) -> None:
    """`pip install -e .`: the same top-level conf/ a checkout reads (nst_exp/__init__.py)."""
    venv.EnvBuilder(with_pip=False).create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    borrow_deps(python)  # first: the editable build runs setuptools in this venv
    pip_install(python, "--no-build-isolation", "-e", str(PROJECT_ROOT))
    out = subprocess.run([str(python), "-c", "import nst_exp; print(nst_exp.__file__, nst_exp.CONFIG_DIR)"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""}, check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == [str(PROJECT_ROOT / "nst_exp" / "__init__.py"), str(PROJECT_ROOT / "conf")]
