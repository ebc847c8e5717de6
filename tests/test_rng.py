"""The counter-based generator: keyed, reproducible, identical across backends, sound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurosim import rng
from neurosim.backends.numba_cpu import NumbaBackend


def test_splitmix_reference_values():
    """The first outputs of SplitMix64 seeded with 0 (published reference values)."""
    assert list(rng.uint64_stream(0, 3)) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                             0x06C45D188009454F]


def test_draws_depend_only_on_key_and_index():
    key = rng.stream_key(7, 3, 1, rng.Purpose.NOISE_INPUTS)
    whole = rng.uint64_stream(key, 100)
    np.testing.assert_array_equal(rng.uint64_stream(key, 40, start=60), whole[60:])
    assert key == rng.stream_key(7, 3, 1, rng.Purpose.NOISE_INPUTS)


def test_stream_keys_of_many_chips_are_the_scalar_keys():
    seeds = np.array([0, 1, 7, 2**40 + 3, 2**62])
    steps = np.array([0, 5, 2**33, 12, 1])
    for purpose in (rng.Purpose.PULSE_ROUNDING, rng.Purpose.PULSE_NOISE):
        keys = rng.stream_keys(seeds, steps, 3, purpose)
        assert keys.dtype == np.uint64
        assert [int(k) for k in keys] == [rng.stream_key(int(a), int(b), 3, purpose)
                                          for a, b in zip(seeds, steps)]


@pytest.mark.parametrize("field", range(4))
def test_every_key_part_changes_the_stream(field):
    parts = [7, 3, 1, int(rng.Purpose.NOISE_INPUTS)]
    other = list(parts)
    other[field] += 1
    a = rng.uniform(rng.stream_key(*parts), 1000)
    b = rng.uniform(rng.stream_key(*other), 1000)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    assert not np.any(a == b)


def test_uniform_and_normal_distributions():
    u = rng.uniform(rng.stream_key(1, 0, 0, 1), 200_000)
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = rng.normal(rng.stream_key(1, 0, 0, 2), 200_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


def test_integers_and_permutation():
    k = rng.integers(rng.stream_key(2, 0, 0, 1), 100_000, 10)
    counts = np.bincount(k, minlength=10)
    assert k.min() == 0 and k.max() == 9
    assert stats.chisquare(counts).pvalue > 1e-3
    p = rng.permutation(rng.stream_key(2, 0, 0, 2), 1000)
    np.testing.assert_array_equal(np.sort(p), np.arange(1000))


def test_numba_draws_equal_numpy_draws():
    key = rng.stream_key(11, 5, 2, rng.Purpose.FEEDBACK)
    backend = NumbaBackend()
    np.testing.assert_array_equal(backend.uniform(key, 5000), rng.uniform(key, 5000))
    np.testing.assert_allclose(backend.normal(key, 5000), rng.normal(key, 5000),
                               rtol=1e-14, atol=1e-14)


def test_numba_threaded_draws_equal_the_serial_kernels_at_any_thread_count():
    """The backend's bulk draws (split between the threads) are the serial kernels' numbers,
    bit for bit, whatever the thread count; the uniforms are NumPy's exactly."""
    import numba

    from neurosim.backends.numba_rng import normal_kernel, uniform_kernel

    key = np.uint64(rng.stream_key(4, 2, 0, rng.Purpose.NOISE_SET_INPUTS))
    n = 100_003  # not a multiple of any thread count's chunk
    serial = uniform_kernel(key, n), normal_kernel(key, n)
    backend = NumbaBackend()
    threads = numba.get_num_threads()
    try:
        for count in sorted({1, threads}):
            numba.set_num_threads(count)
            np.testing.assert_array_equal(backend.uniform(int(key), n), serial[0])
            np.testing.assert_array_equal(backend.normal(int(key), n), serial[1])
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(serial[0], rng.uniform(int(key), n))


def test_numba_draws_by_index_equal_the_stream_at_any_offset():
    from neurosim.backends.numba_rng import normal_at, uniform_at

    key = rng.stream_key(3, 1, 0, rng.Purpose.PULSE_NOISE)
    z, u = rng.normal(key, 3000), rng.uniform(key, 3000)
    for j in (0, 1, 1500, 2999):
        assert normal_at(np.uint64(key), j) == z[j]
        assert uniform_at(np.uint64(key), j) == u[j]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gaussian", [True, False])
def test_scaled_draws_are_the_backends_draws_scaled_and_rounded(any_backend, gaussian, dtype):
    """Backend.scaled_draws (noise inputs) made in one pass on each backend equal its own
    draws scaled, shifted and rounded as the specification does it (in float64, product
    then sum), bit for bit."""
    from neurosim.backends.base import Backend

    backend = any_backend.backend(dtype)
    key = rng.stream_key(6, 3, 0, rng.Purpose.NOISE_SET_INPUTS)
    n = 10_007
    scale, shift = (0.3, 0.1) if gaussian else (2.0, -1.0)
    got = backend.scaled_draws(key, n, gaussian, scale, shift, np.dtype(dtype))
    expected = Backend.scaled_draws(backend, key, n, gaussian, scale, shift, np.dtype(dtype))
    assert got.dtype == np.dtype(dtype) and got.shape == (n,)
    np.testing.assert_array_equal(got, expected)
