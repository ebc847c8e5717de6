"""Noise preconditioning inputs: the two regimes, the distributions, label independence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.config import NoiseInputConfig, PreconditionConfig
from neurosim.precondition import NoiseSource
from neurosim.rows import batch_bounds


def source(**fields) -> NoiseSource:
    return NoiseSource(PreconditionConfig(enabled=True, **fields), NumpyBackend(), seed=3,
                       image_shape=(28, 28), n_classes=10, dtype=np.dtype("float32"))


def test_fixed_set_reuses_the_same_examples_every_epoch():
    noise = source(regime="fixed_set", n_examples=200, batch_size=64)
    assert batch_bounds(3, 200, 64) == (0, 192, 200)  # last batch of an epoch is short
    epoch0 = np.concatenate([noise.batch(s)[0] for s in range(4)])
    epoch1 = np.concatenate([noise.batch(s)[0] for s in range(4, 8)])
    assert epoch0.shape == (200, 784)
    as_set = lambda rows: {row.tobytes() for row in rows}
    assert as_set(epoch0) == as_set(epoch1) == as_set(noise.fixed_set[0])
    assert not np.array_equal(epoch0, epoch1)  # reshuffled between epochs


def test_fresh_stream_never_repeats_and_is_reproducible():
    noise = source(regime="fresh_stream", batch_size=32)
    a, b = noise.batch(0)[0], noise.batch(1)[0]
    rows = lambda x: {row.tobytes() for row in x}
    assert not rows(a) & rows(b)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02
    np.testing.assert_array_equal(source(regime="fresh_stream", batch_size=32).batch(1)[0], b)


def test_gaussian_inputs_have_the_configured_moments():
    noise = source(regime="fixed_set", n_examples=500,
                   input=NoiseInputConfig(distribution="gaussian", mean=0.5, std=2.0))
    x = noise.fixed_set[0].astype(np.float64).ravel()
    assert x.mean() == pytest.approx(0.5, abs=0.02)
    assert x.std() == pytest.approx(2.0, rel=0.01)
    assert stats.kstest((x - 0.5) / 2.0, "norm").pvalue > 1e-3


def test_uniform_inputs_stay_in_range():
    noise = source(regime="fixed_set", n_examples=500,
                   input=NoiseInputConfig(distribution="uniform", low=-1.0, high=3.0))
    inputs = noise.fixed_set[0]
    assert inputs.min() >= -1.0 and inputs.max() < 3.0
    assert inputs.mean() == pytest.approx(1.0, abs=0.02)


def test_labels_are_uniform_and_independent_of_inputs():
    noise = source(regime="fixed_set", n_examples=20000)
    inputs, labels = noise.fixed_set
    counts = np.bincount(labels, minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3
    # Independence: the mean input of each class is the overall mean, within noise.
    means = np.array([inputs[labels == c].mean() for c in range(10)])
    assert np.all(np.abs(means) < 0.01)


def test_probe_is_separate_from_the_training_noise():
    noise = source(regime="fixed_set", n_examples=300)
    probe, _ = noise.probe(300)
    rows = lambda x: {row.tobytes() for row in x}
    assert not rows(probe) & rows(noise.fixed_set[0])


@pytest.mark.parametrize("config", [NoiseInputConfig(mean=0.3, std=2.0),
                                    NoiseInputConfig(distribution="uniform", low=-0.5,
                                                     high=1.5)])
def test_noise_inputs_are_the_affine_map_of_the_stream_exactly(config):
    """``mean + std z`` (``low + (high - low) u``) of the stream's float64 draws, then
    rounded to the dtype: the definition, bit for bit."""
    from neurosim.precondition import draw_noise_inputs

    backend = NumpyBackend()
    got = draw_noise_inputs(backend, config, 1234, 50, (5, 6), np.dtype(np.float32))
    if config.distribution == "gaussian":
        expected = config.mean + config.std * backend.normal(1234, 1500)
    else:
        expected = config.low + (config.high - config.low) * backend.uniform(1234, 1500)
    np.testing.assert_array_equal(got, expected.astype(np.float32).reshape(50, 30))


def test_runs_with_one_seed_share_their_noise_probe_drawn_once(monkeypatch):
    """An experiment's conditions paired by seed measure on the same probe: drawn once,
    read-only; another seed, size or backend gets its own."""
    from neurosim.backends.numba_cpu import NumbaBackend

    draws = []
    original = NumpyBackend.normal
    monkeypatch.setattr(NumpyBackend, "normal",
                        lambda self, key, n: draws.append(key) or original(self, key, n))
    first, again = source(), source()
    x, y = first.probe(40)
    assert again.probe(40)[0] is x and len(draws) == 1
    assert not x.flags.writeable and not y.flags.writeable
    other_seed = NoiseSource(first.config, NumpyBackend(), 8, (28, 28), 10,
                            np.dtype("float32"))
    assert not np.array_equal(other_seed.probe(40)[0], x)
    assert first.probe(41)[0] is not x and len(draws) == 3
    numba = NoiseSource(first.config, NumbaBackend(), 3, (28, 28), 10, np.dtype("float32"))
    np.testing.assert_array_equal(numba.probe(40)[0], x)  # its own draw, the same numbers


def test_runs_with_one_seed_share_their_fixed_noise_set_while_they_hold_it(monkeypatch):
    """A population's chips of one seed and noise (its conditions) train on one copy of
    their fixed set, drawn once and read-only; another size is another set."""
    import gc

    from neurosim import precondition

    draws = []
    original = NumpyBackend.normal
    monkeypatch.setattr(NumpyBackend, "normal",
                        lambda self, key, n: draws.append(key) or original(self, key, n))
    monkeypatch.setattr(precondition, "_recent", precondition.OrderedDict())  # none kept
    monkeypatch.setattr(precondition, "SETS_KEPT", 0)
    a, b = source(n_examples=37), source(n_examples=37)
    inputs, labels = a.fixed_set
    assert b.fixed_set[0] is inputs and b.fixed_set[1] is labels and len(draws) == 1
    assert not inputs.flags.writeable and not labels.flags.writeable
    assert source(n_examples=38).fixed_set[0] is not inputs and len(draws) == 2
    np.testing.assert_array_equal(source(n_examples=38).fixed_set[0][:37], inputs)
    del a, b, inputs, labels
    gc.collect()
    source(n_examples=37).fixed_set  # noqa: B018 (no run holds it any more: drawn again)
    assert len(draws) == 4


# --------------------------------------------------------------------------- binary spikes
def test_binary_spikes_are_high_where_the_stream_is_below_the_rate_else_low():
    """Each pixel is ``high`` exactly where its uniform draw is below ``rate``, else
    ``low``: the definition, bit for bit, and a spike count a binomial test accepts."""
    from neurosim.precondition import draw_noise_inputs

    backend = NumpyBackend()
    config = NoiseInputConfig(distribution="binary", rate=0.05, low=-0.5, high=2.0)
    got = draw_noise_inputs(backend, config, 99, 400, (28, 28), np.dtype(np.float32))
    spikes = backend.uniform(99, 400 * 784).reshape(400, 784) < 0.05
    np.testing.assert_array_equal(got, np.where(spikes, np.float32(2.0), np.float32(-0.5)))
    assert set(np.unique(got)) == {np.float32(-0.5), np.float32(2.0)}
    assert stats.binomtest(int(spikes.sum()), spikes.size, 0.05).pvalue > 1e-3


def test_binary_spikes_at_rate_one_are_all_high():
    noise = source(n_examples=50, input=NoiseInputConfig(distribution="binary", rate=1.0))
    assert np.all(noise.fixed_set[0] == 1.0)


# --------------------------------------------------------------------------- correlated
def folded_kernel(length_scale: float, side: int) -> np.ndarray:
    """The 2-D Gaussian kernel of ``length_scale`` pixels (truncated at 4 of them, summing to
    one) folded onto a ``side x side`` torus: the weights of a circular convolution."""
    radius = int(4 * length_scale + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / length_scale) ** 2)
    weights /= weights.sum()
    line = np.zeros(side)
    np.add.at(line, offsets % side, weights)
    return np.outer(line, line)


def field_by_rolls(white: np.ndarray, length_scale: float) -> np.ndarray:
    """An independent correlated field: the folded kernel's weighted sum of the image rolled
    by every offset, over the kernel's norm."""
    side = white.shape[-1]
    kernel = folded_kernel(length_scale, side)
    out = np.zeros_like(white)
    for a in range(side):
        for b in range(side):
            if kernel[a, b]:
                out += kernel[a, b] * np.roll(white, (a, b), axis=(-2, -1))
    return out / np.sqrt(np.sum(kernel**2))


