"""Stop signals: a run stopped by SIGTERM, Ctrl-C or SLURM's warning finishes its step first.

- SIGTERM, Ctrl-C (SIGINT), SIGUSR1/2 (SLURM's warning before a time limit) during training:
  the current step finishes, the Checkpointing callback (runtime/checkpoint.py) writes
  ``checkpoint.ckpt`` atomically, the run stops as ``interrupted`` (exit 128 + signal). A
  second Ctrl-C stops at once (the last checkpoint stands). Outside training (loading images,
  weights) any of them stops at once.
- ``SLURMEnvironment`` auto-requeue is turned off (``lightning_plugins``): its USR1 handler
  saves ``hpc_ckpt_N.ckpt`` from inside the signal handler, i.e. mid-step and non-atomically,
  and requeues with scontrol; our SLURM launcher (submitit) requeues already, so two handlers
  would requeue twice. USR1/2 checkpoint after the step, then go to submitit's handler.

Launchers that run jobs in other processes pass SIGTERM/Ctrl-C on to them (their side:
hydra_plugins/nst_process_launcher/base.py); a job stops by itself when its launcher is gone
(``watch_launcher``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")
LAUNCHER_PID = "NST_LAUNCHER_PID"  # set for its jobs by a launcher that runs them in other processes


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal between steps (a KeyboardInterrupt, so Lightning and
    RunSummary treat it as a graceful interruption, not a failure)."""


class StopRequest:
    """The process's stop request: the first signal, and how many runs wait for a step to end.

    Signal handlers are process-wide by nature, so this state is too: there is exactly one,
    ``STOP``, owned by this module; everyone else goes through the functions below
    (``stop_signals`` resets it per job; ``defer_to_step_end`` / ``stop_at_once`` are the
    Checkpointing callback's; ``pending_signal`` says what arrived).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.active = False  # inside stop_signals: ``received`` belongs to the job running now
        self.ctrl_c_twice = False
        self.deferring = 0  # runs inside fit: they stop at the end of a step
        self.previous: dict[int, Any] = {}


STOP = StopRequest()


def defer_to_step_end() -> None:
    """A run entered fit: a stop signal now waits for the current step to end."""
    STOP.deferring += 1


def stop_at_once() -> None:
    """A run left fit (or failed in it): a stop signal from now on stops at once."""
    STOP.deferring = max(0, STOP.deferring - 1)


def pending_signal() -> int | None:
    """The stop signal this job received, if any (None outside ``stop_signals``)."""
    return STOP.received if STOP.active else None


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """Note the signal; stop at once unless a step is running that should finish first."""
    first = STOP.received is None
    STOP.received = signum if first else STOP.received
    again = signum == signal.SIGINT and STOP.ctrl_c_twice
    STOP.ctrl_c_twice = STOP.ctrl_c_twice or signum == signal.SIGINT
    if STOP.deferring and not again:
        if first:
            log.warning("%s: checkpointing after this step, then stopping%s", signal.Signals(signum).name,
                        " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else "")
        return  # in fit, Lightning's own SIGTERM handler runs too (it chains this one)
    raise KeyboardInterrupt


@contextmanager
def handling(signums: Iterable[int], handler: Callable[[int, FrameType | None], None]) -> Iterator[dict[int, Any]]:
    """``handler`` for each signal not ignored (main thread only, as Python requires), then the old ones.

    A signal ignored by the parent (SIGINT of a ``&`` background job, nohup) stays ignored.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, handler) for signum in signums
                    if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield previous
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Handle the stop signals for the duration of one job."""
    STOP.received, STOP.ctrl_c_twice, STOP.deferring, STOP.active = None, False, 0, True
    watch_launcher()
    with handling([getattr(signal, name) for name in STOP_SIGNALS], _on_stop_signal) as previous:
        STOP.previous = previous
        try:
            yield
        finally:
            STOP.deferring, STOP.active = 0, False


def interrupt_code(stop: BaseException) -> int | None:
    """128 + the signal that stopped the job, or None if ``stop`` is no interruption.

    (Lightning turns a KeyboardInterrupt during fit into ``sys.exit(1)``.)
    """
    if STOP.received is not None:
        return 128 + STOP.received
    if isinstance(stop, SIGTERMException):
        return 128 + signal.SIGTERM
    if isinstance(stop, KeyboardInterrupt) or isinstance(stop.__context__, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return None


def hand_on_signal() -> None:
    """After the job has stopped, give SIGUSR1/2 to whoever had them (submitit: requeue the job)."""
    signum = STOP.received
    handler = STOP.previous.get(signum) if signum in (signal.SIGUSR1, signal.SIGUSR2) else None
    if callable(handler):
        handler(signum, None)


# --- sweeps whose jobs run in other processes (the launcher side: hydra_plugins/nst_process_launcher) ---
def watch_launcher() -> None:
    """In a job started by a launcher process: stop (SIGTERM to itself) once the launcher is gone.

    For jobs that are not the launcher's direct children (submitit's local jobs run under a
    controller process), where prctl's parent-death signal cannot reach. Polls once a second.
    """
    pid = int(os.environ.get(LAUNCHER_PID) or 0)
    if pid in (0, os.getpid()) or any(t.name == "nst-launcher-watch" for t in threading.enumerate()):
        return

    def watch() -> None:
        while _alive(pid):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="nst-launcher-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


def lightning_plugins() -> list[Any] | None:
    """On SLURM, Lightning's environment without its requeue handler (see the module docstring)."""
    on_slurm = "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
    return [SLURMEnvironment(auto_requeue=False)] if on_slurm else None  # Lightning's own test
