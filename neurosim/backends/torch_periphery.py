"""The periphery read model (DAC, read noise, ADC) in torch, on any device.

:func:`read_tensor` computes what :func:`neurosim.periphery.read` computes (see that module
for the model, iterative bound management's rounds included), operation for operation, in
the operands' dtype, with the same noise draws (in row tile ``r`` of ``R`` and round ``k``,
with ``o = 2 (k R + r) batch n_out``, normal ``o + b n_out + i`` of the read's key for
``xi[b, i]``, ``o + batch n_out + b n_out + i`` for ``zeta[b, i]``, drawn by
:mod:`neurosim.backends.torch_rng`) and the same quantization (``torch.round`` rounds half
to even, like ``np.rint``). Given the same matrix product (:func:`matmul` here) the result
is bit-identical to the specification's on the CPU, and so are the re-reads counted; on
CUDA it agrees to a few ulp of the noise (see :mod:`neurosim.backends.torch_math`), which
a quantized ADC can turn into one ADC step on a value that lies within those ulp of a
rounding boundary (or, with iterative bound management, of the ADC's range: a tile then
saturates, and is read again, on one device and not on the other).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from neurosim.backends import torch_rng
from neurosim.backends.torch_math import divide, libm, product, scalar
from neurosim.periphery import (
    PeripheryConfig,
    check_shapes,
    common_dtype,
    quantization_levels,
    spans,
    tile_sizes,
)


def quantize(v: torch.Tensor, bits: int | None, bound: torch.Tensor) -> torch.Tensor:
    """:func:`neurosim.periphery.quantize` with the range ``bound`` as a 0-d tensor of
    ``v``'s dtype: ``k = clip(rint(clip(v, -bound, bound) / step), -levels, levels)``,
    ``step = bound / levels``, result ``bound (k / levels)``."""
    if bits is None:
        return v
    levels = scalar(quantization_levels(bits), v)
    clipped = torch.clamp(v, -bound, bound)
    step = bound / levels
    finer = step == 0  # as the reference: a grid finer than the dtype
    k = torch.clamp(torch.round(clipped / torch.where(finer, 1, step)), -levels, levels)
    return torch.where(finer, clipped, bound * (k / levels))


def read_tensor(w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig,
                key: int | torch.Tensor, transposed: bool = False,
                tiles: tuple[int, int] | None = None,
                rereads: np.ndarray | None = None) -> torch.Tensor:
    """One read of ``w`` (``transposed``: of ``w.T``) with inputs ``x`` (2-d, one float
    dtype, one device) through the periphery of an array cut into ``tiles`` (``(rows, cols)``
    of a tile; ``None``: one tile): the module docstring of :mod:`neurosim.periphery`,
    steps 1-7, with iterative bound management's rounds. Returns ``(batch, n_out)`` in array
    units.

    With a leading chip dimension (``w``: ``M x n_out x n_in``, ``x``: ``M x batch x n``,
    ``key``: the ``M`` chips' keys as int64 words, a tensor on ``x``'s device) every chip's
    read at once, each exactly its own read: its own noise stream, a managed ADC range per
    sample from its own outputs, and its own saturated tiles read again (rounds go on while
    any chip's tiles saturate; the rounds a chip's tiles no longer need change nothing of
    its read).

    ``rereads``: a host int64 array over :data:`neurosim.periphery.REREAD_COUNTERS` (``M x
    3`` with a leading chip dimension, a row per chip) to which the re-reads of iterative
    bound management are added (``None``: not counted). Each round after the first waits
    for the device once, to learn which tiles are still saturated."""
    n_in = x.shape[-1]
    n_out = w.shape[-1] if transposed else w.shape[-2]
    tile_in, tile_out = tile_sizes(n_in, n_out, tiles, transposed)
    row_tiles = spans(n_in, tile_in)
    out_tiles = spans(n_out, tile_out)
    size = 2 * x.shape[-2] * n_out  # the normals of one row tile's round

    def normals(r: int, k: int) -> torch.Tensor | None:
        """Row tile ``r``'s normals of round ``k``: draws ``o .. o + size - 1``, ``o = (k R
        + r) size``, of the read's stream (of each chip's: ``M x size``); ``None`` without
        noise."""
        if config.w_noise == 0 and config.out_noise == 0:
            return None
        return _normals(key, (k * len(row_tiles) + r) * size, size, x.device).to(x.dtype)

    y = None
    for r, (lo, hi) in enumerate(row_tiles):
        w_tile, x_tile = w, x
        if len(row_tiles) > 1:  # the tile's cells as a contiguous block, as the reference
            w_tile = (w[..., lo:hi, :] if transposed else w[..., lo:hi]).contiguous()
            x_tile = x[..., lo:hi].contiguous()
        part = _read_tile(w_tile, x_tile, config, transposed, out_tiles,
                          functools.partial(normals, r), rereads)
        y = part if y is None else y + part  # 7. partial sums merged digitally
    return y


def _read_tile(w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig, transposed: bool,
               out_tiles: list, normals, rereads: np.ndarray | None) -> torch.Tensor:
    """Steps 1-6 for one row tile, with iterative bound management's rounds
    (:func:`neurosim.periphery._read_tile`): ``w`` its cells, ``x`` the inputs it receives,
    ``out_tiles`` its column tiles' spans, ``normals(k)`` its normals of round ``k``
    (``None`` without noise)."""
    # 1. per-sample scaling of the DAC (noise management)
    managed_dac = config.dac_bound == "managed"
    if managed_dac:
        abs_max = torch.amax(torch.abs(x), dim=-1, keepdim=True)
        scale = torch.where(abs_max > 0, divide(abs_max, config.dac_range),
                            scalar(1.0, x))
        x = x / scale
    y = _read_round(w, x, config, transposed, normals(0))
    if config.iterative:  # 5. with re-reads of what saturates
        y = _manage_bounds(y, w, x, config, transposed, out_tiles, normals, rereads)
    elif config.adc_bits is not None:  # 5.
        y = _convert(y, config, out_tiles)

    # 6. undo the DAC scaling
    if managed_dac:
        y = y * scale
    return y


def _read_round(w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig, transposed: bool,
                z: torch.Tensor | None) -> torch.Tensor:
    """Steps 1-4 of one round of a row tile (:func:`neurosim.periphery._read_round`): the
    DAC (``x`` already scaled), the array's partial sums and the read noise, before the
    ADC; ``z`` the tile's normals of the round, ``xi`` then ``zeta``."""
    w_read = w if transposed else w.mT  # (tile inputs, n_out): y = x @ w_read

    # 1. the DAC
    x_q = quantize(x, config.dac_bits, scalar(config.dac_range, x))

    # 2. the ideal partial sums in the array
    y = product(x_q, w_read)

    # 3-4. read noise: xi[b, i] is normal b n_out + i of z, zeta[b, i] normal
    # batch n_out + b n_out + i
    if z is not None:
        n = y.shape[-2] * y.shape[-1]
        xi = z[..., :n].view(y.shape)
        zeta = z[..., n:].view(y.shape)
        if config.w_noise > 0:
            w2 = w * w
            variance = product(x_q * x_q, w2 if transposed else w2.mT)
            y = y + (scalar(config.w_noise, x) * libm("sqrt", variance)) * xi
        if config.out_noise > 0:
            y = y + (scalar(config.out_noise, x) * scalar(config.adc_range, x)) * zeta
    return y


