"""Box-constrained L-BFGS for a batch of sweep jobs: ``core.box_lbfgs`` with per-job control.

``BoxLBFGS`` already keeps one history and one line search per image; this adds what a batch
promises each of its jobs (nst_exp/batched/jobs.py): its own learning rate (in the param group,
so a checkpoint carries it), a reset of its own memory when its divergence guard restarts it,
and a frozen image once the job has stopped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nst_exp.batched.optim import Closure, PerImageControl, init_per_image, scale_lr
from nst_exp.core.box_lbfgs import BoxLBFGS


class BatchedBoxLBFGS(PerImageControl, BoxLBFGS):
    """``BoxLBFGS`` whose per-image lr, reset and freeze are a batch job's to use."""

    @property
    def image_lr(self) -> list[float]:
        return self.param_groups[0]["image_lr"]

    @image_lr.setter
    def image_lr(self, values: list[float]) -> None:  # BoxLBFGS.__init__ sets it once
        init_per_image(self.param_groups[0], list(values))

    def reset_image(self, index: int, lr_factor: float = 1.0) -> float:
        """Forget image ``index``'s curvature pairs and scale its lr; returns the new lr."""
        self.state[self._params[0]].get("histories", {}).pop(index, None)
        return scale_lr(self.param_groups[0], index, lr_factor)

    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:  # type: ignore[override]
        """One step for every image; a frozen image (its job has stopped) is put back where it was."""
        (param,) = self._params
        kept = {i: param[i].clone() for i, frozen in enumerate(self.param_groups[0]["frozen"]) if frozen}
        loss = super().step(closure)
        for index, value in kept.items():
            param[index].copy_(value)
        return loss
