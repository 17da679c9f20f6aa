"""The memory a run no longer uses goes back to the OS (nst_exp/engine/memory.py)."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
from test_batch_promises import TESTS, summary, sweep

from conftest import FAST, compose_cfg
from nst_exp.engine.memory import _malloc_trim, trim_heap
from nst_exp.engine.summary import SummaryPart
from nst_exp.train import train

BLOCK = 64 * 1024  # under glibc's mmap threshold: heap blocks, as a step's small tensors are


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_trim_gives_back_the_holes_between_live_blocks() -> None:
    """Every other block freed: no free block borders the heap's top, so only a trim of the
    middle of the heap (what a long L-BFGS run leaves) gets the pages back."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(600)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)  # resident
    for block in blocks[::2]:
        libc.free(block)
    before = rss_mb()
    trim_heap()
    after = rss_mb()
    for block in blocks[1::2]:
        libc.free(block)
    assert before - after > 0.5 * 300 * BLOCK / 2**20, (before, after)  # most of the 18.75 MB of holes


class OptimizerStateAtSummary(SummaryPart, pl.Callback):
    """Adds how many tensors the optimiser still held when the summary was written."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.trainer = trainer

    def summary_fields(self) -> dict[str, int]:
        # the run's own optimiser, also where a batch job's view is the trainer
        state = self.trainer.lightning_module.trainer.optimizers[0].state
        return {"optimizer_tensors": sum(len(entry) for entry in state.values())}


PROBE = f"+callbacks.probe._target_={__name__}.OptimizerStateAtSummary"


@pytest.mark.parametrize("strategy", [[], ["scales=[32,48]", "steps_per_scale=[2,2]"]], ids=["single", "pyramid"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_optimiser_forgets_its_history_before_the_final_image_is_scored(tmp_path: Path, optimizer: str,
                                                                          strategy: list[str]) -> None:
    summary = train(compose_cfg(*FAST, f"optimizer={optimizer}", PROBE, *strategy, output_dir=tmp_path / "run"))
    assert summary["status"] == "ok" and summary["steps"] == 4 and summary["optimizer_tensors"] == 0
    scales = sorted(tmp_path.joinpath("run").glob("scale_*/summary.json"))  # every scale's own fit
    assert len(scales) == (2 if strategy else 0)
    assert all(json.loads(scale.read_text())["optimizer_tensors"] == 0 for scale in scales)


@pytest.mark.slow
def test_a_batch_forgets_its_optimisers_history_before_its_jobs_score(tmp_path: Path) -> None:
    """Tiled runs need nothing: their optimiser lives for one tile (strategies/tile_loop.py)."""
    result, jobs = sweep(tmp_path, "batch", "optimizer=lbfgs", "steps=4", "style_weight=1e4,1e5", PROBE,
                         env={"PYTHONPATH": TESTS})
    assert result.returncode == 0, result.stderr[-3000:]
    assert [summary(jobs / job)["optimizer_tensors"] for job in "01"] == [0, 0]
