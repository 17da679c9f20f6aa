"""The science, in torch and Pillow alone: the objective as named terms (``objective``) and the
comparisons they are made of (``losses``), VGG features and weights, colour and guided Grams,
one per-image L-BFGS (``lbfgs``, ``line_search``), the impartial yardstick, images, tiles,
augmentation, denoising. Nothing here knows about Lightning or Hydra; everything above builds on it."""
