"""The W&B run a job logs to, seen from the Lightning side (made by runtime/job_loggers.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pytorch_lightning.loggers import Logger

log = logging.getLogger(__name__)


def is_wandb(logger: Logger) -> bool:
    """Whether ``logger`` is Lightning's WandbLogger.

    Matched by class name, so callers need not import wandb's logger to look for it.
    """
    return type(logger).__name__ == "WandbLogger"


def wandb_run(loggers: Iterable[Logger]) -> Any | None:
    """The W&B run behind the first WandbLogger in ``loggers``, or None."""
    for logger in loggers:
        run = getattr(logger, "experiment", None) if is_wandb(logger) else None
        if run is not None:
            return run
    return None


def finish_wandb(failed: bool = False) -> None:
    """Close the W&B run, if any, so the next multirun job starts a fresh one."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
    except Exception as error:
        log.warning("wandb.finish failed: %s", error)
