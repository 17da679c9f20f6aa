"""Survive preemption: checkpoint a run between steps and continue it in the same job dir.

A checkpoint is Lightning's own (image, optimizer state incl. L-BFGS history, loop counters,
callback states such as the metrics rows so far) plus the RNG states and the W&B run id,
written atomically to ``<job dir>/checkpoint.ckpt``:
- every ``checkpoint_every`` steps;
- after the current step when the job gets SIGTERM (Lightning stops between steps), SIGUSR1/2
  (SLURM's warning before a time limit; submitit then requeues the job) or Ctrl-C.
Starting the same job dir again (``resume=auto``, the default) continues from it; L-BFGS's
evaluation cache is not saved: it is recomputed, bit for bit, on the first step.
"""

from __future__ import annotations

import hashlib
import logging
import random
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities.exceptions import SIGTERMException

from nst_exp.core.files import atomic_path
from nst_exp.engine.callbacks import MetricsRecorder
from nst_exp.engine.loggers import wandb_run
from nst_exp.engine.module import StyleTransferModule
from nst_exp.errors import ConfigError

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.ckpt"
RESUME_MODES = ("auto", True, False)
DEFERRED_SIGNALS = ("SIGINT", "SIGUSR1", "SIGUSR2")  # SIGTERM is deferred by Lightning itself


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal after checkpointing (a KeyboardInterrupt, so Lightning and
    RunSummary treat it as a graceful interruption, not a failure)."""


def _digest(tensor: torch.Tensor | None) -> str | None:
    if tensor is None:
        return None
    return hashlib.sha1(tensor.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def fingerprint(module: StyleTransferModule) -> dict[str, Any]:
    """What defines a run's objective and optimiser: resuming with any of it changed is an error."""
    factory = module.optimizer_factory
    augment = {k: v for k, v in vars(module.augment).items() if isinstance(v, (bool, int, float, str))}
    return {
        "image": list(module.image.shape),
        "content": _digest(module.content),
        "style": _digest(module.style),
        "controls": [[_digest(style) for style in module.styles[1:]], module.style_blend, _digest(module.masks),
                     module.luminance_only],  # several styles, masks, color=luminance
        "network": _digest(next(iter(module.extractor.buffers()), None)),
        "weights": {name: getattr(module, f"{name}_weight").tolist() for name in ("content", "style", "tv")},
        "layers": [dict(module.content_layers), dict(module.style_layers)],
        "loss": str(sorted(module.loss_options.items())),
        "optimizer": f"{getattr(factory, 'func', factory).__name__}{sorted(getattr(factory, 'keywords', {}).items())}",
        "augment": f"{type(module.augment).__name__}{sorted(augment.items())}",
        "clamp": module.clamp,
    }


def find_checkpoint(cfg: DictConfig, module: StyleTransferModule) -> Path | None:
    """The checkpoint this run should continue from, per ``cfg.resume``, or None to start over.

    Also points ``cfg.logger.wandb.id`` at the checkpoint's W&B run, so its history continues.
    """
    mode = cfg.get("resume", "auto")
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode!r} is not one of [auto, true, false]")
    path = Path(cfg.paths.output_dir) / CHECKPOINT_NAME
    if mode is False:
        return None
    if not path.is_file():
        if mode is True:
            raise ConfigError(f"resume=true but there is no {path} to continue from")
        return None
    saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    state = saved["callbacks"][Checkpointing.__qualname__]
    current = fingerprint(module)
    changed = [key for key in current if state["fingerprint"].get(key) != current[key]]
    if changed:
        raise ConfigError(f"resume: {path} is of a different run ({', '.join(changed)} changed); "
                          "pass resume=false to start over, or another output dir")
    if state.get("wandb_id") and (cfg.get("logger") or {}).get("wandb") is not None:
        with open_dict(cfg):  # a user's own wandb logger config may not list `id`
            cfg.logger.wandb.id = state["wandb_id"]
    log.info("Resuming from %s at step %d", path, saved["global_step"])
    return path


