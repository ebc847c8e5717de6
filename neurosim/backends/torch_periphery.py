"""The periphery read model (DAC, read noise, ADC) in torch, on any device.

:func:`read_tensor` computes what :func:`neurosim.periphery.read` computes (see that module
for the model), operation for operation, in the operands' dtype, with the same noise draws
(normal ``b n_out + i`` of the read's key for ``xi[b, i]``, ``batch n_out + b n_out + i`` for
``zeta[b, i]``, drawn by :mod:`neurosim.backends.torch_rng`) and the same quantization
(``torch.round`` rounds half to even, like ``np.rint``). Given the same matrix product
(:func:`matmul` here) the result is bit-identical to the specification's on the CPU; on
CUDA it agrees to a few ulp of the noise (see :mod:`neurosim.backends.torch_math`), which
a quantized ADC can turn into one ADC step on a value that lies within those ulp of a
rounding boundary.
"""

from __future__ import annotations

import numpy as np
import torch

from neurosim.backends import torch_rng
from neurosim.backends.torch_math import divide, libm, scalar
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
    step = bound / levels
    k = torch.clamp(torch.round(torch.clamp(v, -bound, bound) / step), -levels, levels)
    return bound * (k / levels)


def read_tensor(w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig,
                key: int | torch.Tensor, transposed: bool = False,
                tiles: tuple[int, int] | None = None) -> torch.Tensor:
    """One read of ``w`` (``transposed``: of ``w.T``) with inputs ``x`` (2-d, one float
    dtype, one device) through the periphery of an array cut into ``tiles`` (``(rows, cols)``
    of a tile; ``None``: one tile): the module docstring of :mod:`neurosim.periphery`,
    steps 1-7. Returns ``(batch, n_out)`` in array units.

    With a leading chip dimension (``w``: ``M x n_out x n_in``, ``x``: ``M x batch x n``,
    ``key``: the ``M`` chips' keys as int64 words, a tensor on ``x``'s device) every chip's
    read at once, each exactly its own read: its own noise stream, and a managed ADC range
    per sample from its own outputs."""
    n_in = x.shape[-1]
    n_out = w.shape[-1] if transposed else w.shape[-2]
    tile_in, tile_out = tile_sizes(n_in, n_out, tiles, transposed)
    row_tiles = spans(n_in, tile_in)
    z = None
    if config.w_noise > 0 or config.out_noise > 0:
        z = _normals(key, 2 * len(row_tiles) * x.shape[-2] * n_out, x.device).to(x.dtype)
    y = None
    for r, (lo, hi) in enumerate(row_tiles):
        w_tile, x_tile = w, x
        if len(row_tiles) > 1:  # the tile's cells as a contiguous block, as the reference
            w_tile = (w[..., lo:hi, :] if transposed else w[..., lo:hi]).contiguous()
            x_tile = x[..., lo:hi].contiguous()
        part = _read_tile(w_tile, x_tile, config, transposed, spans(n_out, tile_out), z, r)
        y = part if y is None else y + part  # 7. partial sums merged digitally
    return y


