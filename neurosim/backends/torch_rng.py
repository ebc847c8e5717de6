"""The counter-based generator of :mod:`neurosim.rng` in torch, on any device.

Draw ``i`` of stream ``key`` is ``mix64(key + (i + 1) GOLDEN)`` (SplitMix64's output
function). torch has no complete unsigned 64-bit arithmetic, so the words are held in
int64, two's complement: addition, multiplication and XOR are the same operations modulo
``2**64`` whatever the sign convention, and a logical right shift ``z >>> s`` is the
arithmetic shift ``z >> s`` with the ``s`` sign-extended top bits masked off
(``& (2**(64 - s) - 1)``). Constants and keys ``>= 2**63`` enter as their two's complement
(``v - 2**64``). The integer draws are therefore bit-identical to NumPy's on every device,
and so are the uniforms ``(z >>> 11) 2**-53`` (an exact conversion of a 53-bit integer and
an exact scaling).

Normals use :mod:`neurosim.rng`'s Box-Muller formula on uniforms ``2j`` and ``2j + 1``,
``z_j = sqrt(-2 log1p(-a)) cos(2 pi b)``, with the library functions of
:func:`neurosim.backends.torch_math.libm`: bit-identical to NumPy on the CPU; on CUDA within
a few ulp (libdevice's ``log1p`` and ``cos`` are not the C library's).
"""

from __future__ import annotations

import torch

from neurosim import rng
from neurosim.backends.torch_math import libm


def as_int64(value: int) -> int:
    """The unsigned 64-bit ``value`` as the int64 with the same bits (two's complement)."""
    value &= rng.MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN = as_int64(rng.GOLDEN)
MUL1 = as_int64(rng.MUL1)
MUL2 = as_int64(rng.MUL2)


def _shift_right(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 words holding uint64 bits."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 words (modulo ``2**64``)."""
    z = (z ^ _shift_right(z, 30)) * MUL1
    z = (z ^ _shift_right(z, 27)) * MUL2
    return z ^ _shift_right(z, 31)


def uniform_at(key: int | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Draws ``index`` (int64, any shape, on any device) of stream ``key`` as float64
    uniforms in [0, 1): :func:`neurosim.rng.uniform_at`, bit for bit. ``key`` may be a
    tensor of keys (int64 words holding the uint64 keys' bits) broadcast
    against ``index``: a stream per element (the chips of a population)."""
    offset = key if isinstance(key, torch.Tensor) else as_int64(key)
    z = mix64((index + 1) * GOLDEN + offset)
    return _shift_right(z, 11).to(torch.float64) * 2.0 ** -53


def normal_at(key: int | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Normals ``index`` (int64) of stream ``key``: :func:`neurosim.rng.normal_at`
    (Box-Muller on uniforms ``2 index`` and ``2 index + 1``)."""
    a = uniform_at(key, 2 * index)
    b = uniform_at(key, 2 * index + 1)
    return libm("sqrt", libm("log1p", -a) * -2.0) * libm("cos", b * rng.TWO_PI)


def uniform(key: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Draws ``0 .. n-1`` of stream ``key`` (:func:`neurosim.rng.uniform`) on ``device``."""
    return uniform_at(key, torch.arange(n, dtype=torch.int64, device=device))


def normal(key: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normals ``0 .. n-1`` of stream ``key`` (:func:`neurosim.rng.normal`) on ``device``."""
    return normal_at(key, torch.arange(n, dtype=torch.int64, device=device))
