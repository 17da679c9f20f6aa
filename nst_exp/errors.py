"""The errors a user can cause, in one place at the bottom of the package.

Each carries a one-line message that names the config field and its value; the failure
contract (``runtime/task.py``) prints it as ``error: <message>`` and exits with status 2.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2  # the exit status of every error below (and of Hydra's config errors: config/errors.py)


class UserError(Exception):
    """Base of every error caused by input rather than by the code."""


class ConfigError(UserError, ValueError):
    """A config value is out of range or inconsistent; the message names the field and value."""


class ImageError(UserError, ValueError):
    """An input image is missing, unreadable or unusable; the message names the config field."""


class WeightsError(UserError, RuntimeError):
    """The requested weights cannot be found or do not load; the message says what to do."""


class WeightsMismatch(UserError, ValueError):
    """A state dict lacks keys, or has shapes, that the architecture needs."""


class OutputDirError(UserError, OSError):
    """The output directory cannot be created or written; the message names the field."""


class ReportError(UserError, ValueError):
    """The directory is not a multirun directory; the message names it."""


class CheckpointError(UserError, ValueError):
    """A checkpoint to resume cannot be read or is incomplete; the message names the file."""


class DiskFullError(UserError, OSError):
    """A write ran out of space; the message names the output dir (earlier complete files stay)."""
