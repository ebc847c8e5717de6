"""Device models and the pulsed update: equations, statistics, invariants, replay.

Statistical checks use fixed keys (deterministic) and a tolerance of 5 standard errors
(stated at each check), so a correct implementation passes with overwhelming probability
for any key and a wrong equation or noise level fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurosim import devices as D
from neurosim import rng
from neurosim.backends import numba_devices as N
from neurosim.config import DEVICE_MODELS, DeviceConfig

MODELS = [m for m in DEVICE_MODELS if m != "ideal"]

# Normalized A of NeuroSim's getParamA() table (MLP_NeuroSim_V3.0 formula.cpp), printed to
# 6 decimals: label -> A / levels.
NEUROSIM_NORMALIZED_A = {0.01: 126.268958, 0.04: 31.566827, 0.1: 12.625807, 0.5: 2.519877,
                         1.0: 1.251653, 9.0: 0.022810}


def state_for(n=64, seed=0, layer=0, w_min=-1.0, w_max=1.0, **device) -> D.DeviceState:
    return D.draw_device_state(DeviceConfig(**device), w_min, w_max, n, seed, layer)


def neurosim_position_step(w, lo, hi, normalized_a, levels, pulses):
    """NeuroSim's RealDevice::Write with nonlinearWrite, in conductance units (G in [1, 10]):
    P = InvNonlinearWeight(G), G' = NonlinearWeight(P + pulses); mapped back to w."""
    g_min, g_max = 1.0, 10.0
    a = normalized_a * levels
    b = (g_max - g_min) / (1 - np.exp(-levels / a))
    g = g_min + (w - lo) / (hi - lo) * (g_max - g_min)
    p = -a * np.log(1 - (g - g_min) / b)
    g_new = b * (1 - np.exp(-(p + pulses) / a)) + g_min
    return lo + (g_new - g_min) / (g_max - g_min) * (hi - lo)


# ------------------------------------------------------------------ random numbers
def test_indexed_draws_equal_the_streams():
    key = rng.stream_key(5, 7, 1, rng.Purpose.PULSE_NOISE)
    index = np.arange(3000)
    np.testing.assert_array_equal(rng.uniform_at(key, index), rng.uniform(key, 3000))
    np.testing.assert_array_equal(rng.normal_at(key, index), rng.normal(key, 3000))
    picks = np.array([2999, 0, 17, 1234])
    np.testing.assert_array_equal(rng.normal_at(key, picks), rng.normal(key, 3000)[picks])
    # the compiled scalar versions draw the same numbers
    key64 = np.uint64(key)
    assert [N.uniform_at(key64, int(i)) for i in picks] == list(rng.uniform(key, 3000)[picks])
    assert [N.normal_at(key64, int(i)) for i in picks] == list(rng.normal(key, 3000)[picks])


# ---------------------------------------------------------- nonlinearity -> A
def test_nonlinearity_label_maps_to_neurosims_table():
    for label, table in NEUROSIM_NORMALIZED_A.items():
        # table printed to 6 decimals: agree to half a unit of the last digit
        assert abs(D.nonlinearity_to_normalized_a(label) - table) <= 5e-7 + 1e-12, label
        assert D.nonlinearity_to_normalized_a(-label) == -D.nonlinearity_to_normalized_a(label)
    assert D.nonlinearity_to_a(1.0, 64) == pytest.approx(64 * 1.251653, rel=1e-6)
    assert D.nonlinearity_to_normalized_a(0.0) == np.inf
    labels = np.linspace(0.05, 10, 50)  # monotone: stronger label, smaller A
    assert np.all(np.diff([D.nonlinearity_to_normalized_a(x) for x in labels]) < 0)


