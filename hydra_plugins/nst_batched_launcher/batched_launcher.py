"""``hydra/launcher=batched``: sweep jobs that can share a batch run as one batch of images.

    python -m nst_exp.train -m style_weight=1e4,3e4,1e5,3e5 hydra/launcher=batched

Jobs are grouped by everything in their config except the batchable keys
(``nst_exp.strategies.batched.batch.BATCHABLE``); each group of up to ``max_batch`` jobs is optimised together.
Every job still goes through Hydra's ``run_job`` (its dir, ``.hydra/`` files, Hydra callbacks,
job logging), but with a task that only builds its callbacks and loggers in its own Hydra
context; the batch trains afterwards and fills in each job's return value. A job alone in
its group runs the normal task, exactly as the basic launcher would run it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.nst_process_launcher.base import SweepLauncher, job_config, job_dir

log = logging.getLogger(__name__)


class BatchedLauncher(SweepLauncher):
    """Run batchable jobs as batches (nst_exp.strategies.batched.batch), the rest one after another."""

    def __init__(self, max_batch: int = 8) -> None:
        super().__init__()
        if int(max_batch) < 1:
            raise ValueError(f"hydra.launcher.max_batch={max_batch!r} must be >= 1")
        self.max_batch = int(max_batch)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        self.begin()
        assert self.config is not None and self.hydra_context is not None
        configs = [job_config(self.hydra_context, self.config, overrides, initial_job_idx + offset)
                   for offset, overrides in enumerate(job_overrides)]
        returns: list[JobReturn | None] = [None] * len(configs)
        for group in self._groups(configs):
            for start in range(0, len(group), self.max_batch):
                chunk = group[start:start + self.max_batch]
                log.info("Batch of %d: %s", len(chunk), "; ".join(
                    f"#{configs[i].hydra.job.num} {' '.join(filter_overrides(job_overrides[i]))}" for i in chunk))
                if len(chunk) == 1:
                    returns[chunk[0]] = self._run(configs[chunk[0]], self.task_function)
                else:
                    for i, ret in zip(chunk, self._run_batch([configs[i] for i in chunk])):
                        returns[i] = ret
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [ret for ret in returns if ret is not None]

    def _groups(self, configs: list[DictConfig]) -> list[list[int]]:
        """Job indices grouped by batch key, groups in order of their first job."""
        from nst_exp.strategies.batched.batch import batch_key

        groups: dict[str, list[int]] = {}
        for index, config in enumerate(configs):
            try:
                key = batch_key(batch_probe(config))
            except Exception:
                key = f"unbatchable-{index}"
            groups.setdefault(key, []).append(index)
        return list(groups.values())

    def _run(self, config: DictConfig, task: Any) -> JobReturn:
        assert self.hydra_context is not None
        return run_job(hydra_context=self.hydra_context, task_function=task, config=config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")

    def _run_batch(self, configs: list[DictConfig]) -> list[JobReturn]:
        """Set up each job in its own Hydra context, then train them all as one batch.

        The batch runs under the same failure contract as a job (``task_wrapper``): SIGTERM or
        Ctrl-C stop it after the current step with a checkpoint, every running job's
        summary.json says ``interrupted``, and the process exits 143/130; the same command
        continues it (nst_exp/strategies/batched/resume.py).
        """
        from nst_exp.runtime import jobdir
        from nst_exp.runtime.checkpoint import CHECKPOINT_NAME
        from nst_exp.runtime.task import one_line, record_failure, report, run_interruptible, task_wrapper, user_error
        from nst_exp.strategies.batched.batch import Job, prepare_job, train_batch
        from nst_exp.strategies.batched.resume import BatchResume

        jobs: dict[int, Job] = {}
        resume = BatchResume()
        # The batch's one checkpoint lives in its first job's dir: every job of the batch resumes
        # from it, so none of their dirs may be cleared as a fresh start (runtime/checkpoint.py).
        first_dir = job_dir(configs[0])
        for config in configs:
            with open_dict(config):
                config.batch_checkpoint = str(first_dir / CHECKPOINT_NAME)
        # The sweep's failure contract: a bad job gets one error line and a failed summary.json,
        # and stays out of the batch; SweepOutcome fails the multirun at the end.
        returns = [self._run(config, task_wrapper(lambda cfg, n=n: jobs.__setitem__(n, prepare_job(cfg, resume)),
                                                  multirun=True))
                   for n, config in enumerate(configs)]
        ready = [n for n in sorted(jobs) if returns[n].status == JobStatus.COMPLETED]
        if not ready:
            return returns
        batch = [jobs[n] for n in ready]
        handlers = _job_log_files([Path(job.cfg.paths.output_dir) for job in batch[:-1]])  # the last has one
        started = time.time()
        try:
            for job in batch:  # one owner per job dir while the batch writes into all of them
                jobdir.claim(job.cfg.paths.output_dir)
            summaries = run_interruptible(train_batch, batch)  # SIGTERM/Ctrl-C: every job checkpoints
        except Exception as error:
            # As for a failed job run alone: one line (a user error without its type), each job's
            # summary.json says why, it returns NaN (Optuna marks the trial failed), and
            # SweepOutcome fails the multirun at its end.
            known = user_error(error)
            message = one_line(known) if known else f"{type(error).__name__}: {one_line(error)}"
            report(message)
            status = f"failed: {message}"
            for n in ready:
                record_failure(jobs[n].cfg, status, started)
                returns[n].return_value = math.nan
            return returns
        finally:
            for job in batch:
                jobdir.release(job.cfg.paths.output_dir)
            for handler in handlers:
                logging.getLogger().removeHandler(handler)
                handler.close()
        for n, summary in zip(ready, summaries):
            returns[n].return_value = summary.get(jobs[n].cfg.get("optimized_metric") or "final_loss")
        return returns


def _job_log_files(job_dirs: list[Path]) -> list[logging.Handler]:
    """Mirror the batch's log into each job's ``<job>.log``, as Hydra's job logging would."""
    root = logging.getLogger()
    template = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    if template is None:
        return []
    handlers: list[logging.Handler] = []
    for directory in job_dirs:
        handler = logging.FileHandler(directory / Path(template.baseFilename).name)
        handler.setFormatter(template.formatter)
        handler.setLevel(template.level)
        root.addHandler(handler)
        handlers.append(handler)
    return handlers


HYDRA_RESOLVER = re.compile(r"\$\{hydra:")


def batch_probe(config: DictConfig) -> DictConfig:
    """A job's config, resolved, without ``hydra``; its ``${hydra:...}`` values resolved against its own node.

    Hydra's ``hydra:`` resolver reads the process-wide HydraConfig, which holds the sweep's config
    here, not the job's; pointing the copy's interpolations at its own node (``${hydra.X}``)
    resolves it without touching that state. Its output dir is the same for all: only the
    maths may tell two jobs apart.
    """
    raw = OmegaConf.to_container(config, resolve=False)

    def point_home(value: Any) -> Any:
        if isinstance(value, str):
            return HYDRA_RESOLVER.sub("${hydra.", value)
        if isinstance(value, dict):
            return {key: point_home(item) for key, item in value.items()}
        if isinstance(value, list):
            return [point_home(item) for item in value]
        return value

    probe = OmegaConf.create(point_home(raw))
    probe.hydra.runtime.output_dir = "<job dir>"
    return OmegaConf.create({key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                             for key, value in probe.items() if key != "hydra"})
