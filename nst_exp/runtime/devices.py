"""One device and a fair share of CPU threads per job when a sweep runs jobs side by side.

A launcher that runs ``n`` jobs at once on one machine (``hydra/launcher=joblib``:
hydra_plugins/nst_process_launcher) gives each running job a *slot* ``i`` of ``n`` and says so
in the job's environment, ``NST_DEVICE_SLOT=i/n``; no two running jobs hold the same slot. Slot
``i`` means GPU ``i`` (modulo the GPUs there are) and ``1/n`` of the CPU cores. The job reads it
in ``pin_job``; a job without the variable (a single run, SLURM, Ray, the batched launcher) keeps
its devices: those launchers give every task its own GPU and cores, or run one job at a time.

The variable is the whole contract: nothing here knows which launcher runs the job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

MAX_CPU_JOBS = 4  # more parallel CPU jobs than this mostly multiplies memory, not throughput
SLOT_ENV = "NST_DEVICE_SLOT"  # "i/n", set by the launcher in the job's process


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


def slot_env(slot: int, n_slots: int) -> dict[str, str]:
    """What a launcher puts in a job's environment to give it slot ``slot`` of ``n_slots``."""
    if not 0 <= slot < n_slots:
        raise ValueError(f"slot {slot} is not one of {n_slots} slots")
    return {SLOT_ENV: f"{slot}/{n_slots}"}


def job_slot(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """The (slot, n_slots) a launcher gave this job, or None (the job keeps its devices)."""
    value = environ.get(SLOT_ENV)
    if not value:
        return None
    slot, _, n_slots = value.partition("/")
    return int(slot), int(n_slots)


def pin_job(cfg: DictConfig) -> None:
    """Give this job its slot's GPU and CPU-thread share when a launcher gave it a slot."""
    given = job_slot(os.environ)
    if given is not None:
        assign(cfg, *given)


def assign(cfg: DictConfig, slot: int, n_slots: int) -> tuple[str, int]:
    """Set torch's thread count and ``cfg.trainer.devices`` for ``slot``; returns (device, threads).

    The GPU goes into ``cfg.trainer.devices = [slot]`` rather than CUDA_VISIBLE_DEVICES: CUDA may
    already be initialised in this process (a resolver asked for the device count), after which
    the variable is ignored.
    """
    threads = max(1, cpu_count() // n_slots)
    torch.set_num_threads(threads)
    device = "cpu"
    gpus = torch.cuda.device_count()
    if gpus > 0 and cfg.trainer.get("accelerator") in ("auto", "gpu", "cuda"):
        cfg.trainer.devices = [slot % gpus]
        torch.cuda.set_device(slot % gpus)
        device = f"cuda:{slot % gpus}"
    log.info("Device slot %d of %d: device %s, %d CPU thread(s)", slot, n_slots, device, threads)
    return device, threads


def skip_nan_fill() -> None:
    """Turn off torch's NaN fill of new tensors under deterministic algorithms (process-wide).

    ``torch.use_deterministic_algorithms(True)`` (Lightning's ``deterministic``) also fills every
    new ``torch.empty`` tensor with NaN, so that a kernel reading memory it never wrote reads the
    same thing on each run. Every op of a step writes its whole output, so here the fill is pure
    cost (4 full-size 64-channel maps per step, 3% of a 512 px step); kernel choice, i.e.
    determinism, is unchanged (tests/test_faults.py and test_resume.py rerun and resume bit for
    bit). It is a torch process setting like the thread counts above, so it lives here, the one
    module that sets the process's devices and threads.
    """
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
