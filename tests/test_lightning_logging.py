"""Lightning conventions: losses go through ``self.log``, so stock callbacks can use them."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

from conftest import FAST, compose_cfg
from nst_exp.runtime.build import build_callbacks, build_module, build_trainer


def fit(tmp_path: Path, *overrides: str, extra: list[pl.Callback] = ()) -> pl.Trainer:
    cfg = compose_cfg(*FAST, *overrides, output_dir=tmp_path)
    trainer = build_trainer(cfg.trainer, callbacks=[*build_callbacks(cfg), *extra], logger=False)
    trainer.fit(build_module(cfg))
    return trainer


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
