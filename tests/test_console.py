"""What a run prints to a terminal: log records on lines of their own, one progress bar, closed
with the run's last step (engine/progress.py); W&B quiet offline, and the command that uploads
its runs at the end (runtime/sweep_lines.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl

from conftest import FAST, PROJECT_ROOT, compose_cfg
from nst_exp.engine import progress
from nst_exp.engine.loggers import finish_wandb
from nst_exp.engine.progress import ClearFirst
from nst_exp.runtime.build import build_callbacks, build_module, build_trainer
from nst_exp.runtime.job_loggers import wandb_logger
from nst_exp.runtime.sweep_lines import wandb_sync_line


def screen(output: str) -> list[str]:
    """The lines a terminal shows for ``output``: within a line, text after a carriage return
    overwrites the line from its start (tqdm redraws and clears its bar that way)."""
    lines = []
    for line in output.split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return lines


def test_log_records_print_above_the_bar_and_the_bar_closes_with_the_last_step(tmp_path: Path) -> None:
    """Stdout and stderr into one pipe, as on a terminal. A record printed after the bar's text
    on its line would show on the same line as a stale bar; the bar redrawn after the run
    would show under the yardstick's record, with a rate that counts the run's end."""
    run = [*FAST, "steps=6", "log_every=2", "snapshot_every=0", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-m", "nst_exp.train", *run], cwd=PROJECT_ROOT, env=env, timeout=600,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # bytes: text mode reads \r as \n
    output = proc.stdout.decode()
    assert proc.returncode == 0, output[-3000:]
    lines = screen(output)
    records = [i for i, line in enumerate(lines) if "][INFO] - step " in line]
    bars = [i for i, line in enumerate(lines) if "Epoch 0: " in line or "Training: " in line]
    assert len(records) == 3, output  # steps 1, 3, 5 (log_every=2)
    assert not any("Epoch 0" in lines[i] for i in records)  # each record on a line of its own
    assert len(bars) == 1 and "6/6" in lines[bars[0]], lines  # one bar left: the closed one, at the last step
    yardstick = next(i for i, line in enumerate(lines) if "Yardstick" in line)
    assert records[-1] < bars[0] < yardstick
    # Lightning's device census and max_steps line are not repeated: the run's own lines say it.
    assert "Optimising a 32x24 image for 6 steps on cpu (32-true)" in output
    assert "GPU available" not in output and "TPU available" not in output and "Trainer.fit` stopped" not in output


class Fails(pl.Callback):
    def on_train_batch_end(self, *args: Any) -> None:
        raise RuntimeError("a callback failed")


@pytest.mark.parametrize("fails", [False, True], ids=["run ends", "run fails"])
def test_console_handlers_are_given_back_however_the_run_ends(tmp_path: Path, fails: bool) -> None:
    """While the bar is live a console handler has a stand-in that clears the bar first; after
    the run, finished or failed, the logger holds the handler itself again."""
    console = logging.StreamHandler(sys.stdout)
    logging.root.addHandler(console)
    try:
        cfg = compose_cfg(*FAST, "steps=4", output_dir=tmp_path)
        trainer = build_trainer(cfg.trainer, callbacks=[*build_callbacks(cfg), *([Fails()] if fails else [])],
                                logger=False)
        seen: list[list[logging.Handler]] = []
        spy = type("Spy", (pl.Callback,), {"on_train_batch_start": lambda *_: seen.append(list(logging.root.handlers))})
        trainer.callbacks.append(spy())
        try:
            trainer.fit(build_module(cfg))
        except RuntimeError as error:
            assert fails and "a callback failed" in str(error)
        assert any(isinstance(h, ClearFirst) and h.handler is console for h in seen[0])  # the stand-in, live
        assert console in logging.root.handlers
        assert not any(isinstance(h, ClearFirst) for h in logging.root.handlers)
    finally:
        logging.root.removeHandler(console)


@pytest.mark.parametrize("terminal", [True, False])
def test_into_a_pipe_the_bar_redraws_only_now_and_then(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    """A SLURM log or ``| tee`` keeps every redraw: there the bar draws at its start and its end
    (and every ``PIPE_INTERVAL_S``), a terminal's up to 10 times a second."""
    monkeypatch.setattr(progress, "_is_terminal", lambda stream: terminal)
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)  # a terminal's bar: every refresh, for the count
    cfg = compose_cfg(*FAST, "steps=12", "log_every=1", "snapshot_every=0", output_dir=tmp_path)
    build_trainer(cfg.trainer, callbacks=build_callbacks(cfg), logger=False).fit(build_module(cfg))
    draws = capsys.readouterr().out.count("/12 [")
    assert draws >= 12 if terminal else draws <= 3, draws


def test_wandb_sync_line_names_each_layout_of_offline_runs_once(tmp_path: Path) -> None:
    """W&B is quiet offline, so the closing lines say how to upload: one glob per layout."""
    assert wandb_sync_line(tmp_path) is None
    for run in ("0/wandb/offline-run-a", "1/wandb/offline-run-b", "2/scale_256/wandb/offline-run-c",
                "2/scale_512/wandb/offline-run-d", "3/wandb/run-online-e"):
        (tmp_path / run).mkdir(parents=True)
    assert wandb_sync_line(tmp_path) == (f"upload to W&B: wandb sync {tmp_path}/*/scale_*/wandb/offline-run-* "
                                         f"{tmp_path}/*/wandb/offline-run-*")
    assert wandb_sync_line(tmp_path / "0") == f"upload to W&B: wandb sync {tmp_path}/0/wandb/offline-run-*"


@pytest.mark.parametrize(("quiet", "expected"), [(None, True), (False, False)])
def test_wandb_is_quiet_offline_unless_asked(tmp_path: Path, quiet: bool | None, expected: bool) -> None:
    logger = wandb_logger(str(tmp_path), mode="offline", quiet=quiet)
    try:
        assert logger is not None and logger.experiment.settings.quiet is expected
    finally:
        finish_wandb()
