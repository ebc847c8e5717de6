"""Matrix products whose result does not depend on the number of threads.

A multithreaded BLAS splits a product between its threads in a way that depends on the
thread count, and OpenBLAS's float32 kernels then round differently: the same run with 1 and
2 threads drifts apart by ~1e-6 per step. Here the split is a function of the *shape* only:
the output rows are cut into ``parts`` contiguous blocks (a power of two, at least
:data:`MIN_ROWS` rows each, at most ``max_parts``), each block is one single-threaded BLAS
call, and the blocks run in parallel on Numba's threads. With one thread the same blocks run
one after another, so every output element is computed by the same BLAS call with the same
operands whatever the thread count. This needs the BLAS itself single-threaded, which
:class:`neurosim.backends.numba_cpu.NumbaBackend` sets when it is created.

``max_parts = 1`` is the non-deterministic mode (``simulation.deterministic: false``): one
BLAS call per product, multithreaded by the BLAS itself, faster on small machines (the BLAS
shares its packed operands between threads) but rounding with the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neurosim.backends.numba_rng import kernel

MIN_ROWS = 32  # output rows per block, at least: smaller blocks waste the BLAS kernel
MAX_PARTS = 16  # deterministic mode


@kernel
def parts_for(rows, max_parts):
    """Blocks a product with ``rows`` output rows is cut into (a function of shape only)."""
    parts = 1
    while parts < max_parts and 2 * parts * MIN_ROWS <= rows:
        parts *= 2
    return parts


@njit(parallel=True, cache=True, error_model="numpy")
def _blocks(a, b, out, parts):
    rows = out.shape[0]
    for p in prange(parts):
        lo = rows * p // parts
        hi = rows * (p + 1) // parts
        # a row block of a transposed (F-ordered) operand is strided: copy it (small)
        np.dot(np.ascontiguousarray(a[lo:hi]), b, out[lo:hi])


@kernel
def dot_into(a, b, out, max_parts):
    """``out = a @ b`` (``a``, ``b`` C- or F-contiguous 2-d, ``out`` C-contiguous)."""
    parts = parts_for(out.shape[0], max_parts)
    if parts == 1:
        np.dot(a, b, out)
    else:
        _blocks(a, b, out, parts)


@kernel
def dot(a, b, max_parts):
    """``a @ b`` as a new C-contiguous array (see :func:`dot_into`)."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    dot_into(a, b, out, max_parts)
    return out
