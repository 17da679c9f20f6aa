"""Hydra launcher that runs batchable sweep jobs as one batch of images (``hydra/launcher=batched``)."""
