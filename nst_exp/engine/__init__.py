"""The Lightning run: the module whose only parameter is the image, and the callbacks that
write, guard, stop and score it. Builds on ``core``; knows nothing of Hydra or processes."""
