"""Every run's final image scored on one ruler, whatever the run optimised (summary.json's judge_*).

A run's own ``final_loss`` cannot rank a sweep: it is measured with the run's own network,
layers, weights and size, so lowering style_weight "wins". ``JudgeScore`` scores final.png's
pixels with the impartial yardstick of ``nst_exp.core.yardstick`` instead: a fixed network
(the bundled VGG19, max pooling), a fixed scale (``edge``), the original photo and painting
files (blend-weighted), and a style measure no preset optimises (sliced Wasserstein). No
``model.*``, ``image_size``, ``scales``, ``style_scale``, ``color`` or loss setting reaches it.
RunSummary writes the scores into summary.json, then W&B's summary, the report, and Optuna's
objective (``optimized_metric``). ``nst-score`` scores any image on the same ruler.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from nst_exp.core.denoise import denoise
from nst_exp.core.yardstick import EDGE, SCORE_KEYS, Reference, Yardstick
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.summary import SummaryPart

log = logging.getLogger(__name__)
JUDGE_KEYS = SCORE_KEYS


class JudgeScore(SummaryPart, pl.Callback):
    """Add the ``JUDGE_KEYS`` scores of the final image to summary.json.

    ``content``/``style``/``style_blend`` are the run's *files* (``pair.content``,
    ``pair.style``, ``style_blend``), read at the yardstick's own size. ``denoise`` and
    ``denoise_method`` are final.png's, so the score is that of the file the user gets.
    RunSummary asks for the scores (``summary_fields``) when it writes the summary, so the
    order of the callbacks does not matter.
    """

    def __init__(self, content: str, style: str | Sequence[str], style_blend: float | Sequence[float] | None = None,
                 edge: int = EDGE, denoise: float = 0.0, denoise_method: str = "gaussian") -> None:
        self.content = str(content)
        self.styles = [str(style)] if isinstance(style, str) else [str(s) for s in style]
        self.blend = style_blend
        self.edge, self.denoise, self.denoise_method = int(edge), float(denoise), denoise_method
        self._module: StyleTransferModule | None = None

    def score(self, image: torch.Tensor) -> dict[str, float | None]:
        """The yardstick's scores of ``image`` ((1, 3, H, W) in [0, 1]) as final.png saves it."""
        blend = tuple(self.blend) if isinstance(self.blend, Sequence) else self.blend
        files = tuple((path, _modified(path)) for path in (self.content, *self.styles))
        reference = shared_reference(files, blend, self.edge, str(image.device))
        final = denoise(image.detach()[0].float().clamp(0, 1), self.denoise, self.denoise_method)
        scores = Yardstick(self.edge, image.device).score(final[None], reference)
        return {key: value if math.isfinite(value) else None for key, value in scores.items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        self._module = pl_module

    def summary_fields(self) -> dict[str, float | None]:
        """What RunSummary adds to summary.json: the yardstick's scores of the current image."""
        if self._module is None:
            return {}
        scores = self.score(self._module.image)
        log.info("Yardstick: %s", ", ".join(f"{key[6:]} {_short(value)}" for key, value in scores.items()))
        return scores


@functools.lru_cache(maxsize=1)
def shared_reference(files: tuple[tuple[str, int], ...], blend: float | tuple[float, ...] | None, edge: int,
                     device: str) -> Reference:
    """The photo and paintings at the yardstick's scale (three VGG passes), computed once for
    the jobs of a sweep or batch in one process that share their pair. One entry, keyed by the
    files' paths and modification times, so an edited file is read again; never written to."""
    content, *styles = (path for path, _ in files)
    return Yardstick(edge, device).reference(content, styles, blend)


def _modified(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1  # the load reports the file's error


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