def _convert(y: torch.Tensor, config: PeripheryConfig, out_tiles: list) -> torch.Tensor:
    """5. The ADC, one per column tile (:func:`quantize` with each range; a managed range:
    each sample's largest ``|y|`` of the tile, ``adc_range`` where that is 0)."""
    bound = scalar(config.adc_range, y)
    if config.adc_bound == "managed":  # each sample's own range in each column tile
        largest = _per_tile(torch.amax, torch.abs(y), out_tiles)
        bound = _per_output(torch.where(largest > 0, largest, bound), out_tiles)
    return quantize(y, config.adc_bits, bound)


def _manage_bounds(y: torch.Tensor, w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig,
                   transposed: bool, out_tiles: list, normals,
                   rereads: np.ndarray | None) -> torch.Tensor:
    """Step 5 with iterative bound management for one row tile
    (:func:`neurosim.periphery._manage_bounds`): ``y`` round 0's outputs before the ADC,
    ``x`` the inputs after step 1's scaling. Returns, per sample (of each chip) and column
    tile, the converted outputs of the first round that does not saturate (or of the last
    round), multiplied by that round's reduction; adds the re-reads to ``rereads``."""
    limit = scalar(config.adc_range, y)

    def saturated(v: torch.Tensor) -> torch.Tensor:  # (..., batch, column tiles)
        return _per_tile(torch.any, torch.abs(v) > limit, out_tiles)

    # what one sample's re-read costs in each column tile: cells, DAC and ADC conversions
    cost = np.array([[x.shape[-1] * (hi - lo), x.shape[-1], hi - lo] for lo, hi in out_tiles],
                    dtype=np.int64)
    pending = saturated(y)
    kept = _convert(y, config, out_tiles)
    for k in range(1, config.rounds):
        again = pending.sum(dim=-2).cpu().numpy()  # samples read again per column tile
        if not again.any():
            break
        if rereads is not None:
            rereads += again @ cost
        reduction = scalar(2 ** k, y)
        y = _read_round(w, x / reduction, config, transposed, normals(k))
        kept = torch.where(_per_output(pending, out_tiles),
                           _convert(y, config, out_tiles) * reduction, kept)
        pending &= saturated(y)
    return kept


