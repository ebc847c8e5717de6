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
                       n_features=784, n_classes=10, dtype=np.dtype("float32"))


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
    got = draw_noise_inputs(backend, config, 1234, 50, 30, np.dtype(np.float32))
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
    other_seed = NoiseSource(first.config, NumpyBackend(), 8, 784, 10, np.dtype("float32"))
    assert not np.array_equal(other_seed.probe(40)[0], x)
    assert first.probe(41)[0] is not x and len(draws) == 3
    numba = NoiseSource(first.config, NumbaBackend(), 3, 784, 10, np.dtype("float32"))
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
