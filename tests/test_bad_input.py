"""Bad input: one line naming the field and the value, exit status 2, nothing half-written.

Most cases run in process (compose + ``task_wrapper(train)``, as ``main`` does); a few go
through the real CLI for the exit-code / stderr contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from PIL import Image

from conftest import CONF_DIR, FAST, compose_cfg, run_cli
from nst_exp.core.features import VGGFeatures, min_input_size
from nst_exp.core.weights import random_state_dict
from nst_exp.runtime.build import build_module
from nst_exp.runtime.task import EXIT_USER_ERROR, SweepOutcome, task_wrapper
from nst_exp.train import train

# Each case: (id, make(tmp) -> (overrides, [strings the one line must contain])). Wrong types and
# unknown names (steps=many, clamp=sometimes) fail while Hydra composes: tests/test_choices.py.
Case = Callable[[Path], tuple[list[str], list[str]]]


def _image(tmp: Path, name: str, size: tuple[int, int] = (40, 30)) -> Path:
    path = tmp / name
    Image.effect_mandelbrot(size, (-2, -1.5, 1, 1.5), 30).convert("RGB").save(path)
    return path


def _truncated_jpeg(tmp: Path) -> Path:
    path = tmp / "cut.jpg"
    Image.effect_noise((64, 64), 60).convert("RGB").save(path, quality=95)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _weights(tmp: Path, name: str, obj: object, cut: bool = False) -> Path:
    path = tmp / name
    torch.save(obj, path)
    if cut:
        path.write_bytes(path.read_bytes()[:1000])
    return path


def _text(tmp: Path) -> Path:
    path = tmp / "notes.png"
    path.write_text("not an image\n")
    return path


def _file(tmp: Path) -> Path:
    path = tmp / "a_file"
    path.write_text("x")
    return path


CASES: dict[str, Case] = {
    "content missing": lambda t: ([f"pair.content={t}/nope.jpg"], ["pair.content=", "nope.jpg", "no such file"]),
    "style missing": lambda t: ([f"pair.style={t}/gone.png"], ["pair.style=", "gone.png", "no such file"]),
    "content is a directory": lambda t: ([f"pair.content={t}"], ["pair.content=", str(t), "directory"]),
    "style not an image": lambda t: ([f"pair.style={_text(t)}"], ["pair.style=", "notes.png", "not a readable image"]),
    "truncated jpeg": lambda t: ([f"pair.content={_truncated_jpeg(t)}"],
                                 ["pair.content=", "cut.jpg", "Truncated File Read"]),
    "1x1 content": lambda t: ([f"pair.content={_image(t, 'dot.png', (1, 1))}"],
                              ["pair.content=", "dot.png", "1x1 px", "at least 16x16", "relu5_1"]),
    "too small after resize": lambda t: (["image_size=12"], ["pair.content=", "image_size=12", "at least 16x16"]),
    "style sliver": lambda t: ([f"pair.style={_image(t, 'sliver.png', (300, 3))}"],
                               ["pair.style=", "sliver.png", "300x3 px", "at least 16x16"]),
    "decompression bomb": lambda t: (["max_image_pixels=100"], ["pair.content=", "1200 pixels",
                                                                "max_image_pixels=100", "max_image_pixels=null"]),
    "unknown layer": lambda t: (["layers.style=[relu1_1,relu9_9]"], ["layers.style=", "relu9_9", "valid layers",
                                                                    "conv1_1", "pool5"]),
    "empty layer sets": lambda t: (["layers.content=[]", "layers.style=[]"], ["layers.content=[]", "layers.style=[]"]),
    "negative layer weight": lambda t: (["+layers.style_weights.relu1_1=-1"], ["layers.style_weights=", "-1"]),
    "negative style_weight": lambda t: (["style_weight=-1"], ["style_weight=-1", ">= 0"]),
    "nan content_weight": lambda t: (["content_weight=nan"], ["content_weight=nan", "finite"]),
    "inf tv_weight": lambda t: (["tv_weight=inf"], ["tv_weight=inf", "finite"]),
    "steps zero": lambda t: (["steps=0"], ["steps=0", "integer >= 1"]),
    "image_size negative": lambda t: (["image_size=-5"], ["image_size=-5", "integer >= 1"]),
    "negative lr": lambda t: (["optimizer.lr=-1"], ["optimizer.lr=-1", "> 0"]),
    "style_scale zero": lambda t: (["style_scale=0"], ["style_scale=0", "> 0"]),
    "caffe weights on vgg16": lambda t: (["model=vgg16", "model.weights=caffe"], ["model.weights=caffe", "vgg16"]),
    "weights missing": lambda t: ([f"model.weights={t}/vgg.pth"], ["model.weights=", "vgg.pth", "no such file"]),
    "weights truncated": lambda t: ([f"model.weights={_weights(t, 'cut.pth', random_state_dict('vgg19', 0), True)}"],
                                    ["model.weights=", "cut.pth", "not a loadable plain state dict", "truncated"]),
    "weights wrong arch": lambda t: (["model=vgg16",
                                      f"model.weights={_weights(t, 'v19.pth', random_state_dict('vgg19', 0))}"],
                                     ["model.weights=", "v19.pth", "do not fit vgg16", "missing features.17.weight",
                                      "features.19.weight has shape (512, 256, 3, 3), vgg16 needs (512, 512, 3, 3)"]),
    "weights a pickled module": lambda t: ([f"model.weights={_weights(t, 'net.pth', torch.nn.Conv2d(3, 64, 3))}"],
                                           ["model.weights=", "net.pth", "not a plain state dict",
                                            "weights_only=True"]),
    "weights not tensors": lambda t: ([f"model.weights={_weights(t, 'meta.pth', {'epoch': 3})}"],
                                      ["model.weights=", "meta.pth", "not a state dict of tensors"]),
    "output dir under a file": lambda t: ([], ["paths.output_dir=", "a_file", "is a file"]),
    "absent gpu": lambda t: ([f"trainer.accelerator={'mps' if torch.cuda.is_available() else 'cuda'}"],
                            ["trainer.accelerator=", "torch sees no such device", "trainer=cpu"]),
    "divergence restarts": lambda t: (["callbacks.divergence.restarts=-1"], ["callbacks.divergence.restarts=-1"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_exit_2_and_nothing_half_written(
        case: str, tmp_path: Path, tiny_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    overrides, expected = CASES[case](tmp_path)
    job = _file(tmp_path) / "sub" if case == "output dir under a file" else tmp_path / "job"
    cfg = compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style={tiny_pair[1]}", *overrides,
                      output_dir=job)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        task_wrapper(train)(cfg)
    assert exit_info.value.code == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if case == "output dir under a file":
        assert not job.exists()
        return
    # no image, no metrics, no temp files (.lock: the job dir's owner, runtime/jobdir.py)
    assert sorted(p.name for p in job.iterdir()) == [".lock", "summary.json"]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "failed: " + lines[0].removeprefix("error: ")
    assert summary["final_loss"] is None and summary["image"] is None


def test_at_least_twenty_distinct_bad_inputs() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("layers", "size"), [(["relu1_1"], 1), (["conv2_1"], 2), (["pool2"], 4),
                                              (["relu4_2"], 8), (["relu1_1", "relu5_1"], 16), (["pool5"], 32)])
def test_min_input_size_is_two_to_the_poolings(layers: list[str], size: int) -> None:
    assert min_input_size("vgg19", layers)[0] == size
    net = VGGFeatures("vgg19", layers, random_state_dict("vgg19", 0), torch.nn.Identity())
    net(torch.rand(1, 3, size, size + 7))  # the minimum works (any width above it too)
    if size > 1:
        with pytest.raises(RuntimeError):
            net(torch.rand(1, 3, size - 1, size - 1))


def _odd(tmp: Path, mode: str) -> Path:
    rgb = np.asarray(Image.effect_mandelbrot((40, 30), (-2, -1.5, 1, 1.5), 30).convert("RGB"))
    if mode == "I;16":
        img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode == "P":
        img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode == "RGBA":
        img = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    else:
        img = Image.fromarray(rgb).convert(mode)
    path = tmp / f"odd_{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_odd_modes_work_through_the_build_path(tmp_path: Path, tiny_pair: tuple[Path, Path], mode: str) -> None:
    path = _odd(tmp_path, mode)
    module = build_module(compose_cfg(*FAST, f"pair.content={path}", f"pair.style={path}"))
    for image in (module.content, module.style):
        assert image.shape == (1, 3, 24, 32) and image.min() >= 0 and image.max() <= 1 and image.std() > 0.05
    if mode in ("L", "I;16"):
        assert torch.equal(module.content[:, 0], module.content[:, 1])  # grey stays grey


def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), "white")
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # viewer rotates 90 degrees clockwise: 20 wide, 40 tall, red on top
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    module = build_module(compose_cfg(*FAST, f"pair.content={tmp_path / 'rot.jpg'}", "image_size=40"))
    content = module.content[0]
    assert content.shape == (3, 40, 20)
    assert content[0, :8].mean() > 0.9 and content[1, :8].mean() < 0.2  # the top rows are red


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_hydra_dir_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """Hydra creates the run/sweep dir before any job code: the registered callback checks it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        callbacks = compose("train", return_hydra_config=True).hydra.callbacks
    assert callbacks.outcome._target_ == "nst_exp.runtime.task.SweepOutcome"
    path = _file(tmp_path) / kind
    hook = SweepOutcome().on_run_start if kind == "run" else SweepOutcome().on_multirun_start
    with pytest.raises(SystemExit) as exit_info:
        hook(OmegaConf.create({"hydra": {kind: {"dir": str(path)}}}))
    assert exit_info.value.code == EXIT_USER_ERROR
    expected = f"error: hydra.{kind}.dir='{path}': cannot create it, {path.parent} is a file"
    assert capsys.readouterr().err.strip() == expected
    assert not path.exists()


@pytest.mark.parametrize(("override", "options"), [("optimizer=rmsprop", ["adam", "lbfgs", "sgd"]),
                                                   ("loss=huber", ["l1", "l2"]),
                                                   ("init=zeros", ["content", "noise", "style"])])
def test_unknown_config_choice_lists_the_options(override: str, options: list[str]) -> None:
    """compose() raises Hydra's error; the CLI turns it into one line, exit 2 (test_choices.py)."""
    with pytest.raises(MissingConfigException) as error:
        compose_cfg(override)
    group, choice = override.split("=")
    message = str(error.value)
    assert f"Could not find '{group}/{choice}'" in message and f"Available options in '{group}'" in message
    assert all(f"\t{option}\n" in message + "\n" for option in options), message


# --- the real CLI: exit status, stderr, no traceback ---------------------------------------
def test_cli_missing_image_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli(*FAST, f"pair.style={tmp_path}/missing.jpg", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: pair.style='{tmp_path}/missing.jpg': no such file"
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(p.name for p in run.iterdir()) == [".hydra", ".lock", "summary.json", "train.log"]
    assert "no such file" in (run / "train.log").read_text()
