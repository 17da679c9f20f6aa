"""Coarse-to-fine scales and tiled optimisation, end to end (strategies/pyramid.py, tiling.py)."""

from __future__ import annotations

import csv
import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST, compose_cfg, config_error, run_cli
from nst_exp.config import check_config
from nst_exp.core.tiles import tile_grid
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_module
from nst_exp.strategies import tiled as tiling
from nst_exp.strategies.pyramid import scale_config
from nst_exp.train import train

# 64 px and up: mkldnn's multi-threaded backward is bit-reproducible there (see test_resume.py)
SCALES = [*FAST, "optimizer=lbfgs", "scales=[64,96]", "steps_per_scale=[3,6]", "checkpoint_every=2",
          "snapshot_every=2"]
TILED = [*FAST, "optimizer=adam", "image_size=96", "tile_size=48", "tile_overlap=8", "steps=2", "tile_passes=2"]


def read_rows(job_dir: Path) -> list[dict[str, str]]:
    with open(job_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("overrides", "message"), [
    (["scales=[512,256]"], r"scales=\[512,256\]: must be a list of increasing integers >= 16"),
    (["scales=[8]"], r"scales=\[8\]: must be"),
    (["scales=256"], "scales=256: expected a list"),  # a wrong type: Hydra's, while composing
    (["steps_per_scale=[10]"], r"steps_per_scale=\[10\]: needs scales"),
    (["scales=[64,128]", "steps_per_scale=[10]"], r"steps_per_scale=\[10\]: must be 2 integers >= 1"),
    (["scales=[64,128]", "steps_per_scale=[10,0]"], r"steps_per_scale=\[10,0\]: must be 2 integers"),
    (["tile_size=16"], "tile_size=16: must be an integer >= 32"),
    (["tile_overlap=-1"], "tile_overlap=-1: must be"),
    (["tile_passes=0"], "tile_passes=0: must be an integer >= 1"),
    (["scale_detail=2"], r"scale_detail=2: must be a number in \[0, 1\]"),
    (["scale_detail=true"], "scale_detail=True: expected a number"),
])
def test_bad_values_are_one_line_config_errors(overrides: list[str], message: str) -> None:
    line = config_error(*FAST, *overrides)
    assert re.search(message, line) and "\n" not in line, line


def test_overlap_must_be_under_half_the_tile() -> None:
    with pytest.raises(ConfigError, match="tile_overlap=32: must be an integer >= 0 and under half of tile_size=64"):
        check_config(compose_cfg(*FAST, "tile_size=64", "tile_overlap=32"))


@pytest.mark.parametrize(("overrides", "message"), [
    (["pair.style=[a.jpg,b.jpg]"], r"^pair.style=\[a.jpg,b.jpg\]: several styles cannot be combined with tile_size=64"),
    (["pair.style=[a.jpg,b.jpg]", "+pair.masks=[a.png,b.png]"], r"^pair.style="),
    (["+pair.masks=[a.png]"], r"^pair.masks=\[a.png\]: masks cannot be combined with tile_size=64"),
    (["color=luminance"], r"^color='luminance': color=luminance cannot be combined with tile_size=64"),
    (["augment=fv"], r"^augment='nst_exp.core.augment.\w+': augmentation cannot be combined with tile_size=64"),
    (["+callbacks.mine._target_=my.Callback"],
     r"^callbacks.mine._target_='my.Callback': a callback of your own cannot be combined with tile_size=64"),
])
def test_what_tiles_do_not_do_is_refused_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        check_config(compose_cfg(*FAST, "tile_size=64", "tile_overlap=8", *overrides))
    assert "\n" not in str(error.value)
    check_config(compose_cfg(*FAST, *overrides[:1]))  # fine without tiling


def test_scale_config_carries_the_scale(tmp_path: Path) -> None:
    cfg = compose_cfg(*SCALES, "logger=wandb", "tags=[a]", output_dir=tmp_path)
    scale = scale_config(cfg, 96, 6, last=True)
    assert scale.image_size == 96 and scale.steps == 6 and scale.trainer.max_steps == 6
    assert scale.paths.output_dir == str(tmp_path / "scale_96")
    assert scale.callbacks.metrics.output_dir.endswith("scale_96")
    assert list(scale.tags) == ["a", "scale:96"] and scale.logger.wandb.name.endswith("@96px")
    assert scale.scales is None


