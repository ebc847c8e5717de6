"""Numba kernels of the device models and the pulsed update (:mod:`neurosim.devices`).

Each kernel computes exactly what the NumPy specification in :mod:`neurosim.devices`
computes, with the same floating-point operations in the same order, and draws the same
random numbers by index (``uniform_at``/``normal_at``), so results are bit-identical
(``tests/test_devices.py`` checks ``np.array_equal`` for every model and dtype). The loop runs
one weight at a time, all of its pulses in float64, and skips every draw that cannot
change the result (``dw = 0`` needs no rounding uniform; ``dw_min_ctoc = 0`` no normals).

:func:`stochastic_update` (the aihwkit-style in-array outer product,
:func:`neurosim.devices.stochastic_update`) iterates only over coincidences: per time slot it
draws the firing of the lines whose probability is not zero, gathers the rows and columns
that fire and pulses their product, so its cost is the line draws plus the pulses sent.

Serial on purpose (no ``prange``): on the 2-core development machine Numba's thread pool
contends with the BLAS threads of the matrix products.
"""

from __future__ import annotations


import numpy as np

from neurosim.backends.numba_rng import kernel, normal_at, uniform_at
from neurosim import devices
from neurosim.devices import (CONSTANT_STEP, FREE, IDEAL, LINEAR_STEP, SOFT_BOUNDS,
                              DeviceState)


# ------------------------------------------------------------------- responses
@kernel(inline="always")
def _exp_curve_positive(p, c):
    return np.expm1(-c * p) / np.expm1(-c)


@kernel(inline="always")
def _exp_curve(p, c):
    if c == 0.0:
        return p
    if c < 0.0:
        return 1.0 - _exp_curve_positive(1.0 - p, -c)
    return _exp_curve_positive(p, c)


@kernel(inline="always")
def _exp_inverse_positive(x, c):
    return -np.log((1.0 - x) + x * np.exp(-c)) / c


@kernel(inline="always")
def _exp_inverse(x, c):
    if c == 0.0:
        return x
    if c < 0.0:
        return 1.0 - _exp_inverse_positive(1.0 - x, -c)
    return _exp_inverse_positive(x, c)


@kernel
def mean_response_kernel(code, w, up, step_up, step_down, lo, hi, gamma_up, gamma_down,
                         c_up, c_down, levels, device_dw_min):
    """Mean weight change of one pulse of one device (:func:`neurosim.devices.mean_response`)."""
    if code == IDEAL or code == CONSTANT_STEP:
        return step_up if up else -step_down
    if code == LINEAR_STEP:
        if up:
            return step_up * max(1.0 - gamma_up * w, 0.0)
        return -(step_down * max(1.0 + gamma_down * w, 0.0))
    if code == SOFT_BOUNDS:
        if up:
            return step_up * max(1.0 - w / hi, 0.0)
        return -(step_down * max(1.0 - w / lo, 0.0))
    # EXP_STEP
    span = hi - lo
    x = min(max((w - lo) / span, 0.0), 1.0)
    c = c_up if up else c_down
    p = min(max(_exp_inverse(x, c), 0.0), 1.0)
    move = ((step_up if up else step_down) / device_dw_min) / levels
    p_new = min(max(p + move if up else p - move, 0.0), 1.0)
    return (lo + _exp_curve(p_new, c) * span) - w


@kernel
def _pulse_train(w, i, up, n, stride, key_noise, code, step_up, step_down, w_min, w_max,
                 dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels, device_dw_min):
    """``n`` pulses of direction ``up`` on device ``i`` at weight ``w`` (float64); returns
    the new weight. Pulse ``k`` draws ``normal_at(key_noise, i * stride + k)``."""
    lo, hi = w_min[i], w_max[i]
    su, sd = step_up[i], step_down[i]
    for k in range(n):
        dw = mean_response_kernel(code, w, up, su, sd, lo, hi, gamma_up, gamma_down,
                                  c_up, c_down, levels, device_dw_min)
        if dw_min_ctoc > 0.0:
            xi = normal_at(key_noise, i * stride + k)
            dw = dw * (1.0 + dw_min_ctoc * xi)
        w = min(max(w + dw, lo), hi)
    return w


