"""Run a job so that its failures are clear, recorded and contained (LHT's ``task_wrapper``).

- A user error (bad path, value, image or weights file) prints one line on stderr,
  ``error: <field>=<value>: <what is wrong>``, and exits with status 2: no traceback.
  The job dir then holds only a complete summary.json with ``status: failed: <that line>``
  (plus Hydra's .hydra/ and train.log): no images, no metrics.
- In a multirun a failing job (user error or bug) is recorded the same way (a bug keeps its
  traceback in the job's train.log), its W&B run is marked failed, it returns NaN (Optuna
  marks the trial failed) and the sweep goes on; ``SweepOutcome`` makes the sweep exit 1.
- Ctrl-C or SIGTERM at any time: summary.json says ``interrupted`` (with final.png if the
  optimisation had started), exit status 130 (SIGINT) or 143 (SIGTERM). During training
  both let the current step finish, so final.png is a real iterate; a second Ctrl-C stops at once.
  The signals themselves are handled in runtime/signals.py, checkpoint and resume in checkpoint.py.
- A job owns its dir (runtime/jobdir.py): a second run there is a one-line error, and a new
  run that does not resume starts from a dir cleared of an earlier run's results. A job that
  fails to resume leaves the interrupted run's files as they were.
- A full disk is one line too (``disk full``); atomic writes keep the last complete files.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from nst_exp.core.files import read_if_complete, read_json, write_json
from nst_exp.engine.loggers import finish_wandb
from nst_exp.engine.summary import Summary, write_summary
from nst_exp.errors import EXIT_USER_ERROR, DiskFullError, OutputDirError, UserError
from nst_exp.runtime import jobdir
from nst_exp.runtime.checkpoint import will_resume
from nst_exp.runtime.console import quiet_third_party
from nst_exp.runtime.signals import hand_on_signal, interrupt_code, stop_signals
from nst_exp.runtime.sweep_lines import sweep_lines, wandb_sync_line

log = logging.getLogger(__name__)
T = TypeVar("T")
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM



def user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error``, also through Hydra's InstantiationException wrapper."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__  # type: ignore[assignment]
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line (Pillow and torch messages may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def check_writable(path: str | Path, field: str) -> None:
    """Raise OutputDirError unless ``path`` exists or can be created, and a file can be written there.

    Nothing is created: the nearest existing ancestor is probed with a temp file that is
    deleted at once. (A permission check alone would pass for root.)
    """
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputDirError(f"{field}={str(path)!r}: cannot create it, {probe} is a file")
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as error:
        raise OutputDirError(f"{field}={str(path)!r}: not writable ({error.strerror or error})") from None


def report(message: str) -> None:
    """``error: <message>`` on stderr, and into the job's log file (not the console twice)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.emit(log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None))


def record_failure(cfg: DictConfig, status: str, since: float = 0.0, replace: bool = True) -> None:
    """Write a complete summary.json for a job that ended before RunSummary could write one.

    A summary written since ``since`` (by RunSummary: final.png, losses) is kept. An older one
    belongs to the run whose checkpoint this job failed to resume (``replace=False``): it stays,
    with everything else of that run.
    """
    try:
        path = Path(cfg.paths.output_dir) / "summary.json"
        if not path.exists() or (replace and path.stat().st_mtime < since):
            write_summary(path.parent, Summary(status=status))
        elif since and path.stat().st_mtime >= since and status.startswith("failed"):  # RunSummary's, in our words
            write_json(path, {**read_json(path), "status": status})
    except Exception as error:  # e.g. the disk is full: the error line says so already
        log.debug("could not write summary.json (%s)", one_line(error))


