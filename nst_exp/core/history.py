"""L-BFGS's curvature pairs kept in one block of memory instead of one allocation per vector.

Why: L-BFGS keeps ``history_size`` image-sized vectors s and y alive for ``history_size`` steps
while every step allocates and frees its activations around them. Allocated one by one, the
long-lived vectors pin the C heap between the short-lived blocks, which then cannot be reused
or handed back (512 px x 100 ``experiment=neural_style``: peak RSS 1607 MB that way, with a
heap trim every 10 steps; 1577-1584 MB with ``Pairs``; docs/performance.md). ``Pairs`` copies
each vector into a row of one ``history_size`` x N block, allocated at the first append (its
pages become resident only as rows are written), so the per-step vectors are short-lived like
the rest. The copy is exact: the algorithm's numbers do not change.

It behaves as the list of its rows, so torch's ``LBFGS`` and ``ImageLBFGS`` use it unchanged
(``append``, ``pop(0)``, ``len``, indexing, iteration). Checkpoints store plain lists
(``plain_state``); a restored plain list becomes a ``Pairs`` again at its next use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from torch import Tensor


class Pairs:
    """Up to ``capacity`` vectors of one size, each a row of one block (see the module doc).

    A sequence, not a ``list``: Lightning rebuilds the lists in an optimiser's state when it
    moves the state between devices, which would copy the rows out of their block.
    """

    def __init__(self, capacity: int, vectors: Iterable[Tensor] = ()) -> None:
        self.capacity = int(capacity)
        self._rows: list[Tensor] = []
        self._block: Tensor | None = None
        self._free: list[int] = []
        for vector in vectors:
            self.append(vector)

    def append(self, vector: Tensor) -> None:
        """Store a copy of ``vector`` (the caller's tensor is not kept)."""
        if self._block is None:
            self._block = vector.new_empty((self.capacity, vector.numel()))
            self._free = list(range(self.capacity - 1, -1, -1))
        if not self._free or vector.numel() != self._block.shape[1]:
            raise ValueError(f"Pairs holds {self.capacity} vectors of {self._block.shape[1]} values; "
                             f"got one of {vector.numel()} with {len(self)} stored")
        row = self._block[self._free.pop()]
        self._rows.append(row.copy_(vector.reshape(-1)).view_as(vector))

    def pop(self, index: int = -1) -> Tensor:
        """Remove a vector; its row is reused by the next append, so do not keep it."""
        vector = self._rows.pop(index)
        assert self._block is not None
        self._free.append((vector.storage_offset() - self._block.storage_offset()) // self._block.shape[1])
        return vector

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Tensor:
        return self._rows[index]

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self._rows)

    def __reversed__(self) -> Iterator[Tensor]:
        return reversed(self._rows)


def pairs(vectors: list[Tensor] | Pairs, capacity: int) -> Pairs:
    """``vectors`` as ``Pairs`` (copied once if it is a plain list, e.g. from a checkpoint)."""
    return vectors if isinstance(vectors, Pairs) else Pairs(capacity, vectors)


def plain_state(state: Any) -> Any:
    """A copy of an optimiser state with every ``Pairs`` as a plain list: what a checkpoint
    loaded with ``torch.load(weights_only=True)`` may hold."""
    if isinstance(state, Pairs):
        return list(state)
    if isinstance(state, dict):
        return {key: plain_state(value) for key, value in state.items()}
    return state


class PlainStateDict:
    """Optimiser mixin: ``state_dict()`` with plain lists (see ``plain_state``)."""

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # type: ignore[misc]
        return {**state, "state": plain_state(state["state"])}