# ------------------------------------------------------------ device draws
def test_device_to_device_spread_matches_the_config():
    n = 40_000
    s = state_for(n, seed=3, dw_min=0.01, dw_min_dtod=0.2, up_down=0.1, up_down_dtod=0.05,
                  w_min_dtod=0.1, w_max_dtod=0.15, w_min=-0.8, w_max=1.2)
    dw_min_i = (s.step_up + s.step_down) / 2
    up_down_i = (s.step_up - s.step_down) / (s.step_up + s.step_down)
    # 5 standard errors: mean sigma/sqrt(n), std sigma/sqrt(2n)
    for values, mean, std in ((dw_min_i / 0.01, 1.0, 0.2), (up_down_i, 0.1, 0.05),
                              (s.w_min / -0.8, 1.0, 0.1), (s.w_max / 1.2, 1.0, 0.15)):
        assert abs(values.mean() - mean) < 5 * std / np.sqrt(n)
        assert abs(values.std() - std) < 5 * std / np.sqrt(2 * n)
    # spread of step_up itself, symmetric device
    s = state_for(n, seed=4, dw_min=0.01, dw_min_dtod=0.3)
    assert abs(s.step_up.std() / 0.01 - 0.3) < 5 * 0.3 / np.sqrt(2 * n)
    np.testing.assert_array_equal(s.step_up, s.step_down)
    # the four parameters are independent draws
    s = state_for(n, seed=5, dw_min_dtod=0.2, w_min_dtod=0.2, w_max_dtod=0.2)
    correlations = np.corrcoef([s.step_up, s.w_min, s.w_max])[np.triu_indices(3, 1)]
    assert np.abs(correlations).max() < 5 / np.sqrt(n)  # 5 standard errors of r


def test_device_draws_are_keyed_by_seed_layer_and_index():
    cfg = dict(dw_min_dtod=0.2, w_max_dtod=0.1, stuck_at_min=0.2)
    a, b = state_for(100, seed=1, layer=0, **cfg), state_for(100, seed=1, layer=0, **cfg)
    np.testing.assert_array_equal(a.step_up, b.step_up)
    np.testing.assert_array_equal(a.stuck, b.stuck)
    assert not np.any(a.step_up == state_for(100, seed=1, layer=1, **cfg).step_up)
    assert not np.any(a.step_up == state_for(100, seed=2, layer=0, **cfg).step_up)
    longer = state_for(300, seed=1, layer=0, **cfg)  # device i does not depend on the size
    np.testing.assert_array_equal(longer.w_max[:100], a.w_max)
    np.testing.assert_array_equal(longer.stuck[:100], a.stuck)


def test_bounds_keep_their_sign_under_huge_spread():
    s = state_for(20_000, w_min_dtod=3.0, w_max_dtod=3.0, up_down=0.5, up_down_dtod=5.0,
                  dw_min_dtod=3.0)
    assert np.all(s.w_min < 0) and np.all(s.w_max > 0)
    assert np.all(s.step_up >= 0) and np.all(s.step_down >= 0)
    # up_down_i stays strictly inside (-1, 1): a device with a step has one both ways
    moving = s.step_up + s.step_down > 0
    assert moving.mean() > 0.6 and np.all(s.step_up[moving] > 0) and np.all(s.step_down[moving] > 0)


# --------------------------------------------------------- one pulse: mean, variance
def expected_response(model, up, w, dw_min=0.01, up_down=0.2, gamma_up=0.4, gamma_down=0.9,
                      lo=-1.0, hi=1.0, levels=50):
    su, sd = dw_min * (1 + up_down), dw_min * (1 - up_down)
    if model == "constant_step":
        return su if up else -sd
    if model == "linear_step":
        return su * (1 - gamma_up * w) if up else -sd * (1 + gamma_down * w)
    if model == "soft_bounds":
        return su * (1 - w / hi) if up else -sd * (1 - w / lo)
    # exp_step, labels +1.0 (LTP) and -1.0 (LTD): NeuroSim's formulas with its tabulated A,
    # the pulse position moving by (1 +- up_down) pulses
    a = NEUROSIM_NORMALIZED_A[1.0] * (1 if up else -1)
    return neurosim_position_step(w, lo, hi, a, levels, 1 + up_down if up else -(1 - up_down)) - w


DEVICE = dict(dw_min=0.01, up_down=0.2, gamma_up=0.4, gamma_down=0.9, nonlinearity_ltp=1.0,
              nonlinearity_ltd=-1.0, levels=50)
STATES = (-0.6, -0.1, 0.3, 0.7)


