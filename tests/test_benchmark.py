"""The benchmark compares like with like: bare, naive and nst-exp optimise one objective."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT
from nst_exp.runtime.build import build_module

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
import bench_loops
import bench_workers

SPEC = {"size": 64, "optimizer": "adam", "weights": "random", "steps": 3}


@pytest.mark.parametrize("variant", ["bare", "naive"])
def test_hand_written_loops_compute_the_framework_loss(variant: str) -> None:
    cfg = bench_workers.config(SPEC, "layers=gatys", "style_weight=1e3")
    features = bench_loops.bare_features(cfg) if variant == "bare" else bench_loops.naive_features(cfg)
    image, loss = bench_loops.make_objective(cfg, features, recompute=variant == "naive")
    with torch.no_grad():
        ours = float(loss(image))
    # rel 1e-5: the same float32 maths summed in another order (close on every CPU, not bit-identical).
    assert ours == pytest.approx(build_module(cfg).evaluate()["loss"], rel=1e-5)


def test_batched_loop_computes_the_batched_sweep_loss() -> None:
    """The batching ceiling's loop: one image per style weight, the jobs' losses summed."""
    weights = [1e3, 3e4]
    cfg = bench_workers.config(SPEC, "layers=gatys")
    image, loss = bench_loops.make_objective(cfg, bench_loops.bare_features(cfg), False, style_weights=weights)
    with torch.no_grad():
        ours = float(loss(image))
    jobs = [build_module(bench_workers.config(SPEC, "layers=gatys", f"style_weight={w}")).evaluate()["loss"]
            for w in weights]
    # rel 1e-5: a batch of 2 against two batches of 1: other conv kernels, float32 rounding only.
    assert image.shape[0] == 2 and ours == pytest.approx(sum(jobs), rel=1e-5)


def test_flop_count_of_the_truncated_net() -> None:
    """VGG19 to relu5_1: 0.722 MFLOP per input pixel forward (hand count), twice with the input gradient."""
    cfg = bench_workers.config(SPEC)
    per_pixel = bench_workers.conv_flops(cfg, 256, 256, full=False) / (2 * 256 * 256)
    assert per_pixel == pytest.approx(3456 + 73728 + (147456 + 294912) / 4 + (589824 + 3 * 1179648) / 16
                                      + (2359296 + 3 * 4718592) / 64 + 4718592 / 256)
    assert bench_workers.conv_flops(cfg, 256, 256, full=True) > bench_workers.conv_flops(cfg, 256, 256, full=False)


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "benchmark.json"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "benchmark.py"), "--quick",
                             "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["steps"]["rows"]
    assert {(r["variant"], r["optimizer"]) for r in rows} >= {(v, o) for v in ("bare", "naive", "nst-exp")
                                                               for o in ("adam", "lbfgs")}
    assert all(r["ms_per_step"] > 0 and r["gflops"] > 0 for r in rows)
    assert "mkldnn_convolution" in report["profile"] or "convolution" in report["profile"]
    costs = {(c["size"], c["optimizer"], c["precision"]): c for c in report["steps"]["fixed_cost"]}
    assert {(64, "adam", "32-true"), (64, "lbfgs", "32-true")} <= set(costs)
    for (size, optimizer, precision), cost in costs.items():
        nst, bare = (next(r for r in rows if (r["variant"], r["size"], r["optimizer"], r["precision"])
                          == (variant, size, optimizer, precision)) for variant in ("nst-exp", "bare"))
        assert cost["fixed_ms"] == pytest.approx(nst["ms_per_step"] - bare["ms_per_step"], abs=1e-3)


def test_fixed_cost_pairs_each_nst_exp_row_with_its_bare_row() -> None:
    """Same size, optimiser and precision; naive rows and rows without a bare twin are left out."""
    import benchmark

    def row(variant: str, optimizer: str, ms: float, size: int = 32, precision: str = "32-true") -> dict:
        return {"variant": variant, "optimizer": optimizer, "ms_per_step": ms, "size": size, "precision": precision}

    rows = [row("bare", "adam", 18.8), row("nst-exp", "adam", 21.7), row("naive", "adam", 90.0),
            row("bare", "lbfgs", 40.0), row("nst-exp", "lbfgs", 41.0), row("nst-exp", "adam", 30.0, size=64)]
    costs = benchmark.fixed_costs(rows)
    assert [(c["size"], c["optimizer"], c["fixed_ms"]) for c in costs] == [(32, "adam", 2.9), (32, "lbfgs", 1.0)]
    assert costs[0]["x_bare"] == pytest.approx(21.7 / 18.8, abs=1e-4)
