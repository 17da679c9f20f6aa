"""Sweeps on a real SLURM cluster through ``-m hydra/launcher=slurm`` (tests/slurm_cluster.py).

One single-node cluster (2 CPUs) serves the module. The jobs run one thread each
(OMP_NUM_THREADS=1, exported by sbatch), so the preempted run is compared bit for bit with an
uninterrupted one run the same way.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slurm_cluster import APT_LINE, LocalSlurm, local_slurm, missing_programs

from conftest import run_cli
from nst_exp.runtime.checkpoint import CHECKPOINT_NAME

pytestmark = pytest.mark.slow

TINY = ["model.weights=random", "image_size=32", "steps=4", "trainer=cpu", "logger=none", "snapshot_every=0",
        "trainer.enable_progress_bar=false"]
# Long enough to requeue after the first checkpoint; 64 px keeps every map larger than 1x1
# (bit-reproducible, see tests/test_resume.py); L-BFGS history and fv's RNG are in the checkpoint.
PREEMPTED = ["model.weights=random", "image_size=64", "steps=40", "trainer=cpu", "logger=none", "log_every=5",
             "snapshot_every=0", "checkpoint_every=4", "optimizer=lbfgs", "augment=fv",
             "trainer.enable_progress_bar=false"]
ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "CONFIGURING", "SUSPENDED")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    missing = missing_programs()
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found); as root: {APT_LINE}")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster runs its daemons and jobs as root")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweep]'")
    with local_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def sweep_args(cluster: LocalSlurm, sweep: Path) -> list[str]:
    """``-m hydra/launcher=slurm`` sized for the test node: no GPU, one CPU and 1 GB a job."""
    return ["-m", "hydra/launcher=slurm", f"hydra.launcher.partition={cluster.partition}",
            "hydra.launcher.gpus_per_task=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"]


def job_env(cluster: LocalSlurm) -> dict[str, str]:
    return {"SLURM_CONF": str(cluster.conf), "OMP_NUM_THREADS": "1"}


def slurm_ids(sweep: Path) -> dict[int, str]:
    """Job number -> SLURM job id (``<array>_<task>``; a one-job sweep is a plain job)."""
    ids = {}
    for log in (sweep / ".submitit").glob("*/*_log.out"):
        job_id = log.parent.name
        ids[int(job_id.split("_")[1]) if "_" in job_id else 0] = job_id
    return ids


def final_states(cluster: LocalSlurm, job_ids: list[str], timeout: float = 90) -> dict[str, str]:
    """``sacct`` states once no job is active (submitit returns when a result file appears, a
    moment before SLURM marks the job ended)."""
    return {job: history(cluster, job, timeout)[-1] for job in job_ids}


def history(cluster: LocalSlurm, job: str, timeout: float = 90) -> list[str]:
    """Every run of ``job`` in ``sacct`` (a requeued job has one per start), once none is active."""
    deadline = time.monotonic() + timeout
    while True:
        states = cluster.run("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job, check=False).split("\n")
        states = [state.split()[0] for state in states if state.strip()]
        if (states and states[-1] not in ACTIVE) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def summaries(sweep: Path) -> dict[int, dict]:
    return {int(job.name): json.loads((job / "summary.json").read_text())
            for job in sweep.iterdir() if job.name.isdigit()}


def half_written(sweep: Path) -> list[Path]:
    """Temp files of atomic writes left behind (a write cut off by the kill)."""
    return [p for p in sweep.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_four_jobs_run_as_one_array_and_complete(slurm: LocalSlurm, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(*sweep_args(slurm, sweep), "style_weight=1e3,1e4,1e5,1e6", *TINY, cwd=tmp_path,
                     env=job_env(slurm))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = summaries(sweep)
    assert sorted(jobs) == [0, 1, 2, 3] and all(s["status"] == "ok" and s["steps"] == 4 for s in jobs.values())
    assert all((sweep / str(n) / "final.png").is_file() for n in jobs)
    ids = slurm_ids(sweep)
    assert sorted(ids) == [0, 1, 2, 3] and len({job.split("_")[0] for job in ids.values()}) == 1  # one array
    assert set(final_states(slurm, list(ids.values())).values()) == {"COMPLETED"}
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3%4" in script and f"#SBATCH --partition={slurm.partition}" in script
    assert "#SBATCH --signal=USR2@120" in script


def test_failed_job_is_failed_in_sacct_and_the_others_complete(slurm: LocalSlurm, tmp_path: Path,
                                                              tiny_pair: tuple[Path, Path]) -> None:
    content, style = tiny_pair
    sweep = tmp_path / "sweep"
    result = run_cli(*sweep_args(slurm, sweep), f"pair.content={content}",
                     f"pair.style={tmp_path / 'gone.png'},{style}", *TINY, cwd=tmp_path, env=job_env(slurm))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "1 of 2 jobs failed (job 0: failed: pair.style=" in result.stderr
    assert "Traceback" not in result.stderr
    jobs = summaries(sweep)
    assert jobs[0]["status"].startswith("failed: pair.style=") and "gone.png" in jobs[0]["status"]
    assert jobs[1]["status"] == "ok" and (sweep / "1" / "final.png").is_file()
    ids = slurm_ids(sweep)
    assert final_states(slurm, [ids[0], ids[1]]) == {ids[0]: "FAILED", ids[1]: "COMPLETED"}


def test_submitit_local_keeps_the_same_failure_contract(tmp_path: Path, tiny_pair: tuple[Path, Path]) -> None:
    """The launcher's job and sweep sides without a cluster: the failed job's process exits 1."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweep]'")
    content, style = tiny_pair
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", f"pair.content={content}",
                     f"pair.style={style},{tmp_path / 'gone.png'}", *TINY, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "1 of 2 jobs failed (job 1: failed: pair.style=" in result.stderr
    assert "job 1: submitit job" in result.stdout and "failed, see" in result.stdout  # Hydra's log
    assert summaries(sweep)[0]["status"] == "ok"
    logs = "".join(path.read_text() for path in (sweep / ".submitit").rglob("*_log.err"))
    assert "JobFailed: job 1: failed: pair.style=" in logs  # the job's process raised: exit status 1