def test_each_scale_starts_from_the_previous_result(tmp_path: Path) -> None:
    summary = train(compose_cfg(*SCALES, output_dir=tmp_path))
    assert summary["status"] == "ok" and summary["scales"] == [64, 96] and summary["steps"] == 9
    assert [entry["image_size"] for entry in summary["per_scale"]] == [[48, 64], [72, 96]]
    assert Image.open(tmp_path / "final.png").size == (96, 72)
    assert (tmp_path / "final.png").read_bytes() == (tmp_path / "scale_96" / "final.png").read_bytes()
    for edge, steps in ((64, 3), (96, 6)):
        rows = read_rows(tmp_path / f"scale_{edge}")
        assert len(rows) == steps and (tmp_path / f"scale_{edge}" / "snapshots" / "step_000002.png").is_file()
    # scale 2's first loss is that of the upsampled scale-1 result, not of the content image
    start = build_module(compose_cfg(*SCALES, "image_size=96"))
    first = float(read_rows(tmp_path / "scale_96")[0]["loss"])
    assert first < start.evaluate()["loss"]


@pytest.mark.slow
def test_sigterm_in_scale_two_resumes_in_scale_two(tmp_path: Path) -> None:
    reference = train(compose_cfg(*SCALES, output_dir=tmp_path / "reference"))
    job = tmp_path / "job"
    kill = ["+callbacks.kill._target_=test_resume.SignalAt", "+callbacks.kill.step=4",  # scale 1 has 3 steps
            f"+callbacks.kill.signum={int(signal.SIGTERM)}"]
    with pytest.raises(SystemExit):
        train(compose_cfg(*SCALES, *kill, output_dir=job))
    assert json.loads((job / "scale_64" / "summary.json").read_text())["status"] == "ok"
    assert (job / "scale_96" / "checkpoint.ckpt").is_file()
    scale_one = (job / "scale_64" / "final.png").stat().st_mtime_ns
    resumed = train(compose_cfg(*SCALES, output_dir=job))
    assert (job / "scale_64" / "final.png").stat().st_mtime_ns == scale_one  # not run again
    assert resumed["final_loss"] == reference["final_loss"]
    assert (job / "final.png").read_bytes() == (tmp_path / "reference" / "final.png").read_bytes()


