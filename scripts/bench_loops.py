"""The two hand-written variants of scripts/bench_workers.py, ``bare`` and ``naive``: the
objective written out by hand, optimised by a plain torch loop timed step by step.

- ``bare``: truncated VGG as frozen tensors and ``F.conv2d``, targets computed once: what a
  careful engineer writes by hand, the yardstick of the framework's overhead.
- ``naive``: the tutorial loop (the full VGG ``features`` stack with trainable-looking weights,
  targets recomputed every step).
Both read their objective (pair, layers, weights) from the nst-exp job config.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from nst_exp.core.features import layer_names
from nst_exp.core.images import load_pair
from nst_exp.core.weights import load_state_dict, make_preprocess


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
