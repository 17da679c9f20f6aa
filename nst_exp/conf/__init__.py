"""Hydra configs: the primary config module (``pkg://nst_exp.conf``) of nst-train."""
