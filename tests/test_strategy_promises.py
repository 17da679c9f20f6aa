"""Strategy x promise: every way a job runs keeps every promise of a run, or refuses it in one line.

Strategies: a single run, coarse-to-fine (``scales``), tiles (``tile_size``) and a batched sweep
(``hydra/launcher=batched``). Promises: a W&B run with the summary, the yardstick's scores,
``stop_eps``, the divergence guard, box-constrained L-BFGS (the image never leaves [0, 1]) and
``denoise_method``. Single, coarse-to-fine and tiled runs go through ``nst_exp.train.train`` (the
function the Hydra entry point wraps), the batched sweep through its launcher in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from wandb_records import read_run

from conftest import FAST, PROJECT_ROOT, compose_cfg, run_cli
from nst_exp.core.denoise import denoise
from nst_exp.core.images import load_image, to_tensor
from nst_exp.engine.module import StyleTransferModule
from nst_exp.errors import UserError
from nst_exp.runtime.task import one_line
from nst_exp.strategies import tile_loop as tiled_engine
from nst_exp.train import train

pytestmark = pytest.mark.slow
STRATEGIES = {
    "single": [],
    "pyramid": ["scales=[32,48]", "steps_per_scale=[4,4]"],
    "tiled": ["image_size=64", "tile_size=32", "tile_overlap=8", "tile_passes=1"],
    "batched": ["hydra/launcher=batched"],
}
PROMISES = ("wandb", "yardstick", "stop_eps", "divergence", "bounded_lbfgs", "denoise_method")
RUN = [*FAST, "optimizer=lbfgs", "steps=4", "trainer.enable_progress_bar=false"]
# W&B on, chambolle denoise of final.png only; PROBE: fails the run if a step leaves [0, 1]
KEPT = ["logger=wandb", "denoise=0.3", "denoise_method=chambolle"]
PROBE = "+callbacks.inbox._target_=strategy_probes.InBox"
PROBES_ON_PATH = {"PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def run(strategy: str, tmp: Path, *overrides: str) -> list[dict[str, Any]] | str:
    """The job summaries of one run of ``strategy`` (two jobs for a batch), or the one-line error."""
    if strategy == "batched":
        result = run_cli("-m", *RUN, *STRATEGIES[strategy], "style_weight=1e4,1e5", *overrides,
                         f"hydra.sweep.dir={tmp / 'sweep'}", cwd=tmp, env=PROBES_ON_PATH)
        if result.returncode == 2:
            return result.stderr.strip()
        assert result.returncode == 0, result.stderr[-3000:]
        return [json.loads((tmp / "sweep" / n / "summary.json").read_text()) for n in ("0", "1")]
    cfg = compose_cfg(*RUN, *STRATEGIES[strategy], *overrides, output_dir=tmp / "job")
    try:
        return [train(cfg)]
    except UserError as error:  # what the entry point prints, one line, exit 2 (test_bad_input.py)
        return f"error: {one_line(error)}"


class Runs:
    """Each strategy's run with the promises on (``KEPT``), made once and shared by four cells."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory, self.kept = factory, {}

    def of(self, strategy: str) -> list[dict[str, Any]]:
        if strategy not in self.kept:
            # Tiles run no Lightning callbacks and refuse one of ours: check_tiles_in_box watches them.
            probe = [] if strategy == "tiled" else [PROBE]
            self.kept[strategy] = run(strategy, self.factory.mktemp(f"{strategy}-kept"), *KEPT, *probe)
        return self.kept[strategy]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory)


def last_snapshot(summary: dict[str, Any]) -> Path:
    """The last undenoised image the run saved (snapshots are never denoised by default)."""
    job = Path(summary["image"]).parent
    if "per_scale" in summary:
        job = Path(summary["per_scale"][-1]["image"]).parent
    return sorted((job / "snapshots").glob("*.png"))[-1]


def check_wandb(summaries: list[dict[str, Any]]) -> None:
    for summary in summaries:
        offline = read_run(Path(summary["wandb"]["dir"]).parent)  # dir: the run's files/
        assert offline.summary["status"] == summary["status"]
        assert offline.summary["final_loss"] == pytest.approx(summary["final_loss"])


def check_yardstick(summaries: list[dict[str, Any]]) -> None:
    for summary in summaries:
        scores = {key: value for key, value in summary.items() if key.startswith("judge_")}
        assert scores and all(isinstance(value, float) and math.isfinite(value) for value in scores.values()), scores


