"""Several sweep jobs as one batch of images sharing the frozen network (``hydra/launcher=batched``)."""
