"""Batched sweeps: B jobs optimised as one batch give each job the result of its own run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from test_batched_optim import LBFGS_ARGS, objective
from test_train import check_job_dir, read_metrics

from conftest import FAST, compose_cfg, run_cli
from nst_exp.core.lbfgs import ImageLBFGS
from nst_exp.engine.guards import reset_optimizer
from nst_exp.engine.stopping import StopOnPlateau
from nst_exp.errors import ConfigError
from nst_exp.runtime.build import build_callbacks, build_loggers
from nst_exp.strategies.batched.batch import batch_key, train_batch
from nst_exp.strategies.batched.jobs import Job, JobOptimizer, JobTrainer
from nst_exp.strategies.batched.optim import BatchedAdam
from nst_exp.strategies.batched.rules import check_batch
from nst_exp.train import train

STEPS = 8
# Per job: the overrides a sweep would vary (all batchable).
JOBS = {
    "adam": [["style_weight=1e4"], ["style_weight=1e6", "optimizer.lr=0.05"], ["content_weight=10", "init=noise"]],
    "lbfgs": [["style_weight=1e4"], ["style_weight=1e6", "tv_weight=10"], ["content_weight=10", "init=noise"]],
}


def job_cfg(optimizer: str, overrides: list[str], output_dir: Path):
    return compose_cfg(*FAST, f"optimizer={optimizer}", f"steps={STEPS}", "log_every=4", "snapshot_every=4",
                       *overrides, output_dir=output_dir)


def pixels(job_dir: Path) -> np.ndarray:
    return np.asarray(Image.open(job_dir / "final.png"), dtype=np.int16)


@pytest.mark.slow  # a batched sweep and its 3 sequential runs, > 10 s
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_batched_jobs_equal_sequential_runs(tmp_path: Path, optimizer: str) -> None:
    """Sequential = the shipped path (Adam / box-constrained LBFGS on one image, train())."""
    jobs = []
    for n, overrides in enumerate(JOBS[optimizer]):
        sequential = job_cfg(optimizer, overrides, tmp_path / "sequential" / str(n))
        train(sequential)
        batched = job_cfg(optimizer, overrides, tmp_path / "batched" / str(n))
        jobs.append(Job(batched, build_callbacks(batched), build_loggers(batched)))
    summaries = train_batch(jobs)
    finals = []
    for n, summary in enumerate(summaries):
        alone, together = tmp_path / "sequential" / str(n), tmp_path / "batched" / str(n)
        check_job_dir(together, steps=STEPS)
        reference = json.loads((alone / "summary.json").read_text())
        # rel 5e-3: with 2 threads the batch-of-3 and batch-of-1 convolutions round differently
        # and L-BFGS amplifies it (measured up to 1.3e-3); a wrong (coupled) optimiser is off by far more.
        assert summary["final_loss"] == pytest.approx(reference["final_loss"], rel=5e-3)
        for row_alone, row_together in zip(read_metrics(alone), read_metrics(together)):
            assert row_together["loss"] == pytest.approx(row_alone["loss"], rel=5e-3)
        # A batch of 3 convolves with other kernels than a batch of 1: float rounding differs and
        # L-BFGS amplifies it a little (max 6/255 here); the B=1 test below shows the maths is exact.
        diff = np.abs(pixels(together) - pixels(alone))
        assert diff.mean() < 1.5 and diff.max() <= 10
        assert sorted(p.name for p in (together / "snapshots").iterdir()) == ["step_000004.png", "step_000008.png"]
        finals.append(summary["final_loss"])
    assert len(set(finals)) == len(finals)  # the jobs really differ


@pytest.mark.slow  # two 64 px runs
def test_batched_lbfgs_of_one_image_is_the_single_run(tmp_path: Path) -> None:
    """Same image, same kernels: a batch of one takes the single run's steps to the last bit.
    (Both run core.lbfgs.ImageLBFGS; its equality with torch's LBFGS: tests/test_lbfgs_reference.py.)"""
    # 64 px: at 32 px relu5_1 is a 1x1 map, whose 2-thread mkldnn conv backward is not reproducible
    # clamp=end: the unbounded L-BFGS, torch's iterates
    overrides = ["style_weight=1e6", "tv_weight=10", "image_size=64", "clamp=end"]
    train(job_cfg("lbfgs", overrides, tmp_path / "torch"))
    cfg = job_cfg("lbfgs", overrides, tmp_path / "batched")
    train_batch([Job(cfg, build_callbacks(cfg), [])])
    assert (pixels(tmp_path / "batched") == pixels(tmp_path / "torch")).all()
    # Same kernels on both paths (B=1), so bit-identical on any one machine (the pixels compare with ==);
    # rel 1e-6 is float32 rounding of the logged loss, far below what a different step would change.
    for ours, theirs in zip(read_metrics(tmp_path / "batched"), read_metrics(tmp_path / "torch")):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-6)


