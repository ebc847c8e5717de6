"""Deterministic products (neurosim.backends.numba_gemm): the split is a function of shape
only, every split computes the product on operands read where they lie (transposed,
sliced), and the result does not depend on the thread count."""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from neurosim.backends.numba_gemm import (BLAS, MAX_PARTS, MIN_BLOCK_WORK, MIN_TILE_DEPTH,
                                          OUTER_TILES, READ_TILES, dot, dot_into, method_for,
                                          parts_for)

# (a shape, b shape, transposed b, split the shape should get)
SHAPES = [((64, 784), (100, 784), True, "columns"),  # forward read x @ W.T of a wide layer
          ((100, 64), (64, 784), False, "columns"),  # weight gradient delta^T h
          ((64, 10), (10, 100), False, "none"),      # feedback read e @ B: too small
          ((1, 784), (100, 784), True, "none"),      # batch 1 (a matrix-vector product)
          ((784, 1), (1, 100), False, "none"),       # batch 1 weight gradient: K = 1
          ((16, 784), (100, 784), True, "none"),     # too little work to split
          ((512, 300), (300, 64), False, "rows"),    # more output rows than columns
          ((67, 1001), (101, 1001), True, "columns"),  # a read, partial tiles at both edges
          ((1000, 500), (10, 500), True, "rows")]    # a read split by rows


def operands(a_shape, b_shape, transposed, dtype):
    generator = np.random.default_rng(sum(a_shape) + sum(b_shape))
    a = generator.standard_normal(a_shape).astype(dtype)
    b = generator.standard_normal(b_shape).astype(dtype)
    return a, (b.T if transposed else b)


@pytest.mark.parametrize("a_shape, b_shape, transposed, split", SHAPES)
def test_split_is_chosen_by_shape(a_shape, b_shape, transposed, split):
    rows, depth = a_shape
    cols = b_shape[0] if transposed else b_shape[1]
    parts = parts_for(rows, cols, depth, MAX_PARTS)
    assert (parts > 1) == (split != "none")
    if parts > 1:  # every block keeps its share of work
        assert rows * cols * depth >= parts * MIN_BLOCK_WORK
    assert parts_for(rows, cols, depth, 1) == 1  # non-deterministic mode


def test_blocks_are_cut_from_the_longer_side_in_powers_of_two():
    assert parts_for(64, 100, 784, MAX_PARTS) == 2
    assert parts_for(4096, 4096, 4096, MAX_PARTS) == MAX_PARTS
    assert parts_for(4096, 4096, 4096, 4) == 4
    assert parts_for(2, 3, 10 ** 9, MAX_PARTS) == 2  # never more blocks than rows/columns


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
    after another: bit-identical to the parallel split."""
    a, b = operands(a_shape, b_shape, transposed, "float32")
    with threadpool_limits(1, user_api="blas"):
        np.testing.assert_array_equal(dot(a, b, -MAX_PARTS), dot(a, b, MAX_PARTS))


def views(dtype):
    """Operands as the kernels pass them and worse: transposed, column blocks, row blocks,
    strided (every other column: neither rows nor columns contiguous, so copied)."""
    generator = np.random.default_rng(7)
    big = generator.standard_normal((130, 900)).astype(dtype)
    return [(big[:64, :784], big[:100, 50:834].T),          # x @ W.T, both views
            (big[:100, :64].T.T, big[:64, 100:884]),         # row-contiguous slices
            (np.asfortranarray(big[:64, :784]), big[:100, :784].T),  # F-ordered a
            (big[5:6, :120], big[:120, 20:120]),             # one row: gemv
            (big[:40, 3:4], big[7:8, :100]),                 # inner dimension 1
            (big[:50, :200:2], big[:100, :30]),              # strided a: copied
            (big[:30, :80], big[:80, :9].T.T[:, 0:1]),       # one column: gemv
            (big[:0, :5], big[:5, :7]), (big[:4, :0], big[:0, :7])]  # empty


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("max_parts", [1, MAX_PARTS, -MAX_PARTS])
def test_products_of_views_read_in_place(dtype, rtol, max_parts):
    for a, b in views(dtype):
        expected = a.astype(np.float64) @ b.astype(np.float64)
        scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        with threadpool_limits(1, user_api="blas"):
            result = dot(a, b, max_parts)
        assert result.shape == expected.shape and result.dtype == np.dtype(dtype)
        assert np.all(np.abs(result - expected) <= rtol * scale), (a.shape, b.shape)


def read_only(array):
    view = array.view()
    view.flags.writeable = False
    return view


def test_a_product_is_the_same_bits_whatever_the_operands_type():
    """A batch reaches the products read-only, activations and errors writable, a column
    block strided: each a type of its own to Numba. The tiles take every one as the same
    type, so the result is the same bits (a strided operand gave other bits before: the
    tiles were compiled for it as a strided type)."""
    with threadpool_limits(1, user_api="blas"):
        for a_shape, b_shape, transposed, _ in SHAPES:
            a, b = operands(a_shape, b_shape, transposed, np.float32)
            wide = np.zeros((a.shape[0], a.shape[1] + 5), dtype=np.float32)
            wide[:, :a.shape[1]] = a
            block = wide[:, :a.shape[1]]  # rows contiguous, not C-contiguous
            assert not block.flags.c_contiguous or a.shape[0] == 1
            expected = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
            dot_into(a, b, expected, MAX_PARTS)
            for left, right in ((read_only(a), b), (a, read_only(b)), (block, b),
                                (read_only(block), read_only(b))):
                out = np.full_like(expected, np.nan)
                dot_into(left, right, out, MAX_PARTS)
                np.testing.assert_array_equal(out, expected)


COMPILED_ONCE = """
import json
import numpy as np
from neurosim.backends import numba_gemm