@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("model", MODELS)
def test_one_pulse_without_noise_follows_the_equation(model, up):
    s = state_for(len(STATES), model=model, **DEVICE)
    w = np.array(STATES)
    D.apply_pulses(w, s, 1 if up else -1, 1)
    expected = [expected_response(model, up, x) for x in STATES]
    # exp_step: the table's A has 7 significant digits, so agreement to ~1e-6 relative
    np.testing.assert_allclose(w - np.array(STATES), expected,
                               rtol=1e-5 if model == "exp_step" else 1e-12)


@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("model", MODELS)
def test_one_noisy_pulse_has_the_equations_mean_and_ctoc_variance(model, up):
    per_state, sigma = 20_000, 0.1
    s = state_for(per_state * len(STATES), model=model, dw_min_ctoc=sigma, **DEVICE)
    w0 = np.repeat(STATES, per_state)
    w = w0.copy()
    D.apply_pulses(w, s, 1 if up else -1, 1, key_noise=rng.stream_key(1, 0, 0, 16))
    for k, state in enumerate(STATES):
        dw = (w - w0)[k * per_state:(k + 1) * per_state]
        mu = expected_response(model, up, state)
        # mean: 5 standard errors of sigma |mu| / sqrt(n); relative variance sigma^2 within
        # 5 standard errors of a sample variance (sigma^2 sqrt(2 / (n - 1)))
        assert abs(dw.mean() - mu) < 5 * sigma * abs(mu) / np.sqrt(per_state) + 1e-6 * abs(mu)
        assert abs(dw.var() / mu ** 2 - sigma ** 2) < 5 * sigma ** 2 * np.sqrt(2 / (per_state - 1))


@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("model", MODELS)
def test_one_noisy_pulse_adds_write_noise_whatever_the_state(model, up):
    """NeuroSim's cycle-to-cycle noise: the pulse's mean response plus a normal of std
    write_noise x (w_max - w_min) = 0.02 x 2, the same in every state (relative noise
    would shrink where the response does)."""
    per_state, fraction = 20_000, 0.02
    sigma = fraction * 2.0
    s = state_for(per_state * len(STATES), model=model, write_noise=fraction, **DEVICE)
    w0 = np.repeat(STATES, per_state)
    w = w0.copy()
    D.apply_pulses(w, s, 1 if up else -1, 1, key_noise=rng.stream_key(1, 0, 0, 16))
    for k, state in enumerate(STATES):
        dw = (w - w0)[k * per_state:(k + 1) * per_state]
        mu = expected_response(model, up, state)
        assert abs(dw.mean() - mu) < 5 * sigma / np.sqrt(per_state) + 1e-6 * abs(mu)
        assert abs(dw.var() / sigma ** 2 - 1) < 5 * np.sqrt(2 / (per_state - 1))


def test_pulse_noise_is_fresh_per_pulse_and_device():
    s = state_for(4000, model="constant_step", dw_min=0.01, dw_min_ctoc=0.3)
    w = np.zeros(4000)
    D.apply_pulses(w, s, 1, 2, key_noise=7)
    # two pulses with independent noise: var(sum) = 2 (0.3 * 0.01)^2, not 4 (0.3 * 0.01)^2
    assert abs(w.var() / (2 * (0.3 * 0.01) ** 2) - 1) < 5 * np.sqrt(2 / 3999)


# ------------------------------------------------------------------- invariants
device_params = st.fixed_dictionaries({
    "model": st.sampled_from(MODELS),
    "dw_min": st.floats(1e-4, 0.5),
    "dw_min_dtod": st.floats(0.0, 1.0),
    "dw_min_ctoc": st.sampled_from([0.0, 0.05, 0.5, 2.0]),
    "write_noise": st.sampled_from([0.0, 0.01, 0.2]),
    "up_down": st.floats(-0.95, 0.95),
    "up_down_dtod": st.floats(0.0, 0.5),
    "w_min_dtod": st.floats(0.0, 0.5),
    "w_max_dtod": st.floats(0.0, 0.5),
    "gamma_up": st.floats(0.0, 3.0),
    "gamma_down": st.floats(0.0, 3.0),
    "nonlinearity_ltp": st.floats(-10.0, 10.0),
    "nonlinearity_ltd": st.floats(-10.0, 10.0),
    "levels": st.integers(2, 1000),
    "stuck_at_min": st.floats(0.0, 0.2),
    "stuck_at_max": st.floats(0.0, 0.2),
    "stuck_at_initial": st.floats(0.0, 0.2),
})


