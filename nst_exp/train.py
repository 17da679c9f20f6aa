"""Run one style-transfer experiment (or, with ``-m``, a sweep of them).

    python -m nst_exp.train                                   # shipped default pair
    python -m nst_exp.train optimizer=adam steps=300          # any config override
    python -m nst_exp.train -m style_weight=1e4,1e5           # a sweep, one dir per job
    python -m nst_exp.train experiment=gatys_fig3             # a ready-made experiment
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from nst_exp import CONFIG_DIR
from nst_exp.config import check_config
from nst_exp.config.errors import config_errors
from nst_exp.runtime import jobdir
from nst_exp.runtime.console import quiet_third_party
from nst_exp.runtime.devices import pin_job
from nst_exp.runtime.resolvers import register_resolvers
from nst_exp.runtime.task import metric, task_wrapper
from nst_exp.strategies.pyramid import run_scales
from nst_exp.strategies.single import fit
from nst_exp.strategies.tiled import run_tiled, tiled

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes; launcher workers import this module too
quiet_third_party()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Check ``cfg``, run it with the strategy it asks for (nst_exp/strategies), return summary.json."""
    # the one check, before anything uses a value (seed_everything refuses some seeds); from here
    # on plain values: the schema's Enums are for checking
    cfg = check_config(cfg)
    pin_job(cfg)  # joblib sweeps: this job's own GPU and share of the CPU threads
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("scales"):  # coarse-to-fine: one run per scale
        return run_scales(cfg, fit)
    if tiled(cfg):  # larger than tile_size: tile by tile
        return run_tiled(cfg, None)
    return fit(cfg)  # one image


# conf/ at the top of a checkout, or the wheel's copy inside the package (nst_exp/__init__.py);
# `--config-dir DIR` adds a user's own directory in front of it.
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the metric an Optuna sweep minimises (NaN: the job failed).

    ``task_wrapper`` turns bad input into one line and exit status 2, and keeps a failed job
    from stopping a multirun (see nst_exp/runtime/task.py).
    """
    summary = task_wrapper(train)(cfg)
    return metric(summary, cfg.get("optimized_metric") or "final_loss")


def main() -> None:
    """Run Hydra; a config it cannot compose is one line and exit 2 (nst_exp/config/errors.py)."""
    with config_errors(cleanup=jobdir.discard_unstarted):
        hydra_main()


def cli() -> None:
    """Console entry point ``nst-train`` (same arguments as ``python -m nst_exp.train``)."""
    main()


if __name__ == "__main__":
    main()
