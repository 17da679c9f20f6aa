"""gpu_check's sizes, steps and time budgets (the real check and its tiny CPU dry run), and the
two ways it runs the project: a worker process (bench_common) or the CLI a user types.

Budgets (seconds, real check) add up to 7.6 minutes, leaving 25 s of the 8 for start-up and
slack; a section that runs out stops launching rows and says so. Worker start-up (imports, the
CUDA context) is most of a short row, so the speed matrix keeps W&B off (logger=none): W&B's
per-step cost is what the ``overhead`` section measures, with W&B on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nst_exp.core.files import read_json

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = {"speed": 155, "first_step": 25, "overhead": 80, "lbfgs_500": 45, "batched_sweep": 70, "joblib": 40,
           "gpu_tests": 40}
# The dry run's are guards against a hang, not targets: its ~20 process starts take ~2 min on 2
# idle cores, but 10 min with a dozen other jobs on them (measured), and a row cut short by
# its budget would fail the test.
DRY_BUDGETS = {"speed": 900, "first_step": 300, "overhead": 300, "lbfgs_500": 300, "batched_sweep": 600,
               "joblib": 600, "gpu_tests": 300}
MIN_ROW_S = 5.0  # a row is not started with less time than this left


@dataclass(frozen=True)
class Plan:
    """What to measure, how big, for how long."""

    dry_run: bool
    work_dir: Path
    device: str = "cuda"
    weights: str = "caffe"
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    warmup: int = 5
    steps: int = 30
    sizes: tuple[int, ...] = (512, 1024)
    lbfgs_modes: tuple[str, ...] = ("fp32", "tf32", "tf32+nhwc", "compile")
    overhead_sizes: tuple[int, ...] = (32, 512)
    repeats: int = 2
    lbfgs_size: int = 512
    lbfgs_steps: int = 500
    sweep_size: int = 512
    sweep_steps: int = 100
    sweep_weights: tuple[str, ...] = ("1e3", "3e3", "1e4", "3e4", "1e5", "3e5", "1e6", "3e6")
    budgets: dict[str, float] = field(default_factory=lambda: dict(BUDGETS))

    @property
    def device_overrides(self) -> list[str]:
        """Config overrides that put a run on the plan's device: ``trainer=gpu`` is the GPU path
        users run (cuDNN autotuning; bf16 autocast for Adam unless ``precision`` says otherwise)."""
        return ["trainer=gpu"] if self.device == "cuda" else ["trainer=cpu"]

    @property
    def cli_env(self) -> dict[str, str]:
        """The dry run's CLI runs use its thread count (as its workers do); a GPU run uses the defaults."""
        return {"OMP_NUM_THREADS": str(self.threads)} if self.dry_run else {}

    def compile_overrides(self, mode: str) -> list[str]:
        """The dry run compiles with the eager backend: dynamo's tracing without a C++ build."""
        return ["+callbacks.speed.compile_options={backend:eager}"] if mode == "compile" and self.dry_run else []

    def overhead_steps(self, size: int) -> int:
        """Small images: many steps, so that a fraction of a ms per step stands out of the noise."""
        return self.steps if self.dry_run else (300 if size <= 64 else self.steps)

    def describe(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


def make_plan(dry_run: bool, work_dir: Path, budget_scale: float = 1.0) -> Plan:
    """The real check's plan, or the dry run's: same sections, tiny images and steps, the CPU."""
    if not dry_run:
        return Plan(False, work_dir, budgets={k: v * budget_scale for k, v in BUDGETS.items()})
    return Plan(True, work_dir, device="cpu", weights="random", threads=1, warmup=1, steps=2, sizes=(32,),
                lbfgs_modes=("fp32",), overhead_sizes=(32,), repeats=1, lbfgs_size=32, lbfgs_steps=3, sweep_size=32,
                sweep_steps=2, sweep_weights=("1e3", "1e4", "1e5"),
                budgets={k: v * budget_scale for k, v in DRY_BUDGETS.items()})


class Budget:
    """A section's deadline: how long the next row may take, and whether one may start."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def left(self) -> bool:
        return self.deadline - time.monotonic() >= MIN_ROW_S

    def timeout(self) -> float:
        """Seconds the next subprocess may run; raises when the budget is spent."""
        remaining = self.deadline - time.monotonic()
        if remaining < MIN_ROW_S:
            raise TimeoutError(f"time budget spent ({remaining:.0f} s left)")
        return remaining


def run_cli(args: list[str], timeout: float, env: dict[str, str] | None = None) -> float:
    """``python -m nst_exp.train ARGS`` as a user runs it (``env``: extra variables); its wall time, s."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "nst_exp.train", *args], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise TimeoutError(f"nst_exp.train {' '.join(args)}: timed out after {timeout:.0f} s") from error
    if proc.returncode != 0:
        raise RuntimeError(f"nst_exp.train {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2500:]}")
    return time.perf_counter() - start


def summaries(work: Path) -> list[dict]:
    """summary.json of a run dir, or of every job of a sweep dir (in job order)."""
    if (work / "summary.json").is_file():
        return [read_json(work / "summary.json")]
    jobs = sorted((p for p in work.glob("*/summary.json")), key=lambda p: int(p.parent.name))
    return [read_json(path) for path in jobs]
