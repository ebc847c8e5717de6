"""Resistive devices as responses to programming pulses: the specification (pure NumPy).

This module says what a forward array's device does; :mod:`neurosim.backends.numba_devices`
computes the same thing fast and is tested to give bit-identical results
(``tests/test_devices.py``). DESIGN §2 and :class:`neurosim.config.DeviceConfig` give the
equations; this docstring fixes every detail they leave open.

Per-device parameters (device-to-device, drawn once)
----------------------------------------------------
For one layer's weight matrix (flattened row-major, ``n = n_out * n_in`` devices) the draws
come from two keyed streams of :mod:`neurosim.rng`:

* ``stream_key(seed, 0, layer, DEVICE_DTOD)``: standard normals, four per device,
  interleaved: normal ``4 i + k`` of the stream is device ``i``'s ``xi_k`` with
  ``k = 0: dw_min, 1: up_down, 2: w_min, 3: w_max``. A device's parameters therefore depend
  only on ``(seed, layer, i)``, not on the size of the layer. Then ::

      dw_min_i  = max(dw_min * (1 + dw_min_dtod * xi_0), 0)
      up_down_i = clip(up_down + up_down_dtod * xi_1, -u, u),  u = the largest float < 1
      step_up_i = dw_min_i * (1 + up_down_i),  step_down_i = dw_min_i * (1 - up_down_i)
      w_min_i   = w_min * max(1 + w_min_dtod * xi_2, BOUND_FLOOR)
      w_max_i   = w_max * max(1 + w_max_dtod * xi_3, BOUND_FLOOR)

  (``BOUND_FLOOR = 0.01`` keeps ``w_min_i < 0 < w_max_i``; it only acts beyond about
  ``-0.99 / dtod`` standard deviations.)
* ``stream_key(seed, 0, layer, DEVICE_STUCK)``: one uniform ``u_i`` per device (draw ``i``),
  partitioned: ``u < stuck_at_min`` stuck at ``w_min_i`` (code 1); next ``stuck_at_max``
  stuck at ``w_max_i`` (code 2); next ``stuck_at_initial`` stuck at its initial weight
  (code 3); otherwise free (code 0).

Response to one pulse (mean, before cycle-to-cycle noise)
---------------------------------------------------------
``w`` is the device's weight (float64), ``lo, hi = w_min_i, w_max_i``:

* ``ideal`` / ``constant_step``: up ``+step_up_i``; down ``-step_down_i``.
* ``linear_step``: up ``step_up_i * max(1 - gamma_up w, 0)``; down
  ``-step_down_i * max(1 + gamma_down w, 0)``.
* ``soft_bounds``: up ``step_up_i * max(1 - w / hi, 0)``; down
  ``-step_down_i * max(1 - w / lo, 0)``.

  (The ``max(., 0)`` only matters where the factor would turn negative: a pulse never moves
  a device against its own direction. For ``soft_bounds`` it is inactive inside the bounds.)
* ``exp_step`` (MLP+NeuroSim V3.0, ``formula.cpp``/``Cell.cpp`` of
  github.com/neurosim/MLP_NeuroSim_V3.0, ``RealDevice::Write``): the device's normalized
  conductance ``x = (w - lo) / (hi - lo)`` (conductance is linear in ``w``) lies on the curve
  ``x = g(p) = (1 - exp(-c p)) / (1 - exp(-c))`` of the normalized pulse position
  ``p = P / levels in [0, 1]`` with ``c = levels / A`` (NeuroSim's
  ``G(P) = B (1 - exp(-P/A)) + G_min``, ``B = (G_max - G_min) / (1 - exp(-P_max / A))``
  divided by ``G_max - G_min``). A pulse finds ``p = g^{-1}(x)``, moves it by
  ``+s_up / levels`` (up, curve of ``A_up``) or ``-s_down / levels`` (down, curve of
  ``A_down``), with ``s = step_i / dw_min`` (``step_up_i`` or ``step_down_i``), so a nominal
  device (no dtod, ``up_down = 0``) moves exactly one pulse position and ``dw_min``'s
  device-to-device spread and ``up_down`` scale the step along the pulse axis; ``p`` and the
  new position are kept in ``[0, 1]``; the response is ``lo + g(p') (hi - lo) - w``.
  As in NeuroSim, LTP and LTD share the pulse axis (``P = 0`` at ``G_min``, ``P = levels``
  at ``G_max``) and differ in ``A``: a positive label gives a concave curve (large steps
  near ``G_min``), a negative one a convex curve (large steps near ``G_max``; the usual
  saturating depression, e.g. TaOx LTD -0.63). ``A`` has the sign of the label; label 0 is
  exactly linear (``c = 0``, ``A = inf``). See :func:`nonlinearity_to_a` for the mapping.
  The controller's pulse unit is then ``dw_min = (w_max - w_min) / levels`` (the default when
  ``dw_min`` is not set; the config refuses any other value for exp_step).

Cycle-to-cycle noise (:func:`with_pulse_noise`, a fresh ``xi ~ N(0, 1)`` per pulse; no draw
is needed without it) either multiplies every pulse's response by ``1 + dw_min_ctoc * xi``
(aihwkit's ``dw_min_std``: the noise shrinks with the step, e.g. near saturation) or adds
``write_noise_std * xi`` to it, with ``write_noise_std = write_noise * (w_max - w_min)`` in
weight units whatever the device's state (NeuroSim V3, ``RealDevice::Write``: ``sigmaCtoC``
of the conductance range, a write of ``n`` pulses spreading by ``sigmaCtoC sqrt(n)``). After
every pulse the device is clipped to ``[lo, hi]``. Stuck devices never move.

Pulsed update (one programming event)
-------------------------------------
For the desired change ``dw`` (array units) of weight ``i``: ``x = |dw_i| / dw_min`` with the
*nominal* ``dw_min`` (the controller does not know a device's own step), ``n_i =
min(floor(x) + [u_i < x - floor(x)], max_pulses)`` with ``u_i = uniform_at(key_round, i)``
(stochastic rounding, unbiased below the cap; NaN ``dw`` sends nothing), direction
``sign(dw_i)``. Pulse ``k = 0 .. n_i - 1`` of weight ``i`` draws its noise
``normal_at(key_noise, i * max_pulses + k)``. Every index is the weight's index in the
layer (``start + j`` for a segment starting at ``start``), so any split of a layer into
segments, and any backend, draws the same numbers. The weight is read into float64, all
pulses of the event are applied in float64, and the result is stored back once in the
array's dtype. The returned pulse counts are the pulses applied to non-stuck devices
(pulses at a bound are counted: they are sent; a stuck device's pulses are not).

Stochastic update (in-array outer product, one programming event per sample)
----------------------------------------------------------------------------
DESIGN §2 mode 3, after aihwkit's ``PulseType.StochasticCompressed`` with update
management (IBM/aihwkit ``src/rpucuda/sparse_bit_line_maker.cpp`` ``generateCounts`` and
``src/rpucuda/rpu_pulsed_meta_parameter.cpp`` ``calculateBlAB`` /
``performUpdateManagement``; the settings ``fixed_bl=True, update_management=True,
update_bl_management=False`` of ``aihwkit.simulator.parameters.training.UpdateParameters``).
It realizes ``dW = -lr * d x^T`` (gradient descent), one sample at a time, in array units:
``x`` is the layer's input and ``d`` its error already divided by the layer's scale ``alpha``
(``W = alpha w``); to realize ``-eta * mean_batch(delta x^T)`` a caller passes
``d = delta / alpha`` and ``lr = eta / batch``.

For sample ``s`` (inputs ``x_s``, errors ``d_s``; non-finite entries count as 0 and send
nothing), with the *nominal* ``dw_min`` (``state.dw_min``) and pulse-train length ``BL``::

    x_max = max(max_j |x_sj|, dw_min**2),   d_max = max(max_i |d_si|, dw_min**2)
    c     = sqrt(lr / (dw_min * BL))
    c_x   = c * sqrt(d_max / x_max),         c_d = c * sqrt(x_max / d_max)
    p_x[j] = min(|x_sj| c_x, 1),             p_d[i] = min(|d_si| c_d, 1)

(``c_x c_d BL dw_min = lr``; the floor ``dw_min**2`` is aihwkit's, it only keeps the ratio
finite.) A sample whose ``x_s`` or ``d_s`` is all zero sends nothing. In each of the ``BL``
time slots ``t``, row line ``i`` fires iff ``u < p_d[i]`` with
``u = uniform_at(key_lines, (s BL + t)(n_out + n_in) + i)`` and column line ``j`` iff
``uniform_at(key_lines, (s BL + t)(n_out + n_in) + n_out + j) < p_x[j]`` (so a line with
``p = 1`` always fires and one with ``p = 0`` never). Device ``(i, j)`` (index
``i n_in + j``) receives one pulse in slot ``t`` iff both of its lines fire, in direction
``-sign(x_sj d_si)`` (up iff the signs differ). Unsaturated, a device's pulse count in one
sample is Binomial(``BL``, ``p_x[j] p_d[i]``) with mean ``lr |x_sj d_si| / dw_min``, so
the expected change of a ``constant_step`` device is ``-lr x_sj d_si``; a saturated sample
sends at most ``BL`` pulses to a device.

A pulse moves the device exactly as in :func:`apply_pulses` (same response, clipping to the
device's bounds; stuck devices ignore it and it is not counted), with cycle-to-cycle noise
``normal_at(key_noise, ((s n_out + i) n_in + j) BL + t)``: indexed by the *slot* ``t``
rather than by the pulse's rank within the device's train (a device gets at most one pulse
per slot, so ``(s, device, t)`` names every pulse; this needs no per-device counter) and by
the sample ``s`` (all samples of a call share ``key_lines`` and ``key_noise``). Samples are
applied one after another in batch order, slots in order. As in the pulsed update, each
sample's programming event reads the weights into float64, applies all of its pulses in
float64 and stores the result back once in the array's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosim import rng
from neurosim.config import DeviceConfig

MODEL_CODES = {"ideal": 0, "constant_step": 1, "linear_step": 2, "soft_bounds": 3, "exp_step": 4}
IDEAL, CONSTANT_STEP, LINEAR_STEP, SOFT_BOUNDS, EXP_STEP = range(5)
FREE, STUCK_AT_MIN, STUCK_AT_MAX, STUCK_AT_INITIAL = 0, 1, 2, 3
DTOD_DRAWS = 4  # normals per device in the DEVICE_DTOD stream: dw_min, up_down, w_min, w_max
BOUND_FLOOR = 0.01
UP_DOWN_LIMIT = float(np.nextafter(1.0, 0.0))

# NeuroSim's nonlinearity label: the largest vertical deviation of the normalized curve
# g(p) from the straight line g = p is NL_SCALE * |label| (equivalently, its largest distance
# from the diagonal of the unit square is 0.07 |label|). Inferred from the table of
# getParamA() in MLP_NeuroSim_V3.0/formula.cpp ("normalized A" for labels 0.01 .. 9 in steps
# of 0.01, also documents/Nonlinearity-NormA.htm): this definition reproduces every entry we
# checked to the table's printed precision (tests/test_devices.py).
NL_SCALE = 0.07 * 2.0 ** 0.5


@dataclass
class DeviceState:
    """The devices of one layer's forward array: per-device arrays (flattened row-major,
    length ``n_out * n_in``) and the model's scalars. Fixed after :func:`draw_device_state`."""

    model: str
    model_code: int
    dw_min: float  # nominal step: the pulse unit of exp_step's pulse axis
    dw_min_ctoc: float  # cycle-to-cycle noise relative to the response
    write_noise_std: float  # cycle-to-cycle noise added to the response (weight units)
    gamma_up: float
    gamma_down: float
    a_up: float  # exp_step: NeuroSim's A of LTP, in pulses (levels * normalized A); inf = linear
    a_down: float  # exp_step: A of LTD (negative for a negative label)
    levels: int
    step_up: np.ndarray  # float64 [n]: dw_min_i (1 + up_down_i)
    step_down: np.ndarray  # float64 [n]: dw_min_i (1 - up_down_i)
    w_min: np.ndarray  # float64 [n]
    w_max: np.ndarray  # float64 [n]
    stuck: np.ndarray  # int8 [n]: FREE, STUCK_AT_MIN, STUCK_AT_MAX, STUCK_AT_INITIAL
    # float64 [n]: each device's reference (zero-shifting, neurosim.reference): w_min, w_max
    # and the steps above are already those of w = device - reference. None: no reference.
    reference: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.step_up.shape[0])

    @property
    def noisy(self) -> bool:
        """Whether pulses draw cycle-to-cycle noise."""
        return self.dw_min_ctoc > 0.0 or self.write_noise_std > 0.0

    @property
    def c_up(self) -> float:
        """exp_step: curvature ``c = levels / A`` of the LTP curve (0 = linear)."""
        return self.levels / self.a_up

    @property
    def c_down(self) -> float:
        return self.levels / self.a_down


