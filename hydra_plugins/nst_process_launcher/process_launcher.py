"""``hydra/launcher=joblib``: sweep jobs side by side, each in a process of its own, contained.

    python -m nst_exp.train -m hydra/launcher=joblib hydra.launcher.n_jobs=2 style_weight=1e3,1e4,1e5

Why not joblib's own launcher (the config keeps its name, which users type): its loky pool
treats one dead worker as a broken pool. A worker killed by the OOM killer or ``kill -9`` then
costs the healthy job running beside it (killed without a summary), every later job (never
run) and the sweep itself (a TerminatedWorkerError traceback); and SIGTERM to the sweep left
the workers running on their own. Here:

- each job runs in a fresh process (``spawn``), at most ``n_jobs`` at a time, in its own
  process group (a terminal's Ctrl-C reaches the launcher, which passes it on once);
- a job killed by a signal is recorded as failed in its summary.json (``killed by SIGKILL:
  out of memory?``), the other jobs go on, and the sweep exits 1 (SweepOutcome);
- SIGTERM/SIGINT to the launcher reach every running job, each checkpoints after its step and
  says ``interrupted``; no new job starts; the launcher waits for them and exits 128 + signal;
- a job's process gets SIGTERM when the launcher dies, even by ``kill -9`` (prctl), so no job
  outlives the sweep.

Each running job holds a device slot of ``n_jobs`` (its GPU and share of the cores), given in its
environment (nst_exp/runtime/devices.py).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.nst_process_launcher.base import (
    SweepLauncher,
    die_with_parent,
    forward_stop_signals,
    job_config,
    job_dir,
)

log = logging.getLogger(__name__)


class ProcessLauncher(SweepLauncher):
    """Run up to ``n_jobs`` sweep jobs at once, each in its own process (see the module docstring).

    Its settings: ``config.ProcessLauncherConf`` (``hydra/launcher=nst_process``); joblib's pool
    keys (backend, prefer, ...) come with the ``joblib`` preset (see config.py) and are unused.
    """

    def __init__(self, n_jobs: int = -1, **joblib_pool_keys: Any) -> None:
        super().__init__()
        self.n_jobs = int(n_jobs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from nst_exp.runtime.devices import slot_env  # not at import: plugin discovery stays fast (torch)

        sweep_dir = self.begin()
        n_jobs = self.n_jobs if self.n_jobs > 0 else (os.cpu_count() or 1)
        log.info("Launching %d jobs, %d at a time, each in its own process", len(job_overrides), n_jobs)
        jobs = [Job(self._job_config(overrides, initial_job_idx + n), overrides)
                for n, overrides in enumerate(job_overrides)]
        waiting, running = list(jobs), []
        free_slots = list(range(n_jobs))  # a running job holds one: its GPU and share of the cores
        exchange = Path(tempfile.mkdtemp(prefix="nst-jobs-"))
        with forward_stop_signals(lambda: [job.process.pid for job in running if job.process.pid]) as signals:
            while running or (waiting and not signals):
                while waiting and free_slots and not signals:
                    slot = free_slots.pop(0)
                    running.append(waiting.pop(0).start(self.hydra_context, self.task_function, exchange,
                                                        slot_env(slot, n_jobs), slot))
                wait([job.process.sentinel for job in running], timeout=1.0)
                for job in [job for job in running if not job.process.is_alive()]:
                    running.remove(job)
                    job.finish()
                    free_slots = sorted([*free_slots, job.slot])
        shutil.rmtree(exchange, ignore_errors=True)
        if signals:
            stopped(signals[0], len(jobs), len(waiting), str(sweep_dir))
        return [job.result for job in jobs]

    def _job_config(self, overrides: Sequence[str], num: int) -> DictConfig:
        assert self.config is not None and self.hydra_context is not None
        return job_config(self.hydra_context, self.config, overrides, num)


class Job:
    """One sweep job and the process that runs it."""

    def __init__(self, config: DictConfig, overrides: Sequence[str]) -> None:
        self.config, self.overrides = config, list(overrides)
        self.dir = job_dir(config)
        self.process: Any = None
        self.result: JobReturn | None = None
        self.slot = 0
        self._payload = Path()

    def start(self, hydra_context: HydraContext, task_function: TaskFunction, exchange: Path,
              env: dict[str, str], slot: int) -> Job:
        """Start the job's process with ``env`` added to its environment (its device slot, see
        nst_exp/runtime/devices.py); its inputs and its JobReturn pass through files in ``exchange``.

        (Through files, not pipes: a payload larger than a pipe's buffer would hold the launcher
        until the child has imported torch, or the child until the launcher reads.)
        """
        self._payload = exchange / f"job{self.config.hydra.job.num}.pkl"
        task = (task_function.__module__, task_function.__qualname__)  # by name: see _run_job
        # cloudpickle, as joblib does: Hydra's state holds OmegaConf resolvers, which are closures
        self._payload.write_bytes(cloudpickle.dumps((hydra_context, self.config, Singleton.get_state())))
        log.info("\t#%d : %s", self.config.hydra.job.num, " ".join(filter_overrides(self.overrides)))
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared by fork
        self.process = context.Process(target=_run_job, args=(str(self._payload), task, os.getpid(), env))
        self.slot = slot
        self.process.start()
        return self

    def finish(self) -> None:
        """Collect the job's JobReturn; a job that died without one is recorded as failed."""
        returned = self._payload.with_suffix(".ret")
        try:
            self.result = cloudpickle.loads(returned.read_bytes())
        except (OSError, EOFError, ValueError):
            self.result = self._failed(self.process.exitcode)
        returned.unlink(missing_ok=True)
        self._payload.unlink(missing_ok=True)

    def _failed(self, code: int | None) -> JobReturn:
        from nst_exp.runtime.task import record_failure

        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = f"killed by {name}" + (" (out of memory? see dmesg)" if -code == signal.SIGKILL else "")
        else:
            why = f"its process exited with status {code} before reporting"
        if code is None or code < 0 or code not in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            record_failure(OmegaConf.create({"paths": {"output_dir": str(self.dir)}}), f"failed: {why}")
            log.error("Job #%d %s", self.config.hydra.job.num, why)
        result = JobReturn(overrides=self.overrides, cfg=self.config, working_dir=str(self.dir),
                           task_name=str(self.config.hydra.job.name), status=JobStatus.COMPLETED)
        result.return_value = float("nan")  # as task_wrapper returns for a failed job: the sweep goes on
        return result


