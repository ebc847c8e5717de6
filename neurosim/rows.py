"""A batch handed over as rows of a larger array, gathered where it is used.

A run's training batches are rows of its dataset (or of its fixed noise set), picked by
the epoch's permutation. :class:`Rows` names them without copying them, so that whoever
runs the step decides where to gather: a single chip on the host (:func:`gathered`), a
population on a GPU from a copy of the dataset kept on the device
(:meth:`neurosim.backends.base.Backend.stack_batches`).
"""

from __future__ import annotations

import numpy as np


class Rows:
    """Rows ``index`` (int array) of ``source`` (``n x ...``). A plain class with slots: a
    population step makes one per chip and per array."""

    __slots__ = ("source", "index")

    def __init__(self, source: np.ndarray, index: np.ndarray):
        self.source = source
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def gather(self) -> np.ndarray:
        """``source[index]``: the batch as an array."""
        return self.source[self.index]


def gathered(batch: Rows | np.ndarray) -> np.ndarray:
    """The batch as an array (gathered if it is :class:`Rows`)."""
    return batch.gather() if isinstance(batch, Rows) else batch


class Segment:
    """The batches of a run's consecutive training steps ``start .. start + len - 1`` of
    one ``phase``, up to its next evaluation point: what a run hands to its driver at once
    (:meth:`neurosim.train.Trainer.steps`), so that a population's driver does no per-chip
    work of the run between its steps.

    Step ``j``'s batch is :meth:`batch` ``(j)``: rows ``indices[j]`` of the sources ``x``,
    ``y`` (a dataset, a fixed noise set), or ``draw(start + j)`` (a fresh noise batch, drawn
    when the step is taken); ``sizes[j]`` is its batch size."""

    __slots__ = ("phase", "start", "sizes", "x", "y", "indices", "draw")

    def __init__(self, phase: str, start: int, sizes: list[int], x: np.ndarray | None = None,
                 y: np.ndarray | None = None, indices: list[np.ndarray] | None = None,
                 draw=None):
        self.phase, self.start, self.sizes = phase, start, sizes
        self.x, self.y, self.indices, self.draw = x, y, indices, draw

    @classmethod
    def of_rows(cls, phase: str, start: int, x: np.ndarray, y: np.ndarray,
                indices: list[np.ndarray]) -> Segment:
        """Steps on rows ``indices[j]`` of ``x`` and ``y``."""
        return cls(phase, start, [len(index) for index in indices], x=x, y=y, indices=indices)

    @classmethod
    def drawn(cls, phase: str, start: int, stop: int, draw, batch_size: int) -> Segment:
        """Steps ``start .. stop - 1`` on batches of ``batch_size`` drawn by ``draw(step)``."""
        return cls(phase, start, [batch_size] * (stop - start), draw=draw)

    def __len__(self) -> int:
        return len(self.sizes)

    def batch(self, j: int) -> tuple:
        """Step ``j``'s (inputs, labels): :class:`Rows` or arrays."""
        if self.draw is not None:
            return self.draw(self.start + j)
        index = self.indices[j]
        return Rows(self.x, index), Rows(self.y, index)
