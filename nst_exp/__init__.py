"""nst-exp: run, sweep and compare neural style transfer experiments."""

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Configs point at shipped data relative to the checkout, wherever the command runs from.
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)

__version__ = "0.1.0"