@settings(max_examples=60, deadline=None)
@given(params=device_params, w_min=st.floats(-2.0, -0.05), w_max=st.floats(0.05, 2.0),
       steps=st.lists(st.tuples(st.integers(-40, 40), st.floats(0.0, 30.0)), min_size=1,
                      max_size=10),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 20))
def test_weights_never_leave_their_devices_bounds(params, w_min, w_max, steps, dtype, seed):
    """Any model, any parameters in range, any pulse sequence (single pulses in both
    directions, and pulsed updates): every weight stays in [w_min_i, w_max_i] (the bounds
    as stored in the simulation dtype), and the compiled kernels agree exactly."""
    n = 24
    s = D.draw_device_state(DeviceConfig(**params), w_min, w_max, n, seed, 0)
    lo, hi = s.w_min.astype(dtype), s.w_max.astype(dtype)
    generator = np.random.default_rng(seed)
    w = D.place_initial_weights(s, generator.uniform(-3, 3, n).astype(dtype))
    fast = w.copy()
    assert np.all(w >= lo) and np.all(w <= hi)
    for t, (pulses, scale) in enumerate(steps):
        signs = np.where(generator.random(n) < 0.5, -1, 1) * np.sign(pulses or 1)
        D.apply_pulses(w, s, signs, abs(pulses), key_noise=t)
        N.apply_pulses(fast, s, signs, abs(pulses), key_noise=t)
        assert np.all(np.isfinite(w)) and np.all(w >= lo) and np.all(w <= hi)
        dw = (generator.normal(0, 1, n) * scale * params["dw_min"]).astype(dtype)
        counts = D.pulsed_update(w, dw, s, params["dw_min"], 31, 100 + t, 200 + t)
        assert counts == N.pulsed_update(fast, dw, s, params["dw_min"], 31, 100 + t, 200 + t)
        assert np.all(np.isfinite(w)) and np.all(w >= lo) and np.all(w <= hi)
        np.testing.assert_array_equal(w, fast)


@pytest.mark.parametrize("model", MODELS)
def test_stuck_devices_never_move(model, any_backend):
    n = 20_000
    s = state_for(n, seed=2, model=model, dw_min=0.02, dw_min_ctoc=0.2, stuck_at_min=0.1,
                  stuck_at_max=0.05, stuck_at_initial=0.15, w_max_dtod=0.1, w_min_dtod=0.1,
                  nonlinearity_ltp=2.0, nonlinearity_ltd=-2.0, levels=100)
    for code, fraction in ((D.STUCK_AT_MIN, 0.1), (D.STUCK_AT_MAX, 0.05),
                           (D.STUCK_AT_INITIAL, 0.15), (D.FREE, 0.7)):
        # binomial fraction within 5 standard errors
        assert abs(np.mean(s.stuck == code) - fraction) < 5 * np.sqrt(fraction * (1 - fraction) / n)
    start = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
    w0 = D.place_initial_weights(s, start)
    at_min, at_max = s.stuck == D.STUCK_AT_MIN, s.stuck == D.STUCK_AT_MAX
    np.testing.assert_array_equal(w0[at_min], s.w_min[at_min].astype(np.float32))
    np.testing.assert_array_equal(w0[at_max], s.w_max[at_max].astype(np.float32))
    stuck = s.stuck != D.FREE
    kernels = any_backend.devices
    w = w0.copy()
    for t in range(3):
        dw = np.random.default_rng(t).normal(0, 0.2, n).astype(np.float32)
        up, down = kernels.pulsed_update(w, dw, s, 0.02, 15, t, 10 + t)
        expected = D.pulse_counts(dw, 0.02, 15, t)
        assert (up, down) == (int(expected[~stuck & (dw > 0)].sum()),
                              int(expected[~stuck & (dw < 0)].sum()))
    np.testing.assert_array_equal(w[stuck], w0[stuck])
    assert np.mean(w[~stuck] != w0[~stuck]) > 0.9
    w = w0.copy()
    kernels.apply_pulses(w, s, 1, 20)
    np.testing.assert_array_equal(w[stuck], w0[stuck])


