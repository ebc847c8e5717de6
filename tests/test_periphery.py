"""The periphery read model (neurosim.periphery): quantization, bound management, read
noise statistics, and the fast backends' reads (Numba, torch) against the NumPy
specification, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from neurosim import periphery as P
from neurosim import rng
from neurosim.backends import numba_periphery as N
from neurosim.errors import ConfigError
from neurosim.schema import build

DTYPES = [np.float32, np.float64]
KEY = rng.stream_key(5, 17, 1, 99)


def operands(batch, n_in, n_out, dtype=np.float64, seed=0, w_scale=0.3):
    g = np.random.default_rng(seed)
    w = (w_scale * g.standard_normal((n_out, n_in))).astype(dtype)
    x = g.standard_normal((batch, n_in)).astype(dtype)
    return w, x


# ------------------------------------------------------------------- configuration
def test_default_config_is_ideal_and_validated():
    config = build(P.PeripheryConfig, {}, "test")
    assert config == P.PeripheryConfig() and config.is_ideal
    assert not P.PeripheryConfig(w_noise=0.1).is_ideal
    assert not P.PeripheryConfig(dac_bound="managed").is_ideal
    ok = build(P.PeripheryConfig, {"dac_bits": 7, "adc_bits": None, "adc_bound": "managed"}, "t")
    assert ok.dac_bits == 7 and ok.adc_bits is None
    for bad in ({"dac_bits": 1}, {"adc_bits": 25}, {"dac_range": 0.0}, {"adc_range": -1.0},
                {"out_noise": -0.1}, {"w_noise": -1e-3}, {"dac_bound": "auto"},
                {"adc_bits": 7.5}):
        with pytest.raises(ConfigError):
            build(P.PeripheryConfig, bad, "test")


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_read_is_exactly_the_ideal_product(dtype, fast):
    w, x = operands(9, 40, 7, dtype)
    np.testing.assert_array_equal(P.read(w, x, P.PeripheryConfig(), KEY), x @ w.T)
    np.testing.assert_array_equal(P.transposed_read(w, x[:, :7], P.PeripheryConfig(), KEY),
                                  x[:, :7] @ w)
    reads = fast.periphery
    np.testing.assert_array_equal(reads.read(w, x, P.PeripheryConfig(), KEY),
                                  reads.matmul(x, w.T))
    assert P.read(w, x, P.PeripheryConfig(), KEY).dtype == dtype


def test_shape_and_dtype_errors(fast):
    w, x = operands(3, 5, 4)
    with pytest.raises(ValueError):
        P.read(w, x[:, :4], P.PeripheryConfig(), KEY)
    with pytest.raises(ValueError):
        fast.periphery.transposed_read(w, x, P.PeripheryConfig(), KEY)
    assert P.read(w.astype(np.float32), x, P.PeripheryConfig(), KEY).dtype == np.float64
    assert P.common_dtype(np.ones((2, 2), np.int64), np.ones((2, 2), np.float32)) == np.float64


# -------------------------------------------------------------------- quantization
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits,bound", [(2, 1.0), (3, 0.3), (5, 10.0), (8, 1.0), (9, 12.0)])
def test_quantize_grid_saturation_monotone(bits, bound, dtype):
    levels = 2 ** (bits - 1) - 1
    t = np.dtype(dtype).type
    g = np.random.default_rng(bits)
    v = np.sort(np.concatenate([np.linspace(-2 * bound, 2 * bound, 20001),
                                g.uniform(-1.5 * bound, 1.5 * bound, 5000),
                                [-bound, bound, 0.0]])).astype(dtype)
    q = P.quantize(v, bits, bound)
    assert q.dtype == dtype
    step = t(bound) / t(levels)
    k = np.rint(q / step)
    # on the grid: exactly bound * (k / levels), |k| <= levels, within an ulp of k * step
    assert np.all(np.abs(k) <= levels)
    np.testing.assert_array_equal(q, t(bound) * (k / t(levels)))
    assert np.all(np.abs(q - k * step) <= 2 * np.spacing(t(bound)))
    assert len(np.unique(q)) == 2 * levels + 1
    # saturation at exactly +-bound, never beyond
    assert np.all(q[v >= t(bound)] == t(bound)) and np.all(q[v <= -t(bound)] == -t(bound))
    assert np.all(np.abs(q) <= t(bound))
    # monotone non-decreasing, symmetric, error at most half a step inside the range
    assert np.all(np.diff(q) >= 0)
    np.testing.assert_array_equal(P.quantize(-v, bits, bound), -q)
    inside = np.abs(v) <= t(bound)
    assert np.all(np.abs(q - v)[inside] <= step / 2 + 2 * np.spacing(t(bound)))
    # the ideal converter is the identity
    assert P.quantize(v, None, bound) is v


def test_quantize_rounds_ties_to_even_without_double_rounding():
    # bits 8, bound 127: step is exactly 1, so the grid index is the rounded value itself
    v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999999999999994, 126.5, 200.0, -300.0])
    np.testing.assert_array_equal(P.quantize(v, 8, 127.0),
                                  [0.0, 2.0, 2.0, -0.0, -2.0, 0.0, 126.0, 127.0, -127.0])


@pytest.mark.parametrize("bits", [4, 8, 16, 24])
def test_fine_converters_converge_to_the_ideal_product(bits):
    w, x = operands(16, 50, 8, seed=1)
    ideal = x @ w.T
    dac_range = float(np.abs(x).max())  # no clipping: the error is rounding only
    adc_range = float(np.abs(ideal).max())
    config = P.PeripheryConfig(dac_bits=bits, dac_range=dac_range, adc_bits=bits,
                               adc_range=adc_range)
    y = P.read(w, x, config, KEY)
    levels = 2 ** (bits - 1) - 1
    bound = (dac_range / levels / 2 * np.abs(w).sum(axis=1) + adc_range / levels / 2
             + 1e-12 * adc_range)
    assert np.all(np.abs(y - ideal) <= bound)
    if bits == 24:
        assert np.abs(y - ideal).max() < 1e-5 * adc_range
    else:
        assert not np.array_equal(y, ideal)


def test_fixed_dac_clips_and_adc_saturates():
    w = np.array([[1.0, 1.0], [0.5, -0.5]])
    x = np.array([[3.0, 0.2]])
    y = P.read(w, x, P.PeripheryConfig(dac_bits=8, dac_range=1.0), KEY)
    np.testing.assert_allclose(y, [[1.0 + 0.2, 0.5 - 0.1]], atol=1 / 127)
    y = P.read(w, x, P.PeripheryConfig(adc_bits=8, adc_range=2.0), KEY)
    np.testing.assert_allclose(y, [[2.0, 0.5 * 3.0 - 0.1]], atol=2 / 127)
    assert y[0, 0] == 2.0


def test_managed_adc_uses_each_samples_maximum():
    w, x = operands(10, 30, 6, seed=2)
    ideal = x @ w.T
    config = P.PeripheryConfig(adc_bits=4, adc_bound="managed", adc_range=1e-3)
    y = P.read(w, x, config, KEY)
    largest = np.abs(ideal).max(axis=1, keepdims=True)
    assert len(np.unique(largest)) == len(x)  # the samples' ranges all differ
    k = np.rint(y / (largest / 7))
    np.testing.assert_array_equal(y, largest * (k / 7))  # each sample on its own grid
    np.testing.assert_array_equal(np.abs(y).max(axis=1, keepdims=True), largest)  # no clip
    assert np.all(np.abs(y - ideal) <= largest / 14 * (1 + 1e-12))
    # a sample's read does not depend on the rest of its batch (nor on a chunking)
    other = P.read(w, np.concatenate([x, 10 * x[:1]]), config, KEY)
    np.testing.assert_array_equal(other[:10], y)
    np.testing.assert_array_equal(np.concatenate([P.read(w, x[:4], config, KEY),
                                                  P.read(w, x[4:], config, KEY)]), y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_managed_adc_reads_outputs_too_small_for_its_grid_as_they_are(any_backend, dtype):
    """A managed ADC ranges a sample to its largest output; where that is so small that
    the grid step ``R / levels`` underflows to 0 (subnormal outputs: a confident network's
    errors in float32), the grid is finer than the dtype and every output is its own
    nearest grid point: finite, in range, zeros stay zero (not 0 / 0 = NaN)."""
    tiny = np.finfo(dtype).smallest_subnormal
    v = np.array([0.0, 3.0, -20.0, 20.0, -0.0], dtype=dtype) * tiny
    np.testing.assert_array_equal(P.quantize(v, 9, dtype(20 * tiny)), v)
    np.testing.assert_array_equal(P.quantize(v, 9, dtype(5 * tiny)),
                                  np.clip(v, -5 * tiny, 5 * tiny))
    w = np.array([[0.0], [1.0], [-1.0], [3.0]], dtype=dtype)  # outputs 0, t, -t, 3t
    x = np.array([[7 * tiny], [0.0]], dtype=dtype)
    config = P.PeripheryConfig(adc_bits=9, adc_bound="managed")
    y = any_backend.periphery.read(w, x, config, KEY, tiles=(1, 2))
    np.testing.assert_array_equal(y, x @ w.T)


# ----------------------------------------------------------------- bound management
@pytest.mark.parametrize("adc_bound", ["fixed", "managed"])
def test_managed_dac_is_scale_invariant(adc_bound):
    w, x = operands(12, 40, 9, seed=3)
    config = P.PeripheryConfig(dac_bits=5, dac_bound="managed", adc_bits=6, adc_range=5.0,
                               adc_bound=adc_bound)
    y = P.read(w, x, config, KEY)
    # a power of two scales exactly, so even the quantized read scales exactly
    np.testing.assert_array_equal(P.read(w, 4.0 * x, config, KEY), 4.0 * y)
    np.testing.assert_array_equal(P.read(w, x / 1024, config, KEY), y / 1024)
    # per sample: scaling one sample changes only that sample (fixed ADC range)
    if adc_bound == "fixed":
        c = np.ones((12, 1))
        c[3] = 8.0
        np.testing.assert_array_equal(P.read(w, c * x, config, KEY), c * y)
    # any c > 0 with ideal converters: equal up to rounding
    ideal_converters = P.PeripheryConfig(dac_bound="managed")
    np.testing.assert_allclose(P.read(w, 3.7 * x, ideal_converters, KEY),
                               3.7 * P.read(w, x, ideal_converters, KEY), rtol=1e-12)
    np.testing.assert_allclose(P.read(w, x, ideal_converters, KEY), x @ w.T, rtol=1e-12)
    # a fixed DAC is not scale invariant (it clips and has a fixed step)
    fixed = dataclasses.replace(config, dac_bound="fixed")
    assert not np.allclose(P.read(w, 4.0 * x, fixed, KEY), 4.0 * P.read(w, x, fixed, KEY))


def test_managed_dac_leaves_zero_samples_alone():
    w, x = operands(4, 10, 3, seed=4)
    x[2] = 0.0
    config = P.PeripheryConfig(dac_bits=4, dac_bound="managed", out_noise=0.01)
    y = P.read(w, x, config, KEY)
    assert np.all(np.isfinite(y))
    zeta = rng.normal(KEY, 2 * 4 * 3)[12:].reshape(4, 3)
    np.testing.assert_allclose(y[2], 0.01 * 10.0 * zeta[2], rtol=1e-12)  # scale 1


# -------------------------------------------------------------------------- noise
def repeated(x_row, n):
    return np.repeat(x_row[None, :], n, axis=0)


def variance_ratio_bounds(n, alpha=1e-6):
    """Where (n-1) s^2 / sigma^2 ~ chi2(n-1) puts s^2 / sigma^2 with probability 1 - alpha."""
    return (stats.chi2.ppf(alpha / 2, n - 1) / (n - 1),
            stats.chi2.ppf(1 - alpha / 2, n - 1) / (n - 1))


def test_weight_noise_std_matches_the_formula():
    n = 20000  # reads of one fixed x: a batch of n copies gets independent noise per row
    w, x = operands(1, 30, 6, seed=5)
    w[0, :] = 0.0  # an output with no signal has no weight noise
    w_noise = 0.1
    y = P.read(w, repeated(x[0], n), P.PeripheryConfig(w_noise=w_noise), KEY)
    noise = y - x @ w.T
    sigma = w_noise * np.sqrt((w * w) @ (x[0] * x[0]))
    assert np.all(noise[:, 0] == 0.0)
    lo, hi = variance_ratio_bounds(n)
    ratio = noise[:, 1:].var(axis=0, ddof=1) / sigma[1:] ** 2
    assert np.all((lo < ratio) & (ratio < hi)), (ratio, lo, hi)
    assert np.all(np.abs(noise[:, 1:].mean(axis=0)) < 5.5 * sigma[1:] / np.sqrt(n))
    corr = np.corrcoef(noise[:, 1:].T)[np.triu_indices(5, 1)]
    assert np.all(np.abs(corr) < 5.5 / np.sqrt(n))  # independent across outputs


def test_weight_noise_matches_the_per_cell_model_in_distribution():
    """One normal per output == sum_j (w_ij + w_noise |w_ij| xi_ij) x_j with xi per cell."""
    n, w_noise = 4000, 0.3
    w, x = operands(1, 8, 3, seed=6)
    y = P.read(w, repeated(x[0], n), P.PeripheryConfig(w_noise=w_noise), KEY)
    xi = np.random.default_rng(7).standard_normal((n, 3, 8))
    per_cell = np.einsum("nij,j->ni", w + w_noise * np.abs(w) * xi, x[0])
    for i in range(3):
        assert stats.ks_2samp(y[:, i], per_cell[:, i]).pvalue > 1e-4
    # and a wrong model (noise proportional to w rather than |w| x) is told apart
    wrong = x[0] @ w.T + w_noise * np.abs(x[0] @ w.T) * xi[:, :, 0]
    assert min(stats.ks_2samp(y[:, i], wrong[:, i]).pvalue for i in range(3)) < 1e-4


@pytest.mark.parametrize("adc_range", [1.0, 10.0])
def test_output_noise_std_is_relative_to_the_adc_range(adc_range):
    n = 20000
    w, x = operands(1, 20, 4, seed=8)
    out_noise = 0.06
    y = P.read(w, repeated(x[0], n), P.PeripheryConfig(out_noise=out_noise,
                                                       adc_range=adc_range), KEY)
    noise = y - x @ w.T
    sigma = out_noise * adc_range
    lo, hi = variance_ratio_bounds(n)
    ratio = noise.var(axis=0, ddof=1) / sigma ** 2
    assert np.all((lo < ratio) & (ratio < hi)), (ratio, lo, hi)
    assert np.all(np.abs(noise.mean(axis=0)) < 5.5 * sigma / np.sqrt(n))


def test_noise_draws_are_the_documented_stream_indices():
    batch, n_out = 5, 4
    w, x = operands(batch, 6, n_out, seed=9)
    z = rng.normal(KEY, 2 * batch * n_out).reshape(2, batch, n_out)
    ideal = x @ w.T
    y = P.read(w, x, P.PeripheryConfig(w_noise=0.2), KEY)
    np.testing.assert_allclose((y - ideal) / (0.2 * np.sqrt((x * x) @ (w * w).T)), z[0],
                               rtol=1e-9, atol=1e-9)
    y = P.read(w, x, P.PeripheryConfig(out_noise=0.1, adc_range=2.0), KEY)
    np.testing.assert_allclose((y - ideal) / 0.2, z[1], rtol=1e-9, atol=1e-9)


def test_noise_is_redrawn_per_key_and_reproduced_by_the_same_key(any_backend):
    impl = any_backend.periphery.read
    w, x = operands(8, 20, 5, seed=10)
    config = P.PeripheryConfig(w_noise=0.05, out_noise=0.01)
    a, b = impl(w, x, config, KEY), impl(w, x, config, KEY)
    c = impl(w, x, config, rng.stream_key(5, 18, 1, 99))
    np.testing.assert_array_equal(a, b)
    assert not np.any(a == c)


# ------------------------------------------------------------- fast == numpy
CONFIGS = [
    P.PeripheryConfig(),
    P.PeripheryConfig(dac_bits=7, adc_bits=9, adc_range=4.0),
    P.PeripheryConfig(dac_bits=7, adc_bits=9, adc_range=4.0, out_noise=0.02, w_noise=0.05),
    P.PeripheryConfig(dac_bits=3, dac_range=0.7, dac_bound="managed", adc_bits=5,
                      adc_bound="managed", out_noise=0.01, w_noise=0.1, adc_range=3.0),
    P.PeripheryConfig(dac_bound="managed", out_noise=0.05),
    P.PeripheryConfig(w_noise=0.2),
    P.PeripheryConfig(dac_bits=2, adc_bits=2, adc_range=0.5, out_noise=0.3),
    P.PeripheryConfig(dac_bits=7, dac_bound="managed", adc_bits=9, adc_range=1.0,
                      adc_bound="iterative", out_noise=0.01, w_noise=0.05),
    P.PeripheryConfig(dac_bits=5, adc_bits=5, adc_range=0.5, adc_bound="iterative",
                      bm_max_factor=4),  # rho <= 3.75 (15 DAC levels): 3 reads
    P.PeripheryConfig(adc_bits=6, adc_range=2.0, adc_bound="iterative", out_noise=0.02),
]
SHAPES = [(1, 30, 7), (17, 33, 10), (64, 200, 50)]
TILINGS = [None, (16, 8), (64, 256)]  # one tile; row and column tiles; row tiles only


@pytest.mark.parametrize("tiles", TILINGS, ids=str)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_fast_read_equals_numpy_read_exactly(fast, config, dtype, transposed, tiles):
    """Bit for bit, given the same matrix product, whether the array is one tile or many.
    On CUDA the noise's normals are within a few ulp of NumPy's
    (conftest.BackendUnderTest.exact_libm), and a quantized ADC can turn that into one step
    on a value at a rounding boundary: there, nearly every value equal."""
    reads = fast.periphery
    for batch, n_in, n_out in SHAPES:
        w, x = operands(batch, n_in, n_out, dtype, seed=batch)
        if transposed:
            x = x[:, :n_out] * 2
            got = reads.transposed_read(w, x, config, KEY, tiles=tiles)
            ref = P.transposed_read(w, x, config, KEY, tiles=tiles, matmul=reads.matmul)
        else:
            got = reads.read(w, x, config, KEY, tiles=tiles)
            ref = P.read(w, x, config, KEY, tiles=tiles, matmul=reads.matmul)
        assert got.dtype == ref.dtype == dtype
        if fast.exact_libm or (config.w_noise == 0 and config.out_noise == 0):
            np.testing.assert_array_equal(got, ref)
        else:
            rtol = 1e-12 if dtype == np.float64 else 1e-6
            assert np.isclose(got, ref, rtol=rtol, atol=rtol).mean() > 0.99


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_fast_read_agrees_with_numpy_blas_to_rounding(fast, dtype, rtol):
    """With NumPy's own matmul (another BLAS) unquantized reads agree to rounding."""
    w, x = operands(64, 300, 40, dtype, seed=11)
    for config in (CONFIGS[0], CONFIGS[4], CONFIGS[5]):
        ref = P.read(w, x, config, KEY)
        np.testing.assert_allclose(fast.periphery.read(w, x, config, KEY), ref, rtol=rtol,
                                   atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("tiles", [None, (7, 5)], ids=str)
def test_transposed_read_is_a_read_of_the_transpose(tiles):
    """Read from the columns, a tile of ``rows x cols`` cells is a ``cols x rows`` tile of
    the transposed array."""
    w, x = operands(10, 25, 12, seed=12)
    d = x[:, :12]
    config = CONFIGS[3]
    swapped = None if tiles is None else tiles[::-1]
    np.testing.assert_allclose(P.transposed_read(w, d, config, KEY, tiles=tiles),
                               P.read(np.ascontiguousarray(w.T), d, config, KEY, tiles=swapped),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- tiles
def test_an_array_within_one_tile_reads_as_untiled():
    w, x = operands(9, 30, 7, seed=13)
    for config in CONFIGS:
        np.testing.assert_array_equal(P.read(w, x, config, KEY, tiles=(30, 7)),
                                      P.read(w, x, config, KEY))


def test_tiling_leaves_a_noiseless_unquantized_read_the_product():
    """Partial sums add up to the column sum: with ideal converters and no noise, tiling
    (and a managed DAC, undone per tile) changes nothing but rounding."""
    w, x = operands(12, 70, 20, seed=14)
    config = P.PeripheryConfig(dac_bound="managed")
    np.testing.assert_allclose(P.read(w, x, config, KEY, tiles=(16, 6)), x @ w.T,
                               rtol=1e-12, atol=1e-12)


def test_a_fixed_adc_quantizes_each_row_tiles_partial_sum():
    """Each row tile's converter clips and rounds its own partial sum; the digital sum of
    the R results carries up to R half-steps of error, and a partial sum beyond the range
    saturates even when the whole column sum would fit."""
    w, x = operands(16, 40, 5, seed=15)
    config = P.PeripheryConfig(adc_bits=5, adc_range=1.5)
    y = P.read(w, x, config, KEY, tiles=(10, 5))
    partial = [x[:, lo:lo + 10] @ w[:, lo:lo + 10].T for lo in range(0, 40, 10)]
    np.testing.assert_allclose(y, sum(P.quantize(p, 5, 1.5) for p in partial),
                               rtol=1e-12, atol=1e-12)
    half_step = 1.5 / 15 / 2
    inside = np.all([np.abs(p) <= 1.5 for p in partial], axis=0)
    assert np.all(np.abs(y - x @ w.T)[inside] <= 4 * half_step * (1 + 1e-9))
    # one column, 4 cells: the total 0.5 fits the range 1, the first tile's 2 saturates
    w = np.array([[1.0, 1.0, 1.0, -2.5]])
    x = np.ones((1, 4))
    config = P.PeripheryConfig(adc_bits=8, adc_range=1.0)
    assert P.read(w, x, config, KEY)[0, 0] == pytest.approx(0.5, abs=1 / 254)
    assert P.read(w, x, config, KEY, tiles=(2, 1))[0, 0] == pytest.approx(1.0 - 1.0)


def test_a_managed_adc_ranges_each_column_tile_on_its_own_outputs():
    """Outputs of another column tile do not set a tile's range: small outputs beside
    large ones keep their resolution."""
    w, x = operands(6, 20, 8, seed=16)
    w[4:] *= 1e-3
    config = P.PeripheryConfig(adc_bits=4, adc_bound="managed")
    ideal = x @ w.T
    alone = P.read(w, x, config, KEY, tiles=(20, 4))
    shared = P.read(w, x, config, KEY)
    small = np.abs(ideal[:, 4:]).max(axis=1, keepdims=True)
    assert np.all(np.abs(alone[:, 4:] - ideal[:, 4:]) <= small / 14 * (1 + 1e-12))
    np.testing.assert_array_equal(alone[:, :4], shared[:, :4])  # same tile, same grid
    assert np.all(shared[:, 4:] == 0.0)  # rounded away on the large outputs' grid


@pytest.mark.parametrize("transposed", [False, True])
def test_output_noise_adds_up_over_row_tiles(transposed):
    """Every row tile's converter adds its own output noise: R tiles give R times the
    variance, independent draws (DESIGN §1: tiling decides the conversions)."""
    n, out_noise, adc_range = 20000, 0.05, 2.0
    w, x = operands(1, 30, 4, seed=17)
    if transposed:  # the 30 inputs drive the columns of a 30 x 4 array
        w = np.ascontiguousarray(w.T)
    config = P.PeripheryConfig(out_noise=out_noise, adc_range=adc_range)
    tiles = (4, 8) if transposed else (8, 4)  # 4 tiles of the read's inputs either way
    read = P.transposed_read if transposed else P.read
    y = read(w, repeated(x[0], n), config, KEY, tiles=tiles)
    noise = y - (x[0] @ w if transposed else x[0] @ w.T)
    lo, hi = variance_ratio_bounds(n)
    ratio = noise.var(axis=0, ddof=1) / (4 * (out_noise * adc_range) ** 2)
    assert np.all((lo < ratio) & (ratio < hi)), (ratio, lo, hi)


# ----------------------------------------------------------------------- properties
@settings(max_examples=150, deadline=None)
@given(v=hnp.arrays(np.float64, st.integers(1, 40),
                    elements=st.floats(-1e6, 1e6, allow_nan=False)),
       bits=st.integers(2, 24), bound=st.floats(1e-6, 1e6), single=st.booleans())
def test_quantized_values_never_exceed_the_range(v, bits, bound, single):
    if single:
        v, bound = v.astype(np.float32), float(np.float32(bound))
    q = P.quantize(v, bits, bound)
    assert np.all(np.abs(q) <= q.dtype.type(bound))
    assert np.all(np.diff(q[np.argsort(v, kind="stable")]) >= 0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(2, 12),
       adc_range=st.floats(1e-3, 100.0), out_noise=st.floats(0.0, 2.0),
       w_noise=st.floats(0.0, 2.0), managed_dac=st.booleans(),
       dtype=st.sampled_from(DTYPES))
def test_quantized_adc_outputs_never_exceed_the_range(seed, bits, adc_range, out_noise,
                                                      w_noise, managed_dac, dtype):
    w, x = operands(6, 9, 5, dtype, seed=seed % 1000, w_scale=3.0)
    config = P.PeripheryConfig(dac_bits=6, adc_bits=bits, adc_range=adc_range,
                               out_noise=out_noise, w_noise=w_noise,
                               dac_bound="managed" if managed_dac else "fixed")
    y = P.read(w, x, config, seed)
    scale = np.abs(x).max(axis=1, keepdims=True) if managed_dac else 1.0
    assert np.all(np.abs(y) <= dtype(adc_range) * scale)
    np.testing.assert_array_equal(N.read(w, x, config, seed),
                                  P.read(w, x, config, seed, matmul=N.matmul))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("tiles", [None, (16, 8)], ids=str)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_torch_reads_of_a_population_are_each_chips_own_read(config, transposed, tiles,
                                                             device):
    """torch reads with a leading chip dimension (a population's training step): chip ``c``
    gets exactly its own read, its own noise stream (key ``keys[c]``) and a managed ADC
    range from its own outputs (per tile with ``tiles``), bit for bit. The chips' weights
    differ in scale, so one shared range would show."""
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from neurosim.backends.torch_periphery import read_tensor

    keys = [rng.stream_key(seed, 3, 0, 99) for seed in range(4)]
    chips = [operands(16, 40, 12, np.float32, seed=c, w_scale=0.1 * (c + 1)) for c in range(4)]
    if transposed:
        chips = [(w, 2 * x[:, :12]) for w, x in chips]
    w_all, x_all = (torch.as_tensor(np.stack(part), device=device) for part in zip(*chips))
    key_words = torch.as_tensor(np.array(keys, dtype=np.uint64).view(np.int64), device=device)
    together = read_tensor(w_all, x_all, config, key_words, transposed, tiles).cpu().numpy()
    for c, ((w, x), key) in enumerate(zip(chips, keys)):
        alone = read_tensor(torch.as_tensor(w, device=device), torch.as_tensor(x, device=device),
                            config, key, transposed, tiles).cpu().numpy()
        np.testing.assert_array_equal(together[c], alone, err_msg=f"chip {c}")


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("tiles", [(256, 256), (16, 8), (7, 40)], ids=str)
def test_the_ledger_charges_the_conversions_the_read_makes(monkeypatch, tiles, transposed):
    """Every value the ADC model rounds is one conversion the ledger charges
    (ledger.array_read_counts), and the ledger's partial-sum additions are the merges the
    read makes: the energy and the simulated read describe the same tiles."""
    from neurosim.ledger import COUNTER_INDEX, array_read_counts

    batch, n_in, n_out = 5, 33, 20  # forward geometry of the array
    w, x = operands(batch, n_in, n_out, seed=18)
    if transposed:
        x = x[:, :n_out]
    adc_bits, dac_bits = 6, 7
    config = P.PeripheryConfig(dac_bits=dac_bits, adc_bits=adc_bits, adc_bound="managed")
    rounded = {"adc": 0, "reads": 0}
    quantize = P.quantize

    def counting(v, bits, bound):
        if bits == adc_bits:
            rounded["adc"] += v.size
            rounded["reads"] += 1
        return quantize(v, bits, bound)

    monkeypatch.setattr(P, "quantize", counting)
    read = P.transposed_read if transposed else P.read
    y = read(w, x, config, KEY, tiles=tiles)
    counts = array_read_counts(batch, n_in, n_out, *tiles, 8, transposed=transposed)
    assert rounded["adc"] == counts[COUNTER_INDEX["adc_conversions"]]
    merges = (rounded["reads"] - 1) * y.size  # every row tile after the first adds once
    assert merges == counts[COUNTER_INDEX["partial_sum_adds"]]


# ------------------------------------------------- iterative bound management
def test_iterative_bound_management_is_validated():
    assert P.PeripheryConfig(dac_bits=7, adc_bits=9, adc_bound="iterative").rounds == 5
    assert P.PeripheryConfig(dac_bits=7, adc_bits=9, adc_bound="iterative").reduction_limit \
        == 0.25 * 63  # aihwkit's max_bm_res / inp_res: at most 5 reads, the last at 16
    assert P.PeripheryConfig(adc_bits=9, adc_bound="iterative").rounds == 11  # 1000: 1024
    assert P.PeripheryConfig(adc_bits=9, adc_bound="iterative", bm_max_factor=4).rounds == 4
    assert P.PeripheryConfig(adc_bits=9).rounds == 1
    for bad, field in (({"adc_bound": "iterative"}, "adc_bound"),
                       ({"adc_bits": 8, "bm_max_factor": 10}, "bm_max_factor"),
                       ({"adc_bits": 8, "adc_bound": "managed", "bm_max_resolution": 0.5},
                        "bm_max_resolution"),
                       ({"adc_bits": 8, "adc_bound": "iterative", "bm_max_factor": 0},
                        "bm_max_factor")):
        with pytest.raises(ConfigError, match=field):
            build(P.PeripheryConfig, bad, "test")


def test_a_range_that_would_have_no_effect_is_refused():
    """A range set where nothing uses it (a user expecting it to act) is an error naming it;
    where something does, it is taken."""
    for bad, field in (({"dac_range": 2.0}, "dac_range"),
                       ({"adc_range": 5.0}, "adc_range"),
                       ({"adc_bits": 8, "adc_bound": "managed", "adc_range": 5.0}, "adc_range")):
        with pytest.raises(ConfigError, match=f"{field} = .*has no effect"):
            build(P.PeripheryConfig, bad, "test")
    for used in ({"dac_bits": 7, "dac_range": 2.0}, {"dac_bound": "managed", "dac_range": 2.0},
                 {"adc_bits": 8, "adc_range": 5.0}, {"out_noise": 0.01, "adc_range": 5.0},
                 {"adc_bits": 8, "adc_bound": "iterative", "adc_range": 5.0}):
        assert build(P.PeripheryConfig, used, "test") == P.PeripheryConfig(**used)


@pytest.mark.parametrize("tiles", [None, (16, 8)], ids=str)
def test_iterative_reads_that_never_saturate_are_the_fixed_reads(tiles):
    """Round 0 is the fixed-range read, draw for draw: with a range nothing reaches,
    nothing is read again and the results are identical."""
    w, x = operands(17, 33, 10, seed=4)
    fixed = P.PeripheryConfig(dac_bits=7, adc_bits=9, adc_range=100.0, out_noise=0.001,
                              w_noise=0.05)
    iterative = dataclasses.replace(fixed, adc_bound="iterative")
    counts = np.zeros(3, dtype=np.int64)
    np.testing.assert_array_equal(P.read(w, x, iterative, KEY, tiles=tiles, rereads=counts),
                                  P.read(w, x, fixed, KEY, tiles=tiles))
    assert not counts.any()


@pytest.mark.parametrize("bm_max_factor", [1000, 4])
def test_a_saturated_sample_is_read_again_halved_until_it_fits(bm_max_factor):
    """Noiseless, ideal DAC, one tile: sample b is read at the smallest reduction
    ``rho = 2^k`` that brings its largest output within the range (capped by the limit:
    the last round allowed is kept, clipped), converted, and multiplied back by rho; every
    round after the first costs the tile's cells and conversions again."""
    w, x = operands(40, 30, 7, seed=6)
    x[::3] *= 20  # some samples far beyond the range, some within it
    bits, adc_range = 8, 2.0
    config = P.PeripheryConfig(adc_bits=bits, adc_range=adc_range, adc_bound="iterative",
                               bm_max_factor=bm_max_factor)
    counts = np.zeros(3, dtype=np.int64)
    y = P.read(w, x, config, KEY, rereads=counts)
    exact = x @ w.T
    largest = np.abs(exact).max(axis=1)
    k = np.maximum(np.ceil(np.log2(largest / adc_range)), 0).astype(int)
    k = np.minimum(k, config.rounds - 1)
    rho = (2.0 ** k)[:, None]
    # (x / rho) @ w.T is exact @ / rho bit for bit: rho is a power of two
    np.testing.assert_array_equal(y, P.quantize(exact / rho, bits, adc_range) * rho)
    assert k.max() > 0 and (k == 0).any()
    if bm_max_factor == 4:
        assert (k == config.rounds - 1).any()  # some samples stay clipped at rho = 8
        assert np.abs(y).max() == adc_range * 8
    else:
        assert np.abs(y - exact).max() <= (rho * adc_range / (2 ** (bits - 1) - 1)).max()
    n_in, n_out = 30, 7
    np.testing.assert_array_equal(counts, k.sum() * np.array([n_in * n_out, n_in, n_out]))


def test_iterative_bound_management_reads_each_tile_on_its_own():
    """Per sample, each column tile re-reads only while its own outputs saturate, and each
    row tile's partial sums are managed apart: the counts are those tiles' cells."""
    w, x = operands(12, 40, 20, seed=8)
    w[:10] *= 10  # outputs 0-9 (column tile 0) saturate, 10-19 rarely do
    config = P.PeripheryConfig(adc_bits=8, adc_range=3.0, adc_bound="iterative")
    tiles = (16, 10)  # row tiles of 16, 16, 8 inputs; column tiles of 10 outputs
    counts = np.zeros(3, dtype=np.int64)
    y = P.read(w, x, config, KEY, tiles=tiles, rereads=counts)
    expected, reread = np.zeros_like(y), np.zeros(3, dtype=np.int64)
    for lo, hi in P.spans(40, 16):
        for c_lo, c_hi in P.spans(20, 10):
            part = x[:, lo:hi] @ w[c_lo:c_hi, lo:hi].T
            k = np.maximum(np.ceil(np.log2(np.abs(part).max(axis=1) / 3.0)), 0)
            k = np.minimum(k, config.rounds - 1)
            rho = (2.0 ** k)[:, None]
            expected[:, c_lo:c_hi] += P.quantize(part / rho, 8, 3.0) * rho
            reread += int(k.sum()) * np.array([(hi - lo) * (c_hi - c_lo), hi - lo, c_hi - c_lo])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(counts, reread)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("tiles", [None, (16, 8)], ids=str)
@pytest.mark.parametrize("config", [c for c in CONFIGS if c.iterative], ids=range(3))
def test_fast_reads_count_the_re_reads_of_the_reference(fast, config, tiles, transposed):
    """The fast backends re-read the same tiles as the specification given the same
    matrix product (so the ledger charges the same re-reads on every backend, but for a
    tile at the range: test_an_output_at_the_adc_range_is_not_read_again)."""
    reads = fast.periphery
    w, x = operands(64, 200, 50, np.float32, seed=9)
    if transposed:
        x = x[:, :50] * 2
    model = (P.transposed_read, reads.transposed_read) if transposed else (P.read, reads.read)
    counts = [np.zeros(3, dtype=np.int64) for _ in model]
    for read, count in zip(model, counts):
        product = {"matmul": reads.matmul} if read in (P.read, P.transposed_read) else {}
        read(w, x, config, KEY, tiles=tiles, rereads=count, **product)
    assert counts[0].any()
    np.testing.assert_array_equal(counts[1], counts[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_output_at_the_adc_range_is_not_read_again(fast, dtype):
    """Saturation is ``|y| > adc_range``, a threshold on the read's product: a sample whose
    largest output is the range exactly is not read again, on every backend given the
    same product. Products that round differently (NumPy's OpenBLAS against torch's MKL,
    in float32 and float64, or a GPU's) put such a sample on either side: re-read counts
    agree between backends only as far as their products do."""
    reads = fast.periphery
    w, x = operands(64, 200, 50, dtype, seed=9)
    largest = np.abs(reads.matmul(x, np.ascontiguousarray(w).T)).max(axis=1)
    adc_range = float(np.sort(largest)[32])  # sample 32's largest output, exactly
    config = P.PeripheryConfig(adc_bits=8, adc_range=adc_range, adc_bound="iterative",
                               bm_max_factor=1)  # one re-read at most
    expected = int((largest > adc_range).sum()) * np.array([200 * 50, 200, 50])
    assert expected[0] == 31 * 200 * 50  # the 31 above it; not the one at the range
    for read, product in ((reads.read, {}), (P.read, {"matmul": reads.matmul})):
        counts = np.zeros(3, dtype=np.int64)
        read(w, x, config, KEY, rereads=counts, **product)
        np.testing.assert_array_equal(counts, expected)
