"""Third-party noise on the console is ours to silence: the warnings filters, in one place.

``quiet_third_party()`` runs when ``nst_exp.train`` is imported and again as each job starts
(``task_wrapper``: a Ray worker unpickles the task without importing ``nst_exp.train``). Each filter names the
one message it hides and why that message says nothing to a user of nst-exp.
"""

from __future__ import annotations

import logging
import warnings

QUIET = (
    # The frozen VGG is in eval mode on purpose; Lightning warns about any module that is.
    r"Found \d+ module\(s\) in eval mode",
    # Lightning's own use of a deprecated torch.utils._pytree API.
    r".*isinstance\(treespec, LeafSpec\)",
    # conf/hydra/launcher/{joblib,submitit_local,ray}.yaml share the plugin schemas' names on
    # purpose (`hydra/launcher=joblib` is what users type); Hydra 1.3 validates them against the
    # schema, which we want, but warns on every run that this matching is deprecated. The files
    # set `_target_` and every key themselves, so they work without the matching too.
    r"\s*'hydra/launcher/.*' is validated against ConfigStore schema",
    # Lightning, on any machine with `srun` on the PATH (a SLURM login node), hints at running
    # multi-node training under srun; a run here is one process, and hydra/launcher=slurm
    # (submitit) already runs each job under srun.
    r"The `srun` command is available on your system but is not used",
    # A stock ModelCheckpoint with manual optimisation warns that it saves the state after the
    # step; our module's state is the image, and the image after the step is the one to keep.
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    # compile=true: torch.compile imports inductor, which imports torch.utils.mkldnn, whose
    # classes use torch's own deprecated torch.jit.script_method; nothing of ours to migrate.
    r"`torch\.jit\.script_method` is deprecated",
)


# Lines Lightning logs through its rank-zero loggers on every run that tell a user of nst-exp
# nothing the run's own lines do not: its advertising (litlogger, litmodels); the device census
# ("GPU available: False, used: False", ...), where the run's "Optimising ..." line names the
# device and precision it uses (a GPU left unused is still a warning of Lightning's); and that
# max_steps was reached, which the run's "Done:" line follows.
TIP_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
CHATTER = ("💡 Tip", "GPU available: ", "TPU available: ", "HPU available: ", "`Trainer.fit` stopped: ")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(CHATTER)


def quiet_third_party() -> None:
    """Install the filters above (idempotent: ``warnings`` drops exact duplicates)."""
    for message in QUIET:
        warnings.filterwarnings("ignore", message=message)
    for name in TIP_LOGGERS:
        tip_logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in tip_logger.filters):
            tip_logger.addFilter(_NoTips())