@kernel
def pulsed_update_kernel(w, dw, dw_min, max_pulses, key_round, key_noise, start, step_up,
                         step_down, w_min, w_max, stuck, code, dw_min_ctoc, gamma_up,
                         gamma_down, c_up, c_down, levels, device_dw_min):
    """One programming event on weights ``w`` (devices ``start ..``), in place; returns the
    (up, down) pulses applied to non-stuck devices (:func:`neurosim.devices.pulsed_update`).
    ``dw_min`` is the controller's pulse unit; ``device_dw_min`` the model's nominal step
    (exp_step's pulse axis); the device arguments are :func:`device_args`."""
    n_up = 0
    n_down = 0
    for j in range(w.shape[0]):
        i = start + j
        d = np.float64(dw[j])
        x = abs(d) / dw_min
        if not x > 0.0:  # zero or NaN: no pulse (and no rounding draw needed)
            continue
        whole = np.floor(x)
        n = np.int64(min(whole, np.float64(max_pulses)))
        if uniform_at(key_round, i) < x - whole:
            n += 1
        n = min(n, max_pulses)
        if n == 0 or stuck[i] != FREE:
            continue
        up = d > 0.0
        if up:
            n_up += n
        else:
            n_down += n
        w[j] = _pulse_train(np.float64(w[j]), i, up, n, max_pulses, key_noise, code, step_up,
                            step_down, w_min, w_max, dw_min_ctoc, gamma_up, gamma_down, c_up,
                            c_down, levels, device_dw_min)
    return n_up, n_down


@kernel
def apply_pulses_kernel(w, up, n, stride, key_noise, start, step_up, step_down, w_min, w_max,
                        stuck, code, dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels,
                        device_dw_min):
    """``n[j]`` pulses of direction ``up[j]`` on devices ``start + j`` (stuck ones skip)."""
    for j in range(w.shape[0]):
        i = start + j
        if n[j] > 0 and stuck[i] == FREE:
            w[j] = _pulse_train(np.float64(w[j]), i, up[j], n[j], stride, key_noise, code,
                                step_up, step_down, w_min, w_max, dw_min_ctoc, gamma_up,
                                gamma_down, c_up, c_down, levels, device_dw_min)


# ------------------------------------------------------------- stochastic update
@kernel(inline="always")
def _one_pulse(w, i, up, noise_index, key_noise, code, step_up, step_down, w_min, w_max,
               dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels, device_dw_min):
    """One pulse of direction ``up`` on device ``i`` at weight ``w`` (float64); its noise is
    ``normal_at(key_noise, noise_index)``. Returns the new weight."""
    lo, hi = w_min[i], w_max[i]
    dw = mean_response_kernel(code, w, up, step_up[i], step_down[i], lo, hi, gamma_up,
                              gamma_down, c_up, c_down, levels, device_dw_min)
    if dw_min_ctoc > 0.0:
        dw = dw * (1.0 + dw_min_ctoc * normal_at(key_noise, noise_index))
    return min(max(w + dw, lo), hi)


@kernel(inline="always")
def _line_magnitudes(v, out):
    """``out = |v|`` in float64 with non-finite entries as 0; returns ``max(out)`` (0 if
    empty)."""
    largest = 0.0
    for k in range(v.shape[0]):
        a = abs(np.float64(v[k]))
        if not a < np.inf:
            a = 0.0
        out[k] = a
        if a > largest:
            largest = a
    return largest


