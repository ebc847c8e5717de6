"""Batches as rows: the steps of a segment are the steps one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from neurosim import rng
from neurosim.rows import EpochOrder, Segment, batch_bounds, step_rows


@pytest.mark.parametrize("n, batch", [(64, 16), (70, 32), (10, 32), (33, 1), (96, 32)])
def test_step_rows_are_the_batches_step_by_step(n, batch):
    """Segments cut anywhere (short last batches, epochs crossed) give every step the rows
    ``batch_bounds`` and the epoch's permutation give it, and end only at ``stop`` or where
    the batch size changes."""
    order = EpochOrder(3, rng.Purpose.DATA_SHUFFLE, n)
    per_epoch = -(-n // batch)
    total = 3 * per_epoch + 1

    def expected(step):
        epoch, lo, hi = batch_bounds(step, n, batch)
        return rng.permutation(rng.stream_key(3, epoch, 0, rng.Purpose.DATA_SHUFFLE), n)[lo:hi]

    for stride in (1, 2, per_epoch, 5 * per_epoch):
        step = 0
        while step < total:
            stop = min(total, step + stride)
            rows = step_rows(step, stop, batch, order)
            assert 1 <= len(rows) <= stop - step
            for j, index in enumerate(rows):
                np.testing.assert_array_equal(index, expected(step + j))
            if step + len(rows) < stop:  # ended early: the next step's batch size differs
                assert len(expected(step + len(rows))) != rows.shape[1]
            step += len(rows)


def test_a_segment_hands_out_rows_or_draws():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    rows = Segment.of_rows("train", 4, x, y, np.array([[1, 2], [3, 4], [5, 6]]))
    assert (len(rows), rows.batch_size, rows.start) == (3, 2, 4)
    inputs, labels = rows.batch(1)
    np.testing.assert_array_equal(inputs.gather(), x[[3, 4]])
    np.testing.assert_array_equal(labels.gather(), [3, 4])
    drawn = Segment.drawn("precondition", 5, 8, lambda step: (step, -step), 16)
    assert (len(drawn), drawn.batch_size, drawn.batch(2)) == (3, 16, (7, -7))


def test_epoch_order_keys_each_epoch_and_stream():
    order = EpochOrder(1, rng.Purpose.NOISE_SHUFFLE, 50, stream=2)
    for epoch in (0, 1, 0):
        np.testing.assert_array_equal(order(epoch), rng.permutation(
            rng.stream_key(1, epoch, 2, rng.Purpose.NOISE_SHUFFLE), 50))
