"""The OmegaConf resolvers the shipped configs use, registered in one place (with the schemas
the config files extend: nst_exp/config/store.py).

``register_resolvers()`` runs once when ``nst_exp.train`` is imported (every launcher's
worker imports it to unpickle the job), and from anything else that composes the configs
itself (tests, scripts/bench_workers.py). Registering twice is harmless.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from nst_exp import DATA_DIR
from nst_exp.config import register_schemas


def deterministic(flag: bool | str | None, accelerator: str) -> bool | str:
    """The Trainer's ``deterministic``: null means on for the CPU (it costs nothing there) and
    off on a GPU (deterministic kernels are slower, and some ops have none)."""
    if flag is not None:
        return flag
    if accelerator == "auto":
        import torch

        return not torch.cuda.is_available()
    return accelerator == "cpu"


def ensure_dir(path: str) -> str:
    """Create ``path`` and return it: SQLite (Optuna's storage) will not create its directory."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def precision(optimizer_target: str, requested: str | None, trainer_default: str, accelerator: str) -> str:
    """The Trainer's ``precision``: the top-level knob if set, else the trainer file's choice
    (mixed precision for Adam only, fp32 for L-BFGS: see engine/speed.py)."""
    from nst_exp.engine.speed import precision_for  # on use: composing a config needs no Lightning

    return precision_for(optimizer_target, trainer_default if requested is None else requested, accelerator)


def parallel_jobs() -> int:
    """Default joblib ``n_jobs``: see runtime/devices.py."""
    from nst_exp.runtime.devices import parallel_jobs as jobs

    return jobs()


def gpus_per_job() -> int:
    """Ray's default ``num_gpus`` per task: see runtime/devices.py."""
    from nst_exp.runtime.devices import gpus_per_job as gpus

    return gpus()


RESOLVERS = {
    "nst_data_dir": lambda: str(DATA_DIR / "images"),  # shipped sample images, wherever nst-exp is installed
    "device_deterministic": deterministic,
    "ensure_dir": ensure_dir,
    "nst_precision": precision,
    "parallel_jobs": parallel_jobs,
    "gpus_per_job": gpus_per_job,
}


def register_resolvers() -> None:
    """Make every resolver above known to OmegaConf, and the schemas to Hydra (idempotent)."""
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
    register_schemas()
