"""Matrix products whose result does not depend on the number of threads.

A multithreaded BLAS splits a product between its threads in a way that depends on the
thread count, and OpenBLAS's float32 kernels then round differently: the same run with 1 and
2 threads drifts apart by ~1e-6 per step. Here the split is a function of the *shape* only:
the longer side of the output (its columns, or its rows) is cut into ``parts`` contiguous
blocks, a power of two, at most ``max_parts``, each block at least :data:`MIN_BLOCK_WORK`
multiply-adds (a product smaller than two such blocks is one call). Every block is one call
of the single-threaded BLAS on the whole inner dimension, and the blocks run in parallel on
Numba's threads. With one thread the same blocks run one after another, so every output
element is computed by the same BLAS call with the same operands whatever the thread count.
This needs the BLAS itself single-threaded, which
:class:`neurosim.backends.numba_cpu.NumbaBackend` sets when it is created.

The BLAS (``?gemm`` of the LAPACK/BLAS that SciPy exports, the one Numba's ``np.dot`` calls)
is called directly, with leading dimensions: transposed operands (``W.T``), row or column
blocks and sliced views are read where they lie, never copied (``np.dot`` in Numba needs
contiguous operands, and a row block of ``W.T`` is not).

``max_parts = 1`` is the non-deterministic mode (``simulation.deterministic: false``): one
BLAS call per product, multithreaded by the BLAS itself (rounding with the thread count).

``max_parts < 0`` cuts the product into the blocks of ``|max_parts|`` and computes them one
after another on the calling thread: for callers that already run on Numba's threads (a
population of chips, one chip per thread:
:func:`neurosim.backends.numba_cpu.population_step_kernel`), since Numba's workqueue
threading layer cannot nest parallel regions. Same blocks, same BLAS calls, so the same
result as ``|max_parts|``.

A read of an array, ``x @ W.T`` with ``x`` and ``W`` both stored by rows (each output a dot
product of two contiguous rows), is not sent to BLAS in the deterministic modes but computed
by :func:`_tile` loops: 4 x 3 outputs at a time, twelve sums kept in vector registers over
the whole inner dimension. For the small products of a training step (a batch of 64 against
a layer of 100), OpenBLAS spends much of its time packing both operands; these loops do not
pack and run at about the core's FMA peak (``benchmarks/bench_core.py``). Every output
element is computed by the same instructions (the one inlined copy of the loop, summing in
a fixed order of vector lanes), so a product's blocks and tiles, which may overlap at the
edges, do not change the result: it still depends on the shape only.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.core import types

from neurosim.backends.numba_rng import kernel

MIN_BLOCK_WORK = 1 << 21  # multiply-adds per block, at least (~30 us of one core)
MAX_PARTS = 16  # deterministic mode
TILE_ROWS, TILE_COLS = 4, 3  # outputs per tile of a read (12 sums: 12 of 16 AVX registers)
MIN_TILE_DEPTH = 32  # shallower reads go to BLAS (a tile's sums would be mostly reductions)
L2_BUDGET = 1 << 18  # bytes of W's rows a pass over the batch's tiles reads (half an L2)
_REASSOCIATE = {"reassoc", "contract"}  # sums in vector lanes, fused multiply-adds

# Launch Numba's thread pool (get_num_threads does) before any kernel runs: a kernel loaded
# from the cache that calls a parallel one (those below) does not launch it, and its first
# parallel region would crash the process.
numba.get_num_threads()

# Numba's own entry to SciPy's BLAS (what its ``np.dot`` calls): ``numba_xxgemm(kind,
# transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`` for the column-major
# ``c = alpha op(a) op(b) + beta c``, ``kind`` ``s``/``d``; 0 on success. Called by symbol
# name, so the kernels that use it stay cacheable.
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.voidptr,
    types.voidptr, types.intp, types.voidptr, types.intp, types.voidptr, types.voidptr,
    types.intp))
# ``numba_xxgemv(kind, trans, m, n, alpha, a, lda, x, beta, y)``: ``y = alpha op(a) x +
# beta y``, unit strides (OpenBLAS's gemm is ~10x slower than its gemv on a 1-row product).
_xxgemv = types.ExternalFunction("numba_xxgemv", types.intc(
    types.char, types.char, types.intp, types.intp, types.voidptr, types.voidptr, types.intp,
    types.voidptr, types.voidptr, types.voidptr))
_N, _T, _S, _D = ord("N"), ord("T"), ord("s"), ord("d")


@kernel
def _fortran_view(a, rows_needed):
    """How BLAS reads the 2-d array ``a`` (``r x c``) as a column-major matrix: ``(transpose,
    leading dimension)``. Rows stored contiguously (C order, or a column block of it): the
    column-major matrix is ``a.T`` with leading dimension the row stride (``transpose`` ``N``
    gives ``a.T``). Columns stored contiguously (F order, e.g. ``W.T``): it is ``a`` itself
    (``T`` gives ``a.T``). ``(0, 0)``: neither; the caller copies. ``rows_needed``: the
    least leading dimension BLAS accepts for the ``N`` reading."""
    size = a.itemsize
    r, c = a.shape
    s0, s1 = a.strides
    if (c == 1 or s1 == size) and (r == 1 or s0 > 0):
        return _N, max(s0 // size if r > 1 else c, rows_needed, 1)
    if (r == 1 or s0 == size) and (c == 1 or s1 > 0):
        return _T, max(s1 // size if c > 1 else r, r, 1)
    return 0, 0


@kernel
def _call_gemm(a, b, out, trans_a, ld_a, trans_b, ld_b):
    """``out = a @ b`` with the readings of :func:`_fortran_view`: BLAS (column-major)
    computes ``out.T = b.T @ a.T`` (``N x M``, ``K`` deep); a product with one output row
    (or column) is a matrix-vector product when the vectors have unit stride."""
    rows, depth, cols = a.shape[0], a.shape[1], b.shape[1]
    size = out.itemsize
    kind = _S if size == 4 else _D
    scalars = np.array([1, 0], dtype=out.dtype)  # alpha, beta
    if rows == 1 and (depth == 1 or a.strides[1] == size):  # out[0] = b.T @ a[0]
        m, n = (cols, depth) if trans_b == _N else (depth, cols)
        status = _xxgemv(kind, trans_b, m, n, scalars.ctypes, b.ctypes, ld_b, a.ctypes,
                         scalars[1:].ctypes, out.ctypes)
    elif cols == 1 and (rows == 1 or out.strides[0] == size) and (
            depth == 1 or b.strides[0] == size):  # out[:, 0] = a @ b[:, 0]
        m, n = (depth, rows) if trans_a == _N else (rows, depth)
        status = _xxgemv(kind, _T if trans_a == _N else _N, m, n, scalars.ctypes, a.ctypes,
                         ld_a, b.ctypes, scalars[1:].ctypes, out.ctypes)
    else:
        ld_out = out.strides[0] // size if rows > 1 else cols
        status = _xxgemm(kind, trans_b, trans_a, cols, rows, depth, scalars.ctypes, b.ctypes,
                         ld_b, a.ctypes, ld_a, scalars[1:].ctypes, out.ctypes,
                         max(ld_out, cols, 1))
    if status != 0:
        raise RuntimeError("BLAS call failed (SciPy's BLAS not found)")


@kernel
def _gemm(a, b, out):
    """``out = a @ b`` in one BLAS call on the operands where they lie (``out``'s rows
    contiguous; ``a``, ``b`` with contiguous rows or columns, else copied first)."""
    rows, depth, cols = a.shape[0], a.shape[1], b.shape[1]
    if rows == 0 or cols == 0:
        return
    if depth == 0:
        out[:] = 0
        return
    trans_a, ld_a = _fortran_view(a, depth)
    trans_b, ld_b = _fortran_view(b, cols)
    if ld_a == 0 or ld_b == 0:
        a_copy, b_copy = np.ascontiguousarray(a), np.ascontiguousarray(b)
        _call_gemm(a_copy, b_copy, out, _N, depth, _N, cols)
    else:
        _call_gemm(a, b, out, trans_a, ld_a, trans_b, ld_b)


@kernel
def parts_for(rows, cols, depth, max_parts):
    """Blocks a product with ``rows x cols`` outputs and inner dimension ``depth`` is cut
    into (a function of shape only): halved while every block keeps at least
    :data:`MIN_BLOCK_WORK` multiply-adds and at most ``max_parts`` blocks."""
    work = rows * cols * depth
    longest = max(rows, cols)
    parts = 1
    while parts < max_parts and 2 * parts <= longest and work >= 2 * parts * MIN_BLOCK_WORK:
        parts *= 2
    return parts


@kernel(fastmath=_REASSOCIATE, inline="always")
def _tile(x, w, out, i, j, zero):
    """``out[i:i+4, j:j+3] = x[i:i+4] @ w[j:j+3].T`` (rows of ``x`` and ``w`` contiguous): the
    twelve sums over the inner dimension in registers, in vector lanes (reassociated),
    multiply-adds fused. Inlined once per caller, so every element of a product is computed
    by the same instructions."""
    x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
    w0, w1, w2 = w[j], w[j + 1], w[j + 2]
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = s30 = s31 = s32 = zero
    for k in range(x.shape[1]):
        a0, a1, a2, a3 = x0[k], x1[k], x2[k], x3[k]
        b0, b1, b2 = w0[k], w1[k], w2[k]
        s00 += a0 * b0
        s01 += a0 * b1
        s02 += a0 * b2
        s10 += a1 * b0
        s11 += a1 * b1
        s12 += a1 * b2
        s20 += a2 * b0
        s21 += a2 * b1
        s22 += a2 * b2
        s30 += a3 * b0
        s31 += a3 * b1
        s32 += a3 * b2
    o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
    o0[j], o0[j + 1], o0[j + 2] = s00, s01, s02
    o1[j], o1[j + 1], o1[j + 2] = s10, s11, s12
    o2[j], o2[j + 1], o2[j + 2] = s20, s21, s22
    o3[j], o3[j + 1], o3[j + 2] = s30, s31, s32


@kernel(fastmath=_REASSOCIATE)
def _tiled_read(x, w, out, row_lo, row_hi, col_lo, col_hi):
    """``out[r, c] = x[r] . w[c]`` for rows ``[row_lo, row_hi)`` (at least 4) and columns
    ``[col_lo, col_hi)`` (at least 3) by :func:`_tile`: columns in groups whose rows of
    ``w`` fit :data:`L2_BUDGET`, each group against every row tile of ``x``. A tile that
    would cross the end of its range is moved back to end on it (it recomputes a few
    elements, identically)."""
    zero = np.zeros(1, dtype=out.dtype)[0]
    group = max(TILE_COLS, L2_BUDGET // (x.shape[1] * x.itemsize) // TILE_COLS * TILE_COLS)
    for g_lo in range(col_lo, col_hi, group):
        g_hi = min(g_lo + group, col_hi)
        for i in range(row_lo, row_hi, TILE_ROWS):
            top = min(i, row_hi - TILE_ROWS)
            for j in range(g_lo, g_hi, TILE_COLS):
                _tile(x, w, out, top, min(j, g_hi - TILE_COLS), zero)


@kernel
def _tiled_block(x, w, out, parts, p):
    """Block ``p`` of ``parts`` of ``out = x @ w.T`` by tiles, cut as :func:`_block` cuts."""
    rows, cols = out.shape
    if cols >= rows:
        _tiled_read(x, w, out, 0, rows, cols * p // parts, cols * (p + 1) // parts)
    else:
        _tiled_read(x, w, out, rows * p // parts, rows * (p + 1) // parts, 0, cols)


@njit(parallel=True, cache=True, error_model="numpy")
def _tiled_blocks(x, w, out, parts):
    for p in prange(parts):
        _tiled_block(x, w, out, parts, p)


@kernel
def tiles_suit(a, b, out, parts):
    """Whether ``out = a @ b`` is a read by tiles: ``a``'s rows and ``b``'s columns (``W``'s
    rows) contiguous, deep enough, and every block at least one tile."""
    rows, cols = out.shape
    size = out.itemsize
    if a.shape[1] < MIN_TILE_DEPTH or rows < TILE_ROWS or cols < TILE_COLS:
        return False
    if not (a.strides[1] == size and b.strides[0] == size and b.strides[1] > 0):
        return False
    if a.strides[0] <= 0:
        return False
    return (cols // parts >= TILE_COLS) if cols >= rows else (rows // parts >= TILE_ROWS)


@kernel
def _block(a, b, out, parts, p):
    """Block ``p`` of ``parts`` of ``out = a @ b``: a slab of output columns, or of output
    rows when there are more rows than columns."""
    rows, cols = out.shape
    if cols >= rows:
        lo, hi = cols * p // parts, cols * (p + 1) // parts
        _gemm(a, b[:, lo:hi], out[:, lo:hi])
    else:
        lo, hi = rows * p // parts, rows * (p + 1) // parts
        _gemm(a[lo:hi], b, out[lo:hi])


@njit(parallel=True, cache=True, error_model="numpy")
def _blocks(a, b, out, parts):
    for p in prange(parts):
        _block(a, b, out, parts, p)


@kernel
def dot_into(a, b, out, max_parts):
    """``out = a @ b`` (``a``, ``b`` 2-d with contiguous rows or columns, ``out``
    C-contiguous): a read ``x @ W.T`` by tiles (:func:`tiles_suit`), other products by
    BLAS; ``max_parts < 0``: the same blocks, serially (see the module docstring)."""
    serial = max_parts < 0
    parts = parts_for(out.shape[0], out.shape[1], a.shape[1], abs(max_parts))
    if max_parts != 1 and tiles_suit(a, b, out, parts):
        w = b.T
        if parts == 1 or serial:
            for p in range(parts):
                _tiled_block(a, w, out, parts, p)
        else:
            _tiled_blocks(a, w, out, parts)
    elif parts == 1:
        _gemm(a, b, out)
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
