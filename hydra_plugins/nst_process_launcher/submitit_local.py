"""``hydra/launcher=submitit_local`` with the sweep contract of ``hydra/launcher=joblib``.

Hydra's submitit launcher collects its jobs' results in order and raises at the first job
that died, while the others run on unwatched; and SIGTERM to the sweep ends it at once, its
jobs still running. This subclass keeps submitit's code path (what the local launcher is for:
the SLURM path without a cluster) with the per-job failure contract of
``hydra/launcher=slurm`` (hydra_plugins/nst_submitit_launcher: a failed job exits 1, the
sweep waits for every job), and adds what only a local sweep can do:

- SIGTERM/SIGINT to the sweep go to every job's process (submitit's controller passes them to
  the task): each checkpoints after its step and says ``interrupted``; the sweep waits for
  them and exits 128 + signal;
- a job killed by a signal or OOM is recorded as failed in its summary.json; the others run
  to their end; the sweep exits 1 (SweepOutcome);
- every job stops once the sweep's process is gone, even after ``kill -9``
  (nst_exp.runtime.signals.watch_launcher).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.nst_process_launcher.base import forward_stop_signals, job_config, job_dir
from hydra_plugins.nst_submitit_launcher.submitit_launcher import LocalLauncher

log = logging.getLogger(__name__)


def submitit_children() -> list[int]:
    """PIDs of this process's children that run submitit jobs (read from /proc)."""
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
            except OSError:
                continue  # it has just exited
    return pids


class ContainedLocalLauncher(LocalLauncher):
    """submitit's local launcher whose sweep survives a dead job and passes on stop signals."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        with forward_stop_signals(submitit_children) as signals:
            try:  # waits for every job; a job that died reads as NaN there, and is recorded below
                super().launch(job_overrides, initial_job_idx)
            except Exception as error:  # submitit: a job ended without a result
                while submitit_children():  # let the others finish (or checkpoint, after a signal)
                    time.sleep(0.5)
                if not signals:
                    log.error("A job died: %s", str(error).splitlines()[0] if str(error) else type(error).__name__)
        return self._outcome(job_overrides, initial_job_idx, signals)

    def record_lost(self, jobs: Sequence[Any], job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> None:
        """Nothing here: ``_outcome`` records a lost job with the local cause (killed, out of memory)."""

    def _outcome(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                 signals: list[int]) -> list[JobReturn]:
        """Each job as its summary.json tells it; a job without one was killed: recorded so."""
        from nst_exp.core.files import read_if_complete
        from nst_exp.runtime.task import metric, record_failure

        assert self.config is not None and self.hydra_context is not None
        returns = []
        for offset, overrides in enumerate(job_overrides):
            config = job_config(self.hydra_context, self.config, overrides, initial_job_idx + offset)
            directory = job_dir(config)
            summary = read_if_complete(directory / "summary.json")
            if summary is None and not signals:
                record_failure(OmegaConf.create({"paths": {"output_dir": str(directory)}}),
                               "failed: its process died without a result (killed? out of memory?); see "
                               f"{config.hydra.sweep.dir}/.submitit/")
            result = JobReturn(overrides=list(overrides), cfg=config, working_dir=str(directory),
                               task_name=str(config.hydra.job.name), status=JobStatus.COMPLETED)
            result.return_value = metric(summary, str(config.get("optimized_metric") or "final_loss"))
            returns.append(result)
        if signals:
            from hydra_plugins.nst_process_launcher.process_launcher import stopped

            stopped(signals[0], len(job_overrides), 0, str(self.config.hydra.sweep.dir))
        return returns
