"""nst-exp: run, sweep and compare neural style transfer experiments.

The package is layered; each layer imports only the ones below it (README, "Development"):

    train.py     the Hydra entry point
    reporting/   read a finished multirun: report.csv/.md, contact sheet, loss plot
    batched/     run several sweep jobs as one batch of images
    runtime/     the process around a run: build, failure contract, checkpoint, devices
    engine/      the Lightning run: module, callbacks, guards, stopping, loggers
    core/        the science in torch + Pillow: VGG features, weights, losses, images
    errors.py    the user-facing error types (one line each, exit 2)

``conf/`` (Hydra configs) and ``data/`` (sample images) ship inside the package, so an
installed wheel runs from any directory.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "conf"
DATA_DIR = PACKAGE_DIR / "data"

__version__ = "0.2.0"