class Checkpointing(pl.Callback):
    """Save ``checkpoint.ckpt`` every N steps and when a stop signal arrives; restore RNG states.

    ``keep_final=False`` deletes the checkpoint once the run has finished: it holds L-BFGS's
    history (history_size copies of the image, ~100 MB at 320 px) and is no longer needed.
    """

    def __init__(self, output_dir: str, every_n_steps: int = 100, keep_final: bool = False) -> None:
        self.path = Path(output_dir) / CHECKPOINT_NAME
        self.every_n_steps = int(every_n_steps)
        self.keep_final = keep_final
        self._trainer: pl.Trainer | None = None
        self._module: StyleTransferModule | None = None
        self._fingerprint: dict[str, Any] = {}
        self._restored: dict[str, Any] | None = None
        self._signal: int | None = None
        self._previous: dict[int, Any] = {}

    # --- what goes into the checkpoint, and back -------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        generator = getattr(self._module.augment, "generator", None) if self._module else None
        run = wandb_run(self._trainer.loggers) if self._trainer else None
        return {
            "fingerprint": self._fingerprint,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate(),
            "augment_rng": generator.get_state() if generator is not None else None,
            "wandb_id": str(run.id) if run is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict  # applied in on_train_start, after Lightning has seeded

    def setup(self, trainer: pl.Trainer, pl_module: StyleTransferModule, stage: str) -> None:
        self._trainer, self._module = trainer, pl_module
        self._fingerprint = fingerprint(pl_module)  # before Lightning moves it to the device
        self._install_handlers()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def on_train_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        state, self._restored = self._restored, None
        if state is None:
            return
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(state["python_rng"])
        generator = getattr(pl_module.augment, "generator", None)
        if generator is not None and state["augment_rng"] is not None:
            generator.set_state(state["augment_rng"])
        log.info("Resumed at step %d of %d", trainer.global_step, trainer.max_steps)

    # --- when to save ----------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._signal is not None:
            self.save(trainer)
            self._forward_signal(trainer.global_step)
        elif self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 \
                and trainer.global_step < trainer.max_steps:
            self.save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning raises SIGTERMException only between steps, so the state is consistent;
        # any other exception may come mid-step, and the last periodic checkpoint stands.
        if isinstance(exception, SIGTERMException):
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.keep_final:
            self.path.unlink(missing_ok=True)

    def save(self, trainer: pl.Trainer) -> None:
        """Flush pending metrics (their rows go into the checkpoint), then write it atomically."""
        for callback in trainer.callbacks:
            if isinstance(callback, MetricsRecorder):
                callback.flush(trainer)
        with atomic_path(self.path) as tmp:
            trainer.save_checkpoint(tmp)
        log.info("Checkpoint at step %d -> %s", trainer.global_step, self.path)

    # --- signals ---------------------------------------------------------------------------
    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python only lets the main thread set handlers
        for name in DEFERRED_SIGNALS:
            signum = getattr(signal, name)
            previous = signal.getsignal(signum)
            if previous is not signal.SIG_IGN:  # e.g. SIGINT in a background shell job
                self._previous[signum] = previous
                signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal == signal.SIGINT and signum == signal.SIGINT:
            self._restore_handlers()
            raise KeyboardInterrupt  # Ctrl-C twice: stop now, the last checkpoint stands
        if self._signal is None:
            log.warning("%s: checkpointing after this step, then stopping%s", signal.Signals(signum).name,
                        " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else "")
        self._signal = signum

    def _forward_signal(self, step: int) -> None:
        """Hand the signal to whoever had it before (submitit: requeue), else stop gracefully."""
        signum, previous = self._signal, self._previous.get(self._signal)
        self._restore_handlers()
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)
        raise Interrupted(f"stopped by {signal.Signals(signum).name} after step {step}; "
                          f"{self.path} continues it")