# ----------------------------------------------------- asymmetry: symmetry point
def alternate(s, w, cycles):
    """Alternating up/down single pulses; returns the weights after the last up and down."""
    for _ in range(cycles):
        D.apply_pulses(w, s, 1, 1)
        after_up = w.copy()
        D.apply_pulses(w, s, -1, 1)
    return after_up, w


@pytest.mark.parametrize("w_min,w_max,up_down", [(-1.0, 1.0, 0.3), (-0.5, 1.5, -0.2)])
def test_soft_bounds_converge_to_their_symmetry_point(w_min, w_max, up_down):
    dw_min = 0.005
    s = state_for(5, model="soft_bounds", dw_min=dw_min, up_down=up_down, w_min=w_min, w_max=w_max)
    su, sd = dw_min * (1 + up_down), dw_min * (1 - up_down)
    # su (1 - w/M) = sd (1 - w/m)  =>  w* = (su - sd) / (su/M - sd/m)
    symmetry = (su - sd) / (su / w_max - sd / w_min)
    after_up, after_down = alternate(s, np.linspace(w_min, w_max, 5), 3000)
    # converged (from both sides) to within one step of w*
    assert np.all(np.abs((after_up + after_down) / 2 - symmetry) < dw_min)
    assert np.all(np.abs(after_up - after_down) < 2 * dw_min)


def test_linear_step_converges_to_its_symmetry_point():
    dw_min, up_down, gamma_up, gamma_down = 0.005, 0.1, 0.5, 0.8
    s = state_for(5, model="linear_step", dw_min=dw_min, up_down=up_down, gamma_up=gamma_up,
                  gamma_down=gamma_down)
    su, sd = dw_min * (1 + up_down), dw_min * (1 - up_down)
    # su (1 - gu w) = sd (1 + gd w)  =>  w* = (su - sd) / (su gu + sd gd)
    symmetry = (su - sd) / (su * gamma_up + sd * gamma_down)
    assert symmetry > 0.1  # far from 0: the test can tell
    after_up, after_down = alternate(s, np.linspace(-1, 1, 5), 3000)
    assert np.all(np.abs((after_up + after_down) / 2 - symmetry) < dw_min)


# ------------------------------------------------------------------- exp_step
@pytest.mark.parametrize("label", [0.0, 0.04, 2.4, -4.88, 9.0])
def test_exp_step_spans_the_range_in_levels_pulses(label):
    levels = 64
    s = state_for(3, model="exp_step", dw_min=2.0 / levels, nonlinearity_ltp=label,
                  nonlinearity_ltd=label, levels=levels, w_max_dtod=0.3, seed=1)
    w = s.w_min.copy()
    for _ in range(levels - 1):
        D.apply_pulses(w, s, 1, 1)
    p, c = (levels - 1) / levels, s.c_up  # one pulse short: on the curve, below w_max
    g = p if c == 0 else (1 - np.exp(-c * p)) / (1 - np.exp(-c))
    np.testing.assert_allclose(w, s.w_min + g * (s.w_max - s.w_min), rtol=0, atol=1e-9)
    if g < 1 - 1e-6:
        assert np.all(w < s.w_max)
    D.apply_pulses(w, s, 1, 1)
    np.testing.assert_allclose(w, s.w_max, rtol=0, atol=1e-9)
    for _ in range(levels):
        D.apply_pulses(w, s, -1, 1)
    np.testing.assert_allclose(w, s.w_min, rtol=0, atol=1e-9)


def pulse_curve(label_ltp, label_ltd, levels=40):
    s = state_for(1, model="exp_step", dw_min=2.0 / levels, nonlinearity_ltp=label_ltp,
                  nonlinearity_ltd=label_ltd, levels=levels)
    w, ups, downs = np.array([-1.0]), [], []
    for _ in range(levels):
        before = w[0]
        D.apply_pulses(w, s, 1, 1)
        ups.append(w[0] - before)
    for _ in range(levels):
        before = w[0]
        D.apply_pulses(w, s, -1, 1)
        downs.append(before - w[0])
    return np.array(ups), np.array(downs)