# Bytes a DeviceState holds per device: step_up, step_down, w_min and w_max (float64) and stuck.
DEVICE_BYTES = 4 * np.dtype(np.float64).itemsize + np.dtype(np.int8).itemsize
# Bytes more per device where it has a reference (DeviceState.reference, float64).
REFERENCE_BYTES = np.dtype(np.float64).itemsize


# ----------------------------------------------------------------- nonlinearity label
def _max_deviation(c: float) -> float:
    """Largest ``g(p) - p`` over ``p in [0, 1]`` of the normalized curve with ``c > 0``."""
    p = np.log(c / -np.expm1(-c)) / c  # where g'(p) = 1
    return float(np.expm1(-c * p) / np.expm1(-c) - p)


def nonlinearity_to_normalized_a(label: float) -> float:
    """NeuroSim's normalized ``A`` (``A / levels``) of a nonlinearity label; ``inf`` for 0.

    The same mapping as ``getParamA`` in MLP_NeuroSim_V3.0 ``formula.cpp`` (sign of ``A`` =
    sign of the label; ``|A|`` such that the curve deviates from linear by
    ``NL_SCALE * |label|``), computed by bisection instead of read from the table, so it is
    continuous in the label (NeuroSim floors labels to steps of 0.01 and clamps them to 9;
    labels between 9 and 10 are extrapolated by the same definition here).
    """
    if label == 0.0:
        return float("inf")
    target = NL_SCALE * abs(float(label))
    if not target < 1.0:
        raise ValueError(f"nonlinearity label {label} is out of range "
                         f"(|label| < {1 / NL_SCALE:.4f})")
    if target < 1e-7:
        c = 8.0 * target  # g(p) - p = c p (1 - p) / 2 + O(c^2) for small c
    else:
        lo, hi = np.log(1e-7), np.log(1e5)  # log c; _max_deviation is increasing in c
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if _max_deviation(float(np.exp(mid))) < target:
                lo = mid
            else:
                hi = mid
        c = float(np.exp(0.5 * (lo + hi)))
    if c == 0.0:  # |label| so small that c underflows: linear
        return float("inf")
    return (1.0 if label > 0 else -1.0) / c