def test_batch_key_ignores_only_batchable_keys(tmp_path: Path) -> None:
    def key(*overrides: str) -> str:
        return batch_key(compose_cfg(*FAST, *overrides, output_dir=tmp_path))

    base = key()
    assert key("style_weight=1e3", "content_weight=3", "tv_weight=1", "init=noise", "optimizer.lr=0.5") == base
    assert key("image_size=48") != base and key("layers=tutorial") != base
    assert key("seed=3") != base  # random weights are seeded: another seed is another network
    assert key("model.weights=caffe", "seed=3") == key("model.weights=caffe")


@pytest.mark.slow  # a batched sweep through the CLI
def test_a_bad_job_fails_alone(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "style_weight=1e3,-1,1e5", "hydra/launcher=batched", "model.weights=random",
                     "image_size=32", "steps=2", "trainer=cpu", "logger=none", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "error: style_weight=-1: must be a finite number >= 0" in result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr  # one line, no traceback
    for job in ("0", "2"):
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "ok"
    failed = json.loads((sweep / "1" / "summary.json").read_text())
    assert failed["status"].startswith("failed: style_weight=-1") and failed["image"] is None
    assert not (sweep / "1" / "final.png").exists()


def test_unbatchable_optimizer_is_refused(tmp_path: Path) -> None:
    cfgs = [compose_cfg(*FAST, "optimizer._target_=torch.optim.SGD", output_dir=tmp_path / str(n)) for n in range(2)]
    with pytest.raises(ConfigError, match="optimizer._target_='torch.optim.SGD' cannot be batched"):
        train_batch([Job(cfg, [], []) for cfg in cfgs])


@pytest.mark.slow  # a batched sweep through the CLI
def test_cli_batched_launcher_writes_per_job_dirs(tmp_path: Path) -> None:
    """Four style weights, at most three per batch: a batch of 3, then one job run alone."""
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "style_weight=1e3,1e4,1e5,1e6", "hydra/launcher=batched", "hydra.launcher.max_batch=3",
                     "model.weights=random", "image_size=32", "steps=3", "trainer=cpu", "snapshot_every=0",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr + result.stdout
    assert "Batch of 3" in log and "Batch of 1" in log
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [j.name for j in jobs] == [str(n) for n in range(4)]
    wandb_ids, losses = set(), []
    for job, weight in zip(jobs, ("1000.0", "10000.0", "100000.0", "1000000.0")):
        summary = check_job_dir(job, steps=3)
        assert f"- style_weight={weight}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "train.log").is_file()
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
        wandb_ids.add(summary["wandb"]["id"])
        losses.append(summary["style_loss"])
    assert len(wandb_ids) == 4  # one W&B run per job, batched or not
    assert losses == sorted(losses)  # each job got its own style weight


# --- the per-job controls a batch gives each job's callbacks ------------------------------------
def _steps(opt: torch.optim.Optimizer, x: torch.nn.Parameter, weights: torch.Tensor, n: int) -> None:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        losses = objective(x, weights)
        losses.sum().backward()
        return losses.detach()

    for _ in range(n):
        opt.step(closure)


@pytest.mark.parametrize("make", [lambda p: BatchedAdam(p, lr=[0.05, 0.05]),
                                  lambda p: ImageLBFGS(p, lr=[1.0, 1.0], **LBFGS_ARGS)], ids=["adam", "lbfgs"])
def test_reset_and_freeze_touch_one_image_only(make) -> None:
    """Image 1 restarts (fresh memory, lr x 0.1) then is frozen; image 0 never notices."""
    x0, weights = torch.rand(2, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), \
        torch.tensor([1.0, 3.0], dtype=torch.float64)
    plain, touched = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(x0.clone())
    plain_opt, touched_opt = make([plain]), make([touched])
    _steps(plain_opt, plain, weights, 3)
    _steps(touched_opt, touched, weights, 3)
    handle = JobOptimizer(touched_opt, 1)
    assert reset_optimizer(handle, 0.1) == pytest.approx(handle.lr) == pytest.approx(0.1 * plain_opt.lr_of(1))
    restarted_at = touched.detach()[1:].clone()
    _steps(plain_opt, plain, weights, 3)
    _steps(touched_opt, touched, weights, 3)
    assert torch.equal(plain[0], touched[0])  # bit for bit: its state and lr were not touched
    fresh = torch.nn.Parameter(restarted_at.clone())  # image 1 alone from where it restarted
    fresh_opt = type(touched_opt)([fresh], lr=[0.1 * plain_opt.lr_of(1)],
                                  **({} if isinstance(touched_opt, BatchedAdam) else LBFGS_ARGS))
    _steps(fresh_opt, fresh, weights[1:], 3)
    torch.testing.assert_close(touched.detach()[1:], fresh.detach(), rtol=1e-6, atol=1e-9)
    touched_opt.freeze(1)
    frozen = touched.detach()[1].clone()
    _steps(touched_opt, touched, weights, 2)
    assert torch.equal(touched[1], frozen) and not torch.equal(touched[0], plain[0])


def test_batched_lbfgs_state_round_trip_continues_bit_for_bit() -> None:
    """A checkpoint holds every image's history, lr and stop: resuming takes the same steps."""
    x0, weights = torch.rand(2, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64), \
        torch.tensor([1.0, 3.0], dtype=torch.float64)
    x = torch.nn.Parameter(x0.clone())
    opt = ImageLBFGS([x], lr=[1.0, 0.5], **LBFGS_ARGS)
    _steps(opt, x, weights, 3)
    opt.reset_image(1, 0.5)
    saved, at = copy.deepcopy(opt.state_dict()), x.detach().clone()
    _steps(opt, x, weights, 3)
    y = torch.nn.Parameter(at)
    again = ImageLBFGS([y], lr=[1.0, 1.0], **LBFGS_ARGS)
    again.load_state_dict(saved)
    assert again.param_groups[0]["image_lr"] == [1.0, 0.25]
    _steps(again, y, weights, 3)
    assert torch.equal(x, y)


def test_a_jobs_stop_and_callbacks_stay_its_own(tmp_path: Path) -> None:
    """JobTrainer: should_stop, callbacks, loggers and the optimiser are the job's, nothing else."""
    trainer = pl.Trainer(max_steps=3, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    jobs = [Job(None, [StopOnPlateau()], []), Job(None, [], [])]
    runs = [JobTrainer(trainer, job, n) for n, job in enumerate(jobs)]
    runs[0].should_stop = True
    assert runs[0].should_stop and not runs[1].should_stop and not trainer.should_stop
    assert runs[0].callbacks == jobs[0].callbacks and runs[1].callbacks == [] and runs[0].logger is None
    with pytest.raises(AttributeError):
        runs[0].save_checkpoint  # noqa: B018 - the batch checkpoints as one, never a job alone


def test_checkpoint_settings_must_agree_in_a_batch(tmp_path: Path) -> None:
    cfgs = [compose_cfg(*FAST, f"callbacks.checkpoint.keep_final={keep}", output_dir=tmp_path / str(n))
            for n, keep in enumerate(("false", "true"))]
    with pytest.raises(ConfigError, match=r"callbacks.checkpoint=.*jobs of one batch share one checkpoint"):
        check_batch(cfgs)
    check_batch(cfgs[:1])
