"""Deterministic products (neurosim.backends.numba_gemm): the split is a function of shape
only, every split computes the product, and the result does not depend on the thread count."""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from neurosim.backends.numba_gemm import MAX_PARTS, depth_parts_for, dot, parts_for

# (a shape, b shape, transposed b, split the shape should get)
SHAPES = [((64, 784), (100, 784), True, "depth"),   # forward read x @ W.T of a wide layer
          ((100, 64), (64, 784), False, "rows"),     # weight gradient delta^T h
          ((64, 10), (10, 100), False, "rows"),      # feedback read e @ B
          ((1, 784), (100, 784), True, "none"),      # batch 1
          ((16, 784), (100, 784), True, "none")]     # too few rows to split


def operands(a_shape, b_shape, transposed, dtype):
    generator = np.random.default_rng(sum(a_shape) + sum(b_shape))
    a = generator.standard_normal(a_shape).astype(dtype)
    b = generator.standard_normal(b_shape).astype(dtype)
    return a, (b.T if transposed else b)


@pytest.mark.parametrize("a_shape, b_shape, transposed, split", SHAPES)
def test_split_is_chosen_by_shape(a_shape, b_shape, transposed, split):
    rows, depth = a_shape
    by_depth = depth_parts_for(rows, depth, MAX_PARTS)
    by_rows = parts_for(rows, MAX_PARTS)
    assert {"depth": by_depth > 1, "rows": by_depth == 1 and by_rows > 1,
            "none": by_depth == 1 and by_rows == 1}[split]
    assert depth_parts_for(rows, depth, 1) == parts_for(rows, 1) == 1  # non-deterministic mode


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("a_shape, b_shape, transposed, split", SHAPES)
def test_every_split_computes_the_product(a_shape, b_shape, transposed, split, dtype, rtol):
    a, b = operands(a_shape, b_shape, transposed, dtype)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    with threadpool_limits(1, user_api="blas"):
        result = dot(a, b, MAX_PARTS)
    assert result.dtype == np.dtype(dtype) and result.flags.c_contiguous
    assert np.all(np.abs(result - expected) <= rtol * scale)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("a_shape, b_shape, transposed, split", SHAPES)
def test_result_does_not_depend_on_the_thread_count(a_shape, b_shape, transposed, split):
    a, b = operands(a_shape, b_shape, transposed, "float32")
    previous = numba.get_num_threads()
    results = []
    try:
        with threadpool_limits(1, user_api="blas"):
            for threads in (1, 2):
                numba.set_num_threads(threads)
                results.append(dot(a, b, MAX_PARTS))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("a_shape, b_shape, transposed, split", SHAPES)
def test_serial_blocks_equal_parallel_blocks(a_shape, b_shape, transposed, split):
    """``max_parts < 0`` (a population's chips, one per thread) computes the same blocks one
    after another: bit-identical to the parallel split, K-split included."""
    a, b = operands(a_shape, b_shape, transposed, "float32")
    with threadpool_limits(1, user_api="blas"):
        np.testing.assert_array_equal(dot(a, b, -MAX_PARTS), dot(a, b, MAX_PARTS))
