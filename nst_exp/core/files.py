"""Atomic file writes: write to a temp file in the same directory, then rename over."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

# mkstemp creates 0600 files; results should get the usual 0666 & ~umask (read once: os.umask
# can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it over ``path``, else delete it.

    The rename is atomic on POSIX, so readers (a report over a running sweep, a resumed job)
    see the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object written by ``write_json``."""
    return json.loads(Path(path).read_text())


def read_if_complete(path: str | Path, parse: Callable[[str], Any] = json.loads) -> Any:
    """A file's parsed content, or None if it is absent, unreadable or half-written: what a
    reader of a sweep that is still running (or was killed mid-write) must expect."""
    try:
        return parse(Path(path).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def input_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as an input file, or None if it is a regular file.

    FIFOs and devices are refused before anything opens them: reading one blocks forever or
    never ends. A symlink or directory loop is named as such, not as a missing file.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as error:  # ELOOP, EACCES, ENOTDIR, ...
        return f"cannot be read ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "is a directory, expected a file"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        return f"is {kind}, not a regular file (reading it could block forever)"
    return None
