"""Matrix products whose result does not depend on the number of threads.

A multithreaded BLAS splits a product between its threads in a way that depends on the
thread count, and OpenBLAS's float32 kernels then round differently: the same run with 1 and
2 threads drifts apart by ~1e-6 per step. Here the split is a function of the *shape* only:
either the output rows are cut into ``parts`` contiguous blocks (a power of two, at least
:data:`MIN_ROWS` rows each, at most ``max_parts``), or, when the inner dimension ``K`` is the
long one (a forward read ``x @ W.T`` of a wide layer: ``K = 784`` inputs, 64 batch rows), ``K``
is cut into blocks of at least :data:`MIN_DEPTH` and the partial products are added in block
order, ``out = P_0 + P_1 + ...``. Each block is one single-threaded BLAS call and the blocks
run in parallel on Numba's threads. With one thread the same blocks run one after another, so
every output element is computed by the same BLAS calls with the same operands, and summed in
the same order, whatever the thread count. This needs the BLAS itself single-threaded, which
:class:`neurosim.backends.numba_cpu.NumbaBackend` sets when it is created.

``max_parts = 1`` is the non-deterministic mode (``simulation.deterministic: false``): one
BLAS call per product, multithreaded by the BLAS itself, faster on small machines (the BLAS
shares its packed operands between threads) but rounding with the thread count.

``max_parts < 0`` cuts the product into the blocks of ``|max_parts|`` and computes them one
after another on the calling thread: for callers that already run on Numba's threads (a
population of chips, one chip per thread:
:func:`neurosim.backends.numba_cpu.population_step_kernel`), since Numba's workqueue
threading layer cannot nest parallel regions. Same blocks, same BLAS calls, same order of
addition, so the same result as ``|max_parts|``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from neurosim.backends.numba_rng import kernel

MIN_ROWS = 32  # output rows per block, at least: smaller blocks waste the BLAS kernel
MIN_DEPTH = 256  # inner-dimension length per block of a K-split product, at least
MAX_PARTS = 16  # deterministic mode

# Launch Numba's thread pool (get_num_threads does) before any kernel runs: a kernel loaded
# from the cache that calls a parallel one (those below) does not launch it, and its first
# parallel region would crash the process.
numba.get_num_threads()


@kernel
def parts_for(rows, max_parts):
    """Blocks a product with ``rows`` output rows is cut into (a function of shape only)."""
    parts = 1
    while parts < max_parts and 2 * parts * MIN_ROWS <= rows:
        parts *= 2
    return parts


@kernel
def depth_parts_for(rows, depth, max_parts):
    """Blocks the inner dimension of a product is cut into (1: split rows instead): only
    when ``depth`` exceeds the output ``rows`` and the product has rows enough to be worth it
    (single-threaded OpenBLAS is slow on a short, deep ``x @ W.T``; halves of ``K`` are not)."""
    parts = 1
    if depth > rows >= MIN_ROWS:
        while parts < max_parts and 2 * parts * MIN_DEPTH <= depth:
            parts *= 2
    return parts


@kernel
def _depth_block(a, b, target, parts, p):
    """Partial product ``p`` of ``parts``: ``a[:, K_p] @ b[K_p, :]`` into ``target``."""
    depth = a.shape[1]
    lo = depth * p // parts
    hi = depth * (p + 1) // parts
    np.dot(np.ascontiguousarray(a[:, lo:hi]), np.ascontiguousarray(b[lo:hi]), target)


@njit(parallel=True, cache=True, error_model="numpy")
def _depth_blocks(a, b, out, partial, parts):
    for p in prange(parts):
        _depth_block(a, b, out if p == 0 else partial[p - 1], parts, p)


@kernel
def _block(a, b, out, parts, p):
    """Block ``p`` of ``parts``: output rows ``[rows p / parts, rows (p + 1) / parts)``."""
    rows = out.shape[0]
    lo = rows * p // parts
    hi = rows * (p + 1) // parts
    # a row block of a transposed (F-ordered) operand is strided: copy it (small)
    np.dot(np.ascontiguousarray(a[lo:hi]), b, out[lo:hi])


@njit(parallel=True, cache=True, error_model="numpy")
def _blocks(a, b, out, parts):
    for p in prange(parts):
        _block(a, b, out, parts, p)


@kernel
def dot_into(a, b, out, max_parts):
    """``out = a @ b`` (``a``, ``b`` C- or F-contiguous 2-d, ``out`` C-contiguous);
    ``max_parts < 0``: the same blocks, serially (see the module docstring)."""
    serial = max_parts < 0
    max_parts = abs(max_parts)
    depth_parts = depth_parts_for(out.shape[0], a.shape[1], max_parts)
    if depth_parts > 1:
        # ``out = sum_p a[:, K_p] @ b[K_p, :]``, partials added in block order
        partial = np.empty((depth_parts - 1, out.shape[0], out.shape[1]), dtype=out.dtype)
        if serial:
            for p in range(depth_parts):
                _depth_block(a, b, out if p == 0 else partial[p - 1], depth_parts, p)
        else:
            _depth_blocks(a, b, out, partial, depth_parts)
        for p in range(depth_parts - 1):
            out += partial[p]
        return
    parts = parts_for(out.shape[0], max_parts)
    if parts == 1:
        np.dot(a, b, out)
    elif serial:
        for p in range(parts):
            _block(a, b, out, parts, p)
    else:
        _blocks(a, b, out, parts)


@kernel
def dot(a, b, max_parts):
    """``a @ b`` as a new C-contiguous array (see :func:`dot_into`)."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    dot_into(a, b, out, max_parts)
    return out