@pytest.mark.slow
def test_a_rerun_with_other_overrides_redoes_every_scale(tmp_path: Path) -> None:
    """The same job dir, another style_weight: the earlier scales are moved aside, not reused."""
    run = ["model.weights=random", "logger=none", "scales=[32,48]", "steps_per_scale=[5,5]", "trainer=cpu",
           f"hydra.run.dir={tmp_path / 'ms'}"]
    first = run_cli(*run, "style_weight=1e5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = json.loads((tmp_path / "ms" / "summary.json").read_text())
    second = run_cli(*run, "style_weight=1e9", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "already done" not in second.stdout + second.stderr
    after = json.loads((tmp_path / "ms" / "summary.json").read_text())
    assert after["final_loss"] != before["final_loss"]
    (aside,) = (tmp_path / "ms" / ".replaced").iterdir()
    assert {p.name for p in aside.iterdir()} >= {"summary.json", "final.png", "scale_32", "scale_48"}
    assert json.loads((aside / "scale_48" / "summary.json").read_text())["final_loss"] == \
        before["per_scale"][1]["final_loss"]


def test_a_scale_made_by_another_config_is_never_reused(tmp_path: Path) -> None:
    """Resuming (a checkpoint is there) with a changed config: one line, not the old scale."""
    cfg = compose_cfg(*SCALES, output_dir=tmp_path)
    scale = tmp_path / "scale_64"
    scale.mkdir()
    (scale / "made_by.json").write_text(json.dumps({"config": "someone-else"}))
    (scale / "summary.json").write_text(json.dumps({"status": "ok", "image": str(tmp_path / "x.png")}))
    with pytest.raises(ConfigError, match=r"^resume: .*scale_64 was made by a different run"):
        train(cfg)


@pytest.mark.slow
def test_tiled_run_stopped_between_tiles_resumes_to_the_same_image(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    reference = train(compose_cfg(*TILED, output_dir=tmp_path / "reference"))
    assert reference["tiles"]["tiles_per_pass"] == [len(tile_grid(72, 96, 48, 8)), len(tile_grid(72, 96, 48, 8, True))]
    monkeypatch.setattr(tiling, "SAVE_EVERY_S", 0.0)  # a checkpoint after every tile
    original = tiling.TileRecorder.__call__

    def stop_after_five(self, image, progress):
        original(self, image, progress)
        if len(progress.rows) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(tiling.TileRecorder, "__call__", stop_after_five)
    with pytest.raises(KeyboardInterrupt):
        train(compose_cfg(*TILED, output_dir=tmp_path / "job"))
    monkeypatch.setattr(tiling.TileRecorder, "__call__", original)
    resumed = train(compose_cfg(*TILED, output_dir=tmp_path / "job"))
    rows = read_rows(tmp_path / "job")
    assert len(rows) == sum(resumed["tiles"]["tiles_per_pass"])  # no tile twice
    assert resumed["final_loss"] == reference["final_loss"]
    assert (tmp_path / "job" / "final.png").read_bytes() == (tmp_path / "reference" / "final.png").read_bytes()
    assert not (tmp_path / "job" / "tiles.ckpt").exists()


def band_and_outside(image: np.ndarray, boxes: list[tuple[int, int, int, int]], overlap: int) -> tuple[float, float]:
    """Mean |difference| of horizontally adjacent pixels in the bands where tiles meet (each
    tile's edge and its overlap: where a seam would be), and in the columns outside all bands."""
    diff = np.abs(np.diff(image.astype(np.float64), axis=1)).mean(axis=(0, 2))  # per column pair
    width = len(diff) + 1
    band: set[int] = set()
    for _, _, left, right in boxes:
        if left > 0:
            band.update(range(left - 1, left + max(overlap, 1)))
        if right < width:
            band.update(range(right - max(overlap, 1) - 1, right))
    inside = [d for c, d in enumerate(diff) if c not in band]
    return float(np.mean([diff[c] for c in sorted(band) if c < len(diff)])), float(np.mean(inside))


def seams(tmp_path: Path, tiny_pair: tuple[Path, Path], overlap: int, passes: int) -> list[tuple[float, float]]:
    """(band, outside) for columns and rows of a 96 px image optimised as 32 px tiles."""
    run = [*FAST, "optimizer=adam", "optimizer.lr=0.05", f"pair.content={tiny_pair[0]}",
           f"pair.style={tiny_pair[1]}", "image_size=96", "steps=10", "tile_size=32",
           f"tile_overlap={overlap}", f"tile_passes={passes}", "snapshot_every=0"]
    train(compose_cfg(*run, output_dir=tmp_path / f"o{overlap}p{passes}"))
    image = np.asarray(Image.open(tmp_path / f"o{overlap}p{passes}" / "final.png"))
    height, width = image.shape[:2]
    boxes = [box for p in range(passes) for box in tile_grid(height, width, 32, overlap, shift=p % 2 == 1)]
    flipped = [(left, right, top, bottom) for top, bottom, left, right in boxes]
    return [band_and_outside(image, boxes, overlap), band_and_outside(image.transpose(1, 0, 2), flipped, overlap)]


@pytest.mark.slow
def test_no_seam_shows_with_tiny_tiles(tmp_path: Path, tiny_pair: tuple[Path, Path]) -> None:
    """On a smooth gradient, wherever tiles meet the image changes no faster than inside them;
    tiles pasted side by side without overlap or a second pass do show their seams."""
    for band, outside in seams(tmp_path, tiny_pair, overlap=8, passes=2):
        assert band <= outside, (band, outside)
    hard = seams(tmp_path, tiny_pair, overlap=0, passes=1)
    assert any(band > 1.2 * outside for band, outside in hard), hard


def test_benchmark_candidates_are_valid_configs() -> None:
    """`scripts/benchmark.py --multiscale` runs these: each must pass the config checks."""
    import sys

    from conftest import PROJECT_ROOT

    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    import bench_multiscale

    for spec in bench_multiscale.CANDIDATES:
        overrides = bench_multiscale.candidate_overrides(spec)
        check_config(compose_cfg(*FAST, *overrides))
        assert overrides[1].startswith("scales=[") and spec.split(":")[0] in overrides[1]
