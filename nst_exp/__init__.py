"""nst-exp: run, sweep and compare neural style transfer experiments."""

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Configs point at shipped data relative to the checkout, wherever the command runs from.
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


def _precision(optimizer_target: str, requested: str) -> str:
    from nst_exp.speed import precision_for  # imported on use: keeps `import nst_exp` light

    return precision_for(optimizer_target, requested)


# trainer/gpu.yaml: mixed precision for Adam, fp32 for L-BFGS (see nst_exp/speed.py).
OmegaConf.register_new_resolver("nst_precision", _precision, replace=True)

__version__ = "0.1.0"
