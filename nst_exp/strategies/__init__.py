"""How a job runs: thin drivers over one objective (core/objective.py) and one run record
(engine/summary.py and the callbacks).

- ``single``: one image, one Lightning fit (train.py calls it for a plain run);
- ``pyramid``: coarse-to-fine, one single run per scale, each from the last one's result;
- ``tiled`` (+ ``tile_loop``): an image too large for one pass, optimised tile by tile;
- ``batched``: several sweep jobs as one batch of images (hydra/launcher=batched).

Each keeps every promise of a run (W&B, the yardstick, stop-eps, the divergence guard, bounded
L-BFGS, fingerprinted resume, denoise) or refuses the option in one line before anything is
written (nst_exp/config/schema.py); tests/test_strategy_promises.py holds them to it.
"""