def nonlinearity_to_a(label: float, levels: int) -> float:
    """NeuroSim's parameter ``A`` in pulses: ``levels * normalized A`` (``paramALTP`` /
    ``paramALTD`` in ``Cell.cpp``)."""
    return float(levels) * nonlinearity_to_normalized_a(label)  # Python floats: inf, no warning


# ------------------------------------------------------------------ device draws
def nominal_step(config: DeviceConfig, w_min: float, w_max: float) -> float:
    """The nominal ``dw_min``: as configured, else ``(w_max - w_min) / levels``."""
    return config.dw_min if config.dw_min is not None else (w_max - w_min) / config.levels


def draw_device_state(config: DeviceConfig, w_min: float, w_max: float, n: int, seed: int,
                      layer: int, dtod: rng.Purpose = rng.Purpose.DEVICE_DTOD,
                      stuck: rng.Purpose = rng.Purpose.DEVICE_STUCK) -> DeviceState:
    """Draw the ``n`` devices of layer ``layer`` (see the module docstring for the streams;
    ``dtod`` and ``stuck`` name their purposes: a differential pair's second devices
    draw from streams of their own, :mod:`neurosim.pair`)."""
    xi = rng.normal(rng.stream_key(seed, 0, layer, dtod),
                    DTOD_DRAWS * n).reshape(n, DTOD_DRAWS)
    dw_min = nominal_step(config, w_min, w_max)
    dw_min_i = np.maximum(dw_min * (1.0 + config.dw_min_dtod * xi[:, 0]), 0.0)
    up_down_i = np.clip(config.up_down + config.up_down_dtod * xi[:, 1],
                        -UP_DOWN_LIMIT, UP_DOWN_LIMIT)
    w_min_i = w_min * np.maximum(1.0 + config.w_min_dtod * xi[:, 2], BOUND_FLOOR)
    w_max_i = w_max * np.maximum(1.0 + config.w_max_dtod * xi[:, 3], BOUND_FLOOR)

    u = rng.uniform(rng.stream_key(seed, 0, layer, stuck), n)
    edges = np.cumsum([config.stuck_at_min, config.stuck_at_max, config.stuck_at_initial])
    codes = np.full(n, FREE, dtype=np.int8)
    codes[u < edges[2]] = STUCK_AT_INITIAL
    codes[u < edges[1]] = STUCK_AT_MAX
    codes[u < edges[0]] = STUCK_AT_MIN

    return DeviceState(
        model=config.model, model_code=MODEL_CODES[config.model], dw_min=float(dw_min),
        dw_min_ctoc=float(config.dw_min_ctoc),
        write_noise_std=float(config.write_noise * (w_max - w_min)),
        gamma_up=float(config.gamma_up),
        gamma_down=float(config.gamma_down),
        a_up=nonlinearity_to_a(config.nonlinearity_ltp, config.levels),
        a_down=nonlinearity_to_a(config.nonlinearity_ltd, config.levels),
        levels=int(config.levels),
        step_up=dw_min_i * (1.0 + up_down_i), step_down=dw_min_i * (1.0 - up_down_i),
        w_min=w_min_i, w_max=w_max_i, stuck=codes)