@pytest.mark.parametrize("length_scale", [0.7, 2.0, 10.0])  # 10: the kernel wraps the frame
def test_correlated_noise_is_the_normalized_circular_convolution_of_the_stream(length_scale):
    from neurosim.precondition import draw_noise_inputs

    backend = NumpyBackend()
    config = NoiseInputConfig(distribution="correlated", mean=0.25, std=1.5,
                              length_scale=length_scale)
    got = draw_noise_inputs(backend, config, 7, 3, (28, 28), np.dtype(np.float64))
    white = backend.normal(7, 3 * 784).reshape(3, 28, 28)
    expected = 0.25 + 1.5 * field_by_rolls(white, length_scale)
    np.testing.assert_allclose(got.reshape(3, 28, 28), expected, rtol=0, atol=1e-12)


def test_correlated_noise_has_the_pixel_moments_and_the_kernel_correlation():
    """Every pixel is N(mean, std^2); pixels d apart correlate as the folded kernel's
    autocorrelation, which is close to exp(-d^2 / (4 length_scale^2))."""
    length_scale = 2.0
    noise = source(n_examples=4000, input=NoiseInputConfig(
        distribution="correlated", mean=-0.3, std=0.8, length_scale=length_scale))
    x = noise.fixed_set[0].astype(np.float64).reshape(4000, 28, 28)
    assert x.mean() == pytest.approx(-0.3, abs=0.02)
    per_pixel_std = x.std(axis=0)
    assert per_pixel_std.mean() == pytest.approx(0.8, rel=0.01)
    assert np.all(np.abs(per_pixel_std - 0.8) < 0.06)  # 4,000 samples: ~1 % error each
    assert stats.kstest((x[:, 5, 9] + 0.3) / 0.8, "norm").pvalue > 1e-3
    kernel = folded_kernel(length_scale, 28)
    line = kernel.sum(axis=0)  # the separable kernel's 1-D factor
    z = (x + 0.3) / 0.8
    for d in (1, 2, 3, 6):
        exact = np.sum(line * np.roll(line, d)) / np.sum(line * line)
        assert exact == pytest.approx(np.exp(-d**2 / (4 * length_scale**2)), abs=0.01)
        for axis in (1, 2):
            measured = np.mean(z * np.roll(z, d, axis=axis))
            assert measured == pytest.approx(exact, abs=0.02)