@kernel
def stochastic_probabilities_kernel(x, d, lr, bl, dw_min, p_x, p_d):
    """Fill ``p_x``, ``p_d`` (:func:`neurosim.devices.stochastic_probabilities`); returns
    False (probabilities all zero) when ``x`` or ``d`` is all zero or ``lr == 0``."""
    x_max = _line_magnitudes(x, p_x)
    d_max = _line_magnitudes(d, p_d)
    if x_max == 0.0 or d_max == 0.0 or lr == 0.0:
        p_x[:] = 0.0
        p_d[:] = 0.0
        return False
    floor = dw_min * dw_min
    x_max = max(x_max, floor)
    d_max = max(d_max, floor)
    c = np.sqrt(lr / (dw_min * bl))
    c_x = c * np.sqrt(d_max / x_max)
    c_d = c * np.sqrt(x_max / d_max)
    for j in range(p_x.shape[0]):
        p_x[j] = min(p_x[j] * c_x, 1.0)
    for i in range(p_d.shape[0]):
        p_d[i] = min(p_d[i] * c_d, 1.0)
    return True


@kernel(inline="always")
def _active(p, out):
    """Indices of ``p > 0`` into ``out``; returns how many."""
    m = 0
    for k in range(p.shape[0]):
        if p[k] > 0.0:
            out[m] = k
            m += 1
    return m


@kernel
def stochastic_update_kernel(w, x, d, lr, bl, key_lines, key_noise, step_up, step_down,
                             w_min, w_max, stuck, code, dw_min_ctoc, gamma_up, gamma_down,
                             c_up, c_down, levels, device_dw_min):
    """Stochastic pulse-train update of one layer (:func:`neurosim.devices.stochastic_update`):
    ``w`` float64 ``[n_out * n_in]`` in place, ``x`` ``[batch, n_in]``, ``d``
    ``[batch, n_out]``; returns the (up, down) pulses applied to non-stuck devices. The
    device arguments are :func:`device_args` (``device_dw_min``, the nominal step, is the
    pulse unit of the update management)."""
    batch, n_in = x.shape
    n_out = d.shape[1]
    n = n_out * n_in
    lines = n_out + n_in
    p_x = np.empty(n_in, dtype=np.float64)
    p_d = np.empty(n_out, dtype=np.float64)
    x_up = np.empty(n_in, dtype=np.bool_)  # x_j > 0
    d_up = np.empty(n_out, dtype=np.bool_)
    active_x = np.empty(n_in, dtype=np.int64)
    active_d = np.empty(n_out, dtype=np.int64)
    cols = np.empty(n_in, dtype=np.int64)
    rows = np.empty(n_out, dtype=np.int64)
    n_up = 0
    n_down = 0
    for s in range(batch):
        if not stochastic_probabilities_kernel(x[s], d[s], lr, bl, device_dw_min, p_x, p_d):
            continue
        m_x = _active(p_x, active_x)
        m_d = _active(p_d, active_d)
        if m_x == 0 or m_d == 0:
            continue
        for j in range(n_in):
            x_up[j] = x[s, j] > 0
        for i in range(n_out):
            d_up[i] = d[s, i] > 0
        noise_first = np.int64(s) * n
        for t in range(bl):
            first = (np.int64(s) * bl + t) * lines
            n_rows = 0
            for a in range(m_d):
                i = active_d[a]
                if uniform_at(key_lines, first + i) < p_d[i]:
                    rows[n_rows] = i
                    n_rows += 1
            if n_rows == 0:
                continue
            n_cols = 0
            for a in range(m_x):
                j = active_x[a]
                if uniform_at(key_lines, first + n_out + j) < p_x[j]:
                    cols[n_cols] = j
                    n_cols += 1
            for r in range(n_rows):
                i = rows[r]
                row = i * n_in
                sign = d_up[i]
                for c in range(n_cols):
                    j = cols[c]
                    k = row + j
                    if stuck[k] != FREE:
                        continue
                    up = sign != x_up[j]  # direction -sign(x_j d_i)
                    if up:
                        n_up += 1
                    else:
                        n_down += 1
                    w[k] = _one_pulse(w[k], k, up, (noise_first + k) * bl + t, key_noise, code,
                                      step_up, step_down, w_min, w_max, dw_min_ctoc, gamma_up,
                                      gamma_down, c_up, c_down, levels, device_dw_min)
    return n_up, n_down


