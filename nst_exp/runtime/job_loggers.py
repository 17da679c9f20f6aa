"""The Hydra job's loggers: W&B (offline by default) named and grouped after the Hydra job.

Lives in ``runtime`` because it reads Hydra's job context; the engine only talks to the run
these make (engine/loggers.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.loggers import Logger

log = logging.getLogger(__name__)


def job_identity() -> tuple[str | None, str | None]:
    """(group, name) for the current Hydra job: a multirun's jobs share its sweep id as group."""
    if not HydraConfig.initialized():
        return None, None
    hydra = HydraConfig.get()
    name = hydra.job.get("override_dirname") or None
    num = hydra.job.get("num")  # missing in a config composed for a multirun but not launched
    if hydra.mode != RunMode.MULTIRUN or num is None:
        return None, name
    sweep = Path(hydra.sweep.dir)
    group = "-".join(sweep.parts[-2:])  # e.g. 2026-11-23-15-30-00_123456
    return group, f"{num}:{name}" if name else str(num)


def default_job_type() -> str:
    """W&B's job_type: ``run`` (one job), ``sweep`` (a grid) or ``search`` (an Optuna study).

    With ``group`` (the sweep id) it lets W&B's UI filter and colour runs by what made them.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return "run"
    sweeper = str(HydraConfig.get().sweeper.get("_target_", ""))
    return "search" if "optuna" in sweeper.lower() else "sweep"


def job_overrides() -> dict[str, str]:
    """The current Hydra job's command-line overrides, ``{key: value}`` (empty outside Hydra)."""
    if not HydraConfig.initialized():
        return {}
    return dict(item.split("=", 1) for item in HydraConfig.get().overrides.task if "=" in item)


def wandb_logger(save_dir: str, project: str = "nst-exp", mode: str | None = None,
                 run_config: dict[str, Any] | None = None, tags: list[str] | None = None,
                 group: str | None = None, name: str | None = None, id: str | None = None,
                 reinit: str = "finish_previous", job_type: str | None = None,
                 init_timeout: float = 20.0, quiet: bool | None = None) -> Logger | None:
    """A Lightning WandbLogger writing under ``save_dir``; offline unless asked otherwise.

    W&B trouble (no key online, unwritable dir, broken install) must not kill an experiment:
    it is logged as a warning and the run goes on with its local files only. ``job_type``
    defaults to ``default_job_type()``, ``group``/``name`` to ``job_identity()``. ``id`` continues
    an existing run (a resumed job), else W&B makes a new one. A batched sweep
    (nst_exp/strategies/batched/batch.py) passes ``reinit="create_new"`` to keep one open run per job.
    Online without a network, W&B waits ``init_timeout`` seconds (its own default: 90 per job)
    before giving up; then the run goes on without it, as above. ``quiet`` (None: when offline)
    keeps W&B to the lines that say where the run is saved, without the ~25 lines of run
    history and summary it prints at each job's end (the closing lines say how to upload:
    runtime/sweep_lines.py); online, W&B's own output, the run's URL with it, stays.
    """
    mode = mode or os.environ.get("WANDB_MODE", "offline")
    quiet = mode == "offline" if quiet is None else bool(quiet)
    default_group, default_name = job_identity()
    try:
        import wandb
        from pytorch_lightning.loggers import WandbLogger

        Path(save_dir).mkdir(parents=True, exist_ok=True)
        logger = WandbLogger(save_dir=save_dir, project=project, mode=mode, config=run_config,
                             tags=list(tags or []), group=group or default_group,
                             name=name or default_name, id=id, reinit=reinit,
                             job_type=job_type or default_job_type(),
                             settings=wandb.Settings(init_timeout=float(init_timeout), quiet=quiet))
        # Lightning always passes `anonymous`, which wandb >= 0.19 answers with a warning on every
        # run ("has no effect"); not passing it changes nothing else.
        logger._wandb_init.pop("anonymous", None)
        _ = logger.experiment  # start the run now, so failures surface here
        return logger
    except Exception as error:
        log.warning("W&B logging disabled (%s: %s); local files are still written",
                    type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        return None
