"""``hydra/launcher=nst_slurm`` and ``nst_submitit_local``: Hydra's submitit schemas with this
package's launchers as targets. The ``slurm`` preset extends ``nst_slurm``; the ``submitit_local``
preset has the keys of ``nst_submitit_local`` but not its defaults list, because Hydra validates it
against hydra-submitit-launcher's schema of the same name (see nst_process_launcher/config.py).

Registered only where Hydra's submitit plugin is installed (the ``sweep`` extra).
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
except ImportError:  # no [sweep] extra: no submitit launchers
    LocalQueueConf = SlurmQueueConf = None

if SlurmQueueConf is not None and LocalQueueConf is not None:
    @dataclass
    class SlurmLauncherConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.nst_submitit_launcher.submitit_launcher.SlurmLauncher"

    @dataclass
    class LocalLauncherConf(LocalQueueConf):
        """The ``submitit_local`` preset's values."""

        _target_: str = "hydra_plugins.nst_process_launcher.submitit_local.ContainedLocalLauncher"
        cpus_per_task: int | None = 1
        gpus_per_node: int | None = 0  # set 1 per job on a GPU machine
        mem_gb: int | None = 4

    ConfigStore.instance().store(group="hydra/launcher", name="nst_slurm", node=SlurmLauncherConf,
                                 provider="nst_exp")
    ConfigStore.instance().store(group="hydra/launcher", name="nst_submitit_local", node=LocalLauncherConf,
                                 provider="nst_exp")
