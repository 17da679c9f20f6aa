"""summary.json: one schema for every way a job runs (single, batched, coarse-to-fine, tiled).

Each strategy fills a ``Summary`` and writes it with ``write_summary``; readers (the report, the
sweep's console lines, Optuna's metric, W&B) see the same keys whatever made the file. Callbacks
add theirs through ``SummaryPart`` (the yardstick's scores, where a run stopped early, its
divergences), never by reaching into another callback.
"""

from __future__ import annotations

import math
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nst_exp.core.files import write_json


@dataclass
class Summary:
    """What a finished (or failed, or interrupted) job reports.

    ``losses``: each objective term's ``<name>_loss`` (``terms`` lists the names, in order);
    ``extra``: what a strategy or a callback adds (``judge_*``, ``stopped_early_at``,
    ``divergences``, ``tiles``, ``per_scale``, ...). Non-finite numbers are written as null.
    """

    status: str
    final_loss: float | None = None
    losses: dict[str, float | None] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float | None = None
    train_time_s: float | None = None
    ms_per_step: float | None = None
    precision: str | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    image: str | None = None
    image_size: list[int] | None = None
    wandb: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The file's flat layout: ``status, final_loss, <term>_loss..., terms, steps, ..., extra``."""
        fields = asdict(self)
        losses, extra = fields.pop("losses"), fields.pop("extra")
        ordered = {"status": fields.pop("status"), "final_loss": finite(fields.pop("final_loss")),
                   **{key: finite(value) for key, value in losses.items()}}
        return {**ordered, **fields, **extra}


def finite(value: Any) -> Any:
    """JSON has no NaN: non-finite losses are written as null (the status says why)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_summary(output_dir: str | Path, summary: Summary) -> dict[str, Any]:
    """Write ``<output_dir>/summary.json`` atomically; returns what was written."""
    data = summary.to_json()
    write_json(Path(output_dir) / "summary.json", data)
    return data


class SummaryPart:
    """A callback's share of summary.json, asked for by RunSummary when it writes the file.

    ``summary_fields``: keys to add; ``run_status``: a status other than ``ok`` for a run that
    ended normally (the divergence guard's ``diverged``); ``on_summary``: the written summary,
    to pass on (W&B). The order of the callbacks does not matter.
    """

    def summary_fields(self) -> dict[str, Any]:
        return {}

    def run_status(self) -> str | None:
        return None

    def on_summary(self, trainer: Any, summary: dict[str, Any]) -> None:
        return None


def peak_memory() -> dict[str, float | None]:
    """This process's peak RSS and peak CUDA memory (null without CUDA), in MB, for every strategy."""
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None}