def read_only(array):
    view = array.view()
    view.flags.writeable = False
    return view

generator = np.random.default_rng(0)
x, h = (generator.standard_normal((64, 784)).astype(np.float32) for _ in range(2))
w = generator.standard_normal((100, 784)).astype(np.float32)
delta = generator.standard_normal((64, 100)).astype(np.float32)
big = generator.standard_normal((512, 300)).astype(np.float32)
small = generator.standard_normal((300, 64)).astype(np.float32)
for a, b, rows, cols in ((x, w.T, 64, 100), (delta.T, h, 100, 784), (big, small, 512, 64)):
    for left, right in ((a, b), (read_only(a), b), (a, read_only(b))):
        numba_gemm.dot_into(left, right, np.empty((rows, cols), np.float32),
                            numba_gemm.MAX_PARTS)
print(json.dumps({name: len(getattr(numba_gemm, name).signatures) for name in
                  ("dot_into", "_tiled_blocks", "_blocks", "_tiles", "_blas")}))
"""


def test_product_kernels_are_compiled_once_per_dtype_whatever_the_operands_type(tmp_path):
    """A read ``x @ W.T``, a weight gradient ``delta^T h`` and a BLAS product split into
    blocks, each with read-only and writable operands (nine types of ``dot_into``'s
    arguments): the tile and BLAS kernels behind it, and their parallel drivers, are
    compiled once each (five times each in a first run before). In a process with an empty
    kernel cache, as a kernel loaded from the cache does not compile its callees."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "NUMBA_NUM_THREADS": "2"}
    env.pop("NUMBA_CACHE_DIR", None)  # it would win over XDG_CACHE_HOME: a filled cache
    done = subprocess.run([sys.executable, "-c", COMPILED_ONCE], env=env, capture_output=True,
                          text=True, check=True)
    compiled = json.loads(done.stdout.splitlines()[-1])
    assert compiled.pop("dot_into") == 9  # the thin entry: one per type of its arguments
    assert compiled == {"_tiled_blocks": 1, "_blocks": 1, "_tiles": 1, "_blas": 1}


def test_dot_into_writes_only_its_output():
    generator = np.random.default_rng(3)
    a = generator.standard_normal((64, 784)).astype(np.float32)
    b = generator.standard_normal((784, 100)).astype(np.float32)
    out = np.full((64, 100), np.nan, dtype=np.float32)
    before = a.copy(), b.copy()
    with threadpool_limits(1, user_api="blas"):
        dot_into(a, b, out, MAX_PARTS)
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)


def read_operands(rows, cols, depth, dtype, seed=5):
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((rows, depth)).astype(dtype)
    w = generator.standard_normal((cols, depth)).astype(dtype)
    return x, w


@pytest.mark.parametrize("shape, tiled", [
    ((64, 100, 784), True),                 # the forward read of a 784-100 layer
    ((64, 10, 100), True),                  # the next layer's read
    ((64, 100, MIN_TILE_DEPTH - 1), False),  # too shallow (a 10-class feedback read)
    ((3, 100, 784), False),                 # fewer rows than a tile (batch 1-3)
    ((64, 2, 784), False)])                 # fewer columns than a tile
