"""Matrix products whose result does not depend on the number of threads.

A multithreaded BLAS splits a product between its threads in a way that depends on the
thread count, and OpenBLAS's float32 kernels then round differently: the same run with 1 and
2 threads drifts apart by ~1e-6 per step. Here the split is a function of the *shape* only:
the longer side of the output (its columns, or its rows) is cut into ``parts`` contiguous
blocks, a power of two, at most ``max_parts``, each block at least :data:`MIN_BLOCK_WORK`
multiply-adds (a product smaller than two such blocks is one block), and the blocks run in
parallel on Numba's threads. With one thread the same blocks run one after another, and
every output element is computed by the same instructions whatever block holds it, so the
result is the same for any thread count.

Each block is computed in one of three ways (:func:`method_for`, by shape and layout only):

* a read of an array, ``x @ W.T`` with ``x`` and ``W`` both stored by rows (each output a
  dot product of two contiguous rows), by :func:`_tile` loops: 4 x 3 outputs at a time,
  twelve sums kept in vector registers over the whole inner dimension, reassociated into
  vector lanes;
* a weight gradient, ``delta^T h`` with ``delta`` and ``h`` stored by rows (a sum over the
  batch of outer products), by :func:`_outer_tile`: 4 rows x 3 vectors of outputs held in
  SIMD registers (:mod:`numba_simd`) while the batch streams past, each element a chain of
  fused multiply-adds in batch order;
* anything else (shallow reads, BP's transposed read, fewer than 4 rows) by one call of the
  single-threaded BLAS, which :class:`neurosim.backends.numba_cpu.NumbaBackend` sets when
  it is created.

For the small products of a training step (a batch of 64 against a layer of 100) OpenBLAS
spends much of its time packing both operands; the tiles do not pack and run at about the
core's FMA peak (``benchmarks/bench_core.py``). Each tile kernel is inlined once per caller,
so every element is computed by the same instructions wherever its tile lies; tiles that
would cross the end of a block are moved back and recompute a few elements identically.

The BLAS (``?gemm``/``?gemv`` of the LAPACK/BLAS that SciPy exports, the one Numba's
``np.dot`` calls) is called directly, with leading dimensions: transposed operands
(``W.T``), row or column blocks and sliced views are read where they lie, never copied
(``np.dot`` in Numba needs contiguous operands, and a row block of ``W.T`` is not).

``max_parts = 1`` is the non-deterministic mode (``simulation.deterministic: false``): one
BLAS call per product, multithreaded by the BLAS itself (rounding with the thread count).

``max_parts < 0`` cuts the product into the blocks of ``|max_parts|`` and computes them one
after another on the calling thread: for callers that already run on Numba's threads (a
population of chips, one chip per thread:
:func:`neurosim.backends.numba_cpu.population_step_kernel`), since Numba's workqueue
threading layer cannot nest parallel regions. Same blocks, same computation, so the same
result as ``|max_parts|``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from neurosim.backends import numba_simd as simd
from neurosim.backends.numba_rng import kernel, scalar_like

MIN_BLOCK_WORK = 1 << 21  # multiply-adds per block, at least (~30 us of one core)
MAX_PARTS = 16  # deterministic mode
TILE_ROWS, TILE_COLS = 4, 3  # outputs per tile of a read (12 sums: 12 of 16 AVX registers)
MIN_TILE_DEPTH = 32  # shallower reads go to BLAS (a tile's sums would be mostly reductions)
L2_BUDGET = 1 << 18  # bytes of W's rows a pass over the batch's tiles reads (half an L2)
_REASSOCIATE = {"reassoc", "contract"}  # sums in vector lanes, fused multiply-adds
BLAS, READ_TILES, OUTER_TILES = 0, 1, 2  # how a product is computed (method_for)

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
        s00, s01, s02 = s00 + a0 * b0, s01 + a0 * b1, s02 + a0 * b2
        s10, s11, s12 = s10 + a1 * b0, s11 + a1 * b1, s12 + a1 * b2
        s20, s21, s22 = s20 + a2 * b0, s21 + a2 * b1, s22 + a2 * b2
        s30, s31, s32 = s30 + a3 * b0, s31 + a3 * b1, s32 + a3 * b2
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
    zero = scalar_like(out, 0)
    group = max(TILE_COLS, L2_BUDGET // (x.shape[1] * x.itemsize) // TILE_COLS * TILE_COLS)
    for g_lo in range(col_lo, col_hi, group):
        g_hi = min(g_lo + group, col_hi)
        for i in range(row_lo, row_hi, TILE_ROWS):
            top = min(i, row_hi - TILE_ROWS)
            for j in range(g_lo, g_hi, TILE_COLS):
                _tile(x, w, out, top, min(j, g_hi - TILE_COLS), zero)


@kernel(inline="always")
def _outer_tile(d, h, out, j, k, lanes, zero):
    """``out[j:j+4, k:k+3*lanes] = d[:, j:j+4].T @ h[:, k:k+3*lanes]`` (rows of ``d``, ``h``
    contiguous): twelve vector accumulators, each element the fused multiply-adds
    ``out = fma(d[i, j], h[i, k], out)`` for ``i = 0, 1, ...`` in order, from ``zero`` (a
    vector of zeros)."""
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = s30 = s31 = s32 = zero
    for i in range(h.shape[0]):
        h_i, d_i = h[i], d[i]
        x0 = simd.load(h_i, k)
        x1 = simd.load(h_i, k + lanes)
        x2 = simd.load(h_i, k + 2 * lanes)
        y = simd.splat(d_i[j])
        s00, s01, s02 = simd.fma(y, x0, s00), simd.fma(y, x1, s01), simd.fma(y, x2, s02)
        y = simd.splat(d_i[j + 1])
        s10, s11, s12 = simd.fma(y, x0, s10), simd.fma(y, x1, s11), simd.fma(y, x2, s12)
        y = simd.splat(d_i[j + 2])
        s20, s21, s22 = simd.fma(y, x0, s20), simd.fma(y, x1, s21), simd.fma(y, x2, s22)
        y = simd.splat(d_i[j + 3])
        s30, s31, s32 = simd.fma(y, x0, s30), simd.fma(y, x1, s31), simd.fma(y, x2, s32)
    for r, (v0, v1, v2) in enumerate(((s00, s01, s02), (s10, s11, s12), (s20, s21, s22),
                                      (s30, s31, s32))):
        o = out[j + r]
        simd.store(o, k, v0)
        simd.store(o, k + lanes, v1)
        simd.store(o, k + 2 * lanes, v2)


@kernel
def _outer_block(d, h, out, row_lo, row_hi, col_lo, col_hi):
    """``out[r, c] = sum_i d[i, r] h[i, c]`` for rows ``[row_lo, row_hi)`` (at least 4) and
    columns ``[col_lo, col_hi)`` (at least one tile wide) by :func:`_outer_tile`, a strip
    of columns against every row tile (the strip of ``h`` stays in L1). Edge tiles are moved
    back, as in :func:`_tiled_read`."""
    lanes = simd.VECTOR_BYTES // h.itemsize
    width = 3 * lanes
    zero = simd.splat(scalar_like(out, 0))
    for c in range(col_lo, col_hi, width):
        left = min(c, col_hi - width)
        for r in range(row_lo, row_hi, TILE_ROWS):
            _outer_tile(d, h, out, min(r, row_hi - TILE_ROWS), left, lanes, zero)


@kernel
def method_for(a, b, out, parts):
    """How the blocks of ``out = a @ b`` (``parts`` of them, :func:`parts_for`) are computed:
    :data:`READ_TILES` for a read ``x @ W.T`` (rows of ``a`` and columns of ``b`` contiguous,
    at least :data:`MIN_TILE_DEPTH` deep), :data:`OUTER_TILES` for a weight gradient
    ``delta^T h`` (columns of ``a``, rows of ``b`` contiguous), when every block holds at
    least one tile; otherwise :data:`BLAS`. A function of the shape and layout only."""
    rows, cols = out.shape
    size = out.itemsize
    block_rows, block_cols = (rows, cols // parts) if cols >= rows else (rows // parts, cols)
    if block_rows < TILE_ROWS:
        return BLAS
    if a.strides[1] == size and b.strides[0] == size:
        deep = a.shape[1] >= MIN_TILE_DEPTH
        return READ_TILES if deep and block_cols >= TILE_COLS else BLAS
    if a.strides[0] == size and b.strides[1] == size:
        return OUTER_TILES if block_cols >= 3 * simd.VECTOR_BYTES // size else BLAS
    return BLAS


@kernel
def _block_range(rows, cols, parts, p):
    """Rows and columns ``(row_lo, row_hi, col_lo, col_hi)`` of block ``p`` of ``parts``: a
    slab of output columns, or of output rows when there are more rows than columns."""
    if cols >= rows:
        return 0, rows, cols * p // parts, cols * (p + 1) // parts
    return rows * p // parts, rows * (p + 1) // parts, 0, cols


@kernel
def _tiled_block(x, y, out, parts, p, method):
    """Block ``p`` of ``parts`` of a product by the tiles of ``method``: the read ``out =
    x @ y.T`` (:data:`READ_TILES`) or the weight gradient ``out = x.T @ y``
    (:data:`OUTER_TILES`), ``x`` and ``y`` C-contiguous."""
    row_lo, row_hi, col_lo, col_hi = _block_range(out.shape[0], out.shape[1], parts, p)
    if method == READ_TILES:
        _tiled_read(x, y, out, row_lo, row_hi, col_lo, col_hi)
    else:
        _outer_block(x, y, out, row_lo, row_hi, col_lo, col_hi)


@njit(parallel=True, cache=True, error_model="numpy")
def _tiled_blocks(x, y, out, parts, method):
    for p in prange(parts):
        _tiled_block(x, y, out, parts, p, method)


@kernel
def _tiles(x, y, out, parts, serial, method):
    """The product of :func:`_tiled_block` in ``parts`` blocks, on Numba's threads unless
    ``serial`` (or one block)."""
    if parts == 1 or serial:
        for p in range(parts):
            _tiled_block(x, y, out, parts, p, method)
    else:
        _tiled_blocks(x, y, out, parts, method)


@kernel
def _block(a, b, out, parts, p):
    """Block ``p`` of ``parts`` of ``out = a @ b`` (:func:`_block_range`) by BLAS."""
    row_lo, row_hi, col_lo, col_hi = _block_range(out.shape[0], out.shape[1], parts, p)
    _gemm(a[row_lo:row_hi], b[:, col_lo:col_hi], out[row_lo:row_hi, col_lo:col_hi])


@njit(parallel=True, cache=True, error_model="numpy")
def _blocks(a, b, out, parts):
    for p in prange(parts):
        _block(a, b, out, parts, p)


@kernel
def _blas(a, b, out, parts, serial):
    """``out = a @ b`` by BLAS in ``parts`` blocks, on Numba's threads unless ``serial``."""
    if parts == 1:
        _gemm(a, b, out)
    elif serial:
        for p in range(parts):
            _block(a, b, out, parts, p)
    else:
        _blocks(a, b, out, parts)


