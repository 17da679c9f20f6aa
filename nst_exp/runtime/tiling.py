"""One tiled scale as a job: build the objective, optimise tile by tile, write what a run writes.

Runs when the image's long edge exceeds ``tile_size`` (see ``engine.tiled`` for the method).
The scale dir gets what an ordinary run leaves there: ``metrics.csv`` (one row per tile, with
its pass and index), ``snapshots/pass_XX.png`` after each pass, ``final.png`` and
``summary.json`` (losses: the mean over the last pass's tiles, ``loss_basis`` says so;
a 4096 px image cannot be evaluated in one piece). ``tiles.ckpt`` (the image so far and the
next tile) is written at least every 30 s and after each pass, so a stopped job continues
at the tile it was on (``resume``, as for ordinary runs).
"""

from __future__ import annotations

import csv
import io
import logging
import resource
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nst_exp.core.denoise import gaussian_denoise
from nst_exp.core.files import atomic_path, write_json
from nst_exp.core.images import save_image
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.tiled import TilePlan, TileProgress, grid, run_tiles
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_module
from nst_exp.runtime.checkpoint import TILES_CHECKPOINT
from nst_exp.runtime.fingerprint import fingerprint

log = logging.getLogger(__name__)
CHECKPOINT = TILES_CHECKPOINT
SAVE_EVERY_S = 30.0


def tiled(cfg: DictConfig) -> bool:
    """Does this run's image exceed ``tile_size`` (so it must be optimised as tiles)?"""
    tile = cfg.get("tile_size")
    return tile is not None and int(cfg.image_size) > int(tile)


def plan_of(cfg: DictConfig) -> TilePlan:
    """The tiling of this run; bf16 when the trainer's (resolved) precision is bf16."""
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    return TilePlan(tile=int(cfg.tile_size), overlap=int(cfg.get("tile_overlap", 64)),
                    passes=int(cfg.get("tile_passes", 2)), steps=int(cfg.steps), bf16=precision.startswith("bf16"))


class TileRecorder:
    """After each tile: metrics.csv, and now and then the checkpoint; after each pass a snapshot."""

    def __init__(self, out: Path, state: dict[str, Any], columns: list[str], snapshots: bool,
                 wall_before: float = 0.0) -> None:
        self.out, self.state, self.snapshots = out, state, snapshots
        self.fields = ["pass", "tile", *columns, "diverged", "wall_time_s"]
        self.start = time.perf_counter() - wall_before
        self.saved = time.perf_counter()

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, image: torch.Tensor, progress: TileProgress) -> None:
        progress.rows[-1]["wall_time_s"] = round(self.wall(), 3)
        self.write_csv(progress)
        pass_done = progress.tile_index == self.state["tiles_per_pass"][progress.pass_index]
        if pass_done and self.snapshots:
            save_image(image, self.out / "snapshots" / f"pass_{progress.rows[-1]['pass']:02d}.png")
        if pass_done or time.perf_counter() - self.saved >= SAVE_EVERY_S:
            self.save(image, progress)

    def write_csv(self, progress: TileProgress) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(progress.rows)
        with atomic_path(self.out / "metrics.csv") as tmp:
            tmp.write_text(buffer.getvalue())

    def save(self, image: torch.Tensor, progress: TileProgress) -> None:
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save({**self.state, "image": image, "pass_index": progress.pass_index,
                        "tile_index": progress.tile_index, "rows": progress.rows, "wall_time_s": self.wall()}, tmp)
        self.saved = time.perf_counter()


def resume_state(cfg: DictConfig, module: StyleTransferModule, state: dict[str, Any]
                 ) -> tuple[TileProgress, float]:
    """Progress and wall time of an interrupted run of this scale (the image goes into ``module``)."""
    path = Path(cfg.paths.output_dir) / CHECKPOINT
    if cfg.get("resume", "auto") is False or not path.is_file():
        return TileProgress(), 0.0
    saved = torch.load(path, map_location="cpu", weights_only=True)
    changed = [key for key in ("fingerprint", "plan") if saved.get(key) != state[key]]
    if changed:
        raise ConfigError(f"resume: {path} is of a different run ({', '.join(changed)} changed); "
                          "pass resume=false to start over, or another output dir")
    with torch.no_grad():
        module.image.copy_(saved["image"])
    log.info("Resuming the tiled scale at pass %d, tile %d", saved["pass_index"] + 1, saved["tile_index"] + 1)
    return TileProgress(saved["pass_index"], saved["tile_index"], list(saved["rows"])), float(saved["wall_time_s"])


def run_tiled(cfg: DictConfig, init: torch.Tensor | None) -> dict[str, Any]:
    """Optimise this scale as tiles; returns its summary (also written to summary.json)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = build_module(cfg, init)
    plan = plan_of(cfg)
    height, width = module.image.shape[-2:]
    state = {"fingerprint": str(fingerprint(module)), "plan": str(vars(plan)),
             "tiles_per_pass": [len(grid(plan, height, width, p)) for p in range(plan.passes)]}
    progress, wall_before = resume_state(cfg, module, state)
    recorder = TileRecorder(out, state, module.columns, int(cfg.get("snapshot_every", 0)) > 0, wall_before)
    log.info("Tiled %dx%d: %s tiles per pass of %d px (overlap %d), %d steps each, %s",
             width, height, state["tiles_per_pass"], plan.tile, plan.overlap, plan.steps,
             "bf16" if plan.bf16 else "fp32")
    image, progress = run_tiles(module, plan, progress, on_tile=recorder)
    final = save_image(gaussian_denoise(image[0], float(cfg.get("denoise", 0.0))), out / "final.png")
    summary = _summary(progress, state, plan, recorder.wall(), final, image, module.columns)
    write_json(out / "summary.json", summary)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return summary


def _summary(progress: TileProgress, state: dict[str, Any], plan: TilePlan, wall: float, final: Path,
             image: torch.Tensor, columns: list[str]) -> dict[str, Any]:
    last_pass = [row for row in progress.rows if row["pass"] == plan.passes - 1 and not row.get("diverged")]

    def mean(key: str) -> float | None:
        return sum(row[key] for row in last_pass) / len(last_pass) if last_pass else None

    steps = plan.steps * sum(state["tiles_per_pass"])
    losses = {key: mean(key) for key in columns}
    return {
        "status": "ok", "final_loss": losses.pop("loss"), **losses,
        "loss_basis": "mean over the last pass's tiles, at the start of each tile's last step",
        "steps": steps, "wall_time_s": round(wall, 3), "train_time_s": round(wall, 3),
        "ms_per_step": round(1000 * wall / steps, 2), "precision": "bf16-mixed" if plan.bf16 else "32-true",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "image": str(final.resolve()), "image_size": list(image.shape[-2:]),
        "tiles": {"tile_size": plan.tile, "overlap": plan.overlap, "passes": plan.passes,
                  "steps_per_tile": plan.steps, "tiles_per_pass": state["tiles_per_pass"],
                  "diverged": sum(int(row.get("diverged", 0)) for row in progress.rows)},
    }
