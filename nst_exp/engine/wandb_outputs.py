"""What a W&B run shows besides per-step losses: inputs, final image, summary, a table row.

Per run, whatever its status:
- ``inputs/content`` and ``inputs/style`` once, when training starts (not again on resume);
- every summary.json field in ``run.summary`` (sort, filter and parallel-coordinates by them);
- ``final``: final.png, captioned with the status and loss;
- ``comparison``: a one-row ``wandb.Table`` (the job's overrides as columns, the final image,
  losses and yardstick scores). W&B's table panel concatenates the rows of every run in a
  workspace or group, so a sweep becomes one sortable grid of images.

RunSummary calls ``on_summary`` after writing summary.json, so these land even when the run
failed or was interrupted; without a W&B logger this callback does nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger

from nst_exp.core.images import to_pil
from nst_exp.core.objective import column
from nst_exp.engine.judge import JUDGE_KEYS
from nst_exp.engine.loggers import wandb_run
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.summary import SummaryPart

log = logging.getLogger(__name__)
TABLE_KEY = "comparison"
TRAILING_FIGURES = (*JUDGE_KEYS, "steps", "ms_per_step")  # after final_loss and each term's loss


class WandbOutputs(SummaryPart, pl.Callback):
    """Send a run's images, summary and comparison row to its W&B run (see the module doc).

    ``overrides``: the job's command-line overrides, the table row's columns (the builder,
    runtime/build.py, passes the Hydra job's).
    """

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.overrides = {key.lstrip("+~"): str(value) for key, value in (overrides or {}).items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        if trainer.global_step == 0:  # a resumed run has its inputs already
            self.send_inputs(trainer.loggers, pl_module)

    def on_summary(self, trainer: pl.Trainer, summary: dict[str, Any]) -> None:
        """Called by RunSummary with what it wrote to summary.json."""
        self.send_summary(trainer.loggers, summary)

    def send_inputs(self, loggers: list[Logger], module: StyleTransferModule) -> None:
        """The content and (first) style image, once per run."""
        run = wandb_run(loggers)
        if run is None:
            return
        import wandb

        run.log({"inputs/content": wandb.Image(to_pil(module.content[0]), caption="content"),
                 "inputs/style": wandb.Image(to_pil(module.style[0]), caption="style")})

    def send_summary(self, loggers: list[Logger], summary: dict[str, Any]) -> None:
        """The summary, final image and comparison row (any strategy: tiled runs call this too)."""
        run = wandb_run(loggers)
        if run is None:
            return
        try:
            self._send(run, summary)
        except Exception as error:  # W&B trouble must not turn a finished run into a failed one
            log.warning("W&B: could not record the run's summary (%s: %s)", type(error).__name__, error)

    def _send(self, run: Any, summary: dict[str, Any]) -> None:
        import wandb

        run.summary.update(summary)
        image = Path(summary["image"]) if summary.get("image") else None
        has_image = image is not None and image.is_file()

        def final() -> Any:  # one wandb.Image per use: the table and the panel each own theirs
            return wandb.Image(str(image), caption=caption(summary)) if has_image else None

        row = {"run": run.name, **self.overrides, "status": summary.get("status"), "final": final(),
               **{key: summary.get(key) for key in table_figures(summary)}}
        payload: dict[str, Any] = {TABLE_KEY: wandb.Table(columns=list(row), data=[list(row.values())])}
        if has_image:
            payload["final"] = final()
        run.log(payload)


def caption(summary: dict[str, Any]) -> str:
    """``ok, loss 1.23, judge 4.56``: what a thumbnail needs to be told apart."""
    parts = [str(summary.get("status"))]
    for label, key in (("loss", "final_loss"), ("judge", "judge_loss")):
        if isinstance(summary.get(key), (int, float)):
            parts.append(f"{label} {summary[key]:.4g}")
    return ", ".join(parts)


def table_figures(summary: dict[str, Any]) -> list[str]:
    """The comparison row's numbers: final_loss, each objective term's, the yardstick, the cost."""
    return ["final_loss", *(column(name) for name in summary.get("terms") or []), *TRAILING_FIGURES]
