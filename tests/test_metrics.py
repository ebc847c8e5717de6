"""Known-answer and property tests of neurosim.metrics (DESIGN.md section 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurosim import metrics as M

RNG = np.random.default_rng(12345)


# ---------------------------------------------------------------- angles


def test_angle_identical_opposite_orthogonal():
    W = RNG.standard_normal((10, 100))
    assert M.angle_between(W, W) == 0.0
    assert M.angle_between(W, -W) == 180.0
    assert M.angle_between(W, 3.0 * W) == pytest.approx(0.0, abs=1e-10)
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.0, 2.0, 0.0])
    assert M.angle_between(a, b) == pytest.approx(90.0, abs=1e-12)
    assert M.angle_between([1.0, 0.0], [1.0, 1.0]) == pytest.approx(45.0, abs=1e-12)
    assert M.angle_between([1.0, 0.0], [-1.0, math.sqrt(3.0)]) == pytest.approx(120.0, abs=1e-12)


def test_angle_is_accurate_near_zero():
    # arccos(cos) would lose this: cos(1e-7 rad) rounds to 1 in float64.
    a = np.array([1.0, 0.0])
    b = np.array([math.cos(1e-7), math.sin(1e-7)])
    assert M.angle_between(a, b) == pytest.approx(math.degrees(1e-7), rel=1e-6)


def test_angle_returns_python_float_and_accepts_float32():
    W = RNG.standard_normal((5, 7)).astype(np.float32)
    out = M.angle_between(W, W + 1)
    assert type(out) is float
    ref = M.angle_between(W.astype(np.float64), W.astype(np.float64) + 1)
    assert out == pytest.approx(ref, abs=1e-5)


def test_angle_zero_norm_and_nonfinite_give_nan():
    assert math.isnan(M.angle_between(np.zeros(3), np.ones(3)))
    assert math.isnan(M.angle_between(np.ones(3), np.zeros(3)))
    assert math.isnan(M.angle_between([1.0, np.nan], [1.0, 1.0]))


def test_angle_shape_mismatch_raises():
    with pytest.raises(ValueError):
        M.angle_between(np.ones((2, 3)), np.ones((3, 2)))


def test_alignment_angle_known_cases():
    W = RNG.standard_normal((10, 100))
    assert M.alignment_angle(W, W.T) == 0.0
    assert M.alignment_angle(W, 0.5 * W.T) == 0.0
    assert M.alignment_angle(W, -W.T) == 180.0
    # orthogonal in the Frobenius inner product
    W2 = np.array([[1.0, 0.0], [0.0, 0.0]])
    B2 = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert M.alignment_angle(W2, B2) == pytest.approx(90.0, abs=1e-12)
    # B vs W^T matters: the transpose of this B is not W^T's transpose
    W3 = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert M.alignment_angle(W3, W3.T) == 0.0
    assert M.alignment_angle(W3, W3) > 0.0
    assert M.alignment_angle(W3, W3) == pytest.approx(
        math.degrees(math.acos((1 * 1 + 2 * 3 + 3 * 2 + 4 * 4) / 30.0)), abs=1e-10
    )


def test_alignment_angle_requires_transposed_shape():
    W = np.ones((10, 100))
    with pytest.raises(ValueError):
        M.alignment_angle(W, W)


def test_random_high_dimensional_matrices_are_near_orthogonal():
    rng = np.random.default_rng(0)
    angles = [
        M.alignment_angle(rng.standard_normal((100, 784)), rng.standard_normal((784, 100)))
        for _ in range(5)
    ]
    # std of cos is 1/sqrt(78400) ~ 0.0036 rad ~ 0.2 degrees
    for a in angles:
        assert abs(a - 90.0) < 2.0


def test_neuron_alignment_angles_constructed():
    # 3 hidden neurons, 2 outputs. W_next: (2, 3); B_next: (3, 2)
    W_next = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    B_next = np.array(
        [
            [2.0, 0.0],  # neuron 0: parallel to W[:,0] = (1, 0) -> 0
            [1.0, 0.0],  # neuron 1: W[:,1] = (0, 1) -> 90
            [-1.0, -1.0],  # neuron 2: W[:,2] = (1, 1) -> 180
        ]
    )
    ang = M.neuron_alignment_angles(W_next, B_next)
    assert ang.shape == (3,)
    assert ang.dtype == np.float64
    np.testing.assert_allclose(ang, [0.0, 90.0, 180.0], atol=1e-12)


def test_neuron_alignment_angles_match_loop_and_use_columns_not_rows():
    rng = np.random.default_rng(1)
    W_next = rng.standard_normal((10, 30))
    B_next = rng.standard_normal((30, 10))
    ang = M.neuron_alignment_angles(W_next, B_next)
    loop = [M.angle_between(W_next[:, j], B_next[j, :]) for j in range(30)]
    np.testing.assert_allclose(ang, loop, atol=1e-10)
    # perfectly aligned feedback: every neuron at 0
    np.testing.assert_array_equal(M.neuron_alignment_angles(W_next, W_next.T), np.zeros(30))
    # scaling one neuron's feedback does not change its angle
    B2 = W_next.T.copy()
    B2[4] *= 7.0
    np.testing.assert_allclose(M.neuron_alignment_angles(W_next, B2), np.zeros(30), atol=1e-12)


def test_neuron_alignment_dead_neuron_is_nan():
    W_next = np.array([[1.0, 0.0], [1.0, 0.0]])
    B_next = np.array([[1.0, 1.0], [1.0, 1.0]])
    ang = M.neuron_alignment_angles(W_next, B_next)
    assert ang[0] == 0.0
    assert math.isnan(ang[1])
    with pytest.raises(ValueError):
        M.neuron_alignment_angles(W_next, np.ones((3, 2)))


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float64, n, elements=finite), hnp.arrays(np.float64, n, elements=finite)
        )
    )
)
def test_angle_properties(ab):
    a, b = ab
    t = M.angle_between(a, b)
    if not np.any(a) or not np.any(b):
        assert math.isnan(t)
        return
    assert 0.0 <= t <= 180.0
    assert M.angle_between(b, a) == t
    assert M.angle_between(a, a) == 0.0
    # invariant to positive scaling, reflected by negation
    assert M.angle_between(2.5 * a, b) == pytest.approx(t, abs=1e-6)
    assert M.angle_between(-a, b) == pytest.approx(180.0 - t, abs=1e-6)


# ---------------------------------------------------------------- singular values / effective rank


def test_singular_values_descending():
    W = np.diag([1.0, 3.0, 2.0])
    np.testing.assert_allclose(M.singular_values(W), [3.0, 2.0, 1.0])
    s = M.singular_values(RNG.standard_normal((100, 784)).astype(np.float32))
    assert s.dtype == np.float64 and s.shape == (100,)
    assert np.all(np.diff(s) <= 0)


def test_effective_rank_known_answers():
    for n in (1, 2, 5, 100):
        assert M.effective_rank(np.eye(n)) == pytest.approx(n, rel=1e-12)
    u = RNG.standard_normal(20)
    v = RNG.standard_normal(30)
    assert M.effective_rank(np.outer(u, v)) == pytest.approx(1.0, abs=1e-12)
    assert M.effective_rank(np.diag([1.0, 1.0, 0.0])) == pytest.approx(2.0, rel=1e-12)
    assert M.effective_rank(np.zeros((4, 3))) == 0.0
    # Roy & Vetterli on sigma = (2, 1): p = (2/3, 1/3)
    p = np.array([2 / 3, 1 / 3])
    expected = math.exp(-np.sum(p * np.log(p)))
    assert M.effective_rank(np.diag([2.0, 1.0])) == pytest.approx(expected, rel=1e-12)
    # orthogonal matrix
    Q, _ = np.linalg.qr(RNG.standard_normal((8, 8)))
    assert M.effective_rank(Q) == pytest.approx(8.0, rel=1e-10)


def test_effective_rank_scale_invariant_and_float32():
    W = RNG.standard_normal((100, 784))
    r = M.effective_rank(W)
    assert 1.0 < r < 100.0
    for c in (1e-30, 1e-3, 7.0, 1e30, -2.0):
        assert M.effective_rank(c * W) == pytest.approx(r, rel=1e-9)
    assert M.effective_rank(W.astype(np.float32)) == pytest.approx(r, rel=1e-5)
    assert math.isnan(M.effective_rank(np.full((2, 2), np.nan)))


def test_effective_rank_from_a_spectrum_is_the_matrix_effective_rank():
    """weight_spectra takes a layer's effective rank from the singular values it records
    (one SVD): the same as from the matrix, for any scale, and 0 for a zero matrix."""
    for W in (RNG.standard_normal((100, 784)), np.diag([1.0, 1.0, 0.0]),
              np.outer(RNG.standard_normal(5), RNG.standard_normal(3))):
        for c in (1e-30, 1.0, 1e30):
            assert M.spectrum_effective_rank(M.singular_values(c * W), W.shape) == pytest.approx(
                M.effective_rank(W), rel=1e-12)
    assert M.spectrum_effective_rank(M.singular_values(np.zeros((4, 3))), (4, 3)) == 0.0
    assert M.spectrum_effective_rank(np.zeros(0), (0, 3)) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
        # Entries are 0 or far from underflow, so scaling by c cannot flush them to zero.
        lambda s: hnp.arrays(np.float64, s, elements=st.floats(-1e3, 1e3, allow_nan=False)
                             .filter(lambda v: v == 0 or abs(v) > 1e-100))
    ),
    st.floats(1e-3, 1e3),
)
def test_effective_rank_properties(A, c):
    r = M.effective_rank(A)
    if not np.any(A):
        assert r == 0.0
        return
    assert 1.0 <= r <= min(A.shape)
    assert r <= np.linalg.matrix_rank(A) + 1e-9
    assert M.effective_rank(c * A) == pytest.approx(r, rel=1e-6, abs=1e-9)
    assert M.effective_rank(A.T) == pytest.approx(r, rel=1e-9)


def test_gram_effective_rank_known_answers():
    n = 6
    # one-hot neurons: each neuron active on a different sample -> orthogonal columns
    assert M.gram_effective_rank(np.eye(n)) == pytest.approx(n, rel=1e-12)
    assert M.gram_effective_rank(np.eye(10)[:, :n] * np.arange(1, n + 1)) == pytest.approx(n, rel=1e-12)
    # identical neurons (up to positive scale) -> 1
    h = RNG.random(50)
    H = np.stack([h, 2 * h, 0.3 * h, h], axis=1)
    assert M.gram_effective_rank(H) == pytest.approx(1.0, abs=1e-12)
    # two groups of identical neurons, orthogonal between groups -> Gram = blockdiag(ones(2), ones(2))
    H2 = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]])
    assert M.gram_effective_rank(H2) == pytest.approx(2.0, rel=1e-12)


def test_gram_effective_rank_drops_dead_neurons():
    H = np.zeros((5, 4))
    H[0, 0] = 1.0
    H[1, 2] = 3.0
    # neurons 1 and 3 are dead; the rest are orthogonal
    assert M.gram_effective_rank(H) == pytest.approx(2.0, rel=1e-12)
    assert M.gram_effective_rank(np.zeros((5, 4))) == 0.0


def test_gram_effective_rank_is_cosine_not_covariance():
    # scaling individual neurons must not change the result
    H = RNG.standard_normal((40, 12))
    r = M.gram_effective_rank(H)
    scales = np.linspace(0.01, 100, 12)
    assert M.gram_effective_rank(H * scales) == pytest.approx(r, rel=1e-9)
    # and it equals the hand-built Gram computation
    U = H / np.linalg.norm(H, axis=0)
    assert r == pytest.approx(M.effective_rank(U.T @ U), rel=1e-12)
    assert 1.0 < r < 12.0


# ---------------------------------------------------------------- AUC


def test_auc_constant_and_ramp():
    e = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    assert M.test_accuracy_auc(e, np.full(5, 0.7)) == pytest.approx(0.7, abs=1e-15)
    assert M.test_accuracy_auc([0.0, 1.0], [0.0, 1.0]) == pytest.approx(0.5, abs=1e-15)
    assert M.test_accuracy_auc([0.0, 0.25, 1.0], [0.0, 0.25, 1.0]) == pytest.approx(0.5, abs=1e-15)
    # ramp 0 -> 1 over [0, 1], then flat at 1 up to epoch 3: area = 0.5 + 2 over span 3
    assert M.test_accuracy_auc([0.0, 1.0, 3.0], [0.0, 1.0, 1.0]) == pytest.approx(2.5 / 3.0, abs=1e-15)


def test_auc_trapezoid_hand_computed():
    e = [0.0, 1.0, 2.0, 4.0]
    a = [0.1, 0.5, 0.7, 0.9]
    area = 0.5 * (0.1 + 0.5) * 1 + 0.5 * (0.5 + 0.7) * 1 + 0.5 * (0.7 + 0.9) * 2
    assert M.test_accuracy_auc(e, a) == pytest.approx(area / 4.0, abs=1e-15)


def test_auc_interpolates_window_bounds():
    e = [0.0, 2.0]
    a = [0.0, 1.0]
    # acc(e) = e/2 ; mean over [0.5, 1.5] = acc(1.0) = 0.5 ; over [1, 2] = 0.75
    assert M.test_accuracy_auc(e, a, 0.5, 1.5) == pytest.approx(0.5, abs=1e-15)
    assert M.test_accuracy_auc(e, a, 1.0, 2.0) == pytest.approx(0.75, abs=1e-15)
    assert M.test_accuracy_auc(e, a, start=1.0) == pytest.approx(0.75, abs=1e-15)
    assert M.test_accuracy_auc(e, a, end=1.0) == pytest.approx(0.25, abs=1e-15)
    # window inside one segment of a non-linear curve
    e2 = [0.0, 1.0, 2.0]
    a2 = [0.2, 0.6, 0.6]
    # over [0.5, 1.5]: from 0.4 to 0.6 on [0.5,1] (mean 0.5) then flat 0.6 on [1,1.5]
    assert M.test_accuracy_auc(e2, a2, 0.5, 1.5) == pytest.approx(0.55, abs=1e-15)


def test_first_epoch_auc_with_fractional_evaluations():
    e = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0]
    a = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98]
    x = np.array(e[:7])
    y = np.array(a[:7])
    expected = np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / 1.0
    first = M.test_accuracy_auc(e, a, 0, 1)
    assert first == pytest.approx(expected, abs=1e-15)
    # later epochs must not leak into the first-epoch window
    a_changed = a[:7] + [0.0, 0.0]
    assert M.test_accuracy_auc(e, a_changed, 0, 1) == first
    # the whole-run AUC differs and sits between min and max
    whole = M.test_accuracy_auc(e, a)
    assert 0.1 < whole < 0.98 and whole != first


def test_auc_invalid_inputs():
    with pytest.raises(ValueError):
        M.test_accuracy_auc([0.0, 1.0], [10.0, 90.0])  # percent
    with pytest.raises(ValueError):
        M.test_accuracy_auc([1.0, 0.0], [0.1, 0.2])  # not increasing
    with pytest.raises(ValueError):
        M.test_accuracy_auc([0.5, 1.0], [0.1, 0.2], 0.0, 1.0)  # extrapolation
    with pytest.raises(ValueError):
        M.test_accuracy_auc([0.0, 1.0], [0.1, 0.2], 0.5, 0.5)
    with pytest.raises(ValueError):
        M.test_accuracy_auc([0.0], [0.1])
    with pytest.raises(ValueError):
        M.test_accuracy_auc([0.0, np.nan], [0.1, 0.2])  # epochs must be numbers


def test_auc_of_a_diverged_curve_is_nan():
    # a chip whose outputs overflowed has no accuracy (nan): the area is undefined
    assert np.isnan(M.test_accuracy_auc([0.0, 0.5, 1.0], [0.1, 0.4, np.nan]))


def test_auc_reads_only_the_accuracies_of_its_window():
    """A chip that diverged in epoch 2 (nan from there on) still has a first-epoch AUC:
    the area over [0, 1] reads the points in it, and a point beyond an end only where
    that end falls between two points (it was nan whatever the window before)."""
    e, a = [0.0, 0.5, 1.0, 2.0], [0.1, 0.5, 0.8, np.nan]
    assert M.test_accuracy_auc(e, a, 0.0, 1.0) == pytest.approx(0.475, abs=1e-15)
    assert M.test_accuracy_auc(e, a, 0.0, 0.75) == pytest.approx(0.29375 / 0.75, abs=1e-15)
    assert np.isnan(M.test_accuracy_auc(e, a, 0.0, 1.5))  # interpolates toward the nan
    assert np.isnan(M.test_accuracy_auc(e, a))
    assert M.test_accuracy_auc([0.0, 1.0, 2.0], [np.nan, 0.5, 0.7], 1.0, 2.0) == pytest.approx(0.6)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20),
    st.floats(0.0, 1.0),
)
def test_auc_bounded_and_constant_property(accs, c):
    e = np.arange(len(accs), dtype=float) * 0.5
    auc = M.test_accuracy_auc(e, accs)
    assert min(accs) - 1e-12 <= auc <= max(accs) + 1e-12
    assert M.test_accuracy_auc(e, np.full(len(accs), c)) == pytest.approx(c, abs=1e-12)


# ---------------------------------------------------------------- softmax / loss / readout


def test_softmax_and_cross_entropy():
    z = np.zeros((7, 10))
    np.testing.assert_allclose(M.softmax(z), np.full((7, 10), 0.1))
    labels = np.arange(7) % 10
    assert M.cross_entropy(z, labels) == pytest.approx(-math.log(1 / 10), rel=1e-14)
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((50, 10)) * 3
    y = rng.integers(0, 10, 50)
    naive = -np.mean(
        [math.log(math.exp(logits[i, y[i]]) / sum(math.exp(v) for v in logits[i])) for i in range(50)]
    )
    assert M.cross_entropy(logits, y) == pytest.approx(naive, rel=1e-12)
    assert M.cross_entropy(logits.astype(np.float32), y) == pytest.approx(naive, rel=1e-6)
    # one-hot targets give the same loss
    assert M.cross_entropy(logits, np.eye(10)[y]) == pytest.approx(naive, rel=1e-12)
    # stable for huge logits
    big = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert M.cross_entropy(big, [0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert M.cross_entropy(big, [1, 0]) == pytest.approx(1000.0, rel=1e-12)
    p = M.softmax(big)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_cross_entropy_bad_labels_raise():
    with pytest.raises(ValueError):
        M.cross_entropy(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError):
        M.cross_entropy(np.zeros((2, 3)), [0])


def test_accuracy():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [5.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    assert M.accuracy(logits, [0, 2, 1, 1]) == 0.75
    assert M.accuracy(logits, [1, 1, 1, 0]) == 0.0
    assert M.accuracy(logits, np.eye(3)[[0, 2, 0, 1]]) == 1.0


def test_accuracy_of_non_finite_outputs_is_nan():
    # np.argmax picks class 0 for a nan row: that is not a prediction
    logits = np.array([[np.nan] * 3, [0.0, 1.0, 3.0]])
    assert np.isnan(M.accuracy(logits, [0, 2]))
    assert np.isnan(M.accuracy(np.array([[np.inf, 0.0, 0.0]]), [0]))


def test_readout_probability_uniform_is_chance():
    for C in (4, 10):
        probs = M.softmax(np.zeros((33, C)))
        np.testing.assert_allclose(M.readout_probability(probs), np.full(C, 1.0 / C), rtol=1e-14)
        assert M.readout_deviation_from_chance(probs) == 0.0
    probs = M.softmax(np.zeros((8, 4)))
    np.testing.assert_array_equal(M.readout_probability(probs), np.full(4, 0.25))


def test_readout_deviation_known():
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    np.testing.assert_allclose(M.readout_probability(probs), [0.4, 0.1, 0.1, 0.4])
    assert M.readout_deviation_from_chance(probs) == pytest.approx(0.15, abs=1e-15)
    with pytest.raises(ValueError):
        M.readout_probability(np.array([[2.0, -1.0]]))  # logits, not probabilities


def test_generalization_and_error_gap():
    assert M.generalization_gap(0.2, 0.35) == pytest.approx(0.15)
    assert type(M.generalization_gap(0.2, 0.35)) is float
    np.testing.assert_allclose(M.generalization_gap([0.5, 0.2], [0.6, 0.4]), [0.1, 0.2])
    assert M.error_gap(0.99, 0.97) == pytest.approx(0.02)


# ---------------------------------------------------------------- PCA


def test_pca_recovers_known_direction():
    rng = np.random.default_rng(7)
    D = 1000
    d = rng.standard_normal(D)
    d /= np.linalg.norm(d)
    x0 = rng.standard_normal(D)
    t = np.linspace(0.0, 5.0, 20)
    traj = x0 + t[:, None] * d
    res = M.pca_trajectory(traj, n_components=2)
    assert res.explained_variance_ratio[0] == pytest.approx(1.0, abs=1e-12)
    assert abs(abs(res.components[0] @ d) - 1.0) < 1e-12
    proj = res.trajectories[0][:, 0]
    # projections are the centred positions along d, up to a sign
    sign = np.sign(proj[-1] - proj[0])
    np.testing.assert_allclose(sign * proj, t - t.mean(), atol=1e-10)
    np.testing.assert_allclose(res.trajectories[0][:, 1], 0.0, atol=1e-10)


def test_pca_multiple_trajectories_and_extra_points():
    rng = np.random.default_rng(8)
    D = 50
    e1, e2 = np.eye(D)[0], np.eye(D)[1]
    t = np.linspace(0, 1, 10)[:, None]
    A = 3 * t * e1
    B = 3 * t * e1 + 2 * e2 + 1e-9 * rng.standard_normal((10, D))
    res = M.pca_trajectory([A, B], extra_points=np.stack([e1, e2]), n_components=2)
    assert [tr.shape for tr in res.trajectories] == [(10, 2), (10, 2)]
    assert res.extra_points.shape == (2, 2)
    assert res.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-9)
    # components span e1, e2; projection of a point p is components @ (p - mean)
    np.testing.assert_allclose(res.extra_points, (np.stack([e1, e2]) - res.mean) @ res.components.T)
    np.testing.assert_allclose(res.components @ res.components.T, np.eye(2), atol=1e-12)
    # distances inside the plane are preserved
    d_traj = np.linalg.norm(res.trajectories[0][-1] - res.trajectories[0][0])
    assert d_traj == pytest.approx(3.0, abs=1e-8)
    single = M.pca_trajectory(A, extra_points=e1, n_components=1)
    assert single.extra_points.shape == (1,)
    with pytest.raises(ValueError):
        M.pca_trajectory(A, n_components=11)


def test_pca_sign_is_deterministic():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((15, 30))
    r1 = M.pca_trajectory(X, n_components=3)
    r2 = M.pca_trajectory(X.copy(), n_components=3)
    np.testing.assert_array_equal(r1.components, r2.components)
    for c in r1.components:
        assert c[np.argmax(np.abs(c))] > 0
