"""Checkpoints and resume: a run stopped (runtime/signals.py) or killed continues where it was.

The contract (what the user sees is in docs/troubleshooting.md):
- On a stop signal during training the current step finishes, ``checkpoint.ckpt`` is written
  atomically and the run stops as ``interrupted`` (exit 128 + signal); see runtime/signals.py.
- A checkpoint is also written every ``checkpoint_every`` steps. It is Lightning's own
  (image, optimizer state incl. L-BFGS history, loop counters, callback states such as the
  metrics rows) plus the RNG states, the W&B run id and a fingerprint of the run.
- Starting the same job dir again (``resume=auto``) continues from it, only if the fingerprint
  matches (objective, optimiser, network: architecture, pooling, weights, preprocessing; image
  size, seed), the file reads back whole, and ``steps`` is not below its step; else one line.

Lightning's pieces, and where they do not fit:
- ``trainer.save_checkpoint`` / ``fit(ckpt_path=...)``: used; we choose when and where to write.
- Its SIGTERM connector: used (chained): it stops the loop between steps (SIGTERMException).
- ``ModelCheckpoint``: writes in place (a kill during the write leaves a truncated file, the
  fault this module exists to survive); we write to a temp file and rename.
- ``OnExceptionCheckpoint``: saves on *any* exception, also one raised mid-step (a second
  Ctrl-C inside an L-BFGS line search, a bug), whose state is no step's end; and as a
  ``Checkpoint`` it needs ``enable_checkpointing=True``, which adds a default ModelCheckpoint
  to every trainer without one. We save only on the exceptions raised between steps.
- ``SLURMEnvironment`` auto-requeue: turned off (runtime/signals.py says why).
"""

from __future__ import annotations

import logging
import random
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities.exceptions import SIGTERMException

from nst_exp.core.files import atomic_path
from nst_exp.engine.loggers import wandb_run
from nst_exp.engine.module import StyleTransferModule
from nst_exp.engine.steps import StepHooks
from nst_exp.errors import CheckpointError, ConfigError
from nst_exp.runtime.fingerprint import fingerprint
from nst_exp.runtime.signals import Interrupted, defer_to_step_end, pending_signal, stop_at_once

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.ckpt"
TILES_CHECKPOINT = "tiles.ckpt"  # a tiled run's (strategies/tiled.py)
REQUIRED_KEYS = ("state_dict", "optimizer_states", "loops", "global_step", "callbacks")


# --- resume ------------------------------------------------------------------------------------
def resume_mode(cfg: DictConfig) -> Any:
    return cfg.get("resume", "auto")  # auto | true | false (nst_exp/config/schema.py)


