"""scripts/gpu_check.py cannot rot: its dry run takes every code path of the GPU check, tiny, on
the CPU; the Markdown that goes into docs/performance.md renders whatever the JSON holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
import gpu_check_report
from bench_common import fixed_cost, steady_ms, sync_at

SECTIONS = ("speed", "first_step", "overhead", "lbfgs_500", "batched_sweep", "joblib", "gpu_tests")


@pytest.mark.slow
def test_dry_run_fills_every_section_with_numbers(tmp_path: Path) -> None:
    """~2 min on 2 idle cores (20 process starts); the budgets only guard against a hang."""
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "gpu_check.py"), "--dry-run",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=3600)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert tuple(sections) == SECTIONS
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(SECTIONS, "ok"), \
        {name: s.get("error") for name, s in sections.items()}
    assert proc.returncode == 0, proc.stderr[-3000:]
    speed = sections["speed"]["rows"]
    assert {(r["optimizer"], r["mode"]) for r in speed} == {
        ("adam", "fp32"), ("adam", "tf32"), ("adam", "tf32+nhwc"), ("adam", "bf16+nhwc"), ("adam", "compile"),
        ("lbfgs", "fp32")}
    assert all(r["ms_per_step"] > 0 and r["evals_per_step"] >= 1 for r in speed)
    # first_step: the CPU against itself in the dry run, so the same loss to float rounding
    # (TF32 is a no-op on a CPU; same seed, same random weights, same kernels).
    first = sections["first_step"]
    assert first["fp32_rel_diff"] <= 1e-6 and first["tf32_rel_diff"] <= 1e-6 and first["goal_met"] is True
    overhead = sections["overhead"]["rows"][0]
    assert overhead["project_ms"] > 0 and overhead["bare_ms"] > 0
    assert overhead["fixed_ms"] == pytest.approx(overhead["project_ms"] - overhead["bare_ms"], abs=2e-3)
    lbfgs = sections["lbfgs_500"]
    assert lbfgs["run_status"] == "ok" and lbfgs["steps"] == 3 and lbfgs["train_time_s"] > 0
    for name, ways, jobs in (("batched_sweep", ("sequential", "batched"), 3), ("joblib", ("sequential", "joblib"), 2)):
        entry = sections[name]
        assert [entry[way]["jobs"] for way in ways] == [jobs, jobs]
        assert all(ms > 0 for way in ways for ms in entry[way]["ms_per_step"])
        assert entry["x_faster"] == pytest.approx(entry[ways[0]]["command_s"] / entry[ways[1]]["command_s"])
    tests = sections["gpu_tests"]  # collected and skipped on the CPU; run on a GPU machine
    assert tests["exit_code"] == 0 and tests["skipped"] >= 4 and tests.get("passed", 0) == 0
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown == gpu_check_report.render_markdown(report) and "## joblib (ok" in markdown


def test_markdown_shows_numbers_partial_rows_and_errors() -> None:
    report = {"dry_run": False, "machine": {"torch": "2.x", "cuda": "12.8", "gpu": {"name": "NVIDIA H200"}},
              "sections": {
                  "speed": {"status": "partial", "seconds": 12.0, "rows": [
                      {"size": 512, "optimizer": "adam", "mode": "fp32", "ms_per_step": 4.2345, "evals_per_step": 1.0,
                       "peak_gpu_mb": 1234.5},
                      {"size": 512, "optimizer": "adam", "mode": "compile", "error": "Traceback...\nInductorError: x"},
                      {"size": 1024, "optimizer": "lbfgs", "mode": "fp32", "skipped": "time budget spent"}]},
                  "overhead": {"status": "ok", "seconds": 30.0, "rows": [
                      {"size": 32, "optimizer": "adam", **fixed_cost(3.5, 3.0)}]},
                  "lbfgs_500": {"status": "error", "seconds": 45.0, "error": "TimeoutError: timed out after 45 s"}}}
    md = gpu_check_report.render_markdown(report)
    assert md.startswith("# gpu_check: NVIDIA H200")
    assert "| 512 | adam | fp32 | 4.234 | 1 | 1234 |  |" in md  # 4 significant digits
    assert "| 512 | adam | compile | - | - | - | InductorError: x |" in md  # the error's last line
    assert "time budget spent" in md
    assert "| 32 | adam | 3.5 | 3 | 0.5 | 1.167 |" in md
    assert "## lbfgs_500 (error, 45 s)" in md and "TimeoutError: timed out after 45 s" in md
    assert "batched_sweep" not in md  # a section that never ran is not shown


def test_steady_state_and_fixed_cost_arithmetic() -> None:
    """Steps after the warm-up only; on a GPU the window's two ends are the synchronised steps."""
    result = {"walls": [0.5, 0.51, 0.52, 0.53]}  # a 500 ms first step (set-up), then 10 ms steps
    assert steady_ms(result, warmup=1) == pytest.approx(10.0)
    assert steady_ms(result, warmup=0) == pytest.approx(132.5)
    assert sync_at(warmup=2, steps=3) == [1, 4]
    assert fixed_cost(21.7, 18.8) == {"project_ms": 21.7, "bare_ms": 18.8, "fixed_ms": 2.9, "x_bare": 1.1543}
