"""Comparing a sweep: its W&B runs read back from the offline files, its console lines, report.html.

One real 3-job sweep (random tiny VGG, W&B offline) serves every test here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from PIL import Image, ImageChops
from wandb_records import OfflineRun, read_run

from conftest import FAST, compose_cfg, run_cli
from nst_exp.engine.judge import JUDGE_KEYS
from nst_exp.engine.loggers import finish_wandb
from nst_exp.runtime.build import build_callbacks, build_loggers, build_module, build_trainer

WEIGHTS = ("1000.0", "10000.0", "100000.0")  # as Hydra records style_weight=1e3,1e4,1e5


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 3-job sweep with W&B offline: (sweep dir, the sweep's stdout)."""
    root = tmp_path_factory.mktemp("compare")
    result = run_cli("-m", "style_weight=1e3,1e4,1e5", *FAST, "logger=wandb", "trainer.enable_progress_bar=false",
                     f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "sweep", result.stdout


def job_run(job: Path) -> OfflineRun:
    (run_dir,) = (job / "wandb").glob("offline-run-*")
    return read_run(run_dir)


def table_row(run: OfflineRun) -> dict[str, object]:
    """The comparison table's one row, as W&B will upload it: the run's table artifact, whose
    ``final`` cell is resolved to the staged image file. The copy in the run's files agrees."""
    files = run.artifacts[f"run-{run.run.run_id}-comparison"]
    table = json.loads(files["comparison.table.json"].read_text())
    assert len(table["data"]) == 1
    row = dict(zip(table["columns"], table["data"][0]))
    copy = json.loads(run.media("comparison").read_text())
    assert copy["columns"] == table["columns"] and copy["data"][0][:2] == table["data"][0][:2]
    if isinstance(row["final"], dict):
        row["final"] = files[row["final"]["path"]]
    return row


def same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as first, Image.open(b) as second:
        return ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is None


@pytest.mark.slow
def test_each_wandb_run_holds_summary_yardstick_final_image_and_table_row(sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = sweep
    groups = set()
    for num, weight in enumerate(WEIGHTS):
        job = sweep_dir / str(num)
        summary = json.loads((job / "summary.json").read_text())
        run = job_run(job)
        assert run.exit_code == 0 and run.run.job_type == "sweep"
        groups.add(run.run.run_group)
        # every summary.json field, the yardstick included, is in the W&B summary
        for key, value in summary.items():
            if isinstance(value, float):
                assert run.summary[key] == pytest.approx(value), key
            elif not isinstance(value, dict):
                assert run.summary[key] == value, key
        assert all(isinstance(summary[key], float) for key in JUDGE_KEYS)
        # nested config, for parallel coordinates over e.g. optimizer.lr
        assert run.config["style_weight"] == float(weight) and run.config["optimizer"]["lr"] > 0
        # the final image, and the inputs once
        assert same_pixels(run.media("final"), job / "final.png")
        assert len(run.logged("inputs/content/path")) == 1 and len(run.logged("inputs/style/path")) == 1
        # every snapshot, the PNG on disk as it is (W&B copies the file, no encoding of its own)
        shots = run.logged("snapshot/filenames")
        assert len(shots) == 2 and all(len(names) == 1 for names in shots)
        assert (run.dir / "files" / shots[-1][0]).read_bytes() == (job / "snapshots" / "step_000004.png").read_bytes()
        # the one-row comparison table: overrides as columns, the image, losses and yardstick
        row = table_row(run)
        assert row["style_weight"] == weight and row["status"] == "ok" and row["steps"] == 4
        assert row["judge_ssim"] == pytest.approx(summary["judge_ssim"])
        assert row["final_loss"] == pytest.approx(summary["final_loss"])
        assert same_pixels(row["final"], job / "final.png")
    assert len(groups) == 1 and "" not in groups  # one group per sweep


class Boom(pl.Callback):
    """Fails the run mid-way, as a bug or a full disk would."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == 2:
            raise RuntimeError("boom")


@pytest.mark.slow
def test_a_failed_run_still_sends_its_final_image_and_summary(tmp_path: Path) -> None:
    cfg = compose_cfg(*FAST, "logger=wandb", "trainer.enable_progress_bar=false", output_dir=tmp_path)
    module = build_module(cfg)
    trainer = build_trainer(cfg.trainer, callbacks=[*build_callbacks(cfg), Boom()], logger=build_loggers(cfg))
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(module)
    finish_wandb(failed=True)
    run = job_run(tmp_path)
    assert run.exit_code == 1 and run.run.job_type == "run"
    assert run.summary["status"] == "failed: RuntimeError: boom" and run.summary["steps"] == 2
    assert isinstance(run.summary["judge_color"], float)
    assert same_pixels(run.media("final"), tmp_path / "final.png")
    row = table_row(run)
    assert row["status"].startswith("failed") and same_pixels(row["final"], tmp_path / "final.png")


@pytest.mark.slow
def test_sweep_ends_with_a_line_per_job_and_the_report_command(sweep: tuple[Path, str]) -> None:
    sweep_dir, stdout = sweep
    lines = [line for line in stdout.splitlines() if line.startswith("job ")]
    assert len(lines) == 3
    for num, (line, weight) in enumerate(zip(lines, WEIGHTS)):
        summary = json.loads((sweep_dir / str(num) / "summary.json").read_text())
        assert line.startswith(f"job {num}  style_weight={weight}  ok  loss {summary['final_loss']:.4g}  ")
        assert f"ssim {summary['judge_ssim']:.4g}" in line and line.endswith(str(sweep_dir / str(num)))
    assert f"compare: nst-report {sweep_dir}" in stdout
    assert stdout.splitlines()[-1] == f"upload to W&B: wandb sync {sweep_dir}/*/wandb/offline-run-*"


def browser() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)


def headless(*args: str) -> subprocess.CompletedProcess[str]:
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_nst_report_writes_a_self_contained_html_that_renders_in_chromium(sweep: tuple[Path, str],
                                                                           tmp_path: Path) -> None:
    sweep_dir, _ = sweep
    result = subprocess.run([str(Path(sys.executable).parent / "nst-report"), str(sweep_dir)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = sweep_dir / "report.html"
    assert str(page) in result.stdout.splitlines()
    text = page.read_text()
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(src.startswith("data:image/jpeg;base64,") for src in sources)  # one file, offline
    assert "http" not in text.replace("http-equiv", "") and text.count('class="final zoomable"') == 3
    assert text.count("<polyline") == 3
    if browser() is None:
        pytest.skip("no headless browser (apt-get install chromium): report.html checked as text only")
    # The script ran: it marks the page ready and sorts by the column the URL names.
    dom = headless("--dump-dom", f"{page.as_uri()}#sort=judge_ssim-desc").stdout
    assert 'data-ready="1"' in dom and 'data-sorted-by="judge_ssim-desc"' in dom
    order = [int(n) for n in re.findall(r'<tr><td data-key="job" data-v="(\d+)"', dom)]
    ssim = {n: json.loads((sweep_dir / str(n) / "summary.json").read_text())["judge_ssim"] for n in range(3)}
    assert order == sorted(ssim, key=ssim.get, reverse=True)
    shot = tmp_path / "shot.png"
    headless(f"--screenshot={shot}", "--window-size=1000,900", page.as_uri())
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 100  # images and text drawn, not a blank page
