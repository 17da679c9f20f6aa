"""Which device a job runs on, read from its ``trainer`` config the way Lightning reads it.

Single, batched and coarse-to-fine jobs hand the config to a Lightning Trainer, which picks the
device; a tiled job has no Trainer (strategies/tiled.py) and asks ``trainer_device`` instead, so
``trainer=gpu`` puts its tiles on the GPU too. An accelerator this machine lacks is refused by
the config check in one line (Lightning's own refusal is a traceback from inside Hydra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nst_exp.errors import ConfigError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")  # what a tiled job can run on (Lightning knows more)


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def check_accelerator(accelerator: str) -> None:
    """Refuse a GPU accelerator this machine lacks (others are Lightning's to judge)."""
    present = {"cuda": torch.cuda.is_available(), "mps": mps_available()}
    present["gpu"] = present["cuda"] or present["mps"]
    if not present.get(accelerator, True):
        raise ConfigError(f"trainer.accelerator={accelerator}: torch sees no such device on this machine; "
                          "use trainer=cpu, or trainer.accelerator=auto (the GPU wherever there is one)")


def trainer_device(accelerator: str = "auto", devices: Any = 1) -> torch.device:
    """The device a Trainer with this ``accelerator`` and ``devices`` runs a one-device job on:
    a CUDA GPU first (``devices=[i]``: GPU ``i``, as a sweep's slot sets it), then Apple's MPS,
    else the CPU; ``gpu`` and ``cuda`` never fall back to the CPU."""
    check_accelerator(accelerator)
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={accelerator}: a tiled run (tile_size) runs on one of "
                          f"{', '.join(ACCELERATORS)}")
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        listed = isinstance(devices, Sequence) and not isinstance(devices, str) and len(devices) > 0
        return torch.device("cuda", int(devices[0]) if listed else 0)
    if accelerator in ("auto", "gpu", "mps") and mps_available():
        return torch.device("mps")
    return torch.device("cpu")
