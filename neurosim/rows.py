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
