"""Read a Hydra multirun directory from the files on disk: its jobs and the grid they span.

The grid comes from ``multirun.yaml`` (the sweep as launched), expanded exactly as Hydra's
basic sweeper does, so jobs that have not started yet still get their cell. Each job's own
``.hydra/overrides.yaml`` and ``summary.json`` say which cell it is and how it ended.
"""

from __future__ import annotations

import csv
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from nst_exp.core.files import read_if_complete
from nst_exp.core.objective import column

STALE_S = 600  # a job that has written nothing for this long is not running any more


@dataclass
class Job:
    """One job of a sweep: its overrides and whatever it has written so far."""

    num: int
    dir: Path
    overrides: dict[str, str]
    summary: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    superseded: bool = False  # a later job has started, so this one is no longer running

    @property
    def status(self) -> str:
        """ok / failed: ... / interrupted from summary.json; otherwise running, failed or missing.

        A job without summary.json that crashed before training (e.g. a bad override) looks
        like a running one. The basic launcher runs jobs in order, so once a later job has
        started it must have failed; so must one whose files are all older than STALE_S.
        """
        if self.summary is not None:
            return str(self.summary.get("status", "unknown"))
        if not self.dir.is_dir():
            return "missing"
        last_write = max((p.stat().st_mtime for p in self.dir.rglob("*") if p.is_file()), default=0.0)
        if self.superseded or time.time() - last_write > STALE_S:
            return "failed: no summary.json"
        return "running"

    @property
    def image(self) -> Path | None:
        path = self.dir / "final.png"
        return path if path.is_file() else None

    def metrics(self) -> list[dict[str, float]]:
        """Rows of metrics.csv (empty if there is none yet)."""
        path = self.dir / "metrics.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]


@dataclass
class Grid:
    """Jobs laid out by the swept keys: rows = the first key, columns = the others."""

    keys: list[str]
    values: dict[str, list[str]]
    jobs: list[Job]

    @property
    def row_key(self) -> str | None:
        return self.keys[0] if len(self.keys) >= 2 else None

    @property
    def rows(self) -> list[str | None]:
        return list(self.values[self.keys[0]]) if len(self.keys) >= 2 else [None]

    @property
    def columns(self) -> list[tuple[str, ...]]:
        """Combinations of the column keys, in launch order."""
        combos: list[tuple[str, ...]] = []
        for job in self.jobs:
            combo = self.column_of(job)
            if combo not in combos:
                combos.append(combo)
        return combos or [()]

    @property
    def column_keys(self) -> list[str]:
        return self.keys[1:] if len(self.keys) >= 2 else list(self.keys)

    def column_of(self, job: Job) -> tuple[str, ...]:
        """The job's values of the column keys."""
        return tuple(job.overrides.get(k, "") for k in self.column_keys)

    def cell(self, row: str | None, column: tuple[str, ...]) -> Job | None:
        """The job at (row, column), or None if the sweep has no such combination."""
        for job in self.jobs:
            if (row is None or job.overrides.get(self.keys[0]) == row) and self.column_of(job) == column:
                return job
        return None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``["a=1", "+b.c=[x,y]"]`` -> ``{"a": "1", "+b.c": "[x,y]"}`` (split at the first '=')."""
    return dict(line.split("=", 1) for line in lines if "=" in line)


def planned_jobs(sweep_dir: Path) -> list[dict[str, str]]:
    """Every job's overrides as Hydra's basic sweeper expands ``multirun.yaml``, in job order.

    The sweeper merges ``hydra.sweeper.params`` with the command line (the command line wins,
    the first position is kept) and takes the product; this does the same.
    """
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    hydra_cfg = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list((hydra_cfg.get("overrides") or {}).get("task") or [])
    try:
        jobs = sweep_product(arguments)
    except HydraException:  # e.g. glob() needs the config repository: fall back to the job dirs
        return []
    return [parse_overrides(job) for job in jobs]


def sweep_product(arguments: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of ``arguments``, as override lists, in its order.

    Each key keeps its first position and its last value; sweeps (``a=1,2``, ``range``) are
    expanded and crossed. Written against Hydra's public override parser, not its sweeper.
    """
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise HydraException(f"{key}: an interval sweep has no list of jobs")
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def load_jobs(sweep_dir: str | Path) -> list[Job]:
    """The planned jobs, each filled from its directory if it exists, plus any unplanned ones."""
    sweep_dir = Path(sweep_dir)
    planned = planned_jobs(sweep_dir)
    jobs = [Job(num, sweep_dir / str(num), overrides) for num, overrides in enumerate(planned)]
    numbered = sorted((int(p.name), p) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for num, job_dir in numbered:
        if num >= len(jobs):  # no multirun.yaml (or an extended sweep): trust the job's own record
            jobs.append(Job(num, job_dir, {}))
    for job in jobs:
        recorded = read_if_complete(job.dir / ".hydra" / "overrides.yaml", yaml.safe_load)
        if recorded:
            job.overrides = parse_overrides(recorded)
        job.summary = read_if_complete(job.dir / "summary.json")
        job.config = read_if_complete(job.dir / ".hydra" / "config.yaml", yaml.safe_load) or {}
    started = [job.num for job in jobs if job.dir.is_dir()]
    for job in jobs:
        job.superseded = bool(started) and job.num < max(started)
    return jobs


def common_overrides(jobs: list[Job]) -> dict[str, str]:
    """Overrides every job shares (the sweep's fixed settings, e.g. ``experiment=...``)."""
    recorded = [job.overrides for job in jobs if job.overrides]
    if not recorded:
        return {}
    return {k: v for k, v in recorded[0].items() if all(o.get(k) == v for o in recorded[1:])}


def grid_of(jobs: list[Job]) -> Grid:
    """The keys whose values differ between jobs, in override order, and their values."""
    keys: list[str] = []
    values: dict[str, list[str]] = {}
    for job in jobs:
        for key, value in job.overrides.items():
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
            if key not in keys:
                keys.append(key)
    swept = [k for k in keys if len(values[k]) > 1]
    return Grid(swept, {k: values[k] for k in swept}, jobs)



def term_columns(jobs: list[Job]) -> list[str]:
    """Every objective term's ``<name>_loss`` column the jobs' summaries hold, in first-seen order
    (summary.json lists its run's terms under ``terms``)."""
    names = dict.fromkeys(name for job in jobs for name in (job.summary or {}).get("terms") or [])
    return [column(name) for name in names]
