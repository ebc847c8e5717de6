"""Batches handed over as rows of a larger array, gathered where they are used.

A run's training batches are rows of its dataset (or of its fixed noise set), picked by
each epoch's permutation (:class:`EpochOrder`, cut into batches by :func:`batch_bounds`).
:class:`Rows` names one batch without copying it, and a :class:`Segment` the batches of a
run's steps up to its next evaluation point (:func:`step_rows`), so that whoever runs the
steps decides where to gather: a single chip on the host (:func:`gathered`), a population
on a GPU from a copy of the dataset kept on the device
(:meth:`neurosim.backends.base.Backend.gather_rows`). At an evaluation point a run hands
over the inputs it measures (:class:`Measurement`: its test set, the rows of its training
probe) and the batch of its rule-vs-BP comparison (:class:`GradientProbe`), so that a
population's driver measures many chips in one call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neurosim import rng


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


def batch_bounds(step: int, n_examples: int, batch_size: int) -> tuple[int, int, int]:
    """(epoch, start, stop) of ``step`` when ``n_examples`` are cut into batches per epoch
    (the last batch of an epoch may be smaller)."""
    batches_per_epoch = -(-n_examples // batch_size)
    epoch, index = divmod(step, batches_per_epoch)
    start = index * batch_size
    return epoch, start, min(start + batch_size, n_examples)


class EpochOrder:
    """The order of ``n`` examples in each epoch: a permutation from the counter-based
    stream ``(seed, epoch, stream, purpose)`` (the last epoch's kept)."""

    def __init__(self, seed: int, purpose: rng.Purpose, n: int, stream: int = 0):
        self.seed, self.purpose, self.n, self.stream = seed, purpose, n, stream
        self._epoch, self._order = -1, None

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = rng.permutation(
                rng.stream_key(self.seed, epoch, self.stream, self.purpose), self.n)
            self._epoch = epoch
        return self._order


def step_rows(start: int, stop: int, batch_size: int, order: EpochOrder) -> np.ndarray:
    """Row indices (``steps x batch``) of the steps ``start, start + 1, ...`` up to ``stop``
    that share ``start``'s batch size, when each epoch's examples (in ``order``) are cut
    into batches of ``batch_size`` (:func:`batch_bounds`; an epoch's short last batch is
    a step of its own, unless every batch is an epoch's). Within an epoch the rows are a
    view of its order."""
    n = order.n
    per_epoch, full = -(-n // batch_size), n // batch_size  # batches, full batches
    epoch, index = divmod(start, per_epoch)
    if index >= full:  # the short last batch of an epoch
        if full == 0:  # every epoch one batch of all its examples
            return np.stack([order(e) for e in range(epoch, epoch + stop - start)])
        return order(epoch)[index * batch_size:n][None, :]
    parts, step = [], start
    while step < stop:
        epoch, index = divmod(step, per_epoch)
        if index >= full:
            break
        count = min(stop - step, full - index)
        parts.append(order(epoch)[index * batch_size:(index + count) * batch_size]
                     .reshape(count, batch_size))
        step += count
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class Segment:
    """The batches of a run's consecutive training steps ``start .. start + length - 1``
    of one ``phase`` and batch size, up to its next evaluation point: what a run hands to
    its driver at once (:meth:`neurosim.train.Trainer.steps`), so that a population's
    driver does no per-chip work of the run between its steps.

    Step ``j``'s batch is :meth:`batch` ``(j)``: rows ``indices[j]`` of the sources ``x``,
    ``y`` (a dataset, a fixed noise set; ``indices`` is ``length x batch_size``), or
    ``draw(start + j)`` (a fresh noise batch, drawn when the step is taken)."""

    __slots__ = ("phase", "start", "length", "batch_size", "x", "y", "indices", "draw")

    def __init__(self, phase: str, start: int, length: int, batch_size: int,
                 x: np.ndarray | None = None, y: np.ndarray | None = None,
                 indices: np.ndarray | None = None,
                 draw: Callable[[int], tuple] | None = None):
        self.phase, self.start, self.length, self.batch_size = phase, start, length, batch_size
        self.x, self.y, self.indices, self.draw = x, y, indices, draw

    @classmethod
    def of_rows(cls, phase: str, start: int, x: np.ndarray, y: np.ndarray,
                indices: np.ndarray) -> Segment:
        """Steps on rows ``indices[j]`` of ``x`` and ``y`` (``steps x batch``)."""
        return cls(phase, start, indices.shape[0], indices.shape[1], x=x, y=y, indices=indices)

    @classmethod
    def drawn(cls, phase: str, start: int, stop: int, draw: Callable[[int], tuple],
              batch_size: int) -> Segment:
        """Steps ``start .. stop - 1`` on batches of ``batch_size`` drawn by ``draw(step)``."""
        return cls(phase, start, stop - start, batch_size, draw=draw)

    def __len__(self) -> int:
        return self.length

    def batch(self, j: int) -> tuple:
        """Step ``j``'s (inputs, labels): :class:`Rows` or arrays."""
        if self.draw is not None:
            return self.draw(self.start + j)
        index = self.indices[j]
        return Rows(self.x, index), Rows(self.y, index)


class Measurement:
    """The inputs of a run's measurement passes at an evaluation point (arrays, or
    :class:`Rows` of a dataset: a training probe), handed to its driver
    (:meth:`neurosim.train.Trainer.steps`), which answers with the chip's logits on each
    (float64, :func:`neurosim.evaluation.logits`) and the seconds they took. The passes
    are made in the order of ``inputs``."""

    __slots__ = ("inputs",)

    def __init__(self, inputs: tuple):
        self.inputs = inputs

    def shape(self) -> tuple:
        """What the measurements of several chips must share to be made in one call: each
        input's length, row shape and dtype."""
        return ("logits", *(_layout(x) for x in self.inputs))


class GradientProbe:
    """The batch ``x``, ``y`` (arrays or :class:`Rows`) on which a run compares its rule's
    gradient with backpropagation's at an evaluation point, handed to its driver as a
    :class:`Measurement` is: the driver answers with the chip's gradient of each pass of
    ``passes`` (``(rule code, exact)``: one measurement pass each, in that order, through
    the chip's periphery or, ``exact``, with exact reads; flat, in the chip's layout,
    :func:`neurosim.evaluation.gradients`) and the seconds they took."""

    __slots__ = ("x", "y", "passes")

    def __init__(self, x, y, passes: tuple[tuple[int, bool], ...]):
        self.x, self.y, self.passes = x, y, passes

    def shape(self) -> tuple:
        """What the probes of several chips must share to be measured in one call."""
        return ("gradients", _layout(self.x), self.passes)


Request = Measurement | GradientProbe  # what a run asks its driver to measure


def _layout(x: Rows | np.ndarray) -> tuple:
    """An input's length, row shape and dtype."""
    source = x.source if isinstance(x, Rows) else x
    return (len(x), *np.shape(source)[1:], source.dtype.str)