def will_resume(cfg: DictConfig) -> bool:
    """Whether this job continues a checkpoint (so nothing in its dir may be replaced): its own
    (a whole-image run's, a tiled run's, or one in a coarse-to-fine job's scale dirs), or in a
    batched sweep its batch's, which lives in the batch's first job dir."""
    job_dir = Path(cfg.paths.output_dir)
    paths = [job_dir / CHECKPOINT_NAME, job_dir / TILES_CHECKPOINT,
             *job_dir.glob(f"scale_*/{CHECKPOINT_NAME}"), *job_dir.glob(f"scale_*/{TILES_CHECKPOINT}")]
    if cfg.get("batch_checkpoint"):  # set by hydra/launcher=batched for every job of a batch
        paths.append(Path(cfg.batch_checkpoint))
    return resume_mode(cfg) is not False and any(path.exists() for path in paths)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, or a CheckpointError naming it (truncated, empty, foreign)."""
    hint = "pass resume=false to start over (it is moved aside), or another output dir"
    try:
        saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"resume: {path} cannot be read ({reason}), truncated by a crash?; {hint}") from None
    missing = [key for key in REQUIRED_KEYS if key not in (saved if isinstance(saved, dict) else {})]
    if not missing and Checkpointing.__qualname__ not in saved["callbacks"]:
        missing = [f"callbacks.{Checkpointing.__qualname__}"]
    if missing:
        raise CheckpointError(f"resume: {path} is not a complete nst-exp checkpoint (no {', '.join(missing)}); {hint}")
    return saved


def find_checkpoint(cfg: DictConfig, module: StyleTransferModule) -> Path | None:
    """The checkpoint this run should continue from, per ``cfg.resume``, or None to start over.

    Also points ``cfg.logger.wandb.id`` at the checkpoint's W&B run, so its history continues.
    """
    mode = resume_mode(cfg)
    path = Path(cfg.paths.output_dir) / CHECKPOINT_NAME
    if mode is False:
        return None
    if not path.exists():
        if mode is True:
            raise ConfigError(f"resume=true but there is no {path} to continue from")
        return None
    saved = read_checkpoint(path)
    state = saved["callbacks"][Checkpointing.__qualname__]
    current = fingerprint(module, cfg.get("seed"))
    changed = [key for key in current if state.get("fingerprint", {}).get(key) != current[key]]
    if changed:
        raise ConfigError(f"resume: {path} is of a different run ({', '.join(changed)} changed); "
                          "pass resume=false to start over, or another output dir")
    if saved["global_step"] > cfg.steps:
        raise ConfigError(f"steps={cfg.steps}: {path} is already at step {saved['global_step']}; "
                          "ask for more steps, or pass resume=false to start over")
    if state.get("wandb_id") and (cfg.get("logger") or {}).get("wandb") is not None:
        with open_dict(cfg):  # a user's own wandb logger config may not list `id`
            cfg.logger.wandb.id = state["wandb_id"]
    log.info("Resuming from %s at step %d", path, saved["global_step"])
    return path


class Checkpointing(StepHooks, pl.Callback):
    """Save ``checkpoint.ckpt`` every N steps and when a stop signal arrives; restore RNG states.

    ``keep_final=False`` deletes the checkpoint once the run has finished: it holds L-BFGS's
    history (history_size copies of the image, ~100 MB at 320 px) and is no longer needed.
    """

    def __init__(self, output_dir: str, every_n_steps: int = 100, keep_final: bool = False,
                 seed: int | None = None) -> None:
        self.path = Path(output_dir) / CHECKPOINT_NAME
        self.every_n_steps = int(every_n_steps)
        self.keep_final, self.seed = keep_final, seed
        self._trainer: pl.Trainer | None = None
        self._module: StyleTransferModule | None = None
        self._fingerprint: dict[str, Any] = {}
        self._restored: dict[str, Any] | None = None
        self._saved_at: int | None = None

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
        self._fingerprint = fingerprint(pl_module, self.seed)  # before Lightning moves it to the device

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        defer_to_step_end()  # a stop signal now waits for the step's end (a batch forwards this hook too)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stop_at_once()  # (not called after an exception: see there)

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
    def step_interval(self) -> int:
        return max(0, self.every_n_steps)

    def after_step(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> bool:
        """A stop signal ends the batch after this step: the next batch's start (or Lightning,
        for a SIGTERM it caught itself) saves and stops."""
        return pending_signal() is not None or bool(getattr(trainer, "received_sigterm", False))

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # Before the next step rather than after the last: every job of a batch has then seen
        # the last step's end (metrics, snapshots), and the state is that step's end.
        received = pending_signal()
        if received is not None:  # every job of a batch saves in on_exception
            raise Interrupted(f"stopped by {signal.Signals(received).name} after step "
                              f"{trainer.global_step}; {self.path} continues it")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 \
                and trainer.global_step < trainer.max_steps:
            self.save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Both are raised only between steps, so the state is consistent; any other exception
        # may come mid-step, and the last periodic checkpoint stands.
        stop_at_once()  # a signal from now on stops at once
        if isinstance(exception, (SIGTERMException, Interrupted)):
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.keep_final:
            self.path.unlink(missing_ok=True)

    def save(self, trainer: pl.Trainer) -> None:
        """Write the checkpoint atomically (MetricsRecorder flushes its pending rows into it)."""
        if self._saved_at == trainer.global_step and self.path.exists():
            return
        with atomic_path(self.path) as tmp:
            trainer.save_checkpoint(tmp, weights_only=False)  # the whole state (and no log line asking)
        self._saved_at = trainer.global_step
        log.info("Checkpoint at step %d -> %s", trainer.global_step, self.path)

