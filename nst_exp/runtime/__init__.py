"""The process around a run: build it from a Hydra config (checked by nst_exp/config), keep the
failure contract (one-line errors, signals), checkpoint and resume, pin devices."""
