"""The SIMD vector intrinsics of the Numba kernels (neurosim.backends.numba_simd)."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from neurosim.backends import numba_simd as simd


@njit
def _fma_lanes(a, b, c, out, start):
    """``out[start:start+lanes] = fma(a, b, c)`` lane by lane, through vectors."""
    simd.store(out, start, simd.fma(simd.load(a, start), simd.load(b, start),
                                    simd.load(c, start)))


@njit
def _splat_into(value, out, start):
    simd.store(out, start, simd.splat(value))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectors_hold_one_register_of_lanes(dtype):
    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    out = np.zeros(3 * lanes, dtype=dtype)
    _splat_into(dtype(2.5), out, lanes)  # a vector written from an offset
    np.testing.assert_array_equal(out[lanes:2 * lanes], 2.5)
    assert not out[:lanes].any() and not out[2 * lanes:].any()  # nothing else touched


@pytest.mark.parametrize("dtype, bits", [(np.float32, 12), (np.float64, 27)])
def test_fma_rounds_once(dtype, bits):
    """``(1 + u)^2 - (1 + 2u)`` with ``u = 2^-bits`` is ``u^2`` exactly when fused; rounding
    the product first (``u^2`` below half an ulp of 1) would give 0."""
    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    u = dtype(2.0) ** -bits
    a = np.full(lanes, 1 + u, dtype=dtype)
    c = np.full(lanes, -(1 + 2 * u), dtype=dtype)
    assert (a * a + c == 0).all()  # unfused
    out = np.zeros(lanes, dtype=dtype)
    _fma_lanes(a, a, c, out, 0)
    np.testing.assert_array_equal(out, u * u)


def test_fma_lanes_are_independent():
    generator = np.random.default_rng(0)
    a, b, c = (generator.standard_normal(16).astype(np.float64) for _ in range(3))
    out = np.zeros(16)
    _fma_lanes(a, b, c, out, 0)
    _fma_lanes(a, b, c, out, 4)  # overlapping second vector: lanes 4..7 written again
    exact = [float(np.float64(x) * np.float64(y) + np.float64(z)) for x, y, z in zip(a, b, c)]
    np.testing.assert_allclose(out[:8], exact[:8], rtol=1e-15)
    assert not out[8:].any()


def test_only_float_arrays_are_accepted():
    @njit
    def load_ints(x):
        return simd.load(x, 0)

    with pytest.raises(TypingError, match="1-d float array"):
        load_ints(np.arange(8))