# ---------------------------------------------------------------------- wrappers
def device_args(state: DeviceState) -> tuple:
    """The device arguments of the kernels, in order: ``step_up, step_down, w_min, w_max,
    stuck, code, dw_min_ctoc, gamma_up, gamma_down, c_up, c_down, levels, device_dw_min``."""
    return (state.step_up, state.step_down, state.w_min, state.w_max, state.stuck,
            np.int64(state.model_code), np.float64(state.dw_min_ctoc),
            np.float64(state.gamma_up), np.float64(state.gamma_down), np.float64(state.c_up),
            np.float64(state.c_down), np.float64(state.levels), np.float64(state.dw_min))


def _check(w: np.ndarray, state: DeviceState, start: int) -> None:
    if w.ndim != 1 or not w.flags.c_contiguous:
        raise ValueError("w must be a flat contiguous array (a view of the layer's weights)")
    if start < 0 or start + w.shape[0] > state.n:
        raise ValueError(f"devices {start}..{start + w.shape[0]} outside the layer's {state.n}")


def pulsed_update(w: np.ndarray, dw: np.ndarray, state: DeviceState, dw_min: float,
                  max_pulses: int, key_round: int, key_noise: int,
                  start: int = 0) -> tuple[int, int]:
    """:func:`neurosim.devices.pulsed_update`, compiled (same arguments, same results)."""
    _check(w, state, start)
    dw = np.ascontiguousarray(dw)
    if dw.shape != w.shape:
        raise ValueError(f"dw {dw.shape} does not match w {w.shape}")
    n_up, n_down = pulsed_update_kernel(
        w, dw, np.float64(dw_min), np.int64(max_pulses), np.uint64(key_round),
        np.uint64(key_noise), np.int64(start), *device_args(state))
    return int(n_up), int(n_down)


def apply_pulses(w: np.ndarray, state: DeviceState, direction, n_pulses=1, key_noise: int = 0,
                 start: int = 0) -> None:
    """:func:`neurosim.devices.apply_pulses`, compiled (same arguments, same results)."""
    _check(w, state, start)
    m = w.shape[0]
    n = np.ascontiguousarray(np.broadcast_to(np.asarray(n_pulses, dtype=np.int64), (m,)))
    up = np.ascontiguousarray(np.broadcast_to(np.asarray(direction) > 0, (m,)))
    stride = max(int(np.where(state.stuck[start:start + m] == FREE, n, 0).max(initial=0)), 1)
    apply_pulses_kernel(w, up, n, np.int64(stride), np.uint64(key_noise), np.int64(start),
                        *device_args(state))


def stochastic_update(w: np.ndarray, x: np.ndarray, d: np.ndarray, state: DeviceState,
                      lr: float, bl: int, key_lines: int, key_noise: int) -> tuple[int, int]:
    """:func:`neurosim.devices.stochastic_update`, compiled (same arguments, same results).
    Float64 weights are updated in place; other dtypes through one float64 copy per call."""
    x, d = devices._check_stochastic(w, x, d, state, lr, bl)
    if not w.flags.c_contiguous:
        raise ValueError("w must be a flat contiguous array (the layer's weights)")
    x = np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))
    d = np.ascontiguousarray(d if d.dtype in (np.float32, np.float64) else d.astype(np.float64))
    target = w if w.dtype == np.float64 else w.astype(np.float64)
    n_up, n_down = stochastic_update_kernel(
        target, x, d, np.float64(lr), np.int64(bl), np.uint64(key_lines), np.uint64(key_noise),
        *device_args(state))
    if target is not w:
        w[:] = target
    return int(n_up), int(n_down)
