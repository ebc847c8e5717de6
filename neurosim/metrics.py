"""Metrics of the paper (DESIGN.md section 5), as pure functions on numpy arrays.

Every function accepts float32 or float64 arrays, computes in float64 and returns Python
floats or float64 arrays. Nothing here knows about chips, backends or configs: the simulator
passes the chip's *effective* weights (the values the arrays actually realise).

Shape conventions (layer ``l``, ``a_l = W_l h_{l-1} + b_l``):

* forward weight ``W_l``: ``(n_l, n_{l-1})``;
* FA feedback ``B_l``: ``(n_{l-1}, n_l)``, the shape of ``W_l^T`` (``delta_{l-1} ∝ B_l delta_l``);
* DFA feedback of hidden layer ``l``: ``(n_l, n_L)`` (``delta_l ∝ B_l e``; SDFA's and DRTP's
  arrays have the same shape).

Degenerate inputs (a zero vector for an angle, a dead neuron, no variance) give ``nan`` or
are dropped, as each docstring says; malformed inputs (wrong shapes, accuracies outside
[0, 1], probabilities that are not probabilities) raise :class:`ValueError`.

References: Cheon, Lee & Paik, "Pretraining with Random Noise for Fast and Robust Learning
without Weight Transport", NeurIPS 2024; Roy & Vetterli, "The effective rank: a measure of
effective dimensionality", EUSIPCO 2007.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

__all__ = [
    "angle_between",
    "alignment_angle",
    "neuron_alignment_angles",
    "singular_values",
    "effective_rank",
    "spectrum_effective_rank",
    "gram_effective_rank",
    "test_accuracy_auc",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "accuracy",
    "readout_probability",
    "readout_deviation_from_chance",
    "generalization_gap",
    "error_gap",
    "PCATrajectory",
    "pca_trajectory",
]


def _f64(x) -> np.ndarray:
    """``x`` as a float64 array (float32 inputs are widened exactly)."""
    return np.asarray(x, dtype=np.float64)


def _unit_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``m`` scaled to unit Euclidean norm, and a mask of the rows that could be.

    Each row is first divided by its largest absolute entry so that the norm neither
    underflows (entries ~1e-200) nor overflows (entries ~1e200). Rows that are all zero or
    contain a non-finite value are marked invalid (their output row is left as zeros).
    """
    scale = np.max(np.abs(m), axis=1) if m.shape[1] else np.zeros(m.shape[0])
    valid = np.isfinite(scale) & (scale > 0) & np.all(np.isfinite(m), axis=1)
    out = np.zeros_like(m)
    if np.any(valid):
        scaled = m[valid] / scale[valid, None]
        out[valid] = scaled / np.linalg.norm(scaled, axis=1, keepdims=True)
    return out, valid


