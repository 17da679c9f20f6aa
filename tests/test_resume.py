"""Checkpoint and resume: a run stopped half-way by a signal continues to the same result."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl

from conftest import FAST, compose_cfg, default_sigint
from nst_exp.errors import ConfigError
from nst_exp.runtime.checkpoint import CHECKPOINT_NAME
from nst_exp.train import train

# L-BFGS (history, line search) and fv augmentation (its own RNG) are the state that is
# easiest to get wrong; trainer=cpu is deterministic, so equality below is exact.
# 64 px, not FAST's 32: at 32 px relu5_1 is 1x1, and mkldnn's multi-threaded backward of a
# conv on a 1x1 map is not bit-reproducible (measured with 2 threads); larger maps are.
RUN = [*FAST, "image_size=64", "steps=12", "log_every=5", "snapshot_every=0", "checkpoint_every=4",
       "optimizer=lbfgs", "augment=fv"]


class SignalAt(pl.Callback):
    """Send this process ``signum`` at the end of step ``step``, as `kill` from outside would."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def metric_rows(job_dir: Path) -> list[dict[str, str]]:
    with open(job_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def losses(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    """Each step's losses as written (repr of the float32 values: equal text = equal bits)."""
    return [(r["step"], r["loss"], r["content_loss"], r["style_loss"], r["tv_loss"]) for r in rows]


@pytest.mark.slow  # three runs, > 10 s
def test_sigterm_half_way_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    reference = train(compose_cfg(*RUN, output_dir=tmp_path / "reference"))
    job = tmp_path / "job"
    kill = ["+callbacks.kill._target_=test_resume.SignalAt", "+callbacks.kill.step=7",
            f"+callbacks.kill.signum={int(signal.SIGTERM)}"]
    with pytest.raises(SystemExit):  # Lightning stops after the step, raising SIGTERMException
        train(compose_cfg(*RUN, "logger=wandb", *kill, output_dir=job))
    assert (job / CHECKPOINT_NAME).is_file()
    assert [int(r["step"]) for r in metric_rows(job)] == list(range(7))
    stopped = json.loads((job / "summary.json").read_text())
    first_wandb = stopped["wandb"]["id"]

    with pytest.raises(ConfigError, match="weights changed"):  # another objective is refused
        train(compose_cfg(*RUN, "logger=wandb", "style_weight=7", "resume=true", output_dir=job))

    resumed = train(compose_cfg(*RUN, "logger=wandb", "resume=true", output_dir=job))
    assert resumed["status"] == "ok" and resumed["steps"] == 12
    assert resumed["wandb"]["id"] == first_wandb  # the same W&B run continues
    # time before the interruption counts too, so ms_per_step is total time / total steps
    assert resumed["train_time_s"] > stopped["train_time_s"]
    assert resumed["ms_per_step"] == pytest.approx(1000 * resumed["train_time_s"] / 12, rel=0.01)
    assert losses(metric_rows(job)) == losses(metric_rows(tmp_path / "reference"))  # no step twice
    assert resumed["final_loss"] == reference["final_loss"]
    assert (job / "final.png").read_bytes() == (tmp_path / "reference" / "final.png").read_bytes()
    assert not (job / CHECKPOINT_NAME).exists()  # removed once the run has finished
    assert not list(job.rglob("*.tmp"))


def test_resume_true_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resume=true but there is no"):
        train(compose_cfg(*FAST, "resume=true", output_dir=tmp_path))
    assert not (tmp_path / "summary.json").exists()
    with pytest.raises(ConfigError, match="resume='maybe'"):
        train(compose_cfg(*FAST, "resume=maybe", output_dir=tmp_path))


@pytest.mark.slow  # two CLI runs, > 10 s
def test_ctrl_c_on_the_cli_checkpoints_and_resume_continues(tmp_path: Path) -> None:
    """The user's flow: Ctrl-C a run, then the same command with resume=true in the same dir."""
    job = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "nst_exp.train", *FAST, "log_every=1", "snapshot_every=0",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={job}"]
    log = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115 - a file, not a pipe: a full pipe would stall the run
    proc = subprocess.Popen([*base, "steps=100000"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=log, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (job / "metrics.csv").is_file() and len(metric_rows(job)) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    finally:
        proc.kill()
        log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode != 0, stderr[-2000:]
    stopped = json.loads((job / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and (job / CHECKPOINT_NAME).is_file(), stderr[-2000:]

    steps = stopped["steps"] + 3
    done = subprocess.run([*base, f"steps={steps}", "resume=true"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps"] == steps
    assert [int(r["step"]) for r in metric_rows(job)] == list(range(steps))