def _per_tile(reduce, v: torch.Tensor, out_tiles: list) -> torch.Tensor:
    """``reduce(v[..., lo:hi], dim=-1)`` of each column tile ``[lo, hi)`` (``torch.amax``,
    ``torch.any``), stacked: ``(..., column tiles)``."""
    return torch.stack([reduce(v[..., lo:hi], dim=-1) for lo, hi in out_tiles], dim=-1)


def _per_output(values: torch.Tensor, out_tiles: list) -> torch.Tensor:
    """Each column tile's value (``values[..., c]``) for each of its outputs:
    ``(..., n_out)``; with one tile ``values`` itself (its last dimension of 1 broadcasts)."""
    if len(out_tiles) == 1:
        return values
    return torch.cat([values[..., c:c + 1].expand(*values.shape[:-1], hi - lo)
                      for c, (lo, hi) in enumerate(out_tiles)], dim=-1)


def _normals(key: int | torch.Tensor, start: int, n: int, device: torch.device) -> torch.Tensor:
    """Normals ``start .. start + n - 1`` of stream ``key``, or of each chip's stream
    (``key``: a tensor of ``M`` keys; ``M x n``)."""
    index = torch.arange(start, start + n, dtype=torch.int64, device=device)
    return torch_rng.normal_at(key[:, None] if isinstance(key, torch.Tensor) else key, index)


# ------------------------------------------------------------- NumPy in, NumPy out
def matmul(a: np.ndarray, b: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``a @ b`` with torch's product on ``device`` (the product :func:`read_tensor` uses),
    for the specification's ``matmul`` argument in tests."""
    return product(torch.as_tensor(a, device=device),
                   torch.as_tensor(b, device=device)).cpu().numpy()


def _call(w, x, config: PeripheryConfig, key_noise: int, transposed: bool,
          tiles: tuple[int, int] | None, device: str, rereads: np.ndarray | None) -> np.ndarray:
    dtype = common_dtype(w, x)
    w = torch.as_tensor(np.asarray(w, dtype=dtype), device=device)
    x = torch.as_tensor(np.asarray(x, dtype=dtype), device=device)
    check_shapes(w, x, transposed)
    return read_tensor(w, x, config, int(key_noise), transposed, tiles, rereads).cpu().numpy()


def read(w: np.ndarray, x: np.ndarray, config: PeripheryConfig, key_noise: int, *,
         tiles: tuple[int, int] | None = None, device: str = "cpu",
         rereads: np.ndarray | None = None) -> np.ndarray:
    """:func:`neurosim.periphery.read` through :func:`read_tensor` on ``device``."""
    return _call(w, x, config, key_noise, False, tiles, device, rereads)


def transposed_read(w: np.ndarray, d: np.ndarray, config: PeripheryConfig, key_noise: int, *,
                    tiles: tuple[int, int] | None = None, device: str = "cpu",
                    rereads: np.ndarray | None = None) -> np.ndarray:
    """:func:`neurosim.periphery.transposed_read` through :func:`read_tensor` on ``device``."""
    return _call(w, d, config, key_noise, True, tiles, device, rereads)
