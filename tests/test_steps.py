"""Several optimiser steps per Lightning batch (engine/steps.py): the same run, fewer batches.

A batch runs up to the next step at which some callback acts, so every file the run writes is
what one step per batch writes: the tests compare the two bit for bit (trainer=cpu is
deterministic), including a run stopped by a signal in the middle of a batch and resumed.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl

from conftest import FAST, compose_cfg
from nst_exp.engine.steps import StepHooks, batch_length, steps_per_batch
from nst_exp.train import train

# log_every 4, snapshots every 8, checkpoints every 8: batches of 4 steps.
RUN = [*FAST, "image_size=64", "steps=14", "log_every=4", "snapshot_every=8", "checkpoint_every=8"]


class Every(StepHooks, pl.Callback):
    def __init__(self, interval: int) -> None:
        self.interval = interval

    def step_interval(self) -> int:
        return self.interval


class BatchEnds(pl.Callback):
    """A callback that acts at batch ends without saying how often: one step per batch."""

    ends: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        BatchEnds.ends.append(trainer.global_step)


class CountBatches(StepHooks, pl.Callback):
    """Which steps batches end at; a step hook with no cadence of its own."""

    ends: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        CountBatches.ends.append(trainer.global_step)


class SignalDuring(StepHooks, pl.Callback):
    """Send this process ``signum`` as step ``step`` (counted from 1) starts, mid-batch."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def before_step(self, trainer: pl.Trainer, module: Any) -> None:
        if trainer.global_step + 1 == self.step:
            os.kill(os.getpid(), self.signum)


def test_the_plan_is_the_gcd_of_the_cadences_and_unknown_batch_callbacks_get_one_step() -> None:
    assert steps_per_batch([Every(10), Every(50), Every(0), Every(100)]) == 10
    assert steps_per_batch([Every(4), Every(6)]) == 2
    assert steps_per_batch([Every(10), pl.Callback()]) == 10  # no batch hooks: no say
    assert steps_per_batch([Every(10), BatchEnds()]) == 1
    assert steps_per_batch([Every(0)]) == steps_per_batch([]) == 1
    assert batch_length(0, 10, 25) == 10 and batch_length(20, 10, 25) == 5
    assert batch_length(13, 10, 100) == 7  # a run resumed at an odd step realigns
    assert batch_length(13, 10, -1) == 7


def rows(job: Path, skip: tuple[str, ...] = ("wall_time_s",)) -> list[dict[str, str]]:
    with open(job / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in skip} for row in csv.DictReader(f)]


def same_run(a: Path, b: Path, skip: tuple[str, ...] = ("wall_time_s",)) -> None:
    assert rows(a, skip) == rows(b, skip)
    assert (a / "final.png").read_bytes() == (b / "final.png").read_bytes()
    assert sorted(p.name for p in (a / "snapshots").iterdir()) == sorted(p.name for p in (b / "snapshots").iterdir())


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_several_steps_per_batch_write_what_one_step_per_batch_writes(tmp_path: Path, optimizer: str) -> None:
    CountBatches.ends, BatchEnds.ends = [], []
    counted = "+callbacks.count._target_=test_steps.CountBatches"
    chunked = train(compose_cfg(*RUN, f"optimizer={optimizer}", counted, output_dir=tmp_path / "chunked"))
    assert CountBatches.ends == [4, 8, 12, 14]
    one = train(compose_cfg(*RUN, f"optimizer={optimizer}", counted,
                            "+callbacks.ends._target_=test_steps.BatchEnds", output_dir=tmp_path / "one"))
    assert BatchEnds.ends == list(range(1, 15))
    assert [int(r["step"]) for r in rows(tmp_path / "chunked")] == list(range(14))
    same_run(tmp_path / "chunked", tmp_path / "one")
    assert chunked["final_loss"] == one["final_loss"] and chunked["steps"] == one["steps"] == 14


def test_a_signal_mid_batch_stops_after_that_step_and_the_resume_equals_the_whole_run(tmp_path: Path) -> None:
    whole = train(compose_cfg(*RUN, output_dir=tmp_path / "whole"))
    job = tmp_path / "job"
    kill = ["+callbacks.kill._target_=test_steps.SignalDuring", "+callbacks.kill.step=7",
            f"+callbacks.kill.signum={int(signal.SIGTERM)}"]
    with pytest.raises(SystemExit):
        train(compose_cfg(*RUN, *kill, output_dir=job))
    assert [int(r["step"]) for r in rows(job)] == list(range(7))  # after step 7, not at the batch's end (8)
    resumed = train(compose_cfg(*RUN, "resume=true", output_dir=job))
    assert resumed["status"] == "ok" and resumed["final_loss"] == whole["final_loss"]
    # evals: L-BFGS re-evaluates the start point its line search had cached, once after a resume
    same_run(job, tmp_path / "whole", skip=("wall_time_s", "evals"))


class BackwardHooks(pl.Callback):
    """Counts ``on_after_backward``: a callback that overrides it keeps getting it."""

    calls = 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        BackwardHooks.calls += 1


def test_a_callback_with_backward_hooks_still_gets_them(tmp_path: Path) -> None:
    BackwardHooks.calls = 0
    summary = train(compose_cfg(*FAST, "optimizer=adam", "+callbacks.hooks._target_=test_steps.BackwardHooks",
                                output_dir=tmp_path))
    assert summary["steps"] == 4 and BackwardHooks.calls == 4  # one per evaluation
