"""The fault table, in-process cases (issue 13): each row is one fault and what the user must see.

Signals sent to the whole process, kill -9 and sweeps are in test_fault_processes.py; the
table with what the user sees for each is docs/troubleshooting.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import FAST, compose_cfg
from nst_exp.config import check_config
from nst_exp.errors import CheckpointError, ConfigError, ImageError
from nst_exp.runtime import checkpoint, jobdir, signals
from nst_exp.runtime.checkpoint import CHECKPOINT_NAME
from nst_exp.runtime.task import EXIT_USER_ERROR, task_wrapper
from nst_exp.train import train

# 64 px (a real checkpoint), checkpoint at step 3, stopped by SIGTERM at step 5 (test_resume.SignalAt).
RUN = [*FAST, "image_size=64", "steps=10", "log_every=1", "checkpoint_every=3"]
STOP_AT_5 = ["+callbacks.kill._target_=test_resume.SignalAt", "+callbacks.kill.step=5",
             f"+callbacks.kill.signum={int(signal.SIGTERM)}"]


def summary_of(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def run_job(*overrides: str, job: Path) -> int:
    """``task_wrapper(train)`` as the CLI runs it: the exit status (0 when it returns)."""
    try:
        task_wrapper(train, multirun=False)(compose_cfg(*overrides, output_dir=job))
    except SystemExit as stop:
        return int(stop.code)
    return 0


@pytest.fixture
def interrupted(tmp_path: Path) -> Path:
    """A job dir holding a run stopped by SIGTERM at step 5 (checkpoint.ckpt, summary interrupted)."""
    job = tmp_path / "job"
    assert run_job(*RUN, *STOP_AT_5, job=job) == 128 + signal.SIGTERM
    assert summary_of(job)["status"] == "interrupted" and (job / CHECKPOINT_NAME).is_file()
    return job


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a FIFO that is opened blocks forever."""
    def fail(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")
    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- one owner per job dir ------------------------------------------------------------------
def test_a_second_run_in_a_locked_dir_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(
        tmp_path: Path) -> None:
    code = f"from nst_exp.runtime import jobdir; jobdir.claim({str(tmp_path)!r}); print('held', flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        held = rf"paths.output_dir='{tmp_path}': in use by another run \(PID {holder.pid}\)"
        with pytest.raises(Exception, match=held):
            jobdir.claim(tmp_path)
        assert run_job(*FAST, job=tmp_path) == EXIT_USER_ERROR
        assert not (tmp_path / "summary.json").exists()  # nothing written into the holder's dir
    finally:
        holder.kill()  # kill -9: no chance to unlock
        holder.wait()
    jobdir.claim(tmp_path)  # the OS dropped the dead holder's lock
    assert (tmp_path / jobdir.LOCK_NAME).read_text().strip() == str(os.getpid())
    jobdir.release(tmp_path)


def test_a_reused_dir_starts_clean_and_keeps_the_earlier_results_aside(tmp_path: Path) -> None:
    assert run_job(*FAST, "style_weight=1e3", job=tmp_path) == 0
    first = summary_of(tmp_path)
    (tmp_path / ".summary.json.x1y2.tmp").write_text("{")  # a write cut short by kill -9
    assert run_job(*FAST, "style_weight=1e6", "steps=2", job=tmp_path) == 0
    (aside,) = (tmp_path / jobdir.REPLACED_DIR).iterdir()
    assert summary_of(aside) == first and (aside / "final.png").is_file() and (aside / "metrics.csv").is_file()
    assert summary_of(tmp_path)["steps"] == 2  # the summary beside .hydra is the new run's
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_new_run_that_fails_at_once_in_a_reused_dir_leaves_no_old_ok_behind(tmp_path: Path) -> None:
    assert run_job(*FAST, job=tmp_path) == 0
    assert run_job(*FAST, "style_weight=-1", job=tmp_path) == EXIT_USER_ERROR
    assert summary_of(tmp_path)["status"].startswith("failed: style_weight=-1")
    assert not (tmp_path / "final.png").exists()


# --- resume checks what it resumes -----------------------------------------------------------
@pytest.mark.parametrize(("change", "named"), [
    ("model.pooling=avg", "network"), ("model.arch=vgg16", "network"), ("seed=1", "seed"),
    ("image_size=48", "image"), ("model.preprocess=caffe", "network"),
])
def test_resume_refuses_another_network_size_or_seed(interrupted: Path, change: str, named: str) -> None:
    before = (interrupted / CHECKPOINT_NAME).read_bytes(), (interrupted / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match=rf"is of a different run \(.*{named}.*changed\)"):
        train(compose_cfg(*RUN, change, "resume=true", output_dir=interrupted))
    assert ((interrupted / CHECKPOINT_NAME).read_bytes(), (interrupted / "summary.json").read_bytes()) == before


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_an_unreadable_checkpoint_is_one_line_and_the_interrupted_run_is_kept(
        interrupted: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = interrupted / CHECKPOINT_NAME
    if damage == "truncated":
        os.truncate(ckpt, ckpt.stat().st_size // 2)
    elif damage == "empty":
        os.truncate(ckpt, 0)
    else:
        import torch
        torch.save({"state_dict": {}}, ckpt)
    files = {p.name: p.read_bytes() for p in interrupted.iterdir() if p.is_file() and p.name != "train.log"}
    capsys.readouterr()
    for _ in range(2):  # and again: the failed attempt changed nothing
        assert run_job(*RUN, job=interrupted) == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: resume: {ckpt}") and "resume=false" in err, err
    assert {p.name: p.read_bytes() for p in interrupted.iterdir() if p.is_file() and p.name != "train.log"} == files
    assert run_job(*RUN, "resume=false", job=interrupted) == 0  # the way out the message names
    assert summary_of(interrupted)["status"] == "ok"


def test_steps_below_the_checkpoint_is_one_line(interrupted: Path) -> None:
    with pytest.raises(ConfigError, match=r"^steps=4: .* is already at step 5; ask for more steps"):
        train(compose_cfg(*RUN, "steps=4", output_dir=interrupted))
    with pytest.raises(CheckpointError):
        checkpoint.read_checkpoint(interrupted / "summary.json")


def test_stop_signals_checkpoint_after_the_step_and_hand_sigusr_to_its_previous_owner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGUSR2 (SLURM's time-limit warning) during fit: checkpoint, interrupted, then submitit's handler."""
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        usr2 = [*STOP_AT_5[:2], f"+callbacks.kill.signum={int(signal.SIGUSR2)}"]
        assert run_job(*RUN, *usr2, job=tmp_path) == 128 + signal.SIGUSR2
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [signal.SIGUSR2]
    assert summary_of(tmp_path)["status"] == "interrupted" and summary_of(tmp_path)["steps"] == 5
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "nst")
    (slurm,) = signals.lightning_plugins()
    assert slurm.auto_requeue is False  # Lightning's own requeue would save mid-step and requeue twice


# --- no hangs, no tracebacks -----------------------------------------------------------------
def test_a_fifo_or_a_symlink_loop_as_input_is_refused_at_once(tmp_path: Path) -> None:
    from nst_exp.core.images import load_image

    fifo, loop = tmp_path / "content.png", tmp_path / "loop.png"
    os.mkfifo(fifo)
    os.symlink(loop, loop)
    with deadline(20), pytest.raises(ImageError, match=r"^pair.content='.*content.png': is a FIFO, not a regular"):
        load_image(fifo, "pair.content")
    with pytest.raises(ImageError, match=r"loop.png': cannot be read \(Too many levels of symbolic links\)"):
        load_image(loop, "pair.content")
    with deadline(20), pytest.raises(Exception, match="is a FIFO"):
        train(compose_cfg(*FAST, f"model.weights={fifo}", output_dir=tmp_path / "job"))


@pytest.mark.parametrize(("override", "message"), [
    ("seed=-1", "seed=-1: must be an integer in [0, 4294967295]"),
    ("seed=1180591620717411303424", "seed=1180591620717411303424: must be an integer in [0, 4294967295]"),
    ("checkpoint_every=-1", "checkpoint_every=-1: must be an integer >= 0"),
    ("init.noise=1.5", "init.noise=1.5: must be a number in [0, 1]"),
    ("optimizer.history_size=0", "optimizer.history_size=0: must be an integer >= 1"),
    ("callbacks.divergence.lr_factor=2", "callbacks.divergence.lr_factor=2: must be a number in (0, 1)"),
])
def test_numeric_knobs_are_range_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         override: str, message: str) -> None:
    with pytest.raises(ConfigError):
        check_config(compose_cfg(*FAST, override))
    assert run_job(*FAST, override, job=tmp_path) == EXIT_USER_ERROR
    assert capsys.readouterr().err == f"error: {message}\n"


def test_the_pixel_guard_and_the_memory_estimate_apply_to_the_resized_size(tmp_path: Path) -> None:
    from nst_exp.core import images

    with deadline(30), pytest.raises(ImageError, match=r"20000x15000 px after resizing to image_size=20000 "
                                                       r"\(300000000 pixels\) exceeds max_image_pixels=89478485"):
        pair = compose_cfg(*FAST).pair
        images.load_pair(pair.content, pair.style, 20000, max_pixels=89478485)
    with deadline(30), pytest.raises(ImageError, match=r"20000x15000 px after resizing .* needs about \d+\.\d GiB"):
        train(compose_cfg(*FAST, "image_size=20000", "max_image_pixels=null", output_dir=tmp_path))


def test_a_full_disk_is_one_line_and_keeps_the_last_complete_files(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("needs root and tmpfs to mount a 200 KB file system (mount -t tmpfs -o size=200k)")
    try:
        job = disk / "job"
        code = run_job(*RUN, "checkpoint_every=2", "snapshot_every=1", job=job)
        err = capsys.readouterr().err
        assert code == EXIT_USER_ERROR and err.count("\n") == 1, err
        assert err.startswith(f"error: paths.output_dir='{job}': disk full") and "Traceback" not in err
        assert not list(job.rglob("*.tmp"))
        for png in job.rglob("*.png"):  # every image there is complete
            assert png.read_bytes().endswith(b"IEND\xaeB`\x82")
        for name in ("summary.json", "metrics.csv"):  # complete if there at all
            text = (job / name).read_text() if (job / name).exists() else ""
            assert not text or text.endswith("\n")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_resume_passes_weights_only_so_lightning_says_nothing(interrupted: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    summary = train(compose_cfg(*RUN, output_dir=interrupted))
    assert summary["status"] == "ok" and summary["steps"] == 10
    assert not [r for r in caplog.records if "weights_only" in r.getMessage()]


@pytest.mark.slow
def test_wandb_online_without_a_network_gives_up_after_init_timeout(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B's own default waits 90 s per job; the logger is skipped with a warning after init_timeout."""
    import time

    from nst_exp.runtime.job_loggers import wandb_logger

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    assert wandb_logger(str(tmp_path / "wandb"), mode="online", init_timeout=3) is None
    assert time.monotonic() - start < 3 + 30
