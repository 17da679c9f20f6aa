"""``hydra/launcher=slurm`` and ``submitit_local``: Hydra's submitit launcher, failures kept per job.

What Hydra's own launcher does, found by running sweeps on a real SLURM cluster (tests/test_slurm.py):
- a job that failed (bad input, a bug) is recorded in its summary.json and returns NaN so the sweep
  goes on, but its process exits 0: SLURM and ``sacct`` call it COMPLETED;
- ``launch`` reads the jobs' results in order and the first job without one (cancelled, killed,
  out of requeues) raises out of the multirun: a traceback, the later jobs not waited for, and no
  verdict from ``SweepOutcome``;
- submitit ignores SIGTERM in the job process (it expects the USR2 warning first), so a job
  cancelled after submitit started but before the task set its handlers runs on until SIGKILL.

Here a failed job raises ``JobFailed`` after its summary.json is written (exit status 1: FAILED in
``sacct``); ``launch`` waits for every job and turns one that failed or never finished into a
NaN return with one log line, so the multirun ends with ``SweepOutcome``'s "N of M jobs failed"
and exit status 1, as with every other launcher; and a SIGTERM before the task starts ends the
job at once (exit 143, before its directory exists; Hydra creates it when the task starts).
Preemption and requeue are unchanged: an interrupted job (exit 143, a checkpoint) writes no result,
so submitit keeps waiting while SLURM requeues it.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

from hydra_plugins.nst_process_launcher.base import job_config, job_dir
from nst_exp.core.files import read_json
from nst_exp.runtime.task import DONE, EXIT_SIGTERM, record_failure

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as hydra_submitit
except ImportError:  # no [sweep] extra: no submitit launchers (and no warning from Hydra's plugin scan)
    hydra_submitit = None

log = logging.getLogger(__name__)
RESULT_GRACE_S = 15  # submitit's own wait for a result file to show up on a shared file system


class JobFailed(RuntimeError):
    """Raised in a job's process after the job recorded its failure: submitit exits with status 1."""


def _stop_before_task(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(EXIT_SIGTERM)


def job_status(job: JobReturn) -> str:
    """The status in the job's summary.json (the task writes one on success and on failure)."""
    try:
        return str(read_json(Path(job.hydra_cfg.hydra.runtime.output_dir) / "summary.json").get("status"))
    except (OSError, ValueError, AttributeError):
        return "no summary.json (the job crashed)"


class _FailureContract:
    """Mixin for Hydra's BaseSubmititLauncher: the job side (``__call__``) and the sweep side (``launch``).

    The job side extends Hydra's (``super().__call__``). The sweep side submits the job array itself:
    Hydra's ``launch`` reads the results in order, raises at the first job without one and keeps
    the job handles to itself, so the later jobs could be neither waited for nor recorded.
    """

    cluster: str  # submitit's name for the executor: "slurm" or "local"
    # What Hydra's BaseSubmititLauncher keeps: the launcher's settings, and setup()'s arguments.
    params: dict[str, Any]
    config: Any
    hydra_context: Any

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict[type, Singleton]) -> JobReturn:
        signal.signal(signal.SIGTERM, _stop_before_task)  # the task replaces it with its own
        result = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        try:
            result.return_value  # noqa: B018 - raises the task's exception for a FAILED job
            status = job_status(result)
        except Exception as error:
            status = f"failed: {error}"
        if status not in DONE:
            raise JobFailed(f"job {job_num}: {status}")
        return result

    def executor(self) -> Any:
        """submitit's executor for this launcher's settings, each key passed as Hydra's plugin passes it:
        the keys every queue has by their name, the others prefixed with the cluster's name."""
        import submitit

        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        init = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init[f"{self.cluster}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self.cluster, **init)
        queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in queue_keys else f"{self.cluster}_{key}": value
                                      for key, value in self.params.items()
                                      if key not in ("submitit_folder", "max_num_timeout")})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the sweep as one job array and wait for every job; see ``collect``."""
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit '%s' sweep output dir: %s", self.cluster, sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
        for number, overrides in zip(numbers, job_overrides):
            log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
        params = [(list(overrides), "hydra.sweep.dir", number, f"job_id_for_{number}", Singleton.get_state())
                  for number, overrides in zip(numbers, job_overrides)]
        jobs = self.executor().map_array(self, *zip(*params))
        returns = collect(jobs, job_overrides, numbers)
        self.record_lost(jobs, job_overrides, numbers)
        return returns

    def record_lost(self, jobs: Sequence[Any], job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> None:
        """A summary.json for each job that ended without a result and without writing one.

        A job cancelled before it ran has no directory, and SweepOutcome counts the jobs by their
        directories: with this record the verdict counts every job of the sweep. A job that ran
        wrote its own summary (interrupted, failed), which stays as it is.
        """
        for job, overrides, number in zip(jobs, job_overrides, numbers):
            if not job.paths.result_pickle.exists():
                directory = job_dir(job_config(self.hydra_context, self.config, overrides, number))
                record_failure(OmegaConf.create({"paths": {"output_dir": str(directory)}}),
                               f"failed: submitit job {job.job_id} ended without a result ({job.state})")


def collect(jobs: Sequence[Any], job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> list[JobReturn]:
    """Every job's JobReturn, once all have ended; NaN (as a failed job returns) for a job that
    failed or ended without a result (cancelled, killed, out of requeues), with one log line.

    submitit waits 15 s per job for a missing result file (slow network file systems); here the
    sweep waits that long once, so a cancelled sweep of 100 jobs ends in seconds, not 25 minutes.
    """
    for job in jobs:
        job.wait()
    if any(not job.paths.result_pickle.exists() for job in jobs):
        time.sleep(RESULT_GRACE_S)
    return [_result(job, overrides, number) for job, overrides, number in zip(jobs, job_overrides, numbers)]


def _result(job: Any, overrides: Sequence[str], number: int) -> JobReturn:
    from submitit.core.utils import FailedJobError

    if job.paths.result_pickle.exists():
        try:
            return job.results()[0]
        except FailedJobError:
            log.error(f"job {number}: submitit job {job.job_id} failed, see {job.paths.stderr}")
    else:
        log.error(f"job {number}: submitit job {job.job_id} ended without a result ({job.state}), "
                  f"see {job.paths.stderr}")
    lost = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    lost.return_value = math.nan
    return lost


if hydra_submitit is not None:
    class SlurmLauncher(_FailureContract, hydra_submitit.SlurmLauncher):
        """``hydra/launcher=slurm``."""

        cluster = "slurm"

    class LocalLauncher(_FailureContract, hydra_submitit.LocalLauncher):
        """``hydra/launcher=submitit_local``: the same job and sweep code as local processes."""

        cluster = "local"