def task_wrapper(task: Callable[[DictConfig], T], multirun: bool | None = None) -> Callable[[DictConfig], T | None]:
    """Wrap ``task(cfg)`` with the failure contract above; ``multirun`` defaults to Hydra's mode."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> T | None:
        quiet_third_party()  # again here: a Ray worker runs the task without importing nst_exp.train
        sweeping = _is_multirun() if multirun is None else multirun
        started, fresh = time.time(), False
        try:
            with stop_signals():
                try:
                    fresh = _claim(cfg)
                    return task(cfg)
                finally:
                    jobdir.release(cfg.paths.output_dir)
        except (KeyboardInterrupt, SystemExit) as stop:
            code = interrupt_code(stop)
            if code is None:
                raise
            record_failure(cfg, "interrupted", started, replace=fresh)
            finish_wandb(failed=True)
            report(_interrupted(code))
            hand_on_signal()  # SIGUSR1/2 under submitit: it requeues the job
            raise SystemExit(code) from None
        except Exception as error:
            known = user_error(error) or disk_full(error, cfg.paths.output_dir)
            message = one_line(known) if known else f"{type(error).__name__}: {one_line(error)}"
            if not isinstance(known, OutputDirError) or isinstance(known, DiskFullError):
                record_failure(cfg, f"failed: {message}", started, replace=fresh)
            finish_wandb(failed=True)
            if known is None and not sweeping:
                raise  # a bug: keep the traceback
            if known is None:
                log.exception("job failed; the sweep goes on")
            report(message)
            if not sweeping:
                raise SystemExit(EXIT_USER_ERROR) from None
            return None

    return wrapped


def run_interruptible(work: Callable[..., T], *args: Any) -> T:
    """Run ``work`` (e.g. a batch of sweep jobs, outside any one job's task_wrapper) under the stop
    signals' contract: Ctrl-C/SIGTERM let the step finish, every job checkpoints and says
    ``interrupted``, then one line and exit 128 + signal."""
    try:
        with stop_signals():
            return work(*args)
    except (KeyboardInterrupt, SystemExit) as stop:
        code = interrupt_code(stop)
        if code is None:
            raise
        report(_interrupted(code))
        raise SystemExit(code) from None


def _interrupted(code: int) -> str:
    return "interrupted" + ("" if code == EXIT_SIGINT else f" by {signal.Signals(code - 128).name}")


def _claim(cfg: DictConfig) -> bool:
    """Own the job dir; unless this job resumes, clear an earlier run's results. True if cleared."""
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    jobdir.claim(cfg.paths.output_dir)
    if will_resume(cfg):
        return False
    aside = jobdir.start_clean(cfg.paths.output_dir)
    if aside is not None:
        log.info("An earlier run's results in this dir were moved to %s", aside)
    return True


def disk_full(error: BaseException, output_dir: str) -> DiskFullError | None:
    """A DiskFullError if ``error`` (or one it was raised from or during) is ENOSPC/EDQUOT."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            name = re.sub(r"^\.(.+)\.[^.]+\.tmp$", r"\1", Path(str(error.filename2 or error.filename or "")).name)
            where = f" writing {name}" if name and not name.startswith("tmp") else ""
            return DiskFullError(f"paths.output_dir={output_dir!r}: disk full{where} ({error.strerror}); "
                                 "the last complete files are kept: free space and rerun (resume=auto "
                                 "continues from the last checkpoint)")
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return None


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def metric(summary: dict[str, Any] | None, key: str) -> float:
    """The value an Optuna sweep minimises; NaN (a failed trial) when the job failed."""
    value = (summary or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


class SweepOutcome(Callback):
    """Hydra callback: check the output dir before any job; at the end print a line per job
    (runtime/sweep_lines.py) and fail the multirun if a job failed; after a single run, how to
    upload its offline W&B runs.

    Jobs are judged by their summary.json, so the verdict holds for any launcher (jobs may run
    in other processes). A ``diverged`` job ended cleanly with its best image: it counts as done.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_or_exit(config.hydra.run.dir, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        line = wandb_sync_line(config.hydra.run.dir)
        if line:
            print(line, flush=True)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_or_exit(config.hydra.sweep.dir, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        print("\n".join(sweep_lines(config.hydra.sweep.dir)), flush=True)
        statuses = job_statuses(Path(config.hydra.sweep.dir))
        failed = {job: status for job, status in statuses.items() if status not in DONE}
        if failed:
            shown = "; ".join(f"job {job}: {status}" for job, status in sorted(failed.items()))
            report(f"{len(failed)} of {len(statuses)} jobs failed ({shown})")
            sys.exit(1)


DONE = ("ok", "diverged")


def job_statuses(sweep_dir: Path) -> dict[str, str]:
    """``{job subdir: summary status}`` for every Hydra job dir under ``sweep_dir``."""
    statuses = {}
    # a job killed before Hydra wrote its .hydra/ has only the summary its launcher wrote for it
    job_dirs = {p.parent for p in sweep_dir.glob("**/.hydra")} | {p.parent for p in sweep_dir.glob("*/summary.json")}
    for job_dir in sorted(job_dirs):
        summary = read_if_complete(job_dir / "summary.json")
        status = str(summary.get("status")) if isinstance(summary, dict) else "no summary.json (the job crashed)"
        statuses[str(job_dir.relative_to(sweep_dir))] = status
    return statuses


def _check_or_exit(path: str, field: str) -> None:
    """Hydra creates the dir right after this hook: one line and exit 2 instead of a traceback.

    The dir is claimed here, before Hydra writes ``.hydra/`` into it (see runtime/jobdir.py).
    """
    try:
        check_writable(path, field)
        jobdir.claim(path, field)
    except OutputDirError as error:
        report(one_line(error))
        sys.exit(EXIT_USER_ERROR)
