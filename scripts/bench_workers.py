"""One benchmark variant per process (peak RSS is a per-process high-water mark).

    python scripts/bench_workers.py '{"variant": "bare", "optimizer": "adam", "size": 256, ...}'

prints one JSON line: per-step wall times and losses, evaluations, RSS. Variants:
- ``bare``: a hand-written loop: truncated VGG as plain tensors, targets computed once.
- ``naive``: the tutorial loop (yunjey/pytorch-tutorial, the PyTorch NST tutorial): the full
  VGG ``features`` stack with trainable-looking weights, targets recomputed every step.
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
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from nst_exp import CONFIG_DIR  # noqa: E402
from nst_exp.core.features import layer_names  # noqa: E402
from nst_exp.core.images import load_pair  # noqa: E402
from nst_exp.core.weights import load_state_dict, make_preprocess  # noqa: E402
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


# --- the objective written out by hand (bare and naive) -----------------------------------
def gram(f: Tensor) -> Tensor:
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def make_objective(cfg: DictConfig, features: Callable[[Tensor], dict[int, Tensor]], recompute: bool,
                   style_weights: list[float] | None = None, device: str = "cpu"
                   ) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """(initial image, loss(image)) for cfg's pair and weights; ``recompute`` = tutorial style.

    ``style_weights``: a batch of images, one per weight (a batched sweep's objective: per-image
    losses, summed); default: one image with cfg's style_weight.
    """
    content, style = (t.to(device) for t in load_pair(cfg.pair.content, cfg.pair.style, cfg.image_size))
    names = layer_names(cfg.model.arch)
    c_idx, s_idx = names.index(cfg.layers.content[0]), [names.index(n) for n in cfg.layers.style]
    cw, sw = float(cfg.content_weight), torch.tensor(style_weights or [float(cfg.style_weight)], device=device)

    def targets() -> tuple[Tensor, list[Tensor]]:
        fc, fs = features(content), features(style)
        return fc[c_idx], [gram(fs[i]) for i in s_idx]

    if not recompute:
        with torch.no_grad():
            cached = targets()

    def loss(x: Tensor) -> Tensor:
        c_target, s_targets = targets() if recompute else cached
        f = features(x)
        style_loss = sum((gram(f[i]) - t).square().flatten(1).mean(1) for i, t in zip(s_idx, s_targets)) / len(s_idx)
        return (cw * (f[c_idx] - c_target).square().flatten(1).mean(1) + sw * style_loss).sum()

    return content.repeat(len(sw), 1, 1, 1), loss


def bare_features(cfg: DictConfig, device: str = "cpu", channels_last: bool = False
                  ) -> Callable[[Tensor], dict[int, Tensor]]:
    """Truncated VGG as frozen tensors and F.conv2d; ReLU in place where no conv output is kept.

    ``channels_last``: NHWC weights and input, as ``channels_last=true`` does to the framework's.
    """
    names = layer_names(cfg.model.arch)
    depth = max(names.index(n) for n in [*cfg.layers.content, *cfg.layers.style]) + 1
    layout = torch.channels_last if channels_last else torch.contiguous_format
    state = {k: v.to(device).contiguous(memory_format=layout) if v.dim() == 4 else v.to(device)
             for k, v in load_state_dict(cfg.model.arch, cfg.model.weights, cfg.seed).items()}
    pre = make_preprocess(cfg.model.weights).to(device)
    kept = {names.index(n) for n in [*cfg.layers.content, *cfg.layers.style]}

    def features(x: Tensor) -> dict[int, Tensor]:
        x, out = pre(x).contiguous(memory_format=layout), {}
        for i, name in enumerate(names[:depth]):
            if name.startswith("conv"):
                x = F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1)
            elif name.startswith("relu"):
                x = F.relu(x, inplace=i - 1 not in kept)
            else:
                x = F.max_pool2d(x, 2)
            if i in kept:
                out[i] = x
        return out

    return features


def naive_features(cfg: DictConfig) -> Callable[[Tensor], dict[int, Tensor]]:
    """torchvision-style ``features`` (all 37 layers, nn.Conv2d parameters that require grad)."""
    layers: list[nn.Module] = []
    state = load_state_dict(cfg.model.arch, cfg.model.weights, cfg.seed)
    for i, name in enumerate(layer_names(cfg.model.arch)):
        if name.startswith("conv"):
            w = state[f"features.{i}.weight"]
            conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
            conv.load_state_dict({"weight": w, "bias": state[f"features.{i}.bias"]})
            layers.append(conv)
        else:
            layers.append(nn.ReLU() if name.startswith("relu") else nn.MaxPool2d(2))
    net, pre = nn.Sequential(*layers).eval(), make_preprocess(cfg.model.weights)

    def features(x: Tensor) -> dict[int, Tensor]:
        x, out = pre(x), {}
        for i, layer in enumerate(net):  # no truncation: every layer runs, as in the tutorials
            x = layer(x)
            out[i] = x
        return out

    return features


def run_loop(spec: dict, cfg: DictConfig) -> dict:
    """bare / naive: time each step of a plain optimiser loop on the objective.

    ``spec["device"]`` (default cpu), ``channels_last`` and ``compile``: the GPU knobs, by hand.
    """
    device = spec.get("device", "cpu")
    if spec["variant"] == "bare":
        features = bare_features(cfg, device, bool(spec.get("channels_last")))
    else:
        features = naive_features(cfg)
    if spec.get("compile"):
        features = torch.compile(features)
    weights = [float(w) for w in spec["style_weights"]] if spec.get("style_weights") else None
    x0, loss_fn = make_objective(cfg, features, recompute=spec["variant"] == "naive", style_weights=weights,
                                 device=device)
    x = nn.Parameter(x0)
    bf16 = spec.get("precision") == "bf16-mixed"  # autocast as Lightning's bf16-mixed does it
    opt_cfg = {k: v for k, v in cfg.optimizer.items() if not k.startswith("_")}
    opt = (torch.optim.Adam if spec["optimizer"] == "adam" else torch.optim.LBFGS)([x], **opt_cfg)
    evals, losses, walls, eval_cpu = [0], [], [], [0.0]

    def closure() -> Tensor:
        cpu = time.process_time()
        evals[0] += 1
        opt.zero_grad()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(x)
        loss.backward()
        eval_cpu[0] += time.process_time() - cpu
        return loss

    start, cpu0, counts, cpus, sync_at = time.perf_counter(), time.process_time(), [], [], set(spec.get("sync_at", ()))
    eval_cpus = []
    for step in range(spec["steps"]):
        losses.append(opt.step(closure).detach())  # stays on the device: no sync per step
        if spec["optimizer"] == "adam":
            with torch.no_grad():
                x.clamp_(0, 1)
        walls.append(clock(step in sync_at) - start)
        cpus.append(time.process_time() - cpu0)
        eval_cpus.append(eval_cpu[0])
        counts.append(evals[0])
    return {"walls": walls, "cpus": cpus, "eval_cpus": eval_cpus, "losses": [float(v) for v in losses],
            "evals": counts}


def clock(sync: bool = False) -> float:
    """perf_counter, after the GPU's queue has drained when ``sync`` (only where timing needs it:
    a GPU step returns before its kernels ran, so a steady-state window must end synchronised)."""
    if sync and torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


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