def _read_tile(w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig, transposed: bool,
               out_tiles: list, z: torch.Tensor | None, r: int) -> torch.Tensor:
    """Steps 1-6 for row tile ``r`` (:func:`neurosim.periphery._read_tile`): ``w`` its
    cells, ``x`` the inputs it receives, ``out_tiles`` its column tiles' spans, ``z`` the
    read's normals (``None`` without noise)."""
    n_out = w.shape[-1] if transposed else w.shape[-2]
    batch = x.shape[-2]
    w_read = w if transposed else w.mT  # (tile inputs, n_out): y = x @ w_read

    # 1. DAC, with per-sample scaling (noise management)
    managed_dac = config.dac_bound == "managed"
    if managed_dac:
        abs_max = torch.amax(torch.abs(x), dim=-1, keepdim=True)
        scale = torch.where(abs_max > 0, divide(abs_max, config.dac_range),
                            scalar(1.0, x))
        x = x / scale
    x_q = quantize(x, config.dac_bits, scalar(config.dac_range, x))

    # 2. the ideal partial sums in the array
    y = x_q @ w_read

    # 3-4. read noise: draws o + [0, batch*n_out) for xi, o + [batch*n_out, 2*batch*n_out)
    # for zeta, o = 2 r batch n_out
    if z is not None:
        o = 2 * r * batch * n_out
        xi = z[..., o:o + batch * n_out].view(y.shape)
        zeta = z[..., o + batch * n_out:o + 2 * batch * n_out].view(y.shape)
        if config.w_noise > 0:
            w2 = w * w
            variance = (x_q * x_q) @ (w2 if transposed else w2.mT)
            y = y + (scalar(config.w_noise, x) * libm("sqrt", variance)) * xi
        if config.out_noise > 0:
            y = y + (scalar(config.out_noise, x) * scalar(config.adc_range, x)) * zeta

    # 5. ADC, one per column tile
    if config.adc_bits is not None:
        bound = scalar(config.adc_range, x)
        if config.adc_bound == "managed":  # each sample's own range in each column tile
            ranges = [_largest_or(y[..., lo:hi], bound) for lo, hi in out_tiles]
            bound = ranges[0] if len(ranges) == 1 else torch.cat(
                [r.expand(*r.shape[:-1], hi - lo) for r, (lo, hi) in zip(ranges, out_tiles)], -1)
        y = quantize(y, config.adc_bits, bound)

    # 6. undo the DAC scaling
    if managed_dac:
        y = y * scale
    return y


def _largest_or(y: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Each sample's ``max |y|`` over the last dimension, kept as a dimension of 1
    (``fallback`` where it is 0): the managed ADC range of a column tile."""
    largest = torch.amax(torch.abs(y), dim=-1, keepdim=True)
    return torch.where(largest > 0, largest, fallback)


def _normals(key: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """Normals ``0 .. n-1`` of stream ``key``, or of each chip's stream (``key``: a tensor
    of ``M`` keys; ``M x n``)."""
    if not isinstance(key, torch.Tensor):
        return torch_rng.normal(key, n, device)
    return torch_rng.normal_at(key[:, None], torch.arange(n, dtype=torch.int64, device=device))


# ------------------------------------------------------------- NumPy in, NumPy out
def matmul(a: np.ndarray, b: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``a @ b`` with torch's product on ``device`` (the product :func:`read_tensor` uses),
    for the specification's ``matmul`` argument in tests."""
    return (torch.as_tensor(a, device=device) @ torch.as_tensor(b, device=device)).cpu().numpy()


def _call(w, x, config: PeripheryConfig, key_noise: int, transposed: bool,
          tiles: tuple[int, int] | None, device: str) -> np.ndarray:
    dtype = common_dtype(w, x)
    w = torch.as_tensor(np.asarray(w, dtype=dtype), device=device)
    x = torch.as_tensor(np.asarray(x, dtype=dtype), device=device)
    check_shapes(w, x, transposed)
    return read_tensor(w, x, config, int(key_noise), transposed, tiles).cpu().numpy()


def read(w: np.ndarray, x: np.ndarray, config: PeripheryConfig, key_noise: int, *,
         tiles: tuple[int, int] | None = None, device: str = "cpu") -> np.ndarray:
    """:func:`neurosim.periphery.read` through :func:`read_tensor` on ``device``."""
    return _call(w, x, config, key_noise, False, tiles, device)


def transposed_read(w: np.ndarray, d: np.ndarray, config: PeripheryConfig, key_noise: int, *,
                    tiles: tuple[int, int] | None = None, device: str = "cpu") -> np.ndarray:
    """:func:`neurosim.periphery.transposed_read` through :func:`read_tensor` on ``device``."""
    return _call(w, d, config, key_noise, True, tiles, device)
