"""Coarse-to-fine: run the job once per scale, each scale starting from the previous result.

``scales=[256,512]`` (long edges, px) optimises at 256 px, upsamples the result to 512 px and
optimises again: the coarse scale settles the layout cheaply, the fine one only adds detail.
Each scale is an ordinary run in its own dir, ``<job dir>/scale_<edge>/`` (its metrics.csv,
snapshots, checkpoint.ckpt, final.png, summary.json; a W&B run named and tagged with the
scale), so everything that resumes a run resumes a scale: a job stopped in scale 2 continues
scale 2, and a scale whose summary says ``ok`` is not run again. Each scale starts from the
previous scale's final.png as written on disk, so a resumed job computes what an
uninterrupted one does. The job dir gets the last scale's final.png and a summary.json that
adds every scale's summary and the totals.

Scales larger than ``tile_size`` run tiled (``engine.tiled``): overlapping tiles against the
whole style image's Gram matrices, feathered together, ``tile_passes`` passes.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict

from nst_exp.core.files import read_if_complete, write_json
from nst_exp.core.images import load_image, to_tensor
from nst_exp.errors import ConfigError
from nst_exp.runtime.fingerprint import config_digest
from nst_exp.runtime.job_loggers import job_identity
from nst_exp.runtime.tiling import run_tiled, tiled

log = logging.getLogger(__name__)
FitFn = Callable[[DictConfig, "torch.Tensor | None"], dict[str, Any]]
DONE = ("ok", "diverged")
MADE_BY = "made_by.json"  # in each scale dir: the digest of the config that made it


def scale_steps(cfg: DictConfig) -> list[int]:
    """Steps of each scale: ``steps_per_scale`` if given, else ``steps`` for every scale."""
    per_scale = cfg.get("steps_per_scale")
    return list(per_scale) if per_scale else [int(cfg.steps)] * len(cfg.scales)


def scale_config(cfg: DictConfig, edge: int, steps: int, last: bool) -> DictConfig:
    """The config of one scale: its size, steps and dir; W&B name and tags carry the scale."""
    job_dir = Path(cfg.paths.output_dir)
    scale_cfg = copy.deepcopy(cfg)
    with open_dict(scale_cfg):
        scale_cfg.scales = None
        scale_cfg.steps_per_scale = None
        scale_cfg.image_size = int(edge)
        scale_cfg.steps = int(steps)
        scale_cfg.paths.output_dir = str(job_dir / f"scale_{edge}")
        scale_cfg.tags = [*(cfg.get("tags") or []), f"scale:{edge}"]
        if not last:
            scale_cfg.denoise = 0.0  # the next scale starts from final.png: keep it exact
        wandb = (scale_cfg.get("logger") or {}).get("wandb")
        if wandb is not None:
            base = wandb.get("name") or job_identity()[1] or job_dir.name
            wandb.name = f"{base}@{edge}px"
    return scale_cfg


def run_scales(cfg: DictConfig, fit: FitFn) -> dict[str, Any]:
    """Run every scale (``fit`` runs one untiled scale), then write the job's final.png and summary.

    A scale is reused only if it finished and this job's config made it (``made_by.json``);
    one made by another config stops the job in one line (as a checkpoint of another run does).
    """
    edges, steps = list(cfg.scales), scale_steps(cfg)
    job_dir = Path(cfg.paths.output_dir)
    digest = config_digest(cfg)
    summaries: list[dict[str, Any]] = []
    previous: torch.Tensor | None = None
    for index, (edge, n_steps) in enumerate(zip(edges, steps)):
        scale_cfg = scale_config(cfg, edge, n_steps, last=index == len(edges) - 1)
        scale_dir = Path(scale_cfg.paths.output_dir)
        check_made_by(scale_dir, digest, scale_cfg.get("resume", "auto"))
        summary = _finished(scale_cfg)
        if summary is None:
            write_json(scale_dir / MADE_BY, {"config": digest})
            pl.seed_everything(cfg.seed, workers=True, verbose=False)  # a resumed job starts scale 2 alike
            log.info("Scale %d/%d: %d px, %d steps", index + 1, len(edges), edge, n_steps)
            summary = run_tiled(scale_cfg, previous) if tiled(scale_cfg) else fit(scale_cfg, previous)
        else:
            log.info("Scale %d/%d: %d px already done (%s)", index + 1, len(edges), edge, summary["status"])
        summaries.append({"scale": edge, **summary})
        if summary.get("status") not in DONE:
            break  # diverged/failed/interrupted: the next scale would start from a bad image
        previous = to_tensor(load_image(summary["image"], f"scale_{edge}/final.png"))
    return _job_summary(job_dir, summaries)


def check_made_by(scale_dir: Path, digest: str, resume: object) -> None:
    """Refuse a scale dir that another config's run left (finished or not), unless resume=false
    (then it is redone). A new run that does not resume finds no scale dirs: they were moved
    aside with the job dir's other results (runtime/jobdir.py)."""
    if resume is False or not scale_dir.is_dir() or not any(scale_dir.iterdir()):
        return
    made_by = read_if_complete(scale_dir / MADE_BY)
    if not isinstance(made_by, dict) or made_by.get("config") != digest:
        raise ConfigError(f"resume: {scale_dir} was made by a different run (its config changed since); "
                          "pass resume=false to start over (earlier results are moved aside), or another output dir")


def _finished(scale_cfg: DictConfig) -> dict[str, Any] | None:
    """The summary of a scale an earlier run of this job completed, else None."""
    if scale_cfg.get("resume", "auto") is False:
        return None
    summary = read_if_complete(Path(scale_cfg.paths.output_dir) / "summary.json")
    if not isinstance(summary, dict):
        return None
    return summary if summary.get("status") in DONE and Path(str(summary.get("image"))).is_file() else None


def _job_summary(job_dir: Path, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The last scale's summary (its image copied to the job dir) with per-scale figures and totals."""
    last = summaries[-1]
    summary = {key: value for key, value in last.items() if key != "scale"}
    if last.get("image"):
        shutil.copyfile(last["image"], job_dir / "final.png")
        summary["image"] = str((job_dir / "final.png").resolve())
    summary.update(
        scales=[entry["scale"] for entry in summaries],
        per_scale=summaries,
        steps=sum(int(entry.get("steps") or 0) for entry in summaries),
        wall_time_s=round(sum(float(entry.get("wall_time_s") or 0) for entry in summaries), 3),
        train_time_s=round(sum(float(entry.get("train_time_s") or 0) for entry in summaries), 3),
        peak_rss_mb=max(float(entry.get("peak_rss_mb") or 0) for entry in summaries),
    )
    write_json(job_dir / "summary.json", summary)
    return summary
