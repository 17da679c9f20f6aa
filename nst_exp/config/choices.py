"""The closed choices of the config, as Enums whose members are the YAML strings.

Each Enum is built from the constant the code that uses the value already has (``CLAMP_MODES``,
``GRAM_NORMS``, ...), so a new mode is added in one place. A field typed with one of them makes
Hydra refuse any other string while it composes (``clamp=sometimes``), before anything runs.

Members are ``str`` subclasses that compare, hash, print and serialise (JSON) as their string:
``cfg.clamp == "auto"``, ``CLAMP[cfg.clamp]`` and ``json.dumps`` work unchanged on the composed
config. (Python 3.11's StrEnum would do; the package still supports 3.10.)
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from nst_exp.core.color import COLOR_MODES
from nst_exp.core.denoise import DENOISE_METHODS
from nst_exp.core.features import POOLINGS, VGG_CONFIGS
from nst_exp.core.images import INIT_KINDS
from nst_exp.core.losses import DISTANCES, GRAM_NORMS, REDUCTIONS, TV_SPACES
from nst_exp.core.weights import PREPROCESSORS
from nst_exp.engine.module import CLAMP_MODES
from nst_exp.engine.speed import PRECISIONS
from nst_exp.engine.stopping import STOP_ON


class Choice(str, Enum):
    """A closed choice: its name and value are the string the YAML file holds."""

    __str__ = str.__str__
    __format__ = str.__format__
    __repr__ = str.__repr__  # 'auto' in error messages, not <Clamp.auto: 'auto'>


def choice(name: str, values: Iterable[str]) -> type[Choice]:
    """An Enum of ``values`` (names may be any string: ``32-true``), picklable from this module."""
    return Choice(name, [(value, value) for value in values], module=__name__)  # type: ignore[return-value]


Arch = choice("Arch", VGG_CONFIGS)  # model.arch
Pooling = choice("Pooling", POOLINGS)  # model.pooling
Preprocess = choice("Preprocess", PREPROCESSORS)  # model.preprocess
Distance = choice("Distance", DISTANCES)  # loss.norm, loss.tv_norm
Reduction = choice("Reduction", REDUCTIONS)  # loss.reduction
GramNorm = choice("GramNorm", GRAM_NORMS)  # loss.gram_norm
TvSpace = choice("TvSpace", TV_SPACES)  # loss.tv_space
InitKind = choice("InitKind", INIT_KINDS)  # init.kind
Color = choice("Color", COLOR_MODES)  # color
Clamp = choice("Clamp", CLAMP_MODES)  # clamp
Precision = choice("Precision", PRECISIONS)  # precision
StopOn = choice("StopOn", STOP_ON)  # stop_on, callbacks.stopping.measure
DenoiseMethod = choice("DenoiseMethod", DENOISE_METHODS)  # denoise_method
LineSearch = choice("LineSearch", ["strong_wolfe"])  # optimizer.line_search_fn (torch's only one)
