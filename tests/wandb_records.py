"""Read an offline W&B run back from its files, as W&B's own sync would (no mocks, no network).

wandb 0.31 has no Python reader for ``run-*.wandb``; its layout is LevelDB's log format: a
7-byte file header, then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32, length
as little-endian uint16, type: 1 full, 2 first, 3 middle, 4 last). The joined chunks of a
record are one ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

FILE_HEADER, BLOCK, CHUNK_HEADER = 7, 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """Every Record in a ``run-*.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    out, pending, offset = [], b"", FILE_HEADER
    while offset + CHUNK_HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < CHUNK_HEADER:  # the block's tail is padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + CHUNK_HEADER])
        if offset + CHUNK_HEADER + length > len(data):  # still being written
            break
        chunk = data[offset + CHUNK_HEADER:offset + CHUNK_HEADER + length]
        offset += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


@dataclass
class OfflineRun:
    """What a run's log says: its run record, config, summary, history rows and saved files."""

    dir: Path
    run: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    artifacts: dict[str, dict[str, Path]] = field(default_factory=dict)  # name -> {path in it: staged file}
    exit_code: int | None = None

    def logged(self, key: str) -> list[Any]:
        """Every value logged under ``key``, in order."""
        return [row[key] for row in self.history if key in row]

    def media(self, key: str) -> Path:
        """The file of the image or table last logged under ``key``, inside the run's files dir."""
        return self.dir / "files" / self.summary[f"{key}/path"]


def _key(item: Any) -> str:
    """Media and other dicts arrive as one item per leaf: ``final/path``, ``final/caption``."""
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_dir: Path, wait_s: float = 120.0) -> OfflineRun:
    """Parse ``<run_dir>/run-*.wandb`` (e.g. ``<job dir>/wandb/offline-run-...``) once it is complete.

    ``wandb.finish(exit_code=1)`` returns before W&B's service has written the run's last
    records, so this waits (up to ``wait_s``) for the exit record.
    """
    deadline = time.monotonic() + wait_s
    while True:
        run = _parse(run_dir)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def _parse(run_dir: Path) -> OfflineRun:
    (log_file,) = run_dir.glob("run-*.wandb")
    result = OfflineRun(run_dir)
    for record in records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result.run = record.run
            result.config.update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            result.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            result.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            result.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "files":
            result.files += [f.path for f in record.files.files]
        elif kind == "artifact":  # e.g. a logged table: staged (W&B's data dir) until `wandb sync`
            contents = record.artifact.manifest.contents
            result.artifacts[record.artifact.name] = {c.path: Path(c.local_path) for c in contents}
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
    return result
