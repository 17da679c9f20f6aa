"""What benchmark.py and gpu_check.py share: one worker process per measured run, steady-state
figures from its per-step wall times, the fixed per-step cost of the framework.

A worker (scripts/bench_workers.py) runs one variant -- ``bare`` (a hand-written loop),
``naive`` or ``nst-exp`` (the real path) -- and prints one ``BENCH_RESULT`` JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

WORKER = Path(__file__).resolve().with_name("bench_workers.py")


class WorkerError(RuntimeError):
    """A worker exited non-zero, printed no result, or ran past its timeout."""


def run_worker(spec: dict, timeout: float | None = None) -> dict:
    """Run one variant in a fresh process (its own peak RSS / GPU memory); its result line.

    Raises WorkerError with the tail of its stderr: a caller may record it and go on.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.get("threads", 1)), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    try:
        proc = subprocess.run([sys.executable, str(WORKER), json.dumps(spec)], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise WorkerError(f"{spec['variant']}/{spec.get('optimizer')}: timed out after {timeout:.0f} s") from error
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise WorkerError(f"{spec['variant']}/{spec.get('optimizer')} failed (exit {proc.returncode}):\n"
                          f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("BENCH_RESULT "):])


def steady_ms(result: dict, warmup: int, clock: str = "walls") -> float:
    """Mean ms per step after ``warmup`` steps (the worker's wall clock; on a GPU the window's
    ends are synchronised, see ``sync_at``; ``clock="cpus"``: the process's CPU time)."""
    walls = result[clock]
    before = walls[warmup - 1] if warmup else 0.0
    return 1000 * (walls[-1] - before) / (len(walls) - warmup)


def sync_at(warmup: int, steps: int) -> list[int]:
    """The steps whose wall time must wait for the GPU: the ends of the steady-state window."""
    return sorted({max(0, warmup - 1), warmup + steps - 1})


def summarise(result: dict, warmup: int, steps: int, peak: float) -> dict:
    """Steady-state figures over the timed steps (after ``warmup``)."""
    walls, evals = result["walls"], result["evals"]
    before = (walls[warmup - 1], evals[warmup - 1]) if warmup else (0.0, 0)
    seconds, n_evals = walls[warmup + steps - 1] - before[0], evals[warmup + steps - 1] - before[1]
    gflops = result["flops_per_eval"] * n_evals / seconds / 1e9
    return {"ms_per_step": 1000 * seconds / steps, "evals_per_step": n_evals / steps,
            "ms_per_eval": 1000 * seconds / n_evals, "gflops": gflops, "pct_peak": 100 * gflops / peak,
            "peak_rss_mb": result["peak_rss_mb"],
            "rss_over_baseline_mb": result["peak_rss_mb"] - result["rss_baseline_mb"],
            "pixels": result["pixels"], "first_loss": result["losses"][0],
            "cpu_ms_per_step": steady_ms(result, warmup, "cpus") if "cpus" in result else None,
            "outside_cpu_ms_per_step": outside_ms(result, warmup)}


def outside_ms(result: dict, warmup: int) -> float | None:
    """CPU ms per step spent outside the loss + gradient evaluations (the optimiser's update,
    the loop, callbacks, loggers), measured inside one run: the evaluations' own run-to-run
    spread (the convolutions, ~1 ms of a 32 px step between processes) does not reach it."""
    if "eval_cpus" not in result:
        return None
    return steady_ms(result, warmup, "cpus") - steady_ms(result, warmup, "eval_cpus")


def interleaved_best(specs: dict[str, dict], repeats: int, warmup: int,
                     run: Callable[[dict], dict] = run_worker) -> dict[str, dict]:
    """Each named spec ``repeats`` times, interleaved (A, B, A, B, ...); each keeps its fastest run.

    Interleaving and the minimum make a ratio robust to the drift of a shared machine (timeit's
    rule: the fastest run is the one least disturbed by everything else).
    """
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for name, spec in specs.items():
            result = run(spec)
            ms = steady_ms(result, warmup)
            runs = best.get(name, {}).get("runs_ms", []) + [round(ms, 3)]
            if name not in best or ms < best[name]["ms_per_step"]:
                best[name] = {"ms_per_step": ms, "result": result}
            best[name]["runs_ms"] = runs
    return best


def fixed_cost(project_ms: float, bare_ms: float, project_cpu_ms: float | None = None,
               bare_cpu_ms: float | None = None, project_outside_ms: float | None = None,
               bare_outside_ms: float | None = None) -> dict:
    """What the framework adds per step: the difference (ms) and the ratio to the bare loop;
    with CPU times, their difference too (with one thread it ignores the machine's other load);
    with the CPU time outside the evaluations, that difference (``outside_ms``)."""
    cost = {"project_ms": round(project_ms, 3), "bare_ms": round(bare_ms, 3),
            "fixed_ms": round(project_ms - bare_ms, 3), "x_bare": round(project_ms / bare_ms, 4)}
    if project_cpu_ms is not None and bare_cpu_ms is not None:
        cost["fixed_cpu_ms"] = round(project_cpu_ms - bare_cpu_ms, 3)
    if project_outside_ms is not None and bare_outside_ms is not None:
        cost["fixed_outside_cpu_ms"] = round(project_outside_ms - bare_outside_ms, 3)
    return cost


def matmul_peak(threads: int, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul: the ceiling the convolutions are compared with."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