def _run_job(payload: str, task: tuple[str, str], parent: int, env: dict[str, str]) -> None:
    """In the job's process: own process group, die with the launcher, ``env`` set, run the job as Hydra would.

    The task function travels by name: under ``python -m nst_exp.train`` it lives in
    ``__main__``, which pickle cannot name, and spawn re-imports that module in the child;
    ``@hydra.main`` wraps it, so it is unwrapped to the function Hydra runs.
    """
    from nst_exp.core.files import atomic_path

    os.setpgid(0, 0)
    die_with_parent(parent)
    os.environ.update(env)  # this process is the job's alone (spawn): nothing else reads it
    module, name = task
    task_function = inspect.unwrap(getattr(importlib.import_module(module), name))
    hydra_context, config, singleton_state = cloudpickle.loads(Path(payload).read_bytes())
    setup_globals()
    Singleton.set_state(singleton_state)
    result = run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                     job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    with atomic_path(Path(payload).with_suffix(".ret")) as tmp:
        tmp.write_bytes(cloudpickle.dumps(result))


def stopped(signum: int, total: int, not_started: int, sweep_dir: str) -> None:
    """After a stop signal: one line that says what stopped, and exit 128 + signal."""
    from nst_exp.runtime.task import report

    report(f"interrupted by {signal.Signals(signum).name}: {total - not_started} of {total} jobs started, "
           f"{not_started} not; the same command with hydra.sweep.dir={sweep_dir} continues them")
    sys.exit(128 + signum)
