"""Lightning conventions: the losses reach ``callback_metrics``, so stock callbacks can use
them, and the loggers get a row every ``log_every_n_steps``; Lightning's per-evaluation hooks
run whenever a callback listens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import Logger

from conftest import FAST, compose_cfg
from nst_exp.engine.module import StyleTransferModule
from nst_exp.runtime.build import build_callbacks, build_module, build_trainer


def fit(tmp_path: Path, *overrides: str, extra: list[pl.Callback] = (), logger: Logger | bool = False
        ) -> pl.Trainer:
    cfg = compose_cfg(*FAST, *overrides, output_dir=tmp_path)
    trainer = build_trainer(cfg.trainer, callbacks=[*build_callbacks(cfg), *extra], logger=logger)
    trainer.fit(build_module(cfg))
    return trainer


class Rows(Logger):
    """A logger that keeps what it is sent: (step, train/loss) per row."""

    name, version = "rows", 0

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, float]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, metrics["train/loss"]))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


class CountsStepHooks(pl.Callback):
    """Listens to Lightning's per-evaluation ``on_before_optimizer_step``."""

    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.calls += 1


def test_losses_reach_callback_metrics_and_the_progress_bar(tmp_path: Path) -> None:
    trainer = fit(tmp_path, "steps=5", "optimizer=adam")
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/content_loss", "train/style_loss", "train/tv_loss"} <= set(metrics)
    assert isinstance(metrics["train/loss"], torch.Tensor) and torch.isfinite(metrics["train/loss"])
    # Nothing logged with prog_bar: Lightning would .item() it at every batch's end (a GPU sync per
    # step); the bar reads train/loss from callback_metrics when it refreshes (engine/progress.py).
    assert trainer.progress_bar_metrics == {}
    bars = [c for c in trainer.callbacks if isinstance(c, TQDMProgressBar)]
    assert len(bars) == 1 and bars[0].refresh_rate == 2  # log_every=2: a refresh is the only host copy
    assert bars[0].get_metrics(trainer, trainer.lightning_module)["train/loss"] == f"{float(metrics['train/loss']):.3g}"
    # The last logged value is the loss the last step started from: metrics.csv's last row.
    last = (tmp_path / "metrics.csv").read_text().splitlines()[-1].split(",")
    assert abs(float(metrics["train/loss"]) - float(last[1])) <= 1e-5 * abs(float(last[1]))


def test_stock_model_checkpoint_and_early_stopping_monitor_train_loss(tmp_path: Path) -> None:
    """ModelCheckpoint keeps the best step by train/loss; EarlyStopping stops a run that stalls."""
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="train/loss", mode="min", every_n_train_steps=1,
                           save_top_k=1, filename="best")
    stop = EarlyStopping(monitor="train/loss", mode="min", patience=0, min_delta=1e30,
                         check_on_train_epoch_end=True, strict=True)
    trainer = fit(tmp_path, "steps=4", "optimizer=lbfgs", "trainer.enable_checkpointing=true", extra=[best, stop])
    assert best.best_model_score is not None and torch.isfinite(best.best_model_score)
    assert Path(best.best_model_path).is_file()
    assert torch.isfinite(stop.best_score)  # it read train/loss (strict=True raises if it is missing)
    assert trainer.global_step == 4


def test_no_progress_bar_when_disabled(tmp_path: Path) -> None:
    trainer = fit(tmp_path, "steps=2", "trainer.enable_progress_bar=false")
    assert not any(isinstance(c, TQDMProgressBar) for c in trainer.callbacks)
    assert "train/loss" in trainer.callback_metrics


@pytest.mark.parametrize(("steps", "every", "logged"), [(4, None, [0, 2, 3]), (5, None, [0, 2, 4]),
                                                       (5, 1, [0, 1, 2, 3, 4])])
def test_loggers_get_a_row_every_log_every_steps_and_the_last(tmp_path: Path, steps: int, every: int | None,
                                                               logged: list[int]) -> None:
    """log_every=2: rows at steps 0, 2, ... and the run's last step, even when a batch's flush
    took it before the run ended; each row is metrics.csv's row of that step."""
    rows = Rows()
    cadence = [f"callbacks.metrics.loggers_every_n_steps={every}"] if every else []
    fit(tmp_path, f"steps={steps}", "optimizer=adam", *cadence, logger=rows)
    csv_losses = [float(line.split(",")[1]) for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    assert [step for step, _ in rows.rows] == logged
    assert [loss for _, loss in rows.rows] == [csv_losses[step] for step in logged]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_lightning_step_hooks_run_when_a_callback_listens(tmp_path: Path, optimizer: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody listening: the module steps the torch optimiser itself (engine/shortcuts.py) and
    the steps still count. A callback with ``on_before_optimizer_step``: Lightning's path, the
    hook called once per evaluation, and the same losses."""
    steps, taken = {}, []
    original = StyleTransferModule.on_train_start

    def on_train_start(self: StyleTransferModule) -> None:
        original(self)
        taken.append(getattr(self._step, "__name__", ""))

    monkeypatch.setattr(StyleTransferModule, "on_train_start", on_train_start)
    for listening in (False, True):
        taken.clear()
        hook = CountsStepHooks()
        trainer = fit(tmp_path / str(listening), "steps=3", f"optimizer={optimizer}", extra=[hook] if listening else [])
        assert trainer.global_step == 3
        assert taken == ["_lightning_step" if listening else "step_directly"]
        evaluations = trainer.lightning_module.evaluations  # L-BFGS: also a closure call its cache answers
        assert (hook.calls >= evaluations >= 3) if listening else hook.calls == 0
        steps[listening] = (tmp_path / str(listening) / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in steps[False]] == [row.split(",")[:2] for row in steps[True]]