@intrinsic
def _strided(typingctx, array):
    """``array`` typed as a writable array of any layout (``'A'``: indexed through its
    strides), the same array: BLAS reads its operands through their strides whatever
    their type, so one compiled :func:`_blas` serves every layout and read-only flag."""
    strided = array.copy(layout="A", readonly=False)

    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, strided, args[0])
    return strided(array), codegen


@kernel
def dot_into(a, b, out, max_parts):
    """``out = a @ b`` (``a``, ``b`` 2-d with contiguous rows or columns, ``out``
    C-contiguous): reads and weight gradients by tiles (:func:`method_for`), other products
    by BLAS; ``max_parts < 0``: the same blocks, serially (see the module docstring).

    The tiles take their operands as C-contiguous arrays (``np.ascontiguousarray``: the
    same memory, typed writable, when it is contiguous) and BLAS as strided ones
    (:func:`_strided`), so the heavy kernels are compiled once per dtype, not once per
    combination of the callers' layouts and read-only flags (a first run took about half
    the CPU time)."""
    serial = max_parts < 0
    parts = parts_for(out.shape[0], out.shape[1], a.shape[1], abs(max_parts))
    method = BLAS if max_parts == 1 else method_for(a, b, out, parts)
    if method == READ_TILES:
        _tiles(np.ascontiguousarray(a), np.ascontiguousarray(b.T), out, parts, serial, method)
    elif method == OUTER_TILES:
        _tiles(np.ascontiguousarray(a.T), np.ascontiguousarray(b), out, parts, serial, method)
    else:
        _blas(_strided(a), _strided(b), out, parts, serial)


@kernel
def reads_by_tiles(x, w, out, max_parts):
    """Whether :func:`dot_into` computes the read ``out = x @ w.T`` (``x``, ``w``
    C-contiguous) by read tiles (:data:`READ_TILES`)."""
    parts = parts_for(out.shape[0], out.shape[1], x.shape[1], abs(max_parts))
    return max_parts != 1 and method_for(x, w.T, out, parts) == READ_TILES


@kernel
def tiled_read(x, w):
    """``x @ w.T`` (``x`` at least :data:`TILE_ROWS` rows, ``w`` at least :data:`TILE_COLS`,
    both C-contiguous) by read tiles: every element bit-identical to the same element of
    any product :func:`dot_into` computes by read tiles (for reading a few rows of such a
    product again)."""
    out = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    _tiled_read(x, w, out, 0, x.shape[0], 0, w.shape[0])
    return out


@kernel
def dot(a, b, max_parts):
    """``a @ b`` as a new C-contiguous array (see :func:`dot_into`)."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    dot_into(a, b, out, max_parts)
    return out
