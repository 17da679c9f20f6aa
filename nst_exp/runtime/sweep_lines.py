"""A sweep's closing lines on the console: one per job, then where the report command is, then
how to upload the jobs' offline W&B runs (W&B itself is quiet offline: runtime/job_loggers.py).

    job 0  style_weight=1000.0  ok  loss 0.0412  judge 0.0399  ssim 0.871  color 0.052  outputs/.../0
    ...
    compare: nst-report outputs/multirun/2026-11-29/10-00-00_123456   (report.html, report.md)
    upload to W&B: wandb sync outputs/multirun/2026-11-29/10-00-00_123456/*/wandb/offline-run-*

Read from the files the jobs wrote (summary.json, .hydra/overrides.yaml), so it holds for any
launcher, jobs in other processes included.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nst_exp.core.files import read_if_complete

SCORES = (("loss", "final_loss"), ("judge", "judge_loss"), ("ssim", "judge_ssim"), ("color", "judge_color"))


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs (those with a .hydra/), numbered ones in job order."""
    dirs = [hydra.parent for hydra in sweep_dir.glob("**/.hydra")]
    return sorted(dirs, key=lambda d: (0, int(d.name), "") if d.name.isdigit() else (1, 0, str(d)))


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def sweep_lines(sweep_dir: str | Path) -> list[str]:
    """One line per job (swept overrides, status, final loss, yardstick, dir), then the report command."""
    sweep_dir = Path(sweep_dir)
    jobs = [(job, read_if_complete(job / ".hydra" / "overrides.yaml", yaml.safe_load) or [],
             read_if_complete(job / "summary.json") or {}) for job in _job_dirs(sweep_dir)]
    shared = set.intersection(*(set(overrides) for _, overrides, _ in jobs)) if len(jobs) > 1 else set()
    lines = []
    for job, overrides, summary in jobs:
        swept = " ".join(o for o in overrides if o not in shared) or "(no overrides)"
        status = str(summary.get("status", "no summary.json (the job crashed)"))
        scores = "  ".join(f"{label} {_number(summary.get(key))}" for label, key in SCORES)
        lines.append(f"job {job.name}  {swept}  {status}  {scores}  {job}")
    lines.append(f"compare: nst-report {sweep_dir}   (writes report.html, report.md, report.csv there)")
    sync = wandb_sync_line(sweep_dir)
    return lines + ([sync] if sync else [])


def wandb_sync_line(root: str | Path) -> str | None:
    """The command that uploads the offline W&B runs under ``root`` (None if there are none):
    one glob per layout, job numbers and scale edges as wildcards (``*/wandb/offline-run-*``,
    ``scale_*/wandb/offline-run-*``)."""
    root = Path(root)
    layouts = sorted({_layout(run.relative_to(root)) for run in root.glob("**/wandb/offline-run-*")})
    return f"upload to W&B: wandb sync {' '.join(str(root / layout) for layout in layouts)}" if layouts else None


def _layout(run: Path) -> Path:
    parts = ["*" if part.isdigit() else re.sub(r"^scale_\d+$", "scale_*", part) for part in run.parent.parts]
    return Path(*parts, "offline-run-*")