def place_initial_weights(state: DeviceState, w0: np.ndarray) -> np.ndarray:
    """Initial weights as the devices hold them: ``w0`` (flat, length ``n``) clipped into each
    device's bounds; devices stuck at min/max sit at that bound. Same dtype as ``w0``."""
    w = np.clip(np.asarray(w0, dtype=np.float64), state.w_min, state.w_max)
    w[state.stuck == STUCK_AT_MIN] = state.w_min[state.stuck == STUCK_AT_MIN]
    w[state.stuck == STUCK_AT_MAX] = state.w_max[state.stuck == STUCK_AT_MAX]
    return w.astype(np.asarray(w0).dtype)


# ----------------------------------------------------------- exp_step curves
def exp_curve(p: np.ndarray, c: float) -> np.ndarray:
    """Normalized conductance ``g(p) = (1 - exp(-c p)) / (1 - exp(-c))`` at normalized pulse
    position ``p``; ``c < 0`` is evaluated as ``1 - g_{|c|}(1 - p)`` (the same function,
    without overflow)."""
    if c == 0.0:
        return p
    if c < 0.0:
        return 1.0 - exp_curve(1.0 - p, -c)
    return np.expm1(-c * p) / np.expm1(-c)


def exp_curve_inverse(x: np.ndarray, c: float) -> np.ndarray:
    """Pulse position ``p = g^{-1}(x) = -log(1 - x (1 - exp(-c))) / c``, written as
    ``-log((1 - x) + x exp(-c)) / c`` (accurate near ``x = 1``)."""
    if c == 0.0:
        return x
    if c < 0.0:
        return 1.0 - exp_curve_inverse(1.0 - x, -c)
    with np.errstate(divide="ignore"):
        return -np.log((1.0 - x) + x * np.exp(-c)) / c


