"""The stochastic (aihwkit-style in-array outer product) update: replay, statistics,
saturation, bounds, zero signals, determinism.

``neurosim.devices.stochastic_update`` is the specification; the fast kernels (Numba, torch)
must replay it exactly (same weights, same pulse counts). Statistical checks use fixed keys (deterministic)
and a tolerance of 5 standard errors (stated at each check), so a correct implementation
passes with overwhelming probability for any key, while a wrong probability, a missing
factor or a wrong sign fails by many standard errors. They run on the compiled kernel (fast),
which the replay tests tie to the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurosim import devices as D
from neurosim import rng
from neurosim.backends import numba_devices as N
from neurosim.config import DEVICE_MODELS, DeviceConfig

NOISY_DEVICE = dict(dw_min=0.02, dw_min_dtod=0.3, dw_min_ctoc=0.3, up_down=0.1,
                    up_down_dtod=0.1, w_min_dtod=0.2, w_max_dtod=0.2, gamma_up=0.6,
                    gamma_down=1.2, nonlinearity_ltp=2.4, nonlinearity_ltd=-4.88, levels=97,
                    stuck_at_min=0.05, stuck_at_max=0.05, stuck_at_initial=0.05)


def layer(n_out, n_in, seed=0, w_min=-1.0, w_max=1.0, **device) -> D.DeviceState:
    return D.draw_device_state(DeviceConfig(**device), w_min, w_max, n_out * n_in, seed, 0)


def signals(batch, n_out, n_in, seed, dtype="float64", x_scale=1.0, d_scale=0.1):
    """Inputs with about a quarter exact zeros (like ReLU activations) and mixed-sign errors."""
    g = np.random.default_rng(seed)
    x = g.normal(0.0, x_scale, (batch, n_in)) * (g.random((batch, n_in)) < 0.75)
    d = g.normal(0.0, d_scale, (batch, n_out))
    return x.astype(dtype), d.astype(dtype)


# ------------------------------------------------------------------------- replay
@pytest.mark.parametrize("noise", ["relative", "additive"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", DEVICE_MODELS)
def test_fast_replays_the_reference_exactly(fast, model, dtype, noise):
    """The same pulse counts and, with the same draws, the same weights (on CUDA to the few
    ulp of its library functions: conftest.BackendUnderTest.assert_replays), with
    cycle-to-cycle noise relative to the response (aihwkit) or added to it (NeuroSim)."""
    n_out, n_in, batch, bl = 9, 13, 6, 31
    additive = {"dw_min_ctoc": 0.0, "write_noise": 0.01} if noise == "additive" else {}
    s = layer(n_out, n_in, seed=4, model=model, **{**NOISY_DEVICE, **additive})
    assert np.any(s.stuck != D.FREE) and np.any(s.stuck == D.FREE)
    g = np.random.default_rng(2)
    w = D.place_initial_weights(s, g.uniform(-0.6, 0.6, s.n).astype(dtype))
    replayed = w.copy()
    x, d = signals(batch, n_out, n_in, seed=3, dtype=dtype)
    d[2] = 0.0  # a sample without error: no pulse, but the later samples keep their draws
    x[4, :5] = np.nan  # non-finite inputs send nothing
    for event, lr in enumerate((0.05, 3.0)):  # 3.0: the largest probabilities saturate
        p_x, p_d = D.stochastic_probabilities(x[0], d[0], lr, bl, s.dw_min)
        assert (np.max(p_x) == 1.0 and np.max(p_d) == 1.0) == (lr == 3.0)
        keys = (rng.stream_key(1, event, 0, rng.Purpose.PULSE_LINES),
                rng.stream_key(1, event, 0, rng.Purpose.PULSE_NOISE))
        counts = D.stochastic_update(w, x, d, s, lr, bl, *keys)
        assert counts == fast.devices.stochastic_update(replayed, x, d, s, lr, bl, *keys)
        assert counts[0] > 0 and counts[1] > 0
        fast.assert_replays(replayed, w)
    assert replayed.dtype == np.dtype(dtype)


@pytest.mark.parametrize("bl", [1, 64, 70, 130])
def test_long_pulse_trains_replay_across_64_slot_chunks(fast, bl):
    """The Numba kernel handles slots in chunks of 64 (one bit each); any BL equals the
    reference."""
    s = layer(5, 7, seed=1, model="soft_bounds", **{**NOISY_DEVICE, "stuck_at_min": 0.0})
    w = D.place_initial_weights(s, np.random.default_rng(0).uniform(-0.5, 0.5, s.n))
    replayed = w.copy()
    x, d = signals(3, 5, 7, seed=5)
    counts = D.stochastic_update(w, x, d, s, 0.3, bl, 11, 12)
    assert counts == fast.devices.stochastic_update(replayed, x, d, s, 0.3, bl, 11, 12)
    assert sum(counts) > 0
    fast.assert_replays(replayed, w)


def test_draws_follow_the_documented_index_scheme(any_backend):
    """A 2 x 3 layer of ideal constant-step devices: every device's pulse count and
    direction recomputed by hand from the documented draw indices and probabilities."""
    n_out, n_in, bl, dw_min, lr = 2, 3, 31, 0.01, 0.05
    s = layer(n_out, n_in, model="constant_step", dw_min=dw_min, w_min=-5.0, w_max=5.0)
    x = np.array([[0.5, -1.0, 0.2], [1.0, 0.3, -0.7]])
    d = np.array([[0.4, -0.1], [-0.2, 0.6]])
    key_lines = 99
    w = np.zeros(n_out * n_in)
    n_up, n_down = any_backend.devices.stochastic_update(w, x, d, s, lr, bl, key_lines, 5)
    expected, up_total, down_total = np.zeros((n_out, n_in)), 0, 0
    for sample in range(2):
        # the probabilities, from aihwkit's update management written out
        x_max, d_max = np.abs(x[sample]).max(), np.abs(d[sample]).max()
        c = np.sqrt(lr / (dw_min * bl))
        p_x = np.minimum(np.abs(x[sample]) * c * np.sqrt(d_max / x_max), 1.0)
        p_d = np.minimum(np.abs(d[sample]) * c * np.sqrt(x_max / d_max), 1.0)
        got = D.stochastic_probabilities(x[sample], d[sample], lr, bl, dw_min)
        np.testing.assert_allclose(got[0], p_x, rtol=1e-15)
        np.testing.assert_allclose(got[1], p_d, rtol=1e-15)
        for i in range(n_out):
            for j in range(n_in):
                pulses = 0
                for t in range(bl):
                    first = (sample * bl + t) * (n_out + n_in)
                    row = rng.uniform_at(key_lines, first + i) < p_d[i]
                    col = rng.uniform_at(key_lines, first + n_out + j) < p_x[j]
                    pulses += int(row and col)
                direction = -np.sign(x[sample, j] * d[sample, i])
                expected[i, j] += direction * pulses * dw_min
                up_total += pulses if direction > 0 else 0
                down_total += pulses if direction < 0 else 0
    np.testing.assert_allclose(w.reshape(n_out, n_in), expected, rtol=0, atol=1e-12)
    assert (n_up, n_down) == (up_total, down_total) and n_up > 0 and n_down > 0


# --------------------------------------------------------------------- statistics
def test_mean_change_is_the_outer_product():
    """Unsaturated constant-step devices without noise: the mean change per sample of
    device (i, j) is -lr d_i x_j (aihwkit's update management makes c_x c_d BL dw_min = lr).
    Per sample a device moves dw_min * (+-Binomial(BL, q)), q = p_x p_d, so the mean over
    M samples has standard error dw_min sqrt(BL q (1 - q) / M); tolerance 5 of them."""
    n_out, n_in, bl, dw_min, lr, m = 3, 4, 31, 0.001, 0.002, 200_000
    s = layer(n_out, n_in, model="constant_step", dw_min=dw_min, w_min=-1e4, w_max=1e4)
    x = np.array([0.9, -0.5, 0.2, -0.05])
    d = np.array([-0.3, 0.15, 0.02])
    p_x, p_d = D.stochastic_probabilities(x, d, lr, bl, dw_min)
    assert p_x.max() < 1.0 and p_d.max() < 1.0  # unsaturated
    w = np.zeros(n_out * n_in)
    N.stochastic_update(w, np.tile(x, (m, 1)), np.tile(d, (m, 1)), s, lr, bl, 21, 22)
    assert np.abs(w).max() < 0.5e4  # far from the bounds: no clipping
    mean = w.reshape(n_out, n_in) / m
    q = np.outer(p_d, p_x)
    standard_error = dw_min * np.sqrt(bl * q * (1 - q) / m)
    target = -lr * np.outer(d, x)
    assert np.all(np.abs(mean - target) < 5 * standard_error)
    # and the test can tell: the mean is many standard errors away from zero and from the
    # wrong sign wherever the target is not tiny
    big = np.abs(target) > 1e-5
    assert np.all(np.abs(mean[big] + target[big]) > 20 * standard_error[big])


def test_expected_pulses_per_device_are_bl_px_pd():
    """Pulses per device per sample average BL p_x p_d, saturated lines included (p = 1).
    Counts come from the weights: constant steps, one direction per device, far bounds.
    Binomial(BL, q) per sample: standard error sqrt(BL q (1 - q) / M); tolerance 5."""
    n_out, n_in, bl, dw_min, lr, m = 3, 5, 31, 0.01, 0.15, 10_000
    s = layer(n_out, n_in, model="constant_step", dw_min=dw_min, w_min=-1e4, w_max=1e4)
    # update management balances the largest probabilities: with lr x_max d_max >
    # dw_min BL both largest lines saturate (device (1, 0) gets BL pulses every sample)
    x = np.array([4.0, 0.05, -0.5, 1.0, 0.0])  # the last column is 0: never fires
    d = np.array([0.2, -1.0, 0.05])
    p_x, p_d = D.stochastic_probabilities(x, d, lr, bl, dw_min)
    assert p_x[0] == 1.0 and p_d[1] == 1.0 and p_x[4] == 0.0
    assert 0.0 < p_x[1:4].max() < 1.0 and 0.0 < p_d[[0, 2]].max() < 1.0
    w = np.zeros(n_out * n_in)
    n_up, n_down = N.stochastic_update(w, np.tile(x, (m, 1)), np.tile(d, (m, 1)), s, lr, bl,
                                       31, 32)
    pulses = np.round(np.abs(w) / dw_min).reshape(n_out, n_in)
    assert n_up + n_down == pulses.sum()
    q = np.outer(p_d, p_x)
    expected = bl * q
    standard_error = np.sqrt(bl * q * (1 - q) / m)
    assert np.all(np.abs(pulses / m - expected) <= 5 * standard_error)
    assert np.all(pulses[:, 4] == 0)
    # the up/down split follows -sign(x_j d_i)
    up = -np.sign(np.outer(d, x)) > 0
    assert n_up == pulses[up].sum() and n_down == pulses[~up].sum()


def test_huge_learning_rate_saturates_at_bl_pulses(any_backend):
    """With a huge lr every probability clips to 1: all lines fire in every slot and each
    device with x_j d_i != 0 gets exactly BL pulses per sample, no more."""
    n_out, n_in, bl, dw_min = 4, 6, 31, 0.001
    s = layer(n_out, n_in, model="constant_step", dw_min=dw_min, w_min=-10.0, w_max=10.0)
    x, d = signals(5, n_out, n_in, seed=7)
    p_x, p_d = D.stochastic_probabilities(x[0], d[0], 1e6, bl, dw_min)
    assert np.all(p_x[x[0] != 0] == 1.0) and np.all(p_d == 1.0)
    w = np.zeros(n_out * n_in)
    n_up, n_down = any_backend.devices.stochastic_update(w, x, d, s, 1e6, bl, 41, 42)
    expected = np.zeros((n_out, n_in))
    for sample in range(x.shape[0]):
        expected += -np.sign(np.outer(d[sample], x[sample])) * bl * dw_min
    np.testing.assert_allclose(w.reshape(n_out, n_in), expected, rtol=0, atol=1e-12)
    assert n_up + n_down == bl * int(np.count_nonzero(np.einsum("si,sj->sij", d, x)))


@pytest.mark.parametrize("lr", [0.02, 0.3, 3.0])
def test_at_most_bl_pulses_per_device_per_sample(lr):
    n_out, n_in, bl, dw_min = 6, 8, 31, 0.01
    s = layer(n_out, n_in, model="constant_step", dw_min=dw_min, w_min=-10.0, w_max=10.0)
    x, d = signals(40, n_out, n_in, seed=8, x_scale=2.0, d_scale=1.0)
    most = 0
    for sample in range(x.shape[0]):  # one call per sample: per-sample pulse counts
        w = np.zeros(n_out * n_in)
        n_up, n_down = N.stochastic_update(w, x[sample:sample + 1], d[sample:sample + 1], s,
                                           lr, bl, 50 + sample, 51)
        pulses = np.round(np.abs(w) / dw_min)
        assert pulses.max() <= bl and pulses.sum() == n_up + n_down
        most = max(most, pulses.max())
    assert most == bl or lr < 1.0  # the largest lr does reach the cap


def test_cycle_to_cycle_noise_is_fresh_for_every_pulse(any_backend):
    """Saturated lines (every device pulsed in every slot of both samples): a constant-step
    device moves by dw_min sum_k (1 + sigma xi_k) over 2 BL pulses, mean 2 BL dw_min and
    variance 2 BL (dw_min sigma)^2 if every pulse (sample, device, slot) draws its own xi.
    Reusing draws across samples would double the variance, across slots multiply it by
    BL. Over 2000 devices the sample variance has relative standard error sqrt(2 / 1999);
    tolerance 5 of them (16 %)."""
    n_out, n_in, bl, dw_min, sigma = 40, 50, 31, 0.001, 0.5
    s = layer(n_out, n_in, model="constant_step", dw_min=dw_min, dw_min_ctoc=sigma,
              w_min=-10.0, w_max=10.0)
    x, d = np.full((2, n_in), -1.0), np.full((2, n_out), 1.0)  # up: -sign(x d) > 0
    w = np.zeros(s.n)
    assert any_backend.devices.stochastic_update(w, x, d, s, 1e3, bl, 61, 62) == \
        (2 * bl * s.n, 0)
    n = s.n
    assert abs(w.mean() - 2 * bl * dw_min) < 5 * np.sqrt(2 * bl / n) * dw_min * sigma
    variance = 2 * bl * (dw_min * sigma) ** 2
    assert abs(w.var(ddof=1) / variance - 1) < 5 * np.sqrt(2 / (n - 1))


# ------------------------------------------------------------------------- bounds
device_params = st.fixed_dictionaries({
    "model": st.sampled_from([m for m in DEVICE_MODELS if m != "ideal"]),
    "dw_min": st.floats(1e-3, 0.5),
    "dw_min_dtod": st.floats(0.0, 1.0),
    "dw_min_ctoc": st.sampled_from([0.0, 0.05, 0.5, 2.0]),
    "up_down": st.floats(-0.95, 0.95),
    "w_min_dtod": st.floats(0.0, 0.5),
    "w_max_dtod": st.floats(0.0, 0.5),
    "gamma_up": st.floats(0.0, 3.0),
    "gamma_down": st.floats(0.0, 3.0),
    "nonlinearity_ltp": st.floats(-10.0, 10.0),
    "nonlinearity_ltd": st.floats(-10.0, 10.0),
    "levels": st.integers(2, 1000),
    "stuck_at_min": st.floats(0.0, 0.2),
    "stuck_at_initial": st.floats(0.0, 0.2),
})


@settings(max_examples=40, deadline=None)
@given(params=device_params, w_min=st.floats(-2.0, -0.05), w_max=st.floats(0.05, 2.0),
       shape=st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 4)),
       lr=st.floats(0.0, 50.0), bl=st.integers(1, 80), scale=st.floats(1e-3, 1e3),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 20))
def test_weights_never_leave_their_devices_bounds(params, w_min, w_max, shape, lr, bl, scale,
                                                  dtype, seed):
    """Any model, parameters, layer shape, signal scale and lr (saturating or not): every
    weight stays in [w_min_i, w_max_i] (as stored in the dtype), stuck devices stay put,
    and the kernel replays the reference exactly."""
    n_out, n_in, batch = shape
    s = layer(n_out, n_in, seed=seed, w_min=w_min, w_max=w_max, **params)
    lo, hi = s.w_min.astype(dtype), s.w_max.astype(dtype)
    g = np.random.default_rng(seed)
    w = D.place_initial_weights(s, g.uniform(-3, 3, s.n).astype(dtype))
    w0, fast = w.copy(), w.copy()
    x = (g.normal(0, scale, (batch, n_in)) * (g.random((batch, n_in)) < 0.8)).astype(dtype)
    d = g.normal(0, scale, (batch, n_out)).astype(dtype)
    for event in range(2):
        counts = D.stochastic_update(w, x, d, s, lr, bl, seed + event, 7 + event)
        assert counts == N.stochastic_update(fast, x, d, s, lr, bl, seed + event, 7 + event)
        assert np.all(np.isfinite(w)) and np.all(w >= lo) and np.all(w <= hi)
        np.testing.assert_array_equal(w, fast)
    stuck = s.stuck != D.FREE
    np.testing.assert_array_equal(w[stuck], w0[stuck])


# ------------------------------------------------------------------- zero signals
def test_zero_input_or_zero_error_sends_no_pulse(any_backend):
    update = any_backend.devices.stochastic_update
    n_out, n_in = 5, 7
    s = layer(n_out, n_in, model="soft_bounds", dw_min=0.01, dw_min_ctoc=0.5)
    w0 = np.random.default_rng(0).uniform(-0.5, 0.5, s.n).astype(np.float32)
    x, d = signals(4, n_out, n_in, seed=9, dtype="float32")
    zeros_x, zeros_d = np.zeros_like(x), np.zeros_like(d)
    for xs, ds, lr in ((zeros_x, d, 5.0), (x, zeros_d, 5.0), (x, d, 0.0)):
        w = w0.copy()
        assert update(w, xs, ds, s, lr, 31, 1, 2) == (0, 0)
        np.testing.assert_array_equal(w, w0)
    # a zero line never fires: its row / column of devices keeps its weights
    x[:, 2] = 0.0
    x[:, 5] = np.nan
    d[:, 3] = 0.0
    w = w0.copy()
    up, down = update(w, x, d, s, 5.0, 31, 1, 2)
    moved = (w != w0).reshape(n_out, n_in)
    assert up > 0 and down > 0
    assert not moved[:, 2].any() and not moved[:, 5].any() and not moved[3].any()
    assert moved.sum() == (n_out - 1) * (n_in - 2)  # everything else moved (lr is large)


# -------------------------------------------------------------------- determinism
def test_same_keys_same_result_other_keys_other_result(any_backend):
    update = any_backend.devices.stochastic_update
    n_out, n_in = 6, 9
    s = layer(n_out, n_in, seed=3, model="linear_step", **NOISY_DEVICE)
    w0 = D.place_initial_weights(s, np.random.default_rng(1).uniform(-0.5, 0.5, s.n))
    x, d = signals(5, n_out, n_in, seed=10)

    def run(key_lines, key_noise):
        w = w0.copy()
        counts = update(w, x, d, s, 0.2, 31, key_lines, key_noise)
        return w, counts

    w, counts = run(3, 4)
    again, counts_again = run(3, 4)
    np.testing.assert_array_equal(w, again)
    assert counts == counts_again
    other_noise, counts_noise = run(3, 5)
    assert counts_noise == counts  # same lines fire: same pulses, other noise
    assert not np.array_equal(other_noise, w)
    moved = w != w0
    assert moved.mean() > 0.5
    assert np.mean(other_noise[moved] != w[moved]) > 0.9  # moved devices drew other noise
    other_lines, _ = run(8, 4)
    assert not np.array_equal(other_lines, w)


def test_arguments_are_checked(any_backend):
    update = any_backend.devices.stochastic_update
    s = layer(2, 3)
    w = np.zeros(6)
    x, d = np.ones((1, 3)), np.ones((1, 2))
    with pytest.raises(ValueError):
        update(w, x, d, s, -0.1, 31, 1, 2)
    with pytest.raises(ValueError):
        update(w, x, d, s, np.inf, 31, 1, 2)
    with pytest.raises(ValueError):
        update(w, x, d, s, 0.1, 0, 1, 2)
    with pytest.raises(ValueError):
        update(w, np.ones((2, 3)), d, s, 0.1, 31, 1, 2)  # batch sizes differ
    with pytest.raises(ValueError):
        update(np.zeros(5), x, d, s, 0.1, 31, 1, 2)
    assert rng.Purpose.PULSE_LINES == 17
