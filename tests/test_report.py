"""The sweep report: grid layout from files on disk, partial and failed sweeps, and a real multirun."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import FAST, PROJECT_ROOT, run_cli
from nst_exp.reporting.drawing import (
    CELL,
    EMPTY,
    LABEL_WIDTH,
    PAD,
    cell_box,
    column_labels,
    contact_sheet,
    font,
    layout,
)
from nst_exp.reporting.multirun import grid_of, load_jobs, planned_jobs
from nst_exp.reporting.report import OUTPUTS, ReportError, write_report


def fake_sweep(root: Path, params: dict[str, str], finished: dict[int, str], task: list[str] = ()) -> Path:
    """A multirun dir as Hydra leaves it: multirun.yaml and, per started job, its files.

    ``finished`` maps job number -> status ("ok" writes an image and metrics too).
    """
    (root / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"sweeper": {"params": params}, "overrides": {"task": list(task)}}}))
    for num, overrides in enumerate(planned_jobs(root)):
        if num not in finished:
            continue
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
        status = finished[num]
        if status == "running":
            continue
        (job / "summary.json").write_text(json.dumps({"status": status, "final_loss": 1.0 + num, "steps": 3}))
        if status == "ok" or status.startswith("failed"):  # RunSummary saves an image either way
            Image.new("RGB", (40, 30), (200, 40, 40)).save(job / "final.png")
            (job / "metrics.csv").write_text(f"step,loss\n0,100\n1,10\n2,{num + 1}\n")
    return root


def cell_corner(grid_dir: Path, row: int, column: int) -> tuple[int, int]:
    """A pixel just inside the top-left of a cell of the sheet ``write_report`` drew (away from labels)."""
    grid = grid_of(load_jobs(grid_dir))
    face = font(15)
    at = layout(grid, column_labels(grid, cell_box(grid)[0], face), face, title=True)
    x, y = at.cell_xy(row, column)
    return x + 6, y + 6


def test_one_dimensional_sweep_is_one_row(tmp_path: Path) -> None:
    fake_sweep(tmp_path, {"style_weight": "1e4,1e5,1e6"}, {0: "ok", 1: "ok", 2: "ok"})
    grid = grid_of(load_jobs(tmp_path))
    assert grid.keys == ["style_weight"] and grid.rows == [None]
    assert grid.columns == [("10000.0",), ("100000.0",), ("1000000.0",)]  # as Hydra writes them
    sheet = contact_sheet(grid)
    assert sheet.width == LABEL_WIDTH + PAD + 3 * (CELL + PAD)


def test_two_dimensional_sweep_rows_are_the_first_key(tmp_path: Path) -> None:
    fake_sweep(tmp_path, {"optimizer": "adam,lbfgs", "style_weight": "1e4,1e5,1e6"},
               {n: "ok" for n in range(6)}, task=["steps=3"])
    grid = grid_of(load_jobs(tmp_path))
    assert grid.keys == ["optimizer", "style_weight"]  # steps=3 is the same for all: not swept
    assert grid.rows == ["adam", "lbfgs"] and len(grid.columns) == 3
    assert grid.cell("lbfgs", ("10000.0",)).num == 3 and grid.cell("adam", ("1000000.0",)).num == 2
    assert contact_sheet(grid).width == LABEL_WIDTH + PAD + 3 * (CELL + PAD)


def test_failed_running_and_missing_jobs_get_labelled_cells_and_rows(tmp_path: Path) -> None:
    fake_sweep(tmp_path, {"optimizer": "adam,lbfgs", "style_weight": "1e4,1e5"},
               {0: "ok", 1: "failed: ValueError: boom", 2: "running"})
    paths = write_report(tmp_path)
    assert sorted(p.name for p in paths.values()) == sorted(OUTPUTS) and all(p.is_file() for p in paths.values())
    with open(paths["report.csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["ok", "failed: ValueError: boom", "running", "missing"]
    assert [(r["optimizer"], r["style_weight"]) for r in table] == [
        ("adam", "10000.0"), ("adam", "100000.0"), ("lbfgs", "10000.0"), ("lbfgs", "100000.0")]
    sheet = Image.open(paths["contact_sheet.png"])
    assert sheet.width == LABEL_WIDTH + PAD + 2 * (CELL + PAD)
    # the failed job's cell (row 0, column 1) is the empty-cell grey, the ok one (0, 0) is the image
    assert sheet.getpixel(cell_corner(tmp_path, 0, 1)) == EMPTY
    assert sheet.getpixel(cell_corner(tmp_path, 0, 0)) == (200, 40, 40)
    assert sheet.getpixel(cell_corner(tmp_path, 1, 1)) == EMPTY  # missing
    report = paths["report.md"].read_text()
    assert "](contact_sheet.png)" in report and "](losses.png)" in report and "failed: ValueError: boom" in report
    assert "1 failed, 1 missing, 1 ok, 1 running" in report


def test_sweep_hydra_cannot_expand_offline_falls_back_to_job_dirs(tmp_path: Path) -> None:
    fake_sweep(tmp_path, {"style_weight": "1e4,1e5"}, {0: "ok", 1: "ok"})
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"sweeper": {"params": {"experiment": "glob(*)"}}, "overrides": {"task": []}}}))
    grid = grid_of(load_jobs(tmp_path))
    assert grid.keys == ["style_weight"] and [job.status for job in grid.jobs] == ["ok", "ok"]


def test_not_a_sweep_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no multirun.yaml"):
        write_report(tmp_path)
    with pytest.raises(ReportError, match="not a directory"):
        write_report(tmp_path / "nope")


@pytest.mark.slow  # sweeps through the CLI
def test_two_experiments_end_to_end_then_report(tmp_path: Path) -> None:
    """Real multiruns (random weights, 32 px, 2 steps) of a 1-D and a 2-D experiment.

    adam_vs_lbfgs runs two of its three style weights: a command-line sweep replaces the
    experiment's, and 2 x 2 still tells rows from columns.
    """
    tiny = [o for o in FAST if not o.startswith(("steps", "log_every", "snapshot_every"))]
    expected = {"gatys_fig5": ([], 1, 2), "adam_vs_lbfgs": (["style_weight=1e5,1e6"], 2, 2)}
    for experiment, (extra, rows, columns) in expected.items():
        sweep_dir = tmp_path / experiment
        result = run_cli(f"experiment={experiment}", *tiny, *extra, "steps=2", "log_every=1", "snapshot_every=0",
                         f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        result = run_report(sweep_dir, tmp_path)
        assert result.returncode == 0, result.stderr
        assert all((sweep_dir / name).is_file() for name in OUTPUTS)
        grid = grid_of(load_jobs(sweep_dir))
        assert (len(grid.rows), len(grid.columns)) == (rows, columns)
        assert all(job.status == "ok" and job.summary["steps"] == 2 for job in grid.jobs)
        sheet = Image.open(sweep_dir / "contact_sheet.png")
        assert sheet.width == LABEL_WIDTH + PAD + columns * (CELL + PAD)
        with open(sweep_dir / "report.csv") as f:
            assert len(list(csv.DictReader(f))) == rows * columns


def run_report(sweep_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python scripts/report.py SWEEP_DIR`` as a user runs it."""
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "report.py"), str(sweep_dir)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