def metric_rows(job_dir: Path) -> list[tuple[str, ...]]:
    with open(job_dir / "metrics.csv") as f:
        return [(r["step"], r["loss"], r["content_loss"], r["style_loss"], r["tv_loss"]) for r in csv.DictReader(f)]


def start_sweep(cluster: LocalSlurm, sweep: Path, *overrides: str) -> subprocess.Popen[str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **job_env(cluster)}
    return subprocess.Popen([sys.executable, "-m", "nst_exp.train", *sweep_args(cluster, sweep), *overrides],
                            cwd=sweep.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until(ready: Callable[[], bool], what: str, sweep_proc: subprocess.Popen[str], timeout: float = 240) -> None:
    """Poll ``ready()`` while the multirun runs; fail with its stderr if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert sweep_proc.poll() is None, sweep_proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.2)


def checkpoints(sweep: Path) -> int:
    return len(list(sweep.glob(f"*/{CHECKPOINT_NAME}")))


def count(log: Path, text: str) -> int:
    return log.read_text().count(text) if log.exists() else 0


def test_preempted_job_resumes_twice_and_ends_as_an_uninterrupted_run(slurm: LocalSlurm, tmp_path: Path) -> None:
    """Preempted by ``scontrol requeue`` (SIGTERM), then by the time-limit warning (USR2, which
    submitit answers with its own requeue): each time the job checkpoints after its step, is
    requeued, and resumes; the result equals an uninterrupted run, bit for bit."""
    sweep, log = tmp_path / "sweep", tmp_path / "sweep" / "0" / "train.log"
    proc = start_sweep(slurm, sweep, *PREEMPTED)
    reference = None
    try:
        wait_until(lambda: checkpoints(sweep) >= 1, "the first checkpoint", proc)
        job = slurm_ids(sweep)[0]
        slurm.run("scontrol", "requeue", job)  # SIGTERM now, queued again
        reference = subprocess.Popen([sys.executable, "-m", "nst_exp.train", *PREEMPTED,
                                      f"hydra.run.dir={tmp_path / 'reference'}"], cwd=tmp_path,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: count(log, "Resumed at step") == 1, "resumed", proc)
        saves = count(log, "Checkpoint at step")
        wait_until(lambda: count(log, "Checkpoint at step") > saves, "a checkpoint after resuming", proc)
        slurm.run("scancel", "--signal=USR2", job)  # as SLURM does signal_delay_s before the limit
        _, stderr = proc.communicate(timeout=400)
        assert reference.wait(timeout=400) == 0, reference.stderr.read()[-3000:]
    finally:
        for process in (proc, reference):
            if process is not None and process.poll() is None:
                process.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert history(slurm, job) == ["REQUEUED", "REQUEUED", "COMPLETED"]
    text = log.read_text()
    assert "SIGUSR2: checkpointing after this step" in text and text.count("Resumed at step") == 2
    resumed = [int(part.split()[0]) for part in text.split("Resumed at step ")[1:]]
    assert 4 <= resumed[0] < resumed[1] < 40, resumed
    done = json.loads((sweep / "0" / "summary.json").read_text())
    assert done["status"] == "ok" and done["steps"] == 40
    rows = metric_rows(sweep / "0")
    assert [int(r[0]) for r in rows] == list(range(40))  # each step once
    assert rows == metric_rows(tmp_path / "reference")  # bit-identical losses
    assert done["final_loss"] == json.loads((tmp_path / "reference" / "summary.json").read_text())["final_loss"]
    assert (sweep / "0" / "final.png").read_bytes() == (tmp_path / "reference" / "final.png").read_bytes()
    assert not (sweep / "0" / CHECKPOINT_NAME).exists()  # deleted once the run finished


def test_scancel_of_the_array_leaves_interrupted_jobs_with_checkpoints(slurm: LocalSlurm, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    long = [*PREEMPTED, "steps=400"]
    proc = start_sweep(slurm, sweep, *long, "style_weight=1e3,1e4,1e5,1e6")
    try:
        wait_until(lambda: checkpoints(sweep) >= 2, "2 checkpoints", proc)  # two jobs run (2 CPUs), two wait
        array = slurm_ids(sweep)[0].split("_")[0]
        slurm.run("scancel", array)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "jobs failed" in stderr
    started = sorted(int(p.parent.name) for p in sweep.glob("*/.hydra"))
    assert len(started) >= 2
    for number in started:
        job = sweep / str(number)
        assert json.loads((job / "summary.json").read_text())["status"] == "interrupted"
        assert (job / CHECKPOINT_NAME).is_file()
        steps = [int(r[0]) for r in metric_rows(job)]
        assert steps == list(range(len(steps)))
    assert half_written(sweep) == []
    # The jobs that never started have no .hydra/, but a summary.json saying so: the verdict counts all four.
    assert "4 of 4 jobs failed" in stderr, stderr[-3000:]
    for number in sorted(set(range(4)) - set(started)):
        status = json.loads((sweep / str(number) / "summary.json").read_text())["status"]
        assert status.startswith(f"failed: submitit job {array}_") and "without a result (CANCELLED" in status, status
    records = slurm.sacct(array)  # tasks that never started: one record, e.g. 12_[2-3]
    assert {state.split()[0] for state in records.values()} == {"CANCELLED"}, records
