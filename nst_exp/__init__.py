"""nst-exp: run, sweep and compare neural style transfer experiments.

The package is layered; each layer imports only the ones below it (README, "Development"):

    train.py     the Hydra entry point
    reporting/   read a finished multirun: report.html/.csv/.md, contact sheet, plots; nst-score
    strategies/  how a job runs: single, pyramid (coarse-to-fine), tiled, batched
    runtime/     the process around a run: build, failure contract, checkpoint, devices
    config/      the config's typed schema, checked once per run; config mistakes in one line
    engine/      the Lightning run: module, run record (summary, metrics, W&B), guards, stopping
    core/        the science in torch + Pillow: the objective's terms, losses, VGG, L-BFGS, images
    errors.py    the user-facing error types (one line each, exit 2)

The Hydra configs live in ``conf/`` at the top of the checkout; the wheel ships them inside the
package as ``nst_exp/conf/`` (copied in by setup.py at build time), beside ``data/`` (sample images), so an
installed wheel runs from any directory. ``CONFIG_DIR`` is whichever of the two this copy has:
a checkout and an editable install read the top-level files, a wheel its own copy.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "conf" if (PACKAGE_DIR / "conf").is_dir() else PACKAGE_DIR.parent / "conf"
DATA_DIR = PACKAGE_DIR / "data"

__version__ = "0.2.0"
