"""The process around a run: build it from a Hydra config, validate that config, keep the
failure contract (one-line errors, signals), checkpoint and resume, pin devices."""
