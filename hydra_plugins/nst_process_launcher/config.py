"""The settings of the process launcher, registered as Hydra's own launcher plugins register theirs.

Hydra's plugin scan imports this module and stores the schema in the ``hydra/launcher`` group as
``nst_process``: ``hydra/launcher=nst_process`` composes it, a mistyped key is refused.

The ``joblib`` preset (conf/hydra/launcher/joblib.yaml, the name users type) names the
same launcher and keys, but cannot extend this schema: where hydra-joblib-launcher is installed
(the ``sweep`` extra), Hydra validates a preset against the plugin schema of the same name
(automatic schema matching, deprecated; nst_exp/runtime/console.py hides its warning), and two
schema classes cannot type one node. That matching is also why ProcessLauncher accepts joblib's
pool keys (backend, prefer, ...) and leaves them unused.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class ProcessLauncherConf:
    """Jobs side by side, each in a process of its own (process_launcher.py)."""

    _target_: str = "hydra_plugins.nst_process_launcher.process_launcher.ProcessLauncher"
    # Jobs running at once, each given a device slot of n_jobs (nst_exp/runtime/devices.py): by
    # default the GPUs visible (CUDA_VISIBLE_DEVICES narrows them), else min(cores, 4); -1: one per core.
    n_jobs: int = "${parallel_jobs:}"  # type: ignore[assignment]  # an interpolation, resolved to an int


ConfigStore.instance().store(group="hydra/launcher", name="nst_process", node=ProcessLauncherConf,
                             provider="nst_exp")