def test_exp_step_curvature_follows_the_labels():
    ups, downs = pulse_curve(2.0, -2.0)
    assert np.all(np.diff(ups) < 0)  # positive LTP label: concave, saturating potentiation
    assert np.all(np.diff(downs) < 0)  # negative LTD label: saturating depression from w_max
    assert ups[0] > 3 * ups[-1] and downs[0] > 3 * downs[-1]
    ups, downs = pulse_curve(-2.0, 2.0)
    assert np.all(np.diff(ups) > 0)  # negative LTP label: convex
    assert np.all(np.diff(downs) > 0)  # positive LTD label: depression accelerates
    ups, downs = pulse_curve(0.0, 0.0)  # label 0: linear, equal steps
    np.testing.assert_allclose(ups, 2.0 / 40, rtol=1e-9)
    np.testing.assert_allclose(downs, 2.0 / 40, rtol=1e-9)


# ------------------------------------------------------------------ pulsed update
def test_stochastic_rounding_is_unbiased_and_capped():
    n, dw_min = 100_000, 0.01
    s = state_for(n, model="constant_step", dw_min=dw_min, w_min=-5.0, w_max=5.0)
    dw = np.where(np.arange(n) % 2 == 0, 2.3, -0.4) * dw_min
    w = np.zeros(n)
    up, down = D.pulsed_update(w, dw, s, dw_min, 31, 11, 12)
    pulses = np.round(np.abs(w) / dw_min)
    np.testing.assert_allclose(np.abs(w), pulses * dw_min, rtol=1e-12)  # whole pulses
    assert set(np.unique(pulses[::2])) == {2, 3} and set(np.unique(pulses[1::2])) == {0, 1}
    # mean pulses = |dw| / dw_min within 5 standard errors sqrt(f (1 - f) / n_half)
    assert abs(pulses[::2].mean() - 2.3) < 5 * np.sqrt(0.3 * 0.7 / (n / 2))
    assert abs(pulses[1::2].mean() - 0.4) < 5 * np.sqrt(0.4 * 0.6 / (n / 2))
    assert (up, down) == (int(pulses[::2].sum()), int(pulses[1::2].sum()))
    w = np.zeros(n)
    up, down = D.pulsed_update(w, np.full(n, 100 * dw_min), s, dw_min, 31, 11, 12)
    assert (up, down) == (31 * n, 0)
    np.testing.assert_allclose(w, 31 * dw_min, rtol=1e-12)


def test_zero_update_sends_no_pulse(any_backend):
    update = any_backend.devices.pulsed_update
    s = state_for(1000, model="soft_bounds", dw_min=0.01, dw_min_ctoc=0.5)
    w0 = np.random.default_rng(0).uniform(-0.5, 0.5, 1000).astype(np.float32)
    w = w0.copy()
    assert update(w, np.zeros(1000, np.float32), s, 0.01, 31, 1, 2) == (0, 0)
    np.testing.assert_array_equal(w, w0)
    dw = np.where(np.arange(1000) % 3 == 0, 0.05, 0.0).astype(np.float32)
    up, down = update(w, dw, s, 0.01, 31, 1, 2)
    assert up == 5 * 334 and down == 0
    np.testing.assert_array_equal(w[dw == 0], w0[dw == 0])
    assert np.all(w[dw != 0] != w0[dw != 0])


REPLAY_DEVICE = dict(dw_min=0.02, dw_min_dtod=0.3, dw_min_ctoc=0.3, up_down=0.1,
                     up_down_dtod=0.1, w_min_dtod=0.2, w_max_dtod=0.2, gamma_up=0.6,
                     gamma_down=1.2, nonlinearity_ltp=2.4, nonlinearity_ltd=-4.88, levels=97,
                     stuck_at_min=0.03, stuck_at_max=0.03, stuck_at_initial=0.03)


# cycle-to-cycle noise relative to the response (aihwkit) or added to it (NeuroSim)
NOISE_MODELS = {"relative": {}, "additive": {"dw_min_ctoc": 0.0, "write_noise": 0.01}}