def _row_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between corresponding rows of two equally shaped 2-D arrays.

    Uses the rounding-stable form ``theta = 2 atan2(|u - v|, |u + v|)`` with ``u, v`` the
    unit vectors, which equals ``arccos(<u, v>)`` exactly in real arithmetic but is accurate
    near 0 and 180 degrees (parallel vectors give exactly 0, opposite exactly 180).
    Rows where either input has zero norm or a non-finite entry give ``nan``.
    """
    u, ok_u = _unit_rows(a)
    v, ok_v = _unit_rows(b)
    diff = np.linalg.norm(u - v, axis=1)
    summ = np.linalg.norm(u + v, axis=1)
    theta = np.degrees(2.0 * np.arctan2(diff, summ))
    theta = np.clip(theta, 0.0, 180.0)
    theta[~(ok_u & ok_v)] = np.nan
    return theta


def angle_between(a, b) -> float:
    """Angle between two arrays viewed as flat vectors, in degrees (range [0, 180]).

    ``theta = arccos( clip( <vec a, vec b> / (|a| |b|), -1, 1 ) )``, reported in degrees.
    (Computed as ``2 atan2(|u - v|, |u + v|)`` with unit vectors ``u, v``: the same angle,
    without the rounding error of ``arccos`` near 0 and 180 degrees.)

    ``a`` and ``b`` must have the same shape (a transposed operand is a bug, not a vector of
    the same length). Use it for the angle between a rule's update and the true BP gradient.

    Returns ``nan`` if either array has zero norm (the angle is undefined) or contains a
    non-finite value (a diverged run).
    """
    a = _f64(a)
    b = _f64(b)
    if a.shape != b.shape:
        raise ValueError(f"angle_between: shapes differ: {a.shape} vs {b.shape}")
    return float(_row_angles(a.reshape(1, -1), b.reshape(1, -1))[0])


def alignment_angle(W, B) -> float:
    """Layer alignment angle between forward weights and feedback weights, in degrees.

    ``theta_l = arccos( <vec W_l, vec B_l^T> / (|W_l|_F |B_l|_F) )`` (DESIGN.md §5).

    ``W`` is the forward weight ``(n_out, n_in)`` and ``B`` the feedback that carries the
    error of this layer's output back to its input, shape ``(n_in, n_out)`` (= ``W^T``'s).
    0 degrees means ``B = c W^T`` with ``c > 0`` (BP-like feedback); independent random
    high-dimensional matrices sit near 90 degrees.

    For a DFA hidden layer ``l`` pass the product of the forward weights above it,
    ``W = W_L ... W_{l+1}`` (shape ``(n_L, n_l)``), and ``B = B_l`` (shape ``(n_l, n_L)``).

    Returns ``nan`` if either matrix is all zeros or non-finite.
    """
    W = _f64(W)
    B = _f64(B)
    if W.ndim != 2 or B.ndim != 2:
        raise ValueError(f"alignment_angle: W and B must be 2-D, got {W.shape} and {B.shape}")
    if B.shape != W.T.shape:
        raise ValueError(
            f"alignment_angle: B must have the shape of W^T {W.T.shape}, got {B.shape}"
        )
    return angle_between(W, B.T)


def neuron_alignment_angles(W_next, B_next) -> np.ndarray:
    """Per-neuron alignment angles of a hidden layer, in degrees; shape ``(n,)``.

    For hidden neuron ``j`` of layer ``l`` (``n = n_l`` neurons):
    ``theta_j = angle( W_{l+1}[:, j], B_{l+1}[j, :] )``, the angle between its outgoing
    forward weights (column ``j`` of the next layer's forward matrix, shape ``(n_{l+1}, n_l)``)
    and its feedback weights (row ``j`` of the next layer's feedback, shape ``(n_l, n_{l+1})``).
    For DFA's last hidden layer pass ``W_L`` and that layer's ``B`` (shape ``(n_{L-1}, n_L)``).

    Summarise with mean ± std over the finite entries, the std of all the layer's neurons
    (population, ddof = 0; not ``neurosim.stats.mean_std``, the sample std over seeds). A
    neuron whose forward column or feedback row is all zeros (or non-finite) gets ``nan``.
    """
    W_next = _f64(W_next)
    B_next = _f64(B_next)
    if W_next.ndim != 2 or B_next.ndim != 2:
        raise ValueError(
            f"neuron_alignment_angles: inputs must be 2-D, got {W_next.shape} and {B_next.shape}"
        )
    if B_next.shape != W_next.T.shape:
        raise ValueError(
            "neuron_alignment_angles: B_next must have the shape of W_next^T "
            f"{W_next.T.shape}, got {B_next.shape}"
        )
    return _row_angles(W_next.T, B_next)


def singular_values(W) -> np.ndarray:
    """Singular values ``sigma_1 >= sigma_2 >= ... >= 0`` of a 2-D array (float64, descending).

    Length ``min(W.shape)``; units are those of ``W``. Raises ``ValueError`` on non-finite input.
    """
    W = _f64(W)
    if W.ndim != 2:
        raise ValueError(f"singular_values: expected a 2-D array, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("singular_values: input contains nan or inf")
    if W.size == 0:
        return np.zeros(0)
    return np.linalg.svd(W, compute_uv=False)


def effective_rank(matrix) -> float:
    """Effective rank of a 2-D array (Roy & Vetterli 2007); dimensionless.

    ``erank = exp( -sum_k p_k log p_k )``, ``p_k = sigma_k / sum_j sigma_j`` over the nonzero
    singular values ``sigma_k`` (with ``0 log 0 = 0``). It lies in ``[1, rank]`` for a nonzero
    matrix, equals ``n`` for any multiple of an ``n x n`` orthogonal matrix and 1 for a
    rank-1 matrix, and is invariant to scaling the matrix.

    Singular values below numpy's ``matrix_rank`` tolerance (``sigma_max * max(shape) * eps``)
    are numerical zeros and are dropped. The result is clipped to ``[1, rank]`` to remove
    last-bit rounding. A zero (or empty) matrix gives 0.0; a matrix with nan/inf gives nan.
    """
    M = _f64(matrix)
    if M.ndim != 2:
        raise ValueError(f"effective_rank: expected a 2-D array, got shape {M.shape}")
    if M.size == 0:
        return 0.0
    if not np.all(np.isfinite(M)):
        return float("nan")
    peak = np.max(np.abs(M))
    if peak == 0:
        return 0.0
    return spectrum_effective_rank(np.linalg.svd(M / peak, compute_uv=False), M.shape)


def spectrum_effective_rank(s: np.ndarray, shape: tuple[int, ...]) -> float:
    """:func:`effective_rank` of a finite matrix of ``shape`` from its singular values
    ``s`` (descending, of the matrix or of any positive multiple of it); 0.0 when they
    are all zero."""
    if s.size == 0 or s[0] == 0:
        return 0.0
    tol = s[0] * max(shape) * np.finfo(np.float64).eps
    s = s[s > tol]
    p = s / s.sum()
    entropy = -np.sum(p * np.log(p))
    return float(np.clip(np.exp(entropy), 1.0, float(s.size)))


def gram_effective_rank(hidden) -> float:
    """Effective rank of the neuron-by-neuron cosine-similarity Gram matrix; dimensionless.

    ``hidden`` is ``(n_samples, n_neurons)`` (one row per probe input). Each neuron's column
    ``h_j`` is normalised, ``u_j = h_j / |h_j|``, and ``G_ij = <u_i, u_j>`` (``n x n``, ones
    on the diagonal); the result is :func:`effective_rank` of ``G``. It is ``n`` when the
    neurons respond to disjoint inputs (orthogonal columns) and 1 when all neurons respond
    identically up to a positive or negative scale.

    Dead neurons (a column of zeros: the cosine similarity is undefined) are dropped before
    building ``G``; if every neuron is dead the result is 0.0. Non-finite input gives nan.
    """
    H = _f64(hidden)
    if H.ndim != 2:
        raise ValueError(
            f"gram_effective_rank: expected (n_samples, n_neurons), got shape {H.shape}"
        )
    if not np.all(np.isfinite(H)):
        return float("nan")
    U, alive = _unit_rows(H.T)
    U = U[alive]
    if U.shape[0] == 0:
        return 0.0
    return effective_rank(U @ U.T)


def _window(x: np.ndarray, lo: float, hi: float) -> slice:
    """The points of strictly increasing ``x`` (with ``x[0] <= lo < hi <= x[-1]``) that
    the piecewise-linear curve on ``[lo, hi]`` depends on: those inside, and the nearest
    one beyond an end that falls between two points (it enters the interpolation there)."""
    first = int(np.searchsorted(x, lo, side="right")) - 1  # last point at or before lo
    last = int(np.searchsorted(x, hi, side="left"))  # first point at or after hi
    return slice(first, last + 1)


def test_accuracy_auc(epochs, accuracy, start: float | None = None, end: float | None = None) -> float:
    """Normalised area under the test-accuracy curve; a fraction in [0, 1].

    ``AUC = (1 / (end - start)) * integral_{start}^{end} acc(e) de`` with ``acc`` the
    piecewise-linear interpolation of the points ``(epochs[i], accuracy[i])`` (trapezoid rule).
    ``accuracy`` is a fraction in [0, 1] and ``epochs`` is in epochs (fractional allowed),
    strictly increasing. 1.0 means 100 % accuracy from ``start`` on; a constant curve ``c``
    gives ``c``. ``start``/``end`` default to the first/last epoch; when they fall between
    points the curve is linearly interpolated there. They must lie within the evaluated range
    (no extrapolation), so the first-epoch AUC ``test_accuracy_auc(e, a, 0, 1)`` needs an
    evaluation at epoch 0 (before training) and at or after epoch 1. An accuracy that is
    ``nan`` (a diverged chip's, :func:`accuracy`) makes the area ``nan`` if the area reads
    it (:func:`_window`): a chip that diverged in epoch 2 still has a first-epoch AUC.
    """
    x = _f64(epochs)
    y = _f64(accuracy)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"test_accuracy_auc: epochs and accuracy must be 1-D of equal length, got {x.shape} and {y.shape}"
        )
    if x.size < 2:
        raise ValueError("test_accuracy_auc: need at least two evaluation points")
    if not np.all(np.isfinite(x)) or np.any(np.isinf(y)):
        raise ValueError("test_accuracy_auc: epochs and accuracy must be finite")
    if np.any(np.diff(x) <= 0):
        raise ValueError("test_accuracy_auc: epochs must be strictly increasing")
    if np.any(y < 0) or np.any(y > 1):
        raise ValueError("test_accuracy_auc: accuracy must be a fraction in [0, 1] (not percent)")
    lo = x[0] if start is None else float(start)
    hi = x[-1] if end is None else float(end)
    if not lo < hi:
        raise ValueError(f"test_accuracy_auc: need start < end, got start={lo}, end={hi}")
    if lo < x[0] or hi > x[-1]:
        raise ValueError(
            f"test_accuracy_auc: [{lo}, {hi}] is outside the evaluated epochs [{x[0]}, {x[-1]}]"
        )
    used = _window(x, lo, hi)
    x, y = x[used], y[used]
    if np.any(np.isnan(y)):
        return float("nan")
    inner = (x > lo) & (x < hi)
    xs = np.concatenate(([lo], x[inner], [hi]))
    ys = np.concatenate(([np.interp(lo, x, y)], y[inner], [np.interp(hi, x, y)]))
    area = np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) * 0.5)
    return float(area / (hi - lo))


test_accuracy_auc.__test__ = False  # not a pytest test despite its name


def _shifted(z: np.ndarray, axis: int) -> np.ndarray:
    """``z - max(z)`` along ``axis`` (an infinite max is not subtracted, to avoid inf - inf)."""
    m = np.max(z, axis=axis, keepdims=True)
    return z - np.where(np.isfinite(m), m, 0.0)


def log_softmax(logits, axis: int = -1) -> np.ndarray:
    """``log softmax(z)_c = z_c - log sum_k exp(z_k)`` along ``axis`` (max-shifted, stable)."""
    shifted = _shifted(_f64(logits), axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis: int = -1) -> np.ndarray:
    """``softmax(z)_c = exp(z_c - max z) / sum_k exp(z_k - max z)`` along ``axis``; float64 probabilities."""
    e = np.exp(_shifted(_f64(logits), axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def _check_logits_labels(z: np.ndarray, labels, fn: str) -> np.ndarray:
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{fn}: logits must be (n > 0, C > 0), got shape {z.shape}")
    lab = np.asarray(labels)
    if lab.ndim == 2:
        if lab.shape != z.shape:
            raise ValueError(f"{fn}: target distribution shape {lab.shape} != logits {z.shape}")
        return lab.astype(np.float64)
    if lab.ndim != 1 or lab.shape[0] != z.shape[0]:
        raise ValueError(f"{fn}: labels must be ({z.shape[0]},) class indices, got {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.mod(lab, 1) == 0):
            raise ValueError(f"{fn}: labels must be integer class indices")
        lab = lab.astype(np.int64)
    if np.any(lab < 0) or np.any(lab >= z.shape[1]):
        raise ValueError(f"{fn}: labels must lie in [0, {z.shape[1]})")
    return lab


def cross_entropy(logits, labels) -> float:
    """Mean softmax cross-entropy in nats.

    ``L = -(1/n) sum_i log softmax(z_i)_{y_i}`` with a max-shifted log-sum-exp. ``logits`` is
    ``(n, C)``; ``labels`` is ``(n,)`` integer class indices, or an ``(n, C)`` target
    distribution (one-hot or soft), in which case ``L = -(1/n) sum_i sum_c y_ic log softmax(z_i)_c``.
    Zero logits give ``log C``.
    """
    z = _f64(logits)
    lab = _check_logits_labels(z, labels, "cross_entropy")
    lsm = log_softmax(z, axis=1)
    if lab.ndim == 2:
        return float(-np.mean(np.sum(lab * lsm, axis=1)))
    return float(-np.mean(lsm[np.arange(z.shape[0]), lab]))


def accuracy(logits, labels) -> float:
    """Fraction of rows whose arg-max logit is the label, in [0, 1].

    ``labels``: ``(n,)`` class indices or ``(n, C)`` targets (their arg-max is the class).
    Ties go to the lowest class index (``np.argmax``). Logits that are not all finite (a
    diverged network) predict nothing: the accuracy is ``nan``, not the share of the class
    ``np.argmax`` happens to pick for a ``nan`` row.
    """
    z = _f64(logits)
    lab = _check_logits_labels(z, labels, "accuracy")
    if not np.all(np.isfinite(z)):
        return float("nan")
    if lab.ndim == 2:
        lab = np.argmax(lab, axis=1)
    return float(np.mean(np.argmax(z, axis=1) == lab))


def _check_probs(p: np.ndarray, fn: str) -> None:
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{fn}: probs must be (n > 0, C > 0), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{fn}: probs must be finite and non-negative (pass softmax outputs, not logits)")
    if not np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-4):
        raise ValueError(f"{fn}: each row of probs must sum to 1 (pass softmax outputs, not logits)")


def readout_probability(probs) -> np.ndarray:
    """Mean softmax output per class over a probe set; shape ``(C,)``, probabilities.

    ``r_c = (1/n) sum_i p_ic`` for ``probs`` of shape ``(n, C)`` whose rows are
    softmax outputs. Compare with chance ``1/C``.
    """
    p = _f64(probs)
    _check_probs(p, "readout_probability")
    return np.mean(p, axis=0)


def readout_deviation_from_chance(probs) -> float:
    """Largest deviation of the mean readout from chance, ``max_c |r_c - 1/C|``; a probability.

    ``r_c`` as in :func:`readout_probability`. Computed as ``max_c |mean_i (p_ic - 1/C)|``,
    so exactly uniform outputs give exactly 0.
    """
    p = _f64(probs)
    _check_probs(p, "readout_deviation_from_chance")
    chance = 1.0 / p.shape[1]
    return float(np.max(np.abs(np.mean(p - chance, axis=0))))


def generalization_gap(train_loss, test_loss):
    """Generalisation gap ``test_loss - train_loss`` (units of the loss, e.g. nats).

    Scalars give a float; arrays (a gap over training) give a float64 array, element-wise.
    Positive means the network does worse on unseen data.
    """
    gap = _f64(test_loss) - _f64(train_loss)
    return float(gap) if gap.ndim == 0 else gap


def error_gap(train_accuracy, test_accuracy):
    """Error gap ``(1 - test_acc) - (1 - train_acc) = train_acc - test_acc``; a fraction.

    Accuracies are fractions in [0, 1]. Scalars give a float, arrays an element-wise array.
    """
    gap = _f64(train_accuracy) - _f64(test_accuracy)
    return float(gap) if gap.ndim == 0 else gap


@dataclass(frozen=True)
class PCATrajectory:
    """Result of :func:`pca_trajectory`.

    Attributes:
        trajectories: one ``(T_i, k)`` array per input trajectory, the projections of its
            snapshots onto the principal components (units of the weights).
        extra_points: projections of ``extra_points`` (``(k,)`` for one 1-D point, ``(m, k)``
            for ``m`` points), or ``None`` if none were given.
        explained_variance_ratio: ``(k,)``, ``sigma_i^2 / sum_j sigma_j^2`` of the centred
            snapshots (fraction of total variance per component); nan if the snapshots have
            no variance at all.
        components: ``(k, D)`` orthonormal principal directions, each signed so that its
            largest-magnitude entry is positive (deterministic output).
        mean: ``(D,)`` mean of all snapshots, subtracted before projecting.
    """

    trajectories: list
    extra_points: np.ndarray | None
    explained_variance_ratio: np.ndarray
    components: np.ndarray
    mean: np.ndarray


def pca_trajectory(snapshots, extra_points=None, n_components: int = 2) -> PCATrajectory:
    """PCA of weight snapshots over training, with other points projected into the same plane.

    ``snapshots`` is a ``(T, D)`` array of flattened weights (one row per snapshot) or a list
    of ``(T_i, D)`` arrays (several trajectories, e.g. with and without preconditioning). All
    rows are stacked into ``X`` (``N x D``), centred by the overall mean ``mu``, and
    ``X - mu = U S V^T``; the components are the first ``k`` rows of ``V^T`` and a point ``x``
    projects to ``V_k^T (x - mu)``. ``extra_points`` (``(D,)`` or ``(m, D)``, e.g. ``vec B^T``)
    are projected but do not influence the fit. ``n_components`` must be ``<= min(N, D)``.
    See :class:`PCATrajectory` for the returned fields.
    """
    if isinstance(snapshots, np.ndarray) and snapshots.ndim == 2:
        parts = [snapshots]
    elif isinstance(snapshots, np.ndarray):
        raise ValueError(f"pca_trajectory: snapshots must be (T, D), got shape {snapshots.shape}")
    else:
        parts = list(snapshots)
    if not parts:
        raise ValueError("pca_trajectory: no snapshots")
    arrays = [_f64(p) for p in parts]
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                "pca_trajectory: every trajectory must be (T_i, D) with the same D, got "
                + ", ".join(str(b.shape) for b in arrays)
            )
    X = np.concatenate(arrays, axis=0)
    N, D = X.shape
    k = int(n_components)
    if not 1 <= k <= min(N, D):
        raise ValueError(f"pca_trajectory: n_components must be in [1, {min(N, D)}], got {n_components}")
    if not np.all(np.isfinite(X)):
        raise ValueError("pca_trajectory: snapshots contain nan or inf")
    mean = X.mean(axis=0)
    Xc = X - mean
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    comps = Vt[:k].copy()
    flip = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    flip[flip == 0] = 1.0
    comps *= flip[:, None]
    var = s**2
    total = var.sum()
    ratio = var[:k] / total if total > 0 else np.full(k, np.nan)
    trajs = [(a - mean) @ comps.T for a in arrays]
    proj_extra = None
    if extra_points is not None:
        e = _f64(extra_points)
        if e.shape[-1] != D or e.ndim not in (1, 2):
            raise ValueError(f"pca_trajectory: extra_points must be (D,) or (m, D) with D={D}, got {e.shape}")
        proj_extra = (e - mean) @ comps.T
    return PCATrajectory(trajs, proj_extra, ratio, comps, mean)
