"""Callbacks that turn a run into files: metrics.csv, snapshots, final.png, summary.json.

None of them synchronise with the device on every step: losses stay on the device as
detached tensors and are copied to the host in one go every ``log_every`` steps.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from nst_exp.core.denoise import denoise
from nst_exp.core.files import atomic_path
from nst_exp.core.images import save_image, to_pil
from nst_exp.engine.loggers import is_wandb, wandb_run
from nst_exp.engine.memory import release_optimizer_state
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.steps import StepHooks
from nst_exp.engine.summary import Summary, SummaryPart, peak_memory, write_summary

log = logging.getLogger(__name__)
# After the objective's columns (loss, then <term>_loss for each term): evals, the cumulative
# loss+gradient evaluations (L-BFGS pays several per step, Adam one), so optimisers can be
# compared per evaluation and per second, not only per step.
TRAILING_FIELDS = ("wall_time_s", "evals")
CSV_EVERY_S = 1.0  # the most a running job's metrics.csv lags behind its steps, in seconds


class MetricsRecorder(StepHooks, pl.Callback):
    """Every step's losses into ``metrics.csv``; into the Lightning loggers (``train/<key>``)
    every ``loggers_every_n_steps`` steps and at the last.

    Each step's values stay on the device, as they are, until the flush every
    ``every_n_steps`` copies them to the host at once. The CSV is rewritten atomically, so it is
    always complete and readable: at a flush at most every ``CSV_EVERY_S`` (the whole file is
    rewritten, ~1 ms, which a GPU's step rate would pay every few steps) and always at the run's
    end, however it ends. The loggers get a row per
    ``loggers_every_n_steps`` (Lightning's ``log_every_n_steps`` convention; 1: every step):
    a W&B row costs ~0.15 ms of this process and more of W&B's, which W&B itself says to keep
    under one a second, while a GPU runs hundreds of steps a second (docs/performance.md,
    fixed cost).
    """

    def __init__(self, output_dir: str, every_n_steps: int = 10, loggers_every_n_steps: int = 1) -> None:
        self.path = Path(output_dir) / "metrics.csv"
        self.every_n_steps = max(1, int(every_n_steps))
        self.loggers_every_n_steps = max(1, int(loggers_every_n_steps))
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = []  # the objective's, set when training starts
        self._trainer: pl.Trainer | None = None  # the run (or a batch job's view of it) to flush to
        self._pending: list[tuple[int, float, int, list[torch.Tensor]]] = []
        self._csv: io.StringIO | None = None  # self.rows as CSV text: each row is formatted once
        self._start = 0.0
        self._resumed_wall = 0.0  # wall_time_s already spent by the run this one resumes
        self._resumed_evals = 0
        self._sent_step = -1  # the last step whose row the loggers got
        self._written_at = -math.inf  # perf_counter of the last CSV write

    def state_dict(self) -> dict[str, Any]:
        """The rows so far, pending ones flushed first: a resumed run rewrites the CSV from them."""
        if self._trainer is not None:
            self.flush(self._trainer)
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict["rows"]]
        self._csv = None  # formatted again from the restored rows
        self._resumed_wall = float(self.rows[-1]["wall_time_s"]) if self.rows else 0.0
        self._resumed_evals = int(self.rows[-1].get("evals", 0)) if self.rows else 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        self._start = time.perf_counter() - self._resumed_wall
        self.columns = list(pl_module.columns)
        self._trainer, self._csv = trainer, None

    def step_interval(self) -> int:
        return self.every_n_steps

    def after_step(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> bool:
        """Keep the step's values (device tensors: stacked and summed over images at the flush)."""
        parts = pl_module.last_components
        if parts:
            evals = self._resumed_evals + int(getattr(pl_module, "evaluations", 0))
            values = [parts[key] for key in self.columns]  # stacked at the flush, all steps at once
            self._pending.append((trainer.global_step - 1, time.perf_counter() - self._start, evals, values))
        return False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.flush(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer, last=True)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.flush(trainer, last=True)

    def flush(self, trainer: pl.Trainer, last: bool = False) -> None:
        """Move pending values to the host in one copy, add them to the CSV (written if a
        second has passed, or ``last``), send the loggers their rows (``last``: the run's last
        step is one of them)."""
        if self._pending:
            values = torch.stack([value for *_, row in self._pending for value in row])
            values = values.view(len(self._pending), len(self.columns), -1).sum(-1).cpu().tolist()
            new_rows = [{"step": step, **dict(zip(self.columns, vals)), "wall_time_s": round(wall, 4),
                         "evals": evals} for (step, wall, evals, _), vals in zip(self._pending, values)]
            self._pending.clear()
            self.rows += new_rows
            self._format_csv(new_rows)
            self._send(trainer, [row for row in new_rows if row["step"] % self.loggers_every_n_steps == 0])
            end = new_rows[-1]
            log.info("step %d  %s", end["step"], "  ".join(f"{key.removesuffix('_loss')} {end[key]:.4g}"
                                                         for key in self.columns))
        if last and self.rows and self.rows[-1]["step"] != self._sent_step:
            self._send(trainer, self.rows[-1:])
        if self._csv is not None and (last or time.perf_counter() - self._written_at >= CSV_EVERY_S):
            self._write_csv()

    def _send(self, trainer: pl.Trainer, rows: list[dict[str, float]]) -> None:
        for row in rows:
            for logger in trainer.loggers:
                logger.log_metrics({f"train/{k}": row[k] for k in self.columns}, step=int(row["step"]))
            self._sent_step = int(row["step"])

    def _format_csv(self, new_rows: list[dict[str, float]]) -> None:
        """Add rows to the CSV text; only the new rows are formatted (a long run's flush would
        otherwise format every row so far, each time: quadratic in the steps)."""
        fresh = self._csv is None
        if fresh:
            self._csv = io.StringIO()
        writer = csv.DictWriter(self._csv, fieldnames=["step", *self.columns, *TRAILING_FIELDS])
        if fresh:
            writer.writeheader()
        writer.writerows(self.rows if fresh else new_rows)

    def _write_csv(self) -> None:
        """The whole file, atomically."""
        assert self._csv is not None
        with atomic_path(self.path) as tmp:
            tmp.write_text(self._csv.getvalue())
        self._written_at = time.perf_counter()


class Snapshots(StepHooks, pl.Callback):
    """Save ``snapshots/step_XXXXXX.png`` every N steps and send it to loggers that take images.

    ``denoise``/``denoise_method`` as for final.png (mxnet denoises every image it saves).
    """

    def __init__(self, output_dir: str, every_n_steps: int = 50, denoise: float = 0.0,
                 denoise_method: str = "gaussian") -> None:
        self.dir = Path(output_dir) / "snapshots"
        self.every_n_steps = int(every_n_steps)
        self.denoise, self.denoise_method = float(denoise), denoise_method

    def step_interval(self) -> int:
        return max(0, self.every_n_steps)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule, *args: Any) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer, pl_module, trainer.global_step)

    def save(self, trainer: pl.Trainer, pl_module: StyleTransferModule, step: int) -> None:
        """Each image's PNG; W&B gets the file as written (Lightning's WandbLogger takes paths):
        one PNG encoding, not a second of its own (~30 ms at 512 px, every snapshot)."""
        for index, image in enumerate(pl_module.image.detach()):
            suffix = f"_{index}" if pl_module.image.shape[0] > 1 else ""
            pil = to_pil(denoise(image.clamp(0, 1), self.denoise, self.denoise_method))
            path = save_image(pil, self.dir / f"step_{step:06d}{suffix}.png")
            for logger in trainer.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key="snapshot", images=[str(path) if is_wandb(logger) else pil], step=step)