def test_reads_go_to_tiles_by_shape(shape, tiled):
    rows, cols, depth = shape
    x, w = read_operands(rows, cols, depth, "float32")
    out = np.empty((rows, cols), dtype=np.float32)
    parts = parts_for(rows, cols, depth, MAX_PARTS)
    assert method_for(x, w.T, out, parts) == (READ_TILES if tiled else BLAS)


@pytest.mark.parametrize("shape, tiled", [
    ((100, 784, 64), True),    # the weight gradient of a 784-100 layer, batch 64
    ((10, 100, 64), True),     # the next layer's
    ((100, 784, 1), True),     # batch 1 (one outer product)
    ((3, 784, 64), False),     # fewer rows than a tile
    ((100, 20, 64), False)])   # narrower than a tile of vectors
def test_weight_gradients_go_to_outer_tiles_by_shape(shape, tiled):
    rows, cols, depth = shape
    generator = np.random.default_rng(1)
    delta = generator.standard_normal((depth, rows)).astype(np.float32)
    h = generator.standard_normal((depth, cols)).astype(np.float32)
    out = np.empty((rows, cols), dtype=np.float32)
    parts = parts_for(rows, cols, depth, MAX_PARTS)
    assert method_for(delta.T, h, out, parts) == (OUTER_TILES if tiled else BLAS)
    assert method_for(delta.T, h, out, parts) != READ_TILES


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth", [784, 301, 100, MIN_TILE_DEPTH])
@pytest.mark.parametrize("max_parts", [MAX_PARTS, -MAX_PARTS])
def test_tiled_read_element_does_not_depend_on_its_tile(dtype, depth, max_parts):
    """Every element of a read is computed by the same instructions wherever its tile lies
    (and the edge tiles, moved back, recompute elements identically): dropping leading rows
    or columns, which moves every element to another tile position, and splitting the
    product into other blocks, leave each element's bits unchanged."""
    x, w = read_operands(69, 103, depth, dtype)
    whole = dot(x, w.T, max_parts)
    for r, c in ((1, 0), (2, 0), (3, 0), (0, 1), (0, 2), (5, 7)):
        np.testing.assert_array_equal(dot(x[r:], w[c:].T, max_parts), whole[r:, c:])
    for rows in (4, 9, 30):
        np.testing.assert_array_equal(dot(x[:rows], w.T, max_parts), whole[:rows])
    np.testing.assert_array_equal(dot(x, w[:40].T, 2), whole[:, :40])


def test_tiled_read_in_blocks_larger_than_its_l2_group():
    """A read whose ``W`` rows exceed the L2 budget is done in column groups; the result is
    still the product, and the same as one column at a time."""
    x, w = read_operands(20, 700, 512, "float32")
    result = dot(x, w.T, MAX_PARTS)
    expected = x.astype(np.float64) @ w.T.astype(np.float64)
    scale = np.abs(x).astype(np.float64) @ np.abs(w.T).astype(np.float64)
    assert np.all(np.abs(result - expected) <= 1e-5 * scale)
    np.testing.assert_array_equal(dot(x, w[350:].T, MAX_PARTS), result[:, 350:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth", [64, 7, 1])
@pytest.mark.parametrize("max_parts", [MAX_PARTS, -MAX_PARTS])
def test_outer_tiles_element_does_not_depend_on_its_tile(dtype, depth, max_parts):
    """A weight gradient's elements are each a chain of fused multiply-adds in batch order:
    moving them to other tiles (dropping leading rows or columns) or blocks leaves their bits
    unchanged, and the chain equals the float64 product to rounding."""
    generator = np.random.default_rng(11)
    delta = generator.standard_normal((depth, 103)).astype(dtype)
    h = generator.standard_normal((depth, 797)).astype(dtype)
    whole = dot(delta.T, h, max_parts)
    expected = delta.T.astype(np.float64) @ h.astype(np.float64)
    scale = np.abs(delta.T).astype(np.float64) @ np.abs(h).astype(np.float64)
    assert np.all(np.abs(whole - expected) <= (1e-5 if dtype == "float32" else 1e-12) * scale)
    for r, c in ((1, 0), (3, 0), (0, 1), (0, 5), (2, 9)):
        np.testing.assert_array_equal(dot(delta[:, r:].T, h[:, c:], max_parts), whole[r:, c:])
    np.testing.assert_array_equal(dot(delta.T, h[:, :200], 2), whole[:, :200])
