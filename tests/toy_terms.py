"""A term the project does not ship, added through config alone (tests/test_objective_terms.py)."""

from __future__ import annotations

from torch import Tensor

from nst_exp.core.objective import Seen, Term, TermInputs


class Brightness(Term):
    """Squared distance of the image's mean brightness from ``level``: a pixel prior."""

    def __init__(self, inputs: TermInputs, level: float = 0.5) -> None:
        super().__init__()
        self.level = float(level)

    def forward(self, seen: Seen) -> Tensor:
        return (seen.pixels.float().mean(dim=(1, 2, 3)) - self.level).square()
