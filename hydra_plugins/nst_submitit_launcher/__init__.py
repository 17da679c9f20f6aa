"""Hydra's submitit launchers (``hydra/launcher=slurm``, ``submitit_local``) with the sweep's failure contract."""
