"""End to end: single runs (in process) and a CLI multirun, with their files on disk."""

import csv
import json
from pathlib import Path

import pytest

from conftest import FAST, PROJECT_ROOT, compose_cfg, run_cli
from nst_exp import CONFIG_DIR
from nst_exp.runtime.build import build_module
from nst_exp.train import train

RUN_FILES = ("final.png", "metrics.csv", "summary.json")
SUMMARY_KEYS = {"final_loss", "content_loss", "style_loss", "tv_loss", "steps", "wall_time_s",
                "ms_per_step", "peak_rss_mb", "image", "status"}


def read_metrics(job_dir: Path) -> list[dict[str, float]]:
    with open(job_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def check_job_dir(job_dir: Path, steps: int) -> dict:
    for name in RUN_FILES:
        assert (job_dir / name).is_file(), f"{name} missing in {job_dir}"
    summary = json.loads((job_dir / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS and summary["status"] == "ok" and summary["steps"] == steps
    assert Path(summary["image"]) == (job_dir / "final.png").resolve()
    rows = read_metrics(job_dir)
    assert [int(r["step"]) for r in rows] == list(range(steps))
    assert not list(job_dir.rglob("*.tmp")), "temp files left behind"
    return summary


def test_the_image_is_the_only_parameter(tiny_pair: tuple[Path, Path]) -> None:
    cfg = compose_cfg(*FAST, f"pair.content={tiny_pair[0]}", f"pair.style={tiny_pair[1]}")
    module = build_module(cfg)
    params = list(module.parameters())
    assert len(params) == 1 and params[0] is module.image
    assert module.image.is_contiguous() and module.image.shape == (1, 3, 24, 32)
    assert "image" in module.state_dict() and len(module.state_dict()) == 1  # no VGG in checkpoints


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_single_run_loss_falls_and_files_are_written(tmp_path: Path, optimizer: str) -> None:
    cfg = compose_cfg(*FAST, f"optimizer={optimizer}", "steps=12", "logger=csv", "init=noise",
                      output_dir=tmp_path)
    summary = train(cfg)
    check_job_dir(tmp_path, steps=12)
    rows = read_metrics(tmp_path)
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    assert summary["final_loss"] < rows[0]["loss"]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [
        f"step_{s:06d}.png" for s in range(2, 13, 2)]
    assert (tmp_path / "csv" / "metrics.csv").is_file()  # Lightning's CSVLogger


def test_lbfgs_reuses_its_line_search_evaluation(tmp_path: Path) -> None:
    """With the cache, an L-BFGS step whose first trial is accepted costs one evaluation."""
    cfg = compose_cfg(*FAST, "steps=6", output_dir=tmp_path)
    module = build_module(cfg)
    calls = []
    original = module.components
    module.components = lambda *a, **k: calls.append(1) or original(*a, **k)  # type: ignore[method-assign]
    import pytorch_lightning as pl

    pl.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_progress_bar=False,
               enable_checkpointing=False, enable_model_summary=False).fit(module)
    assert len(calls) < 2 * 6  # torch's L-BFGS alone evaluates at least twice per step


@pytest.mark.slow  # a sweep through the CLI
def test_cli_multirun_two_jobs_with_wandb_offline(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "style_weight=1e4,1e5", "model.weights=random", "image_size=64", "steps=5",
                     "trainer=cpu", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    groups = set()
    for job, weight in zip(jobs, ("10000.0", "100000.0")):  # Hydra writes the parsed floats
        summary = check_job_dir(job, steps=5)
        assert f"- style_weight={weight}" in (job / ".hydra" / "overrides.yaml").read_text()
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
        name = summary["wandb"]["name"]
        assert name.startswith(f"{job.name}:") and f"style_weight={weight}" in name
        groups.add(summary["wandb"]["group"])
    assert len(groups) == 1 and None not in groups  # one W&B group per sweep


def test_cfg_job_shows_the_config_contract(tmp_path: Path) -> None:
    result = run_cli("--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for key in ("style_weight:", "content_weight:", "tv_weight:", "steps:", "image_size:", "seed:",
                "snapshot_every:", "log_every:", "pair:", "layers:", "optimizer:", "loss:", "augment:",
                "init:", "model:", "logger:", "trainer:", "gram_norm: chw", "weights: caffe", "relu4_2"):
        assert key in text, key


@pytest.mark.slow  # real-weights quality
def test_real_weights_style_transfer_at_64px(tmp_path: Path) -> None:
    """The bundled Caffe VGG19 on a shipped pair: style loss must drop a lot in 20 steps."""
    cfg = compose_cfg(*FAST, "model.weights=caffe", "image_size=64", "steps=20", output_dir=tmp_path)
    train(cfg)
    rows = read_metrics(tmp_path)
    assert rows[-1]["style_loss"] < 0.2 * rows[0]["style_loss"]
    assert rows[-1]["content_loss"] < rows[-1]["style_loss"] * 10  # balanced, not content-only


def test_shipped_pairs_exist() -> None:
    pairs = sorted((CONFIG_DIR / "pair").glob("*.yaml"))
    assert len(pairs) >= 3
    for pair in pairs:
        cfg = compose_cfg(f"pair={pair.stem}", output_dir=PROJECT_ROOT)
        assert Path(cfg.pair.content).is_file() and Path(cfg.pair.style).is_file()


def test_console_script_runs_from_anywhere(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(sys.executable).parent / "nst-train"
    result = subprocess.run([str(script), "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "style_weight: 100000.0" in result.stdout
