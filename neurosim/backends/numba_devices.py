"""Numba kernels of the device models and the pulsed update (:mod:`neurosim.devices`).

Each kernel computes exactly what the NumPy specification in :mod:`neurosim.devices`
computes, with the same floating-point operations in the same order, and draws the same
random numbers by index (``uniform_at``/``normal_at``), so results are bit-identical
(``tests/test_devices.py`` checks ``np.array_equal`` for every model and dtype). The loop runs
one weight at a time, all of its pulses in float64, and skips every draw that cannot
change the result (``dw = 0`` needs no rounding uniform; ``dw_min_ctoc = 0`` no normals).

Serial on purpose (no ``prange``): on the 2-core development machine Numba's thread pool
contends with the BLAS threads of the matrix products.
"""

from __future__ import annotations


import numpy as np

from neurosim.backends.numba_rng import kernel, normal_at, uniform_at
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
