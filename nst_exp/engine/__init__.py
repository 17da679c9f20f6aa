"""The Lightning run: the module whose only parameter is the image (``module``, built from an
``ObjectiveSpec``), and the run record its callbacks write: metrics.csv, snapshots, final.png and
summary.json in one schema (``summary``), W&B, the yardstick's scores, the divergence guard and
the plateau stop. Builds on ``core``; knows nothing of Hydra or processes."""
