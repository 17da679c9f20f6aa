"""``hydra/launcher=nst_batched`` (the ``batched`` preset extends it), registered as Hydra's own
launcher plugins register theirs: an unknown or mistyped ``hydra.launcher.*`` key is refused."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.nst_batched_launcher.batched_launcher.BatchedLauncher"
    # Images per batch: memory grows with it (L-BFGS keeps 2 x history_size images each).
    max_batch: int = 8


ConfigStore.instance().store(group="hydra/launcher", name="nst_batched", node=BatchedLauncherConf,
                             provider="nst_exp")
