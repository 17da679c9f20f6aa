"""One tiled scale as a job: build the objective, optimise tile by tile, write what a run writes.

Runs when the image's long edge exceeds ``tile_size`` (see ``strategies.tile_loop`` for the method).
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
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

from nst_exp.core.denoise import denoise
from nst_exp.core.files import atomic_path
from nst_exp.core.images import save_image
from nst_exp.core.objective import column
from nst_exp.engine.callbacks import where
from nst_exp.engine.loggers import finish_wandb
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.placement import trainer_device
from nst_exp.engine.summary import Summary, peak_memory, write_summary
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_loggers, build_module
from nst_exp.runtime.checkpoint import TILES_CHECKPOINT
from nst_exp.runtime.fingerprint import fingerprint
from nst_exp.strategies.tile_loop import TilePlan, TileProgress, grid, run_tiles

log = logging.getLogger(__name__)
CHECKPOINT = TILES_CHECKPOINT
SAVE_EVERY_S = 30.0


def tiled(cfg: DictConfig) -> bool:
    """Does this run's image exceed ``tile_size`` (so it must be optimised as tiles)?"""
    tile = cfg.get("tile_size")
    return tile is not None and int(cfg.image_size) > int(tile)


def device_of(cfg: DictConfig) -> torch.device:
    """Where the tiles run: where this config's Trainer would run the job (no Trainer here)."""
    trainer = cfg.get("trainer") or {}
    return trainer_device(str(trainer.get("accelerator", "auto")), trainer.get("devices", 1))


def plan_of(cfg: DictConfig) -> TilePlan:
    """The tiling of this run; bf16 when the trainer's (resolved) precision is bf16."""
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    return TilePlan(tile=int(cfg.tile_size), overlap=int(cfg.get("tile_overlap", 64)),
                    passes=int(cfg.get("tile_passes", 2)), steps=int(cfg.steps), bf16=precision.startswith("bf16"))


class TileRecorder:
    """After each tile: metrics.csv, and now and then the checkpoint; after each pass a snapshot."""

    def __init__(self, out: Path, state: dict[str, Any], columns: list[str], snapshots: bool,
                 wall_before: float = 0.0, loggers: list[Logger] | None = None) -> None:
        self.out, self.state, self.snapshots, self.columns = out, state, snapshots, columns
        self.loggers = list(loggers or [])
        self.fields = ["pass", "tile", *columns, "diverged", "wall_time_s"]
        self.start = time.perf_counter() - wall_before
        self.saved = time.perf_counter()

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, image: torch.Tensor, progress: TileProgress) -> None:
        progress.rows[-1]["wall_time_s"] = round(self.wall(), 3)
        self.write_csv(progress)
        row = progress.rows[-1]
        for logger in self.loggers:  # one logged step per tile, numbered over all passes
            logger.log_metrics({f"train/{key}": row[key] for key in self.columns if key in row},
                               step=len(progress.rows) - 1)
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
    """Optimise this scale as tiles; returns its summary (also written to summary.json).

    Keeps a run's promises without a Trainer per tile (a 4096 px image is ~150 tiles a pass,
    each a few steps): the trainer config's device (``device_of``), the run's loggers (W&B
    gets every tile's losses, the inputs, the summary and the comparison row), the yardstick's
    scores, ``denoise``/``denoise_method`` for final.png, box-constrained L-BFGS (the run's
    optimiser factory) and a divergence guard per tile (strategies/tile_loop.py); what it
    cannot keep, config.schema.check_tiling refuses.
    """
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = build_module(cfg, init).to(device_of(cfg))
    plan = plan_of(cfg)
    height, width = module.image.shape[-2:]
    state = {"fingerprint": str(fingerprint(module)), "plan": str(vars(plan)),
             "tiles_per_pass": [len(grid(plan, height, width, p)) for p in range(plan.passes)]}
    progress, wall_before = resume_state(cfg, module, state)
    loggers = build_loggers(cfg)
    outputs = {name: instantiate(cfg.callbacks[name]) for name in ("judge", "wandb")
               if (cfg.get("callbacks") or {}).get(name) is not None}
    if "wandb" in outputs and not progress.rows:
        outputs["wandb"].send_inputs(loggers, module)
    recorder = TileRecorder(out, state, module.columns, int(cfg.get("snapshot_every", 0)) > 0, wall_before, loggers)
    log.info("Tiled %dx%d: %s tiles per pass of %d px (overlap %d), %d steps each, on %s (%s)",
             width, height, state["tiles_per_pass"], plan.tile, plan.overlap, plan.steps, module.image.device,
             "bf16" if plan.bf16 else "fp32")
    failed = True
    try:
        image, progress = run_tiles(module, plan, progress, on_tile=recorder)
        amount, method = float(cfg.get("denoise", 0.0)), str(cfg.get("denoise_method", "gaussian"))
        final = save_image(denoise(image[0], amount, method), out / "final.png")
        summary = _summary(progress, state, plan, recorder.wall(), final, image, list(module.spec.terms))
        summary.extra.update(outputs["judge"].score(image) if "judge" in outputs else {})
        summary.wandb = where(loggers)
        written = write_summary(out, summary)
        if "wandb" in outputs:
            outputs["wandb"].send_summary(loggers, written)
        failed = False
    finally:
        for logger in loggers:
            logger.finalize("failed" if failed else "success")
        finish_wandb(failed)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return written


def _summary(progress: TileProgress, state: dict[str, Any], plan: TilePlan, wall: float, final: Path,
             image: torch.Tensor, terms: list[str]) -> Summary:
    last_pass = [row for row in progress.rows if row["pass"] == plan.passes - 1 and not row.get("diverged")]

    def mean(key: str) -> float | None:
        return sum(row[key] for row in last_pass) / len(last_pass) if last_pass else None

    steps = plan.steps * sum(state["tiles_per_pass"])
    diverged = sum(int(row.get("diverged", 0)) for row in progress.rows)
    return Summary(  # diverged: some tile blew up and was left out (the image kept what it had there)
        status="diverged" if diverged else "ok", final_loss=mean("loss"),
        losses={column(name): mean(column(name)) for name in terms},
        terms=list(terms), steps=steps, wall_time_s=round(wall, 3), train_time_s=round(wall, 3),
        ms_per_step=round(1000 * wall / steps, 2), precision="bf16-mixed" if plan.bf16 else "32-true",
        **peak_memory(),
        image=str(final.resolve()), image_size=list(image.shape[-2:]),
        extra={"loss_basis": "mean over the last pass's tiles, at the start of each tile's last step",
               "tiles": {"tile_size": plan.tile, "overlap": plan.overlap, "passes": plan.passes,
                         "steps_per_tile": plan.steps, "tiles_per_pass": state["tiles_per_pass"],
                         "diverged": diverged}})
