"""nst-exp: run, sweep and compare neural style transfer experiments."""

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Configs point at shipped data relative to the checkout, wherever the command runs from.
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


def _deterministic(flag: bool | str | None, accelerator: str) -> bool | str:
    """The Trainer's ``deterministic``: null means on for the CPU (it costs nothing there) and
    off on a GPU (deterministic kernels are slower, and some ops have none)."""
    if flag is not None:
        return flag
    if accelerator == "auto":
        import torch

        return not torch.cuda.is_available()
    return accelerator == "cpu"


OmegaConf.register_new_resolver("device_deterministic", _deterministic, replace=True)


def _ensure_dir(path: str) -> str:
    """Create ``path`` and return it: SQLite (Optuna's storage) will not create its directory."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


OmegaConf.register_new_resolver("ensure_dir", _ensure_dir, replace=True)


def _precision(optimizer_target: str, requested: str | None, trainer_default: str, accelerator: str) -> str:
    """The Trainer's ``precision``: the top-level knob if set, else the trainer file's choice."""
    from nst_exp.speed import precision_for  # imported on use: keeps `import nst_exp` light

    return precision_for(optimizer_target, trainer_default if requested is None else requested, accelerator)


# trainer/*.yaml: mixed precision for Adam only, fp32 for L-BFGS (see nst_exp/speed.py).
OmegaConf.register_new_resolver("nst_precision", _precision, replace=True)

__version__ = "0.1.0"