def test_correlated_noise_keeps_channels_independent():
    """A colour image's channels are separate fields: smoothed over the pixels only."""
    from neurosim.precondition import draw_noise_inputs

    config = NoiseInputConfig(distribution="correlated", length_scale=3.0)
    x = draw_noise_inputs(NumpyBackend(), config, 5, 2000, (3, 8, 8),
                          np.dtype(np.float64)).reshape(2000, 3, 8, 8)
    assert abs(np.mean(x[:, 0] * x[:, 1])) < 0.05
    assert np.mean(x[:, 0, :, 0] * x[:, 0, :, 1]) > 0.9  # neighbours, length 3 px


def test_correlated_noise_needs_an_image_shape():
    from neurosim.precondition import draw_noise_inputs

    with pytest.raises(ValueError, match="needs images"):
        draw_noise_inputs(NumpyBackend(), NoiseInputConfig(distribution="correlated"), 5, 4,
                          (784,), np.dtype(np.float32))


@pytest.mark.parametrize("config", [
    NoiseInputConfig(distribution="binary", rate=0.2, low=-1.0, high=1.0),
    NoiseInputConfig(distribution="correlated", mean=0.1, std=0.5, length_scale=1.5)])
def test_every_backend_draws_the_same_noise(any_backend, config):
    """Binary and correlated noise are made on the host from the backend's draws, which are
    the same numbers on every backend: the same inputs, bit for bit."""
    from neurosim.precondition import draw_noise_inputs

    key = 4321
    got = draw_noise_inputs(any_backend.backend("float32"), config, key, 20, (28, 28),
                            np.dtype(np.float32))
    expected = draw_noise_inputs(NumpyBackend(), config, key, 20, (28, 28),
                                 np.dtype(np.float32))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("side", [28, 32])