class RunSummary(pl.Callback):
    """Write ``final.png`` and ``summary.json`` when the run ends, however it ends.

    ``denoise`` (0..1) smooths final.png only; the losses are those of the optimised image.
    Callbacks that are a ``SummaryPart`` (engine/summary.py) add keys, may name another status
    for a run that ended normally (``diverged``), and receive the written summary.
    """

    def __init__(self, output_dir: str, denoise: float = 0.0, denoise_method: str = "gaussian") -> None:
        self.output_dir = Path(output_dir)
        self.denoise, self.denoise_method = float(denoise), denoise_method
        self.status = "running"
        self._start = self._train_start = time.perf_counter()
        self._train_end: float | None = None
        self._before = {"wall_time_s": 0.0, "train_time_s": 0.0}  # spent before a resume

    def state_dict(self) -> dict[str, float]:
        """Time spent so far, so a resumed run reports totals (checkpointed with the run)."""
        now = time.perf_counter()
        return {"wall_time_s": self._before["wall_time_s"] + now - self._start,
                "train_time_s": self._before["train_time_s"] + now - self._train_start}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self._before = {key: float(state.get(key, 0.0)) for key in self._before}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train_start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        self._train_end = time.perf_counter()
        self.status = "ok" if self.status == "running" else self.status
        if isinstance(trainer, pl.Trainer):  # a whole run; a batch releases its own (strategies/batched)
            release_optimizer_state(trainer)
        self.write(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: StyleTransferModule, exception: BaseException) -> None:
        self._train_end = time.perf_counter()
        if self.status in ("running", "ok"):
            # Ctrl-C raises KeyboardInterrupt mid-step; Lightning turns SIGTERM into
            # SIGTERMException after the step.
            self.status = "interrupted" if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) else \
                f"failed: {type(exception).__name__}: {exception}".splitlines()[0]
        self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> dict[str, Any]:
        """Save the current image and the summary; returns the summary as written."""
        final = save_image(denoise(pl_module.image.detach()[0].clamp(0, 1), self.denoise, self.denoise_method),
                           self.output_dir / "final.png")
        losses = pl_module.evaluate()
        steps = trainer.global_step
        train_time = self._before["train_time_s"] + (self._train_end or time.perf_counter()) - self._train_start
        parts = [callback for callback in trainer.callbacks if isinstance(callback, SummaryPart)]
        if self.status == "ok":  # ended normally: a part may know better (a divergence stop)
            self.status = next((status for part in parts if (status := part.run_status())), "ok")
        summary = Summary(
            status=self.status, final_loss=losses.pop("loss"), losses=losses, terms=list(pl_module.spec.terms),
            steps=steps, wall_time_s=round(self._before["wall_time_s"] + time.perf_counter() - self._start, 3),
            train_time_s=round(train_time, 3), ms_per_step=round(1000 * train_time / steps, 2) if steps else None,
            precision=str(trainer.precision),  # the steps' arithmetic; final_loss is always fp32
            **peak_memory(),
            image=str(final.resolve()), image_size=list(pl_module.image.shape[-2:]), wandb=where(trainer.loggers),
            extra={key: value for part in parts for key, value in part.summary_fields().items()})
        written = write_summary(self.output_dir, summary)
        for part in parts:  # e.g. WandbOutputs: the summary, final image and table row
            part.on_summary(trainer, written)
        return written


def where(loggers: list[pl.loggers.Logger]) -> dict[str, str | None] | None:
    """Where this job's W&B run is, so files on disk lead to it (and back)."""
    run = wandb_run(loggers)
    return None if run is None else {"id": run.id, "group": run.group or None, "name": run.name, "dir": str(run.dir)}