# ------------------------------------------------------------ pulse responses
def mean_response(state: DeviceState, i: np.ndarray, w: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Mean weight change of one pulse (before cycle-to-cycle noise) for devices ``i`` at
    weights ``w`` (float64), direction ``up`` (bool), by the module docstring's equations."""
    step_up, step_down = state.step_up[i], state.step_down[i]
    code = state.model_code
    if code == IDEAL or code == CONSTANT_STEP:
        return np.where(up, step_up, -step_down)
    if code == LINEAR_STEP:
        return np.where(up, step_up * np.maximum(1.0 - state.gamma_up * w, 0.0),
                        -(step_down * np.maximum(1.0 + state.gamma_down * w, 0.0)))
    lo, hi = state.w_min[i], state.w_max[i]
    if code == SOFT_BOUNDS:
        return np.where(up, step_up * np.maximum(1.0 - w / hi, 0.0),
                        -(step_down * np.maximum(1.0 - w / lo, 0.0)))
    if code == EXP_STEP:
        span = hi - lo
        x = np.minimum(np.maximum((w - lo) / span, 0.0), 1.0)
        levels = float(state.levels)
        out = np.empty_like(w)
        for is_up, c, step in ((True, state.c_up, step_up), (False, state.c_down, step_down)):
            direction = up if is_up else ~up
            if not direction.any():
                continue
            p = np.minimum(np.maximum(exp_curve_inverse(x[direction], c), 0.0), 1.0)
            move = (step[direction] / state.dw_min) / levels
            p_new = np.minimum(np.maximum(p + move if is_up else p - move, 0.0), 1.0)
            out[direction] = (lo[direction] + exp_curve(p_new, c) * span[direction]) - w[direction]
        return out
    raise ValueError(f"unknown device model code {code}")


def net_response(state: DeviceState, i: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``r(w) = Δ↑(w) + Δ↓(w)`` of devices ``i`` at weights ``w`` (float64): what one up and
    one down pulse (mean responses, no cycle-to-cycle noise) move each device, each pulse
    clipped at the device's bounds. Its zeros are the devices' symmetry points
    (:mod:`neurosim.device_curves`, :mod:`neurosim.reference`)."""
    lo, hi = state.w_min[i], state.w_max[i]
    up = np.minimum(w + mean_response(state, i, w, np.ones(w.shape, dtype=bool)), hi) - w
    down = np.maximum(w + mean_response(state, i, w, np.zeros(w.shape, dtype=bool)), lo) - w
    return up + down


def with_pulse_noise(dw, xi, state: DeviceState):
    """Pulse responses ``dw`` (float64) with their cycle-to-cycle noise, ``xi`` the pulses'
    standard normals: ``dw (1 + dw_min_ctoc xi)`` or ``dw + write_noise_std xi`` (the
    config allows one of the two). Also applied by the torch backend to its tensors."""
    if state.dw_min_ctoc > 0.0:
        dw = dw * (1.0 + state.dw_min_ctoc * xi)
    if state.write_noise_std > 0.0:
        dw = dw + state.write_noise_std * xi
    return dw


def _pulse_trains(w: np.ndarray, n: np.ndarray, up: np.ndarray, state: DeviceState, start: int,
                  key_noise: int, stride: int) -> None:
    """Send ``n[j]`` pulses in direction ``up[j]`` to device ``start + j`` (``w`` in place);
    pulse ``k`` of device ``i`` draws noise ``normal_at(key_noise, i * stride + k)``."""
    w64 = w.astype(np.float64)
    for k in range(int(n.max()) if n.size else 0):
        j = np.flatnonzero(n > k)
        i = start + j
        dw = mean_response(state, i, w64[j], up[j])
        if state.noisy:
            dw = with_pulse_noise(dw, rng.normal_at(key_noise, i * stride + k), state)
        w64[j] = np.minimum(np.maximum(w64[j] + dw, state.w_min[i]), state.w_max[i])
    w[:] = w64


def apply_pulses(w: np.ndarray, state: DeviceState, direction, n_pulses=1, key_noise: int = 0,
                 start: int = 0) -> None:
    """Send ``n_pulses`` (scalar or per device) pulses of ``direction`` (+1 up / -1 down,
    scalar or per device) to devices ``start .. start + len(w) - 1``, ``w`` in place. Pulse
    ``k`` of device ``i`` draws noise ``normal_at(key_noise, i * max(n_pulses) + k)``.
    Stuck devices do not move. For tests and experiments driving pulse sequences."""
    m = w.shape[0]
    n = np.broadcast_to(np.asarray(n_pulses, dtype=np.int64), (m,)).copy()
    up = np.broadcast_to(np.asarray(direction) > 0, (m,))
    n[state.stuck[start:start + m] != FREE] = 0
    _pulse_trains(w, n, up, state, start, key_noise, max(int(n.max(initial=0)), 1))


def pulse_counts(dw: np.ndarray, dw_min: float, max_pulses: int, key_round: int,
                 start: int = 0) -> np.ndarray:
    """Pulses per weight: ``stochastic_round(|dw| / dw_min)`` capped at ``max_pulses``
    (int64), rounding uniform ``uniform_at(key_round, start + j)``."""
    x = np.abs(np.asarray(dw, dtype=np.float64)) / dw_min
    x = np.where(np.isnan(x), 0.0, x)
    whole = np.floor(x)
    u = rng.uniform_at(key_round, start + np.arange(x.shape[0], dtype=np.int64))
    n = np.minimum(whole, float(max_pulses)).astype(np.int64) + (u < x - whole)
    return np.minimum(n, max_pulses)


def pulsed_update(w: np.ndarray, dw: np.ndarray, state: DeviceState, dw_min: float,
                  max_pulses: int, key_round: int, key_noise: int,
                  start: int = 0) -> tuple[int, int]:
    """One programming event realizing ``dw`` (array units) on weights ``w`` (in place).

    ``w``, ``dw``: flat, the devices ``start .. start + len(w) - 1`` of ``state``. Returns the
    (up, down) pulses applied to non-stuck devices. See the module docstring.
    """
    m = w.shape[0]
    n = pulse_counts(dw, dw_min, max_pulses, key_round, start)
    up = np.asarray(dw) > 0
    n[state.stuck[start:start + m] != FREE] = 0
    n_up, n_down = int(n[up].sum()), int(n[~up].sum())
    _pulse_trains(w, n, up, state, start, key_noise, max_pulses)
    return n_up, n_down


# -------------------------------------------------------------- stochastic update
def stochastic_probabilities(x: np.ndarray, d: np.ndarray, lr: float, bl: int,
                             dw_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Firing probabilities ``(p_x, p_d)`` (float64) of one sample's column lines (inputs
    ``x``, length ``n_in``) and row lines (errors ``d``, length ``n_out``) under aihwkit's
    update management (module docstring). All zero when ``x`` or ``d`` is all zero or
    ``lr == 0``."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ad = np.abs(np.asarray(d, dtype=np.float64))
    ax = np.where(ax < np.inf, ax, 0.0)  # NaN and inf send nothing
    ad = np.where(ad < np.inf, ad, 0.0)
    x_max = float(ax.max(initial=0.0))
    d_max = float(ad.max(initial=0.0))
    if x_max == 0.0 or d_max == 0.0 or lr == 0.0:
        return np.zeros_like(ax), np.zeros_like(ad)
    floor = dw_min * dw_min
    x_max, d_max = max(x_max, floor), max(d_max, floor)
    c = np.sqrt(lr / (dw_min * bl))
    c_x = c * np.sqrt(d_max / x_max)
    c_d = c * np.sqrt(x_max / d_max)
    return np.minimum(ax * c_x, 1.0), np.minimum(ad * c_d, 1.0)


def _check_stochastic(w, x, d, state, lr, bl) -> tuple[np.ndarray, np.ndarray]:
    x, d = np.asarray(x), np.asarray(d)
    if x.ndim != 2 or d.ndim != 2 or x.shape[0] != d.shape[0]:
        raise ValueError(f"x {x.shape} and d {d.shape} must be (batch, n_in), (batch, n_out)")
    if w.ndim != 1 or w.shape[0] != d.shape[1] * x.shape[1] or w.shape[0] != state.n:
        raise ValueError(f"w {w.shape} must hold the layer's {d.shape[1]} x {x.shape[1]} "
                         f"devices (state has {state.n})")
    if not 0.0 <= lr < np.inf:
        raise ValueError(f"lr must be finite and >= 0 (got {lr})")
    if int(bl) < 1:
        raise ValueError(f"bl must be >= 1 (got {bl})")
    return x, d


def stochastic_update(w: np.ndarray, x: np.ndarray, d: np.ndarray, state: DeviceState,
                      lr: float, bl: int, key_lines: int, key_noise: int) -> tuple[int, int]:
    """Realize ``dW = -lr * d x^T`` by stochastic pulse trains, one programming event per
    sample (see the module docstring, "Stochastic update").

    ``w``: the layer's flat weights (``n_out * n_in``, row-major; in place); ``x``:
    ``(batch, n_in)`` layer inputs; ``d``: ``(batch, n_out)`` errors in array units (the
    network's error divided by the layer's ``alpha``); ``lr``: learning-rate scale in array
    units; ``bl``: pulse-train length (aihwkit's ``desired_bl``, default 31). Returns the
    (up, down) pulses applied to non-stuck devices.
    """
    x, d = _check_stochastic(w, x, d, state, lr, bl)
    lr, bl = float(lr), int(bl)
    n_out, n_in = d.shape[1], x.shape[1]
    rows_index, cols_index = np.arange(n_out), n_out + np.arange(n_in)
    free = state.stuck == FREE
    n_up = n_down = 0
    for s in range(x.shape[0]):  # one programming event per sample
        p_x, p_d = stochastic_probabilities(x[s], d[s], lr, bl, state.dw_min)
        if not (p_x.any() and p_d.any()):
            continue
        x_positive, d_positive = x[s] > 0, d[s] > 0
        w64 = w.astype(np.float64)
        for t in range(bl):
            first = (s * bl + t) * (n_out + n_in)
            rows = np.flatnonzero(rng.uniform_at(key_lines, first + rows_index) < p_d)
            cols = np.flatnonzero(rng.uniform_at(key_lines, first + cols_index) < p_x)
            i = (rows[:, None] * n_in + cols[None, :]).ravel()  # coincidences
            up = (d_positive[rows][:, None] != x_positive[cols][None, :]).ravel()
            i, up = i[free[i]], up[free[i]]
            if i.size == 0:
                continue
            n_up += int(up.sum())
            n_down += int(i.size - up.sum())
            dw = mean_response(state, i, w64[i], up)
            if state.noisy:
                dw = with_pulse_noise(dw, rng.normal_at(key_noise, (s * state.n + i) * bl + t),
                                      state)
            w64[i] = np.minimum(np.maximum(w64[i] + dw, state.w_min[i]), state.w_max[i])
        w[:] = w64  # stored back in the array's dtype at the end of the event
    return n_up, n_down


# ------------------------------------------------------------------------ drift
def drift_exponents(nu: float, nu_dtod: float, n: int, key: int) -> np.ndarray:
    """Per-device drift exponents ``nu_i = max(nu + nu_dtod xi_i, 0)``, ``xi_i ~ N(0, 1)``
    from stream ``key`` (drawn once, like the other device-to-device parameters)."""
    if nu_dtod == 0:
        return np.full(n, float(nu))
    return np.maximum(nu + nu_dtod * rng.normal(key, n), 0.0)


def drift(w: np.ndarray, t, t0, nu) -> np.ndarray:
    """Power-law conductance drift (PCM-style): ``w(t) = w(t0) (t / t0)^(-nu)`` for
    ``t >= t0 > 0``; no drift before ``t0`` (the weight was programmed at ``t0``). ``nu``
    may be a scalar or per device. Returns a new array in ``w``'s dtype."""
    w = np.asarray(w)
    if not t0 > 0:
        raise ValueError(f"t0 must be > 0 (got {t0})")
    ratio = np.maximum(np.asarray(t, dtype=np.float64), t0) / t0
    return (w.astype(np.float64) * ratio ** (-np.asarray(nu, dtype=np.float64))).astype(w.dtype)