def test_correlation_is_the_gaussian_of_the_wrapped_distance_where_documented(side):
    """NoiseInputConfig's and smoothed_field's statement: pixels d apart along an axis
    correlate by about exp(-min(d, H - d)^2 / (4 length_scale^2)), within 0.02 for
    0.7 <= length_scale <= H / 8, and by more once the kernel wraps the frame."""
    def correlations(length_scale):
        line = folded_kernel(length_scale, side).sum(axis=0)
        return np.array([np.sum(line * np.roll(line, d)) / np.sum(line * line)
                         for d in range(side)])

    wrapped = np.minimum(np.arange(side), side - np.arange(side))
    for length_scale in np.linspace(0.7, side / 8, 12):
        gaussian = np.exp(-wrapped**2 / (4 * length_scale**2))
        assert np.max(np.abs(correlations(length_scale) - gaussian)) < 0.02, length_scale
    across = correlations(side / 4)[side // 2]  # the far side of the frame
    assert across > np.exp(-(side / 2) ** 2 / (4 * (side / 4) ** 2)) + 0.2


@pytest.mark.parametrize("config,most", [
    (NoiseInputConfig(distribution="binary", rate=0.1), 2.3),  # the uniforms and the spikes
    (NoiseInputConfig(distribution="correlated", length_scale=2.0), 4.1)])  # normals, field
def test_noise_inputs_are_made_with_few_float64_temporaries(config, most):
    """A fixed set of 60,000 MNIST-sized examples is 180 MB in float32: its float64 draws
    (2x) and at most one float64 field (2x more) may be alive at once, not 3 (the sum and
    the product were new arrays: 6x, 1.1 GB; 4.2 GB for CIFAR-10)."""
    import tracemalloc

    from neurosim.precondition import draw_noise_inputs

    backend = NumpyBackend()
    drawn = {True: backend.normal(3, 600 * 784), False: backend.uniform(3, 600 * 784)}
    backend.normal = lambda key, n: drawn[True].copy()  # the draws' array alone (2x)
    backend.uniform = lambda key, n: drawn[False].copy()
    tracemalloc.start()
    try:
        x = draw_noise_inputs(backend, config, 3, 600, (28, 28), np.dtype(np.float32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < most * x.nbytes


@pytest.mark.parametrize("config", [
    NoiseInputConfig(distribution="gaussian", mean=0.5, std=2.0),
    NoiseInputConfig(distribution="uniform", low=-1.0, high=3.0),
    NoiseInputConfig(distribution="binary", low=-0.5, high=1.5, rate=0.2),
    NoiseInputConfig(distribution="correlated", mean=-0.3, std=0.8, length_scale=1.5)])
def test_pixel_moments_are_those_of_the_drawn_noise(config):
    """NoiseInputConfig.pixel_moments (what reports and the Fig. 1 grid record) against
    500 drawn images: within 4 standard errors (the correlated field's pixels are not
    independent, so its mean gets the std over images of the image means)."""
    x = source(regime="fixed_set", n_examples=500, input=config).fixed_set[0]
    x = x.astype(np.float64)
    mean, std = config.pixel_moments()
    assert x.mean() == pytest.approx(mean, abs=4 * x.mean(axis=1).std() / np.sqrt(500))
    assert x.std() == pytest.approx(std, rel=0.02)
