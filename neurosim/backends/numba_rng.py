"""Numba versions of the counter-based generator (:mod:`neurosim.rng`), and the kernel
decorator and typed-scalar helper shared by every Numba module.

Draw ``i`` of stream ``key`` is ``mix64(key + (i + 1) * GOLDEN)``; these kernels produce
exactly the numbers of :mod:`neurosim.rng` (integer arithmetic, and the same Box-Muller
formula), so kernels can draw by index and still equal the NumPy reference.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from neurosim import rng


def _kernel_cache_dir() -> str:
    """Where compiled kernels are cached: a folder named by a hash of every source file the
    kernels are compiled from.

    Numba invalidates a cached function only when *its own* file changes, not when a function
    it calls (compiled into it) changes in another module; a stale cache can then crash the
    process. Keying the folder by the sources of all kernel modules makes any change start a
    fresh cache. The base is ``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME`` (or
    ``~/.cache``) ``/neurosim/numba``.
    """
    package = Path(__file__).resolve().parent.parent
    sources = sorted(package.glob("backends/numba_*.py")) + [
        package / name for name in ("rng.py", "devices.py", "periphery.py")]
    digest = hashlib.sha1()
    for path in sources:
        digest.update(path.read_bytes())
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "neurosim", "numba")
    return os.path.join(base, digest.hexdigest()[:16])


# Must be set before the first ``cache=True`` decoration (this module is imported first by
# every Numba module of neurosim).
numba.config.CACHE_DIR = _kernel_cache_dir()
# NumPy's floating-point error model (inf/nan instead of ZeroDivisionError checks) lets
# LLVM vectorize element-wise loops; it changes no result. No fastmath (results match the
# reference backend operation for operation), except in the register tiles of
# :mod:`numba_gemm`'s reads, whose sums are reassociated into vector lanes.
kernel = functools.partial(njit, cache=True, error_model="numpy")


@kernel
def scalar_like(buffer, value):
    """``value`` in ``buffer``'s dtype (``x * 0`` or ``x + 1`` with a Python number would be
    float64, and would turn a float32 kernel's arithmetic into float64)."""
    return np.full(1, value, dtype=buffer.dtype)[0]


@kernel(inline="always")
def mix64(z):
    """SplitMix64's output function."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(rng.MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(rng.MUL2)
    return z ^ (z >> np.uint64(31))


@kernel(inline="always")
def uniform_at(key, i):
    """Draw ``i`` of stream ``key`` as a float64 uniform (:func:`neurosim.rng.uniform_at`)."""
    z = mix64(np.uint64(key) + np.uint64(i + 1) * np.uint64(rng.GOLDEN))
    return np.float64(z >> np.uint64(11)) * (2.0 ** -53)


@kernel(inline="always")
def normal_at(key, j):
    """Normal ``j`` of stream ``key``: Box-Muller on uniforms ``2j``, ``2j + 1``."""
    a = uniform_at(key, 2 * j)
    b = uniform_at(key, 2 * j + 1)
    return np.sqrt(-2.0 * np.log1p(-a)) * np.cos(rng.TWO_PI * b)


@kernel
def uniform_kernel(key, n):
    """Draws ``0..n-1`` of stream ``key`` as float64 uniforms (:func:`neurosim.rng.uniform`)."""
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = uniform_at(key, i)
    return out


@kernel
def normal_kernel(key, n):
    """Normals ``0..n-1`` of stream ``key`` (:func:`neurosim.rng.normal`)."""
    out = np.empty(n, dtype=np.float64)
    for j in range(n):
        out[j] = normal_at(key, j)
    return out


@kernel(parallel=True)
def threaded_draws(key, n, gaussian):
    """Normals (``gaussian``) or uniforms ``0..n-1`` of stream ``key``, the numbers of
    :func:`normal_kernel` or :func:`uniform_kernel`, split between Numba's threads: for
    draws made on their own (noise sets, probes: a set of 10,000 inputs of 784 pixels is
    7.8 M normals, about 0.3 s on one core). Each draw depends only on its index, so the
    numbers are the same for any thread count. Inside other kernels, whose loops may
    already run on the threads, use the serial kernels."""
    out = np.empty(n, dtype=np.float64)
    for i in prange(n):
        out[i] = normal_at(key, i) if gaussian else uniform_at(key, i)
    return out


@kernel(parallel=True)
def threaded_scaled_draws(key, gaussian, scale, shift, out):
    """``out[i] = z_i * scale + shift`` in float64 (no fused multiply-add), stored in
    ``out``'s dtype, for the draws ``z_i`` of :func:`threaded_draws` (one pass: no float64
    array of the draws, no second and third pass to scale and round them)."""
    for i in prange(out.size):
        z = normal_at(key, i) if gaussian else uniform_at(key, i)
        out[i] = z * scale + shift
