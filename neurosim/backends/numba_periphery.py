"""Numba kernels of the periphery read model (DAC, read noise, ADC).

:func:`read_kernel` computes exactly what :func:`neurosim.periphery.read` computes (see
that module for the model), operation for operation and in the same dtype: the results are
bit-identical when both use the same matrix product (:func:`matmul` here; NumPy's own BLAS
is a different OpenBLAS build whose float32 GEMM may round differently). The normals are
drawn in place from their index in the stream (no buffer of draws), with the same
Box-Muller formula as :mod:`neurosim.rng`.

Scalars reach the kernel already cast to the array dtype (:func:`kernel_scalars`), so that
float32 reads never promote to float64; levels ``0`` means an ideal converter.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neurosim.backends.numba_gemm import (MAX_PARTS, TILE_ROWS, dot, reads_by_tiles,
                                          tiled_read)
from neurosim.backends.numba_rng import kernel, normal_at, scalar_like
from neurosim.periphery import (
    REREAD_COUNTERS,
    PeripheryConfig,
    check_shapes,
    common_dtype,
    quantization_levels,
)


@kernel
def matmul(a, b):
    """``a @ b`` with the product the kernels use (:func:`numba_gemm.dot`, deterministic)."""
    return dot(a, b, MAX_PARTS)


@kernel(inline="always")
def _quantize(v, bound, levels):
    """:func:`neurosim.periphery.quantize` of one value (``levels > 0``)."""
    step = bound / levels
    clipped = min(max(v, -bound), bound)
    if step == 0:  # as the reference: a grid finer than the dtype
        return clipped
    k = np.rint(clipped / step)
    k = min(max(k, -levels), levels)  # as the reference: never one grid point past the end
    return bound * (k / levels)


@kernel
def read_kernel(w, x, dac_levels, dac_range, dac_managed, adc_levels, adc_range, adc_managed,
                adc_iterative, reduction_limit, w_noise, out_noise, tile_rows, tile_cols, key,
                transposed, max_parts, rereads):
    """One periphery read of ``w`` (``transposed``: of ``w.T``) with inputs ``x``, by the
    array's tiles of ``tile_rows x tile_cols`` cells (``0``: one tile).

    ``w`` (n_out, n_in) and ``x`` (batch, n_in) C-contiguous in one float dtype; float
    scalars in that dtype (``reduction_limit`` a float64); ``*_levels = 0`` for an ideal
    converter; ``key`` a uint64; ``max_parts`` as in :mod:`neurosim.backends.numba_gemm`;
    the re-reads of iterative bound management added to ``rereads`` (int64, over
    :data:`neurosim.periphery.REREAD_COUNTERS`).
    """
    # typed as writable C arrays, the same memory: the tiles' kernels are compiled once,
    # whatever the callers' read-only flags
    w, x = np.ascontiguousarray(w), np.ascontiguousarray(x)
    n_in = x.shape[1]
    n_out = w.shape[1] if transposed else w.shape[0]
    tile_in, tile_out = n_in, n_out
    if tile_rows > 0:
        tile_in, tile_out = (tile_cols, tile_rows) if transposed else (tile_rows, tile_cols)
    row_tiles = (n_in + tile_in - 1) // tile_in
    if row_tiles == 1:
        return _read_tile(w, x, dac_levels, dac_range, dac_managed, adc_levels, adc_range,
                          adc_managed, adc_iterative, reduction_limit, w_noise, out_noise,
                          tile_out, key, 0, 1, transposed, max_parts, rereads)
    y = np.empty((0, n_out), dtype=x.dtype)  # replaced by row tile 0's partial sums
    for r in range(row_tiles):
        # the tile's cells as a contiguous block, as the reference
        lo, hi = r * tile_in, min((r + 1) * tile_in, n_in)
        w_tile = np.ascontiguousarray(w[lo:hi] if transposed else w[:, lo:hi])
        part = _read_tile(w_tile, np.ascontiguousarray(x[:, lo:hi]), dac_levels, dac_range,
                          dac_managed, adc_levels, adc_range, adc_managed, adc_iterative,
                          reduction_limit, w_noise, out_noise, tile_out, key, r, row_tiles,
                          transposed, max_parts, rereads)
        if r == 0:
            y = part
        else:  # 7. partial sums merged digitally
            for b in range(y.shape[0]):
                for i in range(n_out):
                    y[b, i] = y[b, i] + part[b, i]
    return y


@kernel
def _read_tile(w, x, dac_levels, dac_range, dac_managed, adc_levels, adc_range, adc_managed,
               adc_iterative, reduction_limit, w_noise, out_noise, tile_out, key, r,
               row_tiles, transposed, max_parts, rereads):
    """Steps 1-6 of :mod:`neurosim.periphery`'s model for row tile ``r`` of ``row_tiles``,
    with iterative bound management's rounds: ``w`` its cells, ``x`` the inputs it
    receives, its column tiles ``tile_out`` outputs wide."""
    batch = x.shape[0]
    n_in = x.shape[1]
    n_out = w.shape[1] if transposed else w.shape[0]

    # 1. per-sample scaling of the DAC (noise management)
    scale = np.ones(batch, dtype=x.dtype)
    if dac_managed:
        x = x.copy()
        for b in range(batch):
            abs_max = scale[b] - scale[b]  # zero in the dtype
            for j in range(n_in):
                v = abs(x[b, j])
                if v > abs_max:
                    abs_max = v
            if abs_max > 0:
                scale[b] = abs_max / dac_range
            for j in range(n_in):
                x[b, j] = x[b, j] / scale[b]
    y = _read_round(w, x, scalar_like(x, 1), dac_levels, dac_range, adc_range, w_noise,
                    out_noise, key, 2 * r * batch * n_out, transposed, max_parts)

    # 5. ADC, one per column tile (with re-reads of what saturates)
    if adc_iterative:
        y = _manage_bounds(y, w, x, dac_levels, dac_range, adc_levels, adc_range,
                           reduction_limit, w_noise, out_noise, tile_out, key, r, row_tiles,
                           transposed, max_parts, rereads)
    elif adc_levels > 0:
        for b in range(batch):
            for lo in range(0, n_out, tile_out):
                hi = min(lo + tile_out, n_out)
                bound = adc_range
                if adc_managed:  # each sample's own range in each column tile
                    largest = adc_range - adc_range  # zero in the dtype
                    for i in range(lo, hi):
                        v = abs(y[b, i])
                        if v > largest:
                            largest = v
                    if largest > 0:
                        bound = largest
                for i in range(lo, hi):
                    y[b, i] = _quantize(y[b, i], bound, adc_levels)

    # 6. undo the DAC scaling
    if dac_managed:
        for b in range(batch):
            for i in range(n_out):
                y[b, i] = y[b, i] * scale[b]
    return y


@kernel
def _read_round(w, x, reduction, dac_levels, dac_range, adc_range, w_noise, out_noise, key,
                o, transposed, max_parts):
    """Steps 1-4 of one round: the DAC on ``x / reduction`` (``x`` after step 1's
    scaling), the array's partial sums, the read noise from draws ``o + ...``; before the
    ADC."""
    batch = x.shape[0]
    x_q = np.empty_like(x)
    for b in range(batch):
        _dac(x, b, reduction, dac_levels, dac_range, x_q, b)

    # 2. the ideal partial sums in the array
    y = dot(x_q, w, max_parts) if transposed else dot(x_q, w.T, max_parts)

    # 3-4. read noise (draws: :func:`_add_noise`), the samples split between threads unless
    # this read already runs on one of them (max_parts < 0)
    if w_noise > 0 or out_noise > 0:
        variance = np.empty((0, 0), dtype=y.dtype)
        if w_noise > 0:
            x2 = x_q * x_q
            w2 = w * w
            variance = dot(x2, w2, max_parts) if transposed else dot(x2, w2.T, max_parts)
        out_std = out_noise * adc_range
        if max_parts < 0:
            for b in range(batch):
                _add_noise(y, variance, w_noise, out_std, np.uint64(key), o, b)
        else:
            _add_noise_parallel(y, variance, w_noise, out_std, np.uint64(key), o)
    return y


@kernel(inline="always")
def _dac(x, b, reduction, dac_levels, dac_range, x_q, k):
    """Step 1's DAC of sample ``b`` of ``x`` (after the scaling) at ``reduction``, into row
    ``k`` of ``x_q``."""
    for j in range(x.shape[1]):
        x_q[k, j] = x[b, j] / reduction
    if dac_levels > 0:
        for j in range(x.shape[1]):
            x_q[k, j] = _quantize(x_q[k, j], dac_range, dac_levels)


@kernel
def _read_rows(w, x, rows, reduction, dac_levels, dac_range, adc_range, w_noise, out_noise,
               key, o, transposed, max_parts):
    """:func:`_read_round` of the samples ``rows`` only (the rows of the result not in
    ``rows`` are undefined), bit for bit those rows of the whole batch's round: where the
    batch's products are computed by read tiles (:func:`numba_gemm.method_for`), whose every
    element is the same instructions wherever it lies, the gathered samples (repeated up to
    a tile's 4 rows) are read by the same tiles; otherwise the whole batch is read."""
    batch = x.shape[0]
    n_in = x.shape[1]
    n_out = w.shape[1] if transposed else w.shape[0]
    y = np.empty((batch, n_out), dtype=x.dtype)
    if transposed or not reads_by_tiles(x, w, y, max_parts):
        return _read_round(w, x, reduction, dac_levels, dac_range, adc_range, w_noise,
                           out_noise, key, o, transposed, max_parts)
    n = rows.shape[0]
    m = max(n, TILE_ROWS)
    x_q = np.empty((m, n_in), dtype=x.dtype)
    for k in range(m):
        _dac(x, rows[min(k, n - 1)], reduction, dac_levels, dac_range, x_q, k)
    part = tiled_read(x_q, w)
    for k in range(n):
        y[rows[k]] = part[k]
    if w_noise > 0 or out_noise > 0:
        variance = np.empty((0, 0), dtype=y.dtype)
        if w_noise > 0:
            variance = np.empty_like(y)
            part = tiled_read(x_q * x_q, w * w)
            for k in range(n):
                variance[rows[k]] = part[k]
        for k in range(n):
            _add_noise(y, variance, w_noise, out_noise * adc_range, np.uint64(key), o, rows[k])
    return y


@kernel
def _saturated(y, b, lo, hi, adc_range):
    """Whether an output ``lo .. hi-1`` of sample ``b`` lies beyond the ADC's range."""
    for i in range(lo, hi):
        if abs(y[b, i]) > adc_range:
            return True
    return False


@kernel
def _manage_bounds(y, w, x, dac_levels, dac_range, adc_levels, adc_range, reduction_limit,
                   w_noise, out_noise, tile_out, key, r, row_tiles, transposed, max_parts,
                   rereads):
    """Step 5 with iterative bound management (:func:`neurosim.periphery._manage_bounds`):
    ``y`` round 0's outputs before the ADC, ``x`` the inputs after step 1's scaling."""
    batch = x.shape[0]
    n_in = x.shape[1]
    n_out = y.shape[1]
    col_tiles = (n_out + tile_out - 1) // tile_out
    pending = np.zeros((batch, col_tiles), dtype=np.bool_)
    any_pending = False
    kept = np.empty_like(y)
    for b in range(batch):
        for c in range(col_tiles):
            lo, hi = c * tile_out, min((c + 1) * tile_out, n_out)
            pending[b, c] = _saturated(y, b, lo, hi, adc_range)
            any_pending = any_pending or pending[b, c]
            for i in range(lo, hi):
                kept[b, i] = _quantize(y[b, i], adc_range, adc_levels)
    k = 0
    while any_pending and 2.0 ** k <= reduction_limit:
        k += 1
        reduction = scalar_like(x, 2.0 ** k)  # exact, in the dtype
        rows = np.empty(batch, dtype=np.int64)  # the samples a tile reads again
        n = 0
        for b in range(batch):
            if pending[b].any():
                rows[n] = b
                n += 1
        y = _read_rows(w, x, rows[:n], reduction, dac_levels, dac_range, adc_range, w_noise,
                       out_noise, key, 2 * (k * row_tiles + r) * batch * n_out, transposed,
                       max_parts)
        any_pending = False
        for b in range(batch):
            for c in range(col_tiles):
                if not pending[b, c]:
                    continue
                lo, hi = c * tile_out, min((c + 1) * tile_out, n_out)
                for i in range(lo, hi):  # converted, then scaled back by the reduction
                    kept[b, i] = _quantize(y[b, i], adc_range, adc_levels) * reduction
                rereads[0] += n_in * (hi - lo)  # the tile reads the sample again
                rereads[1] += n_in
                rereads[2] += hi - lo
                pending[b, c] = _saturated(y, b, lo, hi, adc_range)
                any_pending = any_pending or pending[b, c]
    return kept


@kernel
def _add_noise(y, variance, w_noise, out_std, key, o, b):
    """Steps 3-4 for sample ``b`` of a row tile's partial sums ``y`` (``batch x n_out``):
    ``y += w_noise sqrt(variance) xi`` (if ``w_noise > 0``), then ``y += out_std zeta`` (if
    ``out_std > 0``), ``xi[b, i]`` draw ``o + b n_out + i`` and ``zeta[b, i]`` draw
    ``o + batch n_out + b n_out + i`` of stream ``key``, each rounded to ``y``'s dtype."""
    batch, n_out = y.shape
    xi = np.empty(n_out, dtype=y.dtype)
    if w_noise > 0:
        for i in range(n_out):
            xi[i] = normal_at(key, o + b * n_out + i)
        for i in range(n_out):
            y[b, i] = y[b, i] + (w_noise * np.sqrt(variance[b, i])) * xi[i]
    if out_std > 0:
        for i in range(n_out):
            xi[i] = normal_at(key, o + batch * n_out + b * n_out + i)
        for i in range(n_out):
            y[b, i] = y[b, i] + out_std * xi[i]


@njit(parallel=True, cache=True, error_model="numpy")
def _add_noise_parallel(y, variance, w_noise, out_std, key, o):
    """:func:`_add_noise` of every sample, the samples split between Numba's threads (each
    element is computed alone: the same numbers for any thread count)."""
    for b in prange(y.shape[0]):
        _add_noise(y, variance, w_noise, out_std, key, o, b)


def kernel_scalars(config: PeripheryConfig, dtype, tiles: tuple[int, int] | None) -> tuple:
    """The config and the array's ``tiles`` (``(rows, cols)``, ``None``: one tile) as
    :func:`read_kernel`'s arguments between ``x`` and ``key``."""
    t = np.dtype(dtype).type

    def levels(bits):
        return t(0 if bits is None else quantization_levels(bits))

    rows, cols = (0, 0) if tiles is None else tiles
    return (levels(config.dac_bits), t(config.dac_range), config.dac_bound == "managed",
            levels(config.adc_bits), t(config.adc_range), config.adc_bound == "managed",
            config.iterative, np.float64(config.reduction_limit), t(config.w_noise),
            t(config.out_noise), np.int64(rows), np.int64(cols))


def _call(w, x, config: PeripheryConfig, key_noise: int, transposed: bool,
          tiles: tuple[int, int] | None, rereads: np.ndarray | None) -> np.ndarray:
    dtype = common_dtype(w, x)
    w = np.ascontiguousarray(w, dtype=dtype)
    x = np.ascontiguousarray(x, dtype=dtype)
    check_shapes(w, x, transposed)
    counts = np.zeros(len(REREAD_COUNTERS), dtype=np.int64)
    y = read_kernel(w, x, *kernel_scalars(config, dtype, tiles), np.uint64(key_noise),
                    transposed, MAX_PARTS, counts)
    if rereads is not None:
        rereads += counts
    return y


def read(w: np.ndarray, x: np.ndarray, config: PeripheryConfig, key_noise: int, *,
         tiles: tuple[int, int] | None = None,
         rereads: np.ndarray | None = None) -> np.ndarray:
    """:func:`neurosim.periphery.read` through :func:`read_kernel`."""
    return _call(w, x, config, key_noise, False, tiles, rereads)


def transposed_read(w: np.ndarray, d: np.ndarray, config: PeripheryConfig, key_noise: int, *,
                    tiles: tuple[int, int] | None = None,
                    rereads: np.ndarray | None = None) -> np.ndarray:
    """:func:`neurosim.periphery.transposed_read` through :func:`read_kernel`."""
    return _call(w, d, config, key_noise, True, tiles, rereads)
