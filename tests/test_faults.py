"""Faults: divergence is recovered, interrupts leave complete files, sweeps survive a bad job,
and reruns are bit-identical."""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

import nst_exp.engine.guards
import nst_exp.runtime.task
import nst_exp.strategies.single
from conftest import FAST, compose_cfg, default_sigint, run_cli
from nst_exp.engine.callbacks import RunSummary
from nst_exp.engine.guard_ledgers import DeviceLedger, HostLedger
from nst_exp.engine.guards import DivergenceGuard
from nst_exp.engine.module import StyleTransferModule
from nst_exp.runtime.build import build_module
from nst_exp.runtime.task import EXIT_SIGINT, EXIT_SIGTERM, task_wrapper
from nst_exp.train import train

# L-BFGS without a line search and a huge style weight: blows up at step 2 (random weights, seed 0).
EXPLODING = ["optimizer.line_search_fn=null", "optimizer.lr=100", "style_weight=1e9", "steps=30"]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def summary_of(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


# --- divergence -------------------------------------------------------------------------------
@pytest.fixture(params=[HostLedger, DeviceLedger], ids=["host-ledger", "device-ledger"])
def ledger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each divergence test with each of the guard's ledgers: the CPU's, and a GPU's forced here."""
    monkeypatch.setattr(nst_exp.engine.guards, "ledger_for", request.param)


@pytest.mark.usefixtures("ledger")
def test_adam_nan_at_step_k_restores_the_best_image_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = 5
    original = StyleTransferModule._loss_and_grad

    def poisoned(self: StyleTransferModule, optimizer, warp):
        loss, parts = original(self, optimizer, warp)
        if self.trainer.global_step >= k:  # NaN loss and gradient from step k on
            self.image.grad.fill_(math.nan)
            return loss * math.nan, {key: value * math.nan for key, value in parts.items()}
        return loss, parts

    monkeypatch.setattr(StyleTransferModule, "_loss_and_grad", poisoned)
    cfg = compose_cfg(*FAST, "optimizer=adam", "init=noise", "steps=20", "log_every=4", "snapshot_every=1",
                      output_dir=tmp_path)
    summary = train(cfg)
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == k
    assert summary["steps"] == 8  # Adam: the verdict comes at the next metrics flush, not every step
    (event,) = summary["divergences"]
    assert event["loss"] == "nan" and event["action"] == "stop" and 1 <= event["best_step"] < k
    assert math.isfinite(summary["final_loss"])
    # final.png is the best image: the one the best step started from, i.e. that step's snapshot
    best = tmp_path / f"snapshots/step_{event['best_step']:06d}.png"
    assert np.array_equal(pixels(tmp_path / "final.png"), pixels(best))
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.usefixtures("ledger")
def test_batched_images_each_get_their_own_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch may hold several sweep jobs: one image diverging must not cost the others steps."""
    k = 3
    single = build_module(compose_cfg(*FAST, "init=noise"))
    weights = {"content": torch.ones(2), "style": torch.full((2,), 1e5), "tv": torch.zeros(2)}
    module = StyleTransferModule(single.image.detach().repeat(2, 1, 1, 1), single.spec.with_weights(weights),
                                 single.extractor, functools.partial(torch.optim.Adam, lr=0.02))
    original = StyleTransferModule._loss_and_grad

    def poisoned(self: StyleTransferModule, optimizer, warp):
        loss, parts = original(self, optimizer, warp)
        if self.trainer.global_step >= k:  # only image 1 goes NaN
            self.image.grad[1] = math.nan
            parts = {key: value * torch.tensor([1.0, math.nan]) for key, value in parts.items()}
        return loss, parts

    monkeypatch.setattr(StyleTransferModule, "_loss_and_grad", poisoned)
    guard, summary = DivergenceGuard(check_every=6), RunSummary(str(tmp_path))
    pl.Trainer(max_steps=20, accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
               enable_model_summary=False, callbacks=[guard, summary]).fit(module)
    (event,) = guard.events
    # the verdict at step 6 stops both: image 0 improved until then, image 1 until it broke
    assert event["step"] == k and event["images"] == [1] and event["best_step"] == [5, k - 1]
    assert summary.status == "diverged" and torch.isfinite(module.image).all()


@pytest.mark.usefixtures("ledger")
def test_lbfgs_explosion_stops_cleanly_at_the_best_image(tmp_path: Path) -> None:
    summary = train(compose_cfg(*FAST, *EXPLODING, output_dir=tmp_path))
    assert summary["status"] == "diverged" and summary["steps"] < 30
    event = summary["divergences"][-1]
    assert event["loss"] > 1e3 * event["best_loss"]
    assert summary["final_loss"] < 2 * event["best_loss"]  # the best image (clamped when saved)
    assert pixels(tmp_path / "final.png").std() > 1


@pytest.mark.usefixtures("ledger")
def test_lbfgs_explosion_restarts_with_a_lower_lr(tmp_path: Path) -> None:
    cfg = compose_cfg(*FAST, *EXPLODING, "callbacks.divergence.restarts=3", output_dir=tmp_path)
    summary = train(cfg)
    actions = [event["action"] for event in summary["divergences"]]
    assert summary["status"] == "ok" and summary["steps"] == 30, summary
    assert actions[0] == "restart with lr=10" and all(a.startswith("restart") for a in actions)
    assert summary["final_loss"] < summary["divergences"][0]["best_loss"]  # it went on improving


# --- interrupts -------------------------------------------------------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, EXIT_SIGTERM), (signal.SIGINT, EXIT_SIGINT)])
def test_signal_mid_run_writes_the_latest_image_and_interrupted(tmp_path: Path, signum: int, code: int) -> None:
    run = tmp_path / "run"
    args = [*FAST, "steps=100000", "log_every=1", "snapshot_every=1", "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nst_exp.train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")
    summary = summary_of(run)
    assert summary["status"] == "interrupted" and summary["steps"] > 0
    assert not list(run.rglob("*.tmp"))
    # the step in progress finishes (Lightning's SIGTERM connector): final.png is its snapshot
    assert np.array_equal(pixels(run / "final.png"), pixels(run / f"snapshots/step_{summary['steps']:06d}.png"))


def test_sigterm_before_training_is_an_interrupt_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside trainer.fit (loading images, weights) SIGTERM stops the job like Ctrl-C."""
    def task(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        return {"status": "ok"}

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        task_wrapper(task)(compose_cfg(*FAST, output_dir=tmp_path))
    assert exit_info.value.code == EXIT_SIGTERM and signal.getsignal(signal.SIGTERM) is handler
    assert summary_of(tmp_path)["status"] == "interrupted"
    assert capsys.readouterr().err == "error: interrupted by SIGTERM\n"


# --- sweeps -----------------------------------------------------------------------------------
@pytest.mark.slow  # a sweep through the CLI
def test_multirun_finishes_the_other_jobs_and_exits_nonzero(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli("-m", *FAST, "style_weight=1e4,-1,1e5", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    for job in ("0", "2"):
        assert summary_of(sweep / job)["status"] == "ok" and (sweep / job / "final.png").is_file()
    bad = summary_of(sweep / "1")
    assert bad["status"] == "failed: style_weight=-1: must be a finite number >= 0"
    assert not (sweep / "1" / "final.png").exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: style_weight=-1: must be a finite number >= 0",
                      f"error: 1 of 3 jobs failed (job 1: {bad['status']})"]
    assert "Traceback" not in result.stderr


def test_sweep_verdict_reads_the_job_summaries(tmp_path: Path) -> None:
    for job, status in (("0", "ok"), ("1", "diverged"), ("2", "failed: boom"), ("3", None)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        if status:
            (tmp_path / job / "summary.json").write_text(json.dumps({"status": status}))
    statuses = nst_exp.runtime.task.job_statuses(tmp_path)
    assert statuses == {"0": "ok", "1": "diverged", "2": "failed: boom", "3": "no summary.json (the job crashed)"}
    assert [job for job, status in statuses.items() if status not in nst_exp.runtime.task.DONE] == ["2", "3"]


def test_a_crashing_sweep_job_is_recorded_and_its_wandb_run_marked_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[bool] = []
    for module in (nst_exp.strategies.single, nst_exp.runtime.task):
        monkeypatch.setattr(module, "finish_wandb", lambda failed=False: calls.append(failed))
    cfg = compose_cfg(*FAST, "+optimizer.bogus=1", output_dir=tmp_path)  # TypeError inside fit: a "bug"
    assert task_wrapper(train, multirun=True)(cfg) is None  # no exception: the sweep goes on
    assert math.isnan(nst_exp.runtime.task.metric(None, "final_loss"))  # what main returns: Optuna marks it failed
    summary = summary_of(tmp_path)
    assert summary["status"].startswith("failed: TypeError") and "bogus" in summary["status"]
    assert calls and all(calls)
    assert capsys.readouterr().err.startswith("error: TypeError")


# --- determinism ------------------------------------------------------------------------------
def test_same_config_and_seed_give_bit_identical_images(tmp_path: Path) -> None:
    """The default trainer on a CPU runs with deterministic=true; random init and warps are seeded."""
    # 64 px: at 32 px relu5_1 is a 1x1 map, whose 2-thread mkldnn conv backward is not reproducible
    common = [*FAST, "image_size=64", "trainer=default", "trainer.enable_progress_bar=false", "optimizer=adam",
              "init=noise", "augment=fv", "steps=6", "seed=3"]
    for name in ("a", "b"):
        train(compose_cfg(*common, output_dir=tmp_path / name))
    assert compose_cfg(*common).trainer.deterministic is True
    assert (tmp_path / "a/final.png").read_bytes() == (tmp_path / "b/final.png").read_bytes()
    train(compose_cfg(*common[:-1], "seed=4", output_dir=tmp_path / "c"))
    assert (tmp_path / "a/final.png").read_bytes() != (tmp_path / "c/final.png").read_bytes()


# --- W&B --------------------------------------------------------------------------------------
@pytest.mark.parametrize("trouble", ["dir not writable", "online without a key"])
def test_wandb_failure_degrades_to_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch, trouble: str) -> None:
    if trouble == "dir not writable":
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        overrides = [f"logger.wandb.save_dir={blocker}/wandb"]
    else:  # no key anywhere: W&B refuses at once, before any network access
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        overrides = ["logger.wandb.mode=online"]
    summary = train(compose_cfg(*FAST, "logger=wandb", *overrides, output_dir=tmp_path / "job"))
    assert summary["status"] == "ok" and summary["wandb"] is None
    assert any("W&B logging disabled" in record.message for record in caplog.records)