def check_denoise(summaries: list[dict[str, Any]]) -> None:
    """final.png is the last image denoised by chambolle (8-bit rounding of both PNGs: 2/255)."""
    for summary in summaries:
        raw = to_tensor(load_image(last_snapshot(summary), "snapshot"))
        expected = denoise(raw[0], 0.3, "chambolle")
        final = np.asarray(Image.open(summary["image"]).convert("RGB"), dtype=np.float32) / 255
        assert np.abs(final - expected.permute(1, 2, 0).numpy()).max() <= 2 / 255
        assert np.abs(final - raw[0].permute(1, 2, 0).numpy()).max() > 2 / 255  # it did denoise


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("promise", PROMISES)
def test_every_strategy_keeps_every_promise(strategy: str, promise: str, runs: Runs,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = runs.factory.mktemp(f"{strategy}-{promise}")
    if promise in ("wandb", "yardstick", "bounded_lbfgs", "denoise_method"):
        summaries = runs.of(strategy)  # the InBox probe would have failed it
        assert all(summary["status"] == "ok" for summary in summaries)
        {"wandb": check_wandb, "yardstick": check_yardstick, "denoise_method": check_denoise,
         "bounded_lbfgs": lambda _: None}[promise](summaries)
        if promise == "bounded_lbfgs" and strategy == "tiled":
            check_tiles_in_box(tmp, monkeypatch)
            refused = run(strategy, tmp, PROBE)
            assert refused.startswith("error: callbacks.inbox._target_='strategy_probes.InBox': a callback of your "
                                      "own cannot be combined with tile_size"), refused
    elif promise == "stop_eps":
        longer = ["steps_per_scale=[30,30]"] if strategy == "pyramid" else []
        outcome = run(strategy, tmp, "stop_eps=0.5", "steps=30", *longer)
        if strategy == "tiled":
            assert outcome.startswith("error: stop_eps=0.5: stopping on a plateau cannot be combined with tile_size")
        else:
            for summary in outcome:
                stops = [s.get("stopped_early_at") for s in summary.get("per_scale", [summary])]
                assert any(stop is not None and stop < 30 for stop in stops), summary
    else:
        check_divergence(strategy, tmp, monkeypatch)


def check_divergence(strategy: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN loss from the third evaluation on: the run ends ``diverged`` with a finite image."""
    if strategy == "batched":  # another process: an exploding L-BFGS (tests/test_faults.py)
        summaries = run(strategy, tmp, "optimizer.line_search_fn=null", "optimizer.lr=100", "steps=30",
                        "style_weight=1e9,1e10")
    elif strategy == "tiled":
        original = tiled_engine.optimise_tile
        calls = []

        def poisoned(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            result, losses = original(*args, **kwargs)
            return (result * math.nan, {**losses, "loss": math.nan}) if len(calls) == 2 else (result, losses)

        monkeypatch.setattr(tiled_engine, "optimise_tile", poisoned)
        summaries = run(strategy, tmp)
        assert summaries[0]["tiles"]["diverged"] == 1
    else:
        original = StyleTransferModule._loss_and_grad

        def nan_after_two(self: StyleTransferModule, optimizer: Any, warp: Any) -> Any:
            loss, parts = original(self, optimizer, warp)
            if self.evaluations > 2:
                self.image.grad.fill_(math.nan)
                return loss * math.nan, {key: value * math.nan for key, value in parts.items()}
            return loss, parts

        monkeypatch.setattr(StyleTransferModule, "_loss_and_grad", nan_after_two)
        summaries = run(strategy, tmp, "steps=8", *(["steps_per_scale=[8,8]"] if strategy == "pyramid" else []))
    for summary in summaries:
        assert summary["status"] == "diverged", summary["status"]
        assert np.isfinite(np.asarray(Image.open(summary["image"]))).all()


def check_tiles_in_box(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles run no Lightning callbacks: watch each tile's optimiser steps instead."""
    seen: list[tuple[float, float]] = []
    original = tiled_engine.optimise_tile

    def watched(module: Any, objective: Any, start: torch.Tensor, plan: Any) -> Any:
        factory = module.optimizer_factory

        def watching(params: list[torch.nn.Parameter]) -> Any:
            optimizer = factory(params)
            step = optimizer.step

            def checked(closure: Any) -> Any:
                loss = step(closure)
                image = params[0].detach()
                seen.append((float(image.min()), float(image.max())))
                return loss

            optimizer.step = checked
            return optimizer

        module.optimizer_factory = watching
        try:
            return original(module, objective, start, plan)
        finally:
            module.optimizer_factory = factory

    monkeypatch.setattr(tiled_engine, "optimise_tile", watched)
    assert run("tiled", tmp)[0]["status"] == "ok"
    assert seen and all(low >= 0 and high <= 1 for low, high in seen), seen
