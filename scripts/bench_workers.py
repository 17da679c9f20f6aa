"""One benchmark variant per process (peak RSS is a per-process high-water mark).

    python scripts/bench_workers.py '{"variant": "bare", "optimizer": "adam", "size": 256, ...}'

prints one JSON line: per-step wall times and losses, evaluations, RSS. Variants:
- ``bare``: a hand-written loop: truncated VGG as plain tensors, targets computed once.
- ``naive``: the tutorial loop (yunjey/pytorch-tutorial, the PyTorch NST tutorial): the full
  VGG ``features`` stack with trainable-looking weights, targets recomputed every step.
  (These two: scripts/bench_loops.py.)
- ``nst-exp``: the real path: Hydra-composed config, ``nst_exp.train.train`` (Lightning
  Trainer, W&B offline, snapshots every 50), timed by an extra callback.
All three optimise the same objective (Gatys layers, the config's weights and loss).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_loops import clock, run_loop  # noqa: E402  (the bare and naive variants)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from nst_exp import CONFIG_DIR  # noqa: E402
from nst_exp.core.features import layer_names  # noqa: E402
from nst_exp.core.images import load_pair  # noqa: E402
from nst_exp.core.weights import load_state_dict  # noqa: E402
from nst_exp.engine.steps import StepHooks  # noqa: E402
from nst_exp.runtime.resolvers import register_resolvers  # noqa: E402

register_resolvers()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config(spec: dict, *extra: str) -> DictConfig:
    """The nst-exp job config every variant reads its objective from."""
    overrides = [f"image_size={spec['size']}", f"optimizer={spec['optimizer']}", f"model.weights={spec['weights']}",
                 f"steps={spec['steps']}", "snapshot_every=50", f"precision={spec.get('precision', '32-true')}", *extra]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def set_tf32(enabled: bool | None) -> None:
    """TF32 convolutions and matmuls on Ampere+ GPUs (None: torch's defaults, i.e. convs on, matmuls off)."""
    if enabled is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(enabled)


class StepTimer(StepHooks, pl.Callback):
    """Lightning callback for the nst-exp variant: wall time and evaluation count per step.

    A step hook (nst_exp/engine/steps.py), so it times every step even where a Lightning
    batch runs several, and leaves the run's batch plan as it is.
    """

    evals = 0
    eval_cpu = 0.0  # process CPU seconds spent in loss + gradient evaluations so far
    instance: StepTimer | None = None
    profile_steps: tuple[int, int] | None = None  # [first, last) steps to run torch.profiler over
    sync_at: frozenset[int] = frozenset()  # steps whose wall time waits for the GPU (run_loop's sync_at)

    def __init__(self) -> None:
        self.walls: list[float] = []
        self.cpus: list[float] = []  # process CPU time: with 1 thread, blind to other processes' load
        self.eval_cpus: list[float] = []
        self.counts: list[int] = []
        self.losses: list[Tensor] = []
        StepTimer.instance = self

    def on_train_start(self, trainer, pl_module) -> None:
        self.start, self.cpu0 = time.perf_counter(), time.process_time()

    def before_step(self, trainer, pl_module) -> None:
        if self.profile_steps and trainer.global_step == self.profile_steps[0]:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.start()

    def after_step(self, trainer, pl_module) -> bool:
        self.walls.append(clock(trainer.global_step - 1 in self.sync_at) - self.start)
        self.cpus.append(time.process_time() - self.cpu0)
        self.eval_cpus.append(StepTimer.eval_cpu)
        self.counts.append(StepTimer.evals)
        self.losses.append(pl_module.last_components["loss"].sum())  # stays on the device
        if self.profile_steps and trainer.global_step == self.profile_steps[1]:
            self.profiler.stop()
        return False


def run_nst_exp(spec: dict, cfg: DictConfig) -> dict:
    """The framework as users run it, plus a timing callback and an evaluation counter."""
    from nst_exp.engine.module import StyleTransferModule
    from nst_exp.train import train

    components, loss_and_grad = StyleTransferModule.components, StyleTransferModule._loss_and_grad

    def counted(self, *args, **kwargs):
        StepTimer.evals += 1
        return components(self, *args, **kwargs)

    def timed(self, *args, **kwargs):  # forward + backward, as run_loop's closure times them
        cpu = time.process_time()
        try:
            return loss_and_grad(self, *args, **kwargs)
        finally:
            StepTimer.eval_cpu += time.process_time() - cpu

    StyleTransferModule.components, StyleTransferModule._loss_and_grad = counted, timed
    with tempfile.TemporaryDirectory() as out, open_dict(cfg):
        cfg.paths.output_dir = out  # the timing callback came with the config (main: +callbacks.bench_timer)
        train(cfg)
    timer = StepTimer.instance
    return {"walls": timer.walls, "cpus": timer.cpus, "eval_cpus": timer.eval_cpus,
            "losses": [float(v) for v in timer.losses], "evals": timer.counts}


def run_sweep(spec: dict) -> dict:
    """A sweep over ``style_weights``: one train() per value, or all values as one batch."""
    from nst_exp.runtime.build import build_callbacks, build_loggers
    from nst_exp.strategies.batched.batch import Job, train_batch
    from nst_exp.train import train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        cfgs = []
        for n, weight in enumerate(spec["style_weights"]):
            cfg = config(spec, f"style_weight={weight}", "logger=csv", *spec.get("overrides", []))
            with open_dict(cfg):
                cfg.paths.output_dir = f"{out}/{n}"
            cfgs.append(cfg)
        if spec["variant"] == "sweep-batched":
            summaries = train_batch([Job(cfg, build_callbacks(cfg), build_loggers(cfg)) for cfg in cfgs])
        else:
            summaries = [train(cfg) for cfg in cfgs]
    return {"wall_s": time.perf_counter() - start, "final_losses": [s["final_loss"] for s in summaries],
            "train_s": sum(s["train_time_s"] for s in summaries) if spec["variant"] != "sweep-batched"
            else summaries[0]["train_time_s"]}


def conv_flops(cfg: DictConfig, height: int, width: int, full: bool) -> float:
    """Forward + input-gradient FLOPs of the (truncated unless ``full``) conv stack per image."""
    names, channels, flops = layer_names(cfg.model.arch), 3, 0.0
    depth = len(names) if full else max(names.index(n) for n in [*cfg.layers.content, *cfg.layers.style]) + 1
    state = load_state_dict(cfg.model.arch, "random")
    for i, name in enumerate(names[:depth]):
        if name.startswith("conv"):
            out = state[f"features.{i}.weight"].shape[0]
            flops += 2 * 9 * channels * out * height * width
            channels = out
        elif name.startswith("pool"):
            height, width = height // 2, width // 2
    return 2 * flops  # the input gradient of a conv costs what its forward costs


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    set_tf32(spec.get("tf32"))
    StepTimer.sync_at = frozenset(spec.get("sync_at", ()))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    if spec["variant"].startswith("sweep-"):
        print("BENCH_RESULT " + json.dumps(run_sweep(spec)))
        return
    timer = ["+callbacks.bench_timer._target_=__main__.StepTimer"] if spec["variant"] == "nst-exp" else []
    cfg = config(spec, *timer, *spec.get("overrides", []))
    baseline = rss_mb()
    if spec.get("profile"):  # the last steps of the run (after warm-up), not its set-up
        StepTimer.profile_steps = (spec["steps"] - spec["profile"], spec["steps"])
    result = run_nst_exp(spec, cfg) if spec["variant"] == "nst-exp" else run_loop(spec, cfg)
    if spec.get("profile"):
        result["profile"] = StepTimer.instance.profiler.key_averages().table(sort_by="self_cpu_time_total",
                                                                            row_limit=15)
    height, width = load_pair(cfg.pair.content, cfg.pair.style, cfg.image_size)[0].shape[-2:]
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    result.update(rss_baseline_mb=round(baseline, 1), peak_rss_mb=round(rss_mb(), 1), pixels=[height, width],
                  peak_gpu_mb=peak_gpu and round(peak_gpu, 1),
                  flops_per_eval=conv_flops(cfg, height, width, full=False))
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
