"""One device and a fair share of CPU threads per job when a sweep runs jobs side by side.

``hydra/launcher=joblib`` runs ``n_jobs`` jobs at once in loky worker processes. Each worker
lives for the whole sweep and runs several jobs in turn, so a device picked from the job
number could collide (job 0 still running on GPU 0 when job 2 starts there). Instead each
worker claims a free *slot* from a pool of lock files under the sweep dir and keeps it for
its life; slot ``i`` means GPU ``i`` and ``1/n_jobs`` of the CPU cores. The OS drops the lock
when the worker exits, so a crashed worker frees its GPU.

Only the joblib launcher needs this: SLURM (submitit) and Ray give every task its own GPU and cores.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger(__name__)

MAX_CPU_JOBS = 4  # more parallel CPU jobs than this mostly multiplies memory, not throughput
_slot: tuple[Path, int, IO[str]] | None = None  # this process's claim: pool, slot, open lock file


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, e.g. a SLURM or taskset limit)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_jobs() -> int:
    """Default ``n_jobs`` for one machine: one job per GPU, else up to 4 single-core-ish jobs."""
    gpus = torch.cuda.device_count()
    return gpus if gpus > 0 else max(1, min(cpu_count(), MAX_CPU_JOBS))


def gpus_per_job() -> int:
    """Ray's default ``num_gpus`` per task: one where GPUs exist (0 would share GPU 0 by all)."""
    return 1 if torch.cuda.device_count() > 0 else 0


def claim_slot(lock_dir: Path, n_slots: int) -> int | None:
    """Claim the first free slot in ``lock_dir`` for this process (kept until it exits).

    Returns None when every slot is held, which only happens if the launcher runs more
    workers than ``n_slots``; the caller then falls back to the job number.
    """
    global _slot
    if _slot is not None and _slot[0] == lock_dir and _slot[1] < n_slots:
        return _slot[1]
    if _slot is not None:  # a claim in another pool (an earlier sweep in this process): let it go
        _slot[2].close()
        _slot = None
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(n_slots):
        handle = open(lock_dir / f"slot{index}.lock", "w")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _slot = (lock_dir, index, handle)
        return index
    return None


def pin_job(cfg: DictConfig) -> None:
    """Give this joblib job its own GPU and CPU-thread share; a no-op for any other launcher."""
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    if not str(hydra.launcher.get("_target_", "")).endswith(("JoblibLauncher", "ProcessLauncher")):
        return
    n_jobs = int(hydra.launcher.n_jobs)
    assign(cfg, n_jobs if n_jobs > 0 else cpu_count(), int(hydra.job.num), Path(hydra.sweep.dir) / ".slots")


def assign(cfg: DictConfig, n_jobs: int, job_num: int, lock_dir: Path) -> tuple[int, str, int]:
    """Claim a slot, set torch's thread count and ``cfg.trainer.devices``; returns (slot, device, threads).

    The GPU goes into ``cfg.trainer.devices = [slot]`` rather than CUDA_VISIBLE_DEVICES: a
    reused loky worker may already have initialised CUDA, after which the variable is ignored.
    """
    slot = claim_slot(lock_dir, n_jobs)
    slot = job_num % n_jobs if slot is None else slot
    threads = max(1, cpu_count() // n_jobs)
    torch.set_num_threads(threads)
    device = "cpu"
    gpus = torch.cuda.device_count()
    if gpus > 0 and cfg.trainer.get("accelerator") in ("auto", "gpu", "cuda"):
        cfg.trainer.devices = [slot % gpus]
        torch.cuda.set_device(slot % gpus)
        device = f"cuda:{slot % gpus}"
    log.info("Job %d: slot %d of %d, device %s, %d CPU thread(s)", job_num, slot, n_jobs, device, threads)
    return slot, device, threads
