"""What every launcher of this project does the same way: keep Hydra's context, start a sweep;
and, for launchers whose jobs run in other processes, pass stop signals on to them and take
them down with the launcher (the jobs' own side is nst_exp/runtime/signals.py)."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

from hydra.core.utils import configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict


class SweepLauncher(Launcher):
    """A Hydra launcher that keeps what ``setup`` hands it and prepares the sweep dir in ``begin``."""

    def __init__(self) -> None:
        super().__init__()
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def begin(self) -> Path:
        """Hydra's globals and logging for the launcher's process; returns the (created) sweep dir."""
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return sweep_dir


def job_config(hydra_context: HydraContext, sweep_config: DictConfig, overrides: Sequence[str], num: int) -> DictConfig:
    """Job ``num``'s config as Hydra composes it for the job itself (``hydra.job.num`` and ``id`` set),
    so a launcher knows the job's directory without waiting for the job to make it."""
    config = hydra_context.config_loader.load_sweep_config(sweep_config, list(overrides))
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{num}"
        config.hydra.job.num = num
    return config


def job_dir(config: DictConfig) -> Path:
    """The directory of the job whose config ``job_config`` made."""
    return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)


@contextmanager
def forward_stop_signals(children: Callable[[], Iterable[int]]) -> Iterator[list[int]]:
    """In a launcher: pass SIGTERM/SIGINT on to every running job (``children()`` gives their PIDs).

    Each job then checkpoints after its step and stops as ``interrupted``; the launcher waits
    for them, starts no new job, and exits 128 + signal. The list yielded holds the signals seen.
    """
    from nst_exp.runtime.signals import LAUNCHER_PID, handling  # not at import: plugin discovery stays fast

    seen: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        for pid in children():
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    os.environ[LAUNCHER_PID] = str(os.getpid())  # inherited by the jobs: see watch_launcher
    try:
        with handling((signal.SIGTERM, signal.SIGINT), forward):
            yield seen
    finally:
        os.environ.pop(LAUNCHER_PID, None)


def die_with_parent(parent_pid: int) -> None:
    """In a job's own process: get SIGTERM (checkpoint, stop) when the launcher dies, even by kill -9.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