@pytest.mark.parametrize("noise", NOISE_MODELS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", DEVICE_MODELS)
def test_fast_replays_the_reference_exactly(fast, model, dtype, noise):
    """The same pulse counts and, with the same draws, the same weights (on CUDA to the few
    ulp of its library functions: conftest.BackendUnderTest.assert_replays)."""
    kernels = fast.devices
    n = 3000
    s = state_for(n, seed=9, layer=2, model=model, **{**REPLAY_DEVICE, **NOISE_MODELS[noise]})
    generator = np.random.default_rng(1)
    w = D.place_initial_weights(s, generator.uniform(-0.6, 0.6, n).astype(dtype))
    replayed = w.copy()
    for t in range(4):  # successive programming events, keyed like the chip keys them
        dw = (generator.normal(0, 0.15, n) * (generator.random(n) < 0.8)).astype(dtype)
        keys = (rng.stream_key(9, t, 2, rng.Purpose.PULSE_ROUNDING),
                rng.stream_key(9, t, 2, rng.Purpose.PULSE_NOISE))
        # the controller's pulse unit (0.025) need not be the device's nominal step (0.02)
        counts = D.pulsed_update(w, dw, s, 0.025, 31, *keys)
        assert counts == kernels.pulsed_update(replayed, dw, s, 0.025, 31, *keys)
        assert counts[0] > 0 and counts[1] > 0
        fast.assert_replays(replayed, w)
    signs = np.where(generator.random(n) < 0.5, 1, -1)
    D.apply_pulses(w, s, signs, 5, key_noise=77)
    kernels.apply_pulses(replayed, s, signs, 5, key_noise=77)
    fast.assert_replays(replayed, w)
    assert replayed.dtype == np.dtype(dtype)


def test_update_split_into_segments_equals_one_call(any_backend):
    update = any_backend.devices.pulsed_update
    n, split = 2001, 777
    s = state_for(n, seed=1, model="exp_step", **{**REPLAY_DEVICE, "dw_min": 0.02})
    generator = np.random.default_rng(3)
    w0 = D.place_initial_weights(s, generator.uniform(-0.6, 0.6, n))
    dw = generator.normal(0, 0.1, n)
    whole = w0.copy()
    counts = update(whole, dw, s, 0.02, 31, 5, 6)
    parts = w0.copy()
    first = update(parts[:split], dw[:split], s, 0.02, 31, 5, 6, start=0)
    second = update(parts[split:], dw[split:], s, 0.02, 31, 5, 6, start=split)
    np.testing.assert_array_equal(parts, whole)
    assert counts == (first[0] + second[0], first[1] + second[1])
    other = w0.copy()  # and the keys matter
    update(other, dw, s, 0.02, 31, 5, 7)
    assert not np.array_equal(other, whole)


# ------------------------------------------------------------------------- drift
def test_power_law_drift():
    w = np.array([-0.5, 0.0, 0.25, 1.0], dtype=np.float32)
    out = D.drift(w, 10.0, 1.0, 0.1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, w * 10.0 ** -0.1, rtol=1e-6)
    np.testing.assert_array_equal(D.drift(w, 1.0, 1.0, 0.1), w)  # t = t0: no drift yet
    np.testing.assert_array_equal(D.drift(w, 0.5, 1.0, 0.1), w)  # before programming
    nu = np.array([0.0, 0.05, 0.1, 0.2])
    np.testing.assert_allclose(D.drift(w.astype(np.float64), 100.0, 2.0, nu),
                               w * 50.0 ** -nu, rtol=1e-12)
    with pytest.raises(ValueError):
        D.drift(w, 1.0, 0.0, 0.1)


def test_device_state_is_a_plain_dataclass():
    s = state_for(10, model="exp_step", nonlinearity_ltp=1.0, nonlinearity_ltd=0.0, levels=32)
    assert dataclasses.is_dataclass(s) and s.n == 10
    assert s.c_up == pytest.approx(1 / 1.251653, rel=1e-6) and s.c_down == 0.0
    assert s.stuck.dtype == np.int8 and s.step_up.dtype == np.float64
