"""One owner per job directory, and a directory that holds one run's results at a time.

- ``claim``: an advisory ``fcntl`` lock on ``<dir>/.lock`` taken before anything is written
  (a single run claims ``hydra.run.dir`` before Hydra writes ``.hydra/``; a sweep its sweep
  dir; every job its own dir). A second run there gets one line naming the holder's PID and
  exit 2. The OS drops the lock when its process dies, however it dies, so a lock left by a
  killed run is simply taken over (the file stays; its PID is rewritten).
- ``start_clean``: a new run that does not resume moves the results of an earlier run in the
  same dir (summary.json first, then images, metrics, checkpoints, every scale's dir) into
  ``.replaced/<time>/``, each with one atomic rename, so summary.json always belongs to the
  ``.hydra/`` config beside it and no result is silently lost.
- Temp files of a write cut short by kill -9 (``.<name>.*.tmp``) are deleted once the dir is ours.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import IO

from nst_exp.errors import OutputDirError

LOCK_NAME = ".lock"
REPLACED_DIR = ".replaced"
# What one run writes into its job dir (summary.json first: it is what reports trust).
# train.log and .hydra/ stay: Hydra has opened/rewritten them for the new run already.
RESULTS = ("summary.json", "final.png", "metrics.csv", "snapshots", "checkpoint.ckpt", "tiles.ckpt", "csv")
SCALE_DIRS = "scale_*"  # a coarse-to-fine job's runs, one per scale (runtime/multiscale.py)
_held: dict[Path, IO[str]] = {}  # this process's locks, by resolved dir


def claim(directory: str | Path, field: str = "paths.output_dir") -> None:
    """Lock ``directory`` for this process (idempotent), or raise OutputDirError naming the holder."""
    path = Path(os.path.realpath(directory))  # one key however the dir is spelt (.., symlinks)
    if path in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / LOCK_NAME, "a+")  # noqa: SIM115 - held open: the lock lives as long as the file
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise OutputDirError(f"{field}={str(directory)!r}: in use by another run (PID {holder}); wait for it "
                             "to finish, or choose another dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[path] = handle
    remove_temp_files(path)


def release(directory: str | Path) -> None:
    """Drop this process's lock on ``directory`` (a sweep's next job may reuse the process)."""
    handle = _held.pop(Path(os.path.realpath(directory)), None)
    if handle is not None:
        handle.close()


def remove_temp_files(directory: Path) -> None:
    """Delete temp files left by writes that a kill cut short (only the lock holder writes here)."""
    for pattern in (".*.tmp", "snapshots/.*.tmp"):
        for tmp in directory.glob(pattern):
            tmp.unlink(missing_ok=True)


def start_clean(directory: str | Path) -> Path | None:
    """Move an earlier run's results out of ``directory``; returns where they went (None: nothing)."""
    directory = Path(directory)
    found = [directory / name for name in RESULTS if (directory / name).exists()]
    found += sorted(path for path in directory.glob(SCALE_DIRS) if path.is_dir())
    if not found:
        return None
    aside = directory / REPLACED_DIR / time.strftime("%Y%m%d-%H%M%S")
    while aside.exists():
        aside = aside.with_name(aside.name + "_")
    aside.mkdir(parents=True)
    for path in found:
        os.replace(path, aside / path.name)
    return aside
