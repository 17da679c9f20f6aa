"""The science, in torch and Pillow alone: VGG features and weights, the losses, augmentation,
images. Nothing here knows about Lightning or Hydra; everything above builds on it."""
