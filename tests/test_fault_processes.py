"""The fault table, process cases (issue 13): kill -9 and signals through real subprocesses.

Two runs in one dir; a sweep job killed; SIGTERM or kill -9 to a sweep's own process, for the
joblib (process-per-job), submitit-local and batched launchers. Each asserts what the user
sees (exit status, the one error line, every job's summary.json) and that no job outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import default_sigint, run_cli

pytestmark = pytest.mark.slow
LONG = ["model.weights=random", "image_size=32", "steps=100000", "trainer=cpu", "logger=none", "log_every=1",
        "snapshot_every=0", "checkpoint_every=0", "trainer.enable_progress_bar=false"]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def start(*args: str, cwd: Path) -> tuple[subprocess.Popen, Path]:
    """``python -m nst_exp.train ARGS`` in the background, stderr to a file (a pipe could fill)."""
    err = cwd / f"stderr-{time.monotonic_ns()}.txt"
    with open(err, "w") as file:
        proc = subprocess.Popen([sys.executable, "-m", "nst_exp.train", *args], cwd=cwd, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=file,
                                preexec_fn=default_sigint)
    return proc, err


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def stepping(job: Path, steps: int = 2) -> bool:
    """The job has written ``steps`` rows of metrics.csv."""
    try:
        return len((job / "metrics.csv").read_text().splitlines()) > steps
    except OSError:
        return False


def pid_of(job: Path) -> int:
    return int((job / ".lock").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def status(job: Path) -> str:
    return json.loads((job / "summary.json").read_text())["status"]


def finish(proc: subprocess.Popen, err: Path, timeout: float = 300) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
    return err.read_text()


def test_two_runs_in_one_dir_the_second_is_refused_and_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first, err = start(*LONG, f"hydra.run.dir={run}", cwd=tmp_path)
    try:
        wait_for(lambda: stepping(run), "the first run's steps")
        config = (run / ".hydra/overrides.yaml").read_text()
        second = run_cli(*LONG, "style_weight=1e3", f"hydra.run.dir={run}", cwd=tmp_path)
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: hydra.run.dir='{run}': in use by another run (PID {first.pid}); wait for it to finish, "
            "or choose another dir")
        assert (run / ".hydra/overrides.yaml").read_text() == config  # nothing of the first run touched
    finally:
        first.kill()  # kill -9: the lock is the OS's to drop
        finish(first, err)
    third = run_cli(*LONG[:2], "steps=2", *LONG[3:], f"hydra.run.dir={run}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]
    assert status(run) == "ok" and int((run / ".lock").read_text()) != first.pid


def test_joblib_sweep_contains_a_job_killed_by_sigkill(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *LONG[:2], "steps=25", *LONG[3:],
            "style_weight=1e3,1e4,1e5", f"hydra.sweep.dir={sweep}"]
    proc, err = start(*args, cwd=tmp_path)
    wait_for(lambda: stepping(sweep / "0"), "job 0's steps")
    os.kill(pid_of(sweep / "0"), signal.SIGKILL)  # as the OOM killer would
    stderr = finish(proc, err)
    assert proc.returncode == 1, stderr[-3000:]
    assert status(sweep / "0") == "failed: killed by SIGKILL (out of memory? see dmesg)"
    assert [status(sweep / job) for job in ("1", "2")] == ["ok", "ok"]  # the job beside it, and the next
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: 1 of 3 jobs failed")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_to_the_joblib_sweep_reaches_every_job_and_none_outlives_it(tmp_path: Path, signum: int) -> None:
    """SIGTERM: every running job checkpoints and says interrupted, no new job starts, exit 143.
    kill -9 of the sweep's process: its jobs get SIGTERM and do the same."""
    sweep = tmp_path / "sweep"
    proc, err = start("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *LONG, "checkpoint_every=1000",
                      "style_weight=1e3,1e4,1e5", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(lambda: stepping(sweep / "0") and stepping(sweep / "1"), "two jobs' steps")
    jobs = [pid_of(sweep / "0"), pid_of(sweep / "1")]
    proc.send_signal(signum)
    stderr = finish(proc, err)
    wait_for(lambda: not any(alive(pid) for pid in jobs), "the jobs to end", timeout=120)
    for job in ("0", "1"):
        wait_for(lambda job=job: status(sweep / job) == "interrupted", f"job {job}'s summary", timeout=30)
        assert (sweep / job / "checkpoint.ckpt").is_file()
    assert not (sweep / "2").exists()  # not started
    if signum == signal.SIGTERM:
        assert proc.returncode == 143, stderr[-3000:]
        assert stderr.strip().splitlines()[-1] == (f"error: interrupted by SIGTERM: 2 of 3 jobs started, 1 not; "
                                                   f"the same command with hydra.sweep.dir={sweep} continues them")


@pytest.mark.parametrize("fault", ["job killed", "SIGTERM to the sweep"])
def test_submitit_local_sweep_contains_a_dead_job_and_passes_on_sigterm(tmp_path: Path, fault: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweep]'")
    sweep = tmp_path / "sweep"
    steps = "steps=25" if fault == "job killed" else "steps=100000"
    proc, err = start("-m", "hydra/launcher=submitit_local", *LONG[:2], steps, *LONG[3:],
                      "style_weight=1e3,1e4", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(lambda: stepping(sweep / "0") and stepping(sweep / "1"), "both jobs' steps")
    jobs = [pid_of(sweep / "0"), pid_of(sweep / "1")]
    if fault == "job killed":
        os.kill(jobs[0], signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGTERM)
    stderr = finish(proc, err)
    assert not any(alive(pid) for pid in jobs)
    assert "Traceback" not in stderr, stderr[-3000:]
    if fault == "job killed":
        assert proc.returncode == 1, stderr[-3000:]
        assert status(sweep / "0").startswith("failed: its process died without a result")
        assert status(sweep / "1") == "ok"
    else:
        assert proc.returncode == 143, stderr[-3000:]
        assert [status(sweep / job) for job in ("0", "1")] == ["interrupted", "interrupted"]


def test_sigterm_to_a_batched_sweep_stops_every_job_of_the_batch(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc, err = start("-m", "hydra/launcher=batched", *LONG, "style_weight=1e3,1e4,1e5", f"hydra.sweep.dir={sweep}",
                      cwd=tmp_path)
    wait_for(lambda: all(stepping(sweep / job) for job in ("0", "1", "2")), "the batch's steps")
    proc.send_signal(signal.SIGTERM)
    stderr = finish(proc, err)
    assert proc.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "error: interrupted by SIGTERM"
    assert [status(sweep / job) for job in ("0", "1", "2")] == ["interrupted"] * 3
