"""Numba kernels of the device models and the pulsed update (:mod:`neurosim.devices`).

Each kernel computes exactly what the NumPy specification in :mod:`neurosim.devices`
computes, with the same floating-point operations in the same order, and draws the same
random numbers by index (``uniform_at``/``normal_at``), so results are bit-identical
(``tests/test_devices.py`` checks ``np.array_equal`` for every model and dtype). The loop runs
one weight at a time, all of its pulses in float64, and skips every draw that cannot
change the result (``dw = 0`` needs no rounding uniform; no cycle-to-cycle noise, no normals).

:func:`stochastic_update` (the aihwkit-style in-array outer product,
:func:`neurosim.devices.stochastic_update`) visits only coincidences: per sample it draws the
firing of every line whose probability is not zero as a bit mask over the slots, gathers the
rows and columns that fire at least once and pulses each (row, column) pair on the slots the
two masks share, so its cost is the line draws plus the pulses sent (see
:func:`stochastic_update_kernel`).

Serial on purpose (no ``prange``): on the 2-core development machine Numba's thread pool
contends with the BLAS threads of the matrix products.
"""

from __future__ import annotations

import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

from neurosim import devices, rng
from neurosim.backends.numba_rng import kernel, mix64, normal_at, uniform_at
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


@kernel(inline="always")
def _with_pulse_noise(dw, xi, ctoc):
    """:func:`neurosim.devices.with_pulse_noise`: ``ctoc`` = (``dw_min_ctoc``,
    ``write_noise_std``), float64."""
    if ctoc[0] > 0.0:
        dw = dw * (1.0 + ctoc[0] * xi)
    if ctoc[1] > 0.0:
        dw = dw + ctoc[1] * xi
    return dw


@kernel
def _pulse_train(w, i, up, n, stride, key_noise, code, step_up, step_down, w_min, w_max,
                 ctoc, gamma_up, gamma_down, c_up, c_down, levels, device_dw_min):
    """``n`` pulses of direction ``up`` on device ``i`` at weight ``w`` (float64); returns
    the new weight. Pulse ``k`` draws ``normal_at(key_noise, i * stride + k)``."""
    lo, hi = w_min[i], w_max[i]
    su, sd = step_up[i], step_down[i]
    noisy = ctoc[0] > 0.0 or ctoc[1] > 0.0
    for k in range(n):
        dw = mean_response_kernel(code, w, up, su, sd, lo, hi, gamma_up, gamma_down,
                                  c_up, c_down, levels, device_dw_min)
        if noisy:
            dw = _with_pulse_noise(dw, normal_at(key_noise, i * stride + k), ctoc)
        w = min(max(w + dw, lo), hi)
    return w


@kernel
def pulsed_update_kernel(w, dw, dw_min, max_pulses, key_round, key_noise, start, step_up,
                         step_down, w_min, w_max, stuck, code, ctoc, gamma_up,
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
                            step_down, w_min, w_max, ctoc, gamma_up, gamma_down, c_up,
                            c_down, levels, device_dw_min)
    return n_up, n_down


@kernel
def apply_pulses_kernel(w, up, n, stride, key_noise, start, step_up, step_down, w_min, w_max,
                        stuck, code, ctoc, gamma_up, gamma_down, c_up, c_down, levels,
                        device_dw_min):
    """``n[j]`` pulses of direction ``up[j]`` on devices ``start + j`` (stuck ones skip)."""
    for j in range(w.shape[0]):
        i = start + j
        if n[j] > 0 and stuck[i] == FREE:
            w[j] = _pulse_train(np.float64(w[j]), i, up[j], n[j], stride, key_noise, code,
                                step_up, step_down, w_min, w_max, ctoc, gamma_up,
                                gamma_down, c_up, c_down, levels, device_dw_min)


# ------------------------------------------------------------- stochastic update
# A line fires in a slot iff its uniform u = (z >> 11) 2^-53 is < p, i.e. iff the integer
# z >> 11 is < ceil(p 2^53) (exact: the scaling by 2^53 is exact and z >> 11 < 2^53 is an
# integer), which saves the int -> float conversion of every draw.
_TWO_53 = float(2.0 ** 53)
_SLOTS_PER_MASK = 64  # slots handled per chunk: one bit each in a uint64
_ALL_SLOTS = np.uint64(2 ** 64 - 1)


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
    """Fill ``p_x``, ``p_d`` (:func:`neurosim.devices.stochastic_probabilities`, the same
    operations); returns False (all zero) when ``x`` or ``d`` is all zero or ``lr == 0``."""
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
def _firing_thresholds(p, lines, thresholds):
    """Lines with ``p > 0`` into ``lines`` with their integer thresholds
    ``ceil(p 2^53)``; returns how many."""
    m = 0
    for k in range(p.shape[0]):
        if p[k] > 0.0:
            lines[m] = k
            thresholds[m] = np.uint64(np.ceil(p[k] * _TWO_53))
            m += 1
    return m


@kernel(inline="always")
def _firing_mask(key, first_index, stride, slots, threshold):
    """Bit ``t`` set, for each bit ``t`` of ``slots``, iff draw ``first_index + t * stride``
    of stream ``key`` is below the line's threshold: the line fires in slot ``t``."""
    golden = np.uint64(rng.GOLDEN)
    z0 = np.uint64(key) + np.uint64(first_index + 1) * golden
    step = np.uint64(stride) * golden
    mask = np.uint64(0)
    if (slots & (slots + np.uint64(1))) == 0:  # slots 0 .. count-1: branch-free stride
        z = z0
        for t in range(_SLOTS_PER_MASK - leading_zeros(slots)):
            fires = np.uint64((mix64(z) >> np.uint64(11)) < threshold)
            mask |= fires << np.uint64(t)
            z += step
        return mask
    while slots != 0:
        t = trailing_zeros(slots)
        slots &= slots - np.uint64(1)
        fires = np.uint64((mix64(z0 + np.uint64(t) * step) >> np.uint64(11)) < threshold)
        mask |= fires << np.uint64(t)
    return mask


@kernel(inline="always")
def _firing_lines(key, first_index, stride, slots, active, thresholds, m, offset, lines,
                  masks):
    """Of the ``m`` active lines, those firing in at least one slot of ``slots`` (one
    uint64 per chunk: bit ``t`` of chunk ``c`` is slot ``64 c + t``; line ``l``'s draw in
    slot ``t`` is ``first_index + t * stride + offset + l``), with their slot masks
    ``masks[chunk, .]``; returns how many. Slots outside ``slots`` are not drawn."""
    n = 0
    for a in range(m):
        fired = np.uint64(0)
        for chunk in range(masks.shape[0]):
            mask = np.uint64(0)
            if slots[chunk] != 0:
                mask = _firing_mask(key, (first_index + chunk * _SLOTS_PER_MASK * stride
                                          + offset + active[a]),
                                    stride, slots[chunk], thresholds[a])
            masks[chunk, n] = mask
            fired |= mask
        if fired != 0:
            lines[n] = active[a]
            n += 1
    return n


@kernel
def stochastic_update_kernel(w, x, d, lr, bl, key_lines, key_noise, step_up, step_down,
                             w_min, w_max, stuck, code, ctoc, gamma_up, gamma_down,
                             c_up, c_down, levels, device_dw_min):
    """Stochastic pulse-train update of one layer (:func:`neurosim.devices.stochastic_update`):
    ``w`` ``[n_out * n_in]`` (float32 or float64) in place, ``x`` ``[batch, n_in]``, ``d``
    ``[batch, n_out]``; returns the (up, down) pulses applied to non-stuck devices. The
    device arguments are :func:`device_args` (``device_dw_min``, the nominal step, is the
    pulse unit of the update management).

    Per sample, each row line's firing over the ``bl`` slots is drawn once as bit masks (64
    slots each; lines with ``p = 0`` draw nothing), then each column line's, only in the
    slots where some row fires (a column's other draws cannot make a coincidence, so
    skipping them changes nothing); then every (firing row, firing column)
    pair with a common slot is visited once: its weight is read into float64, its pulses
    are applied in slot order and it is stored back once, as the reference does for the
    sample's programming event. Devices are independent, so this order gives the
    reference's results exactly.
    """
    batch, n_in = x.shape
    n_out = d.shape[1]
    n = n_out * n_in
    lines = n_out + n_in
    chunks = (bl + _SLOTS_PER_MASK - 1) // _SLOTS_PER_MASK
    p_x = np.empty(n_in, dtype=np.float64)
    p_d = np.empty(n_out, dtype=np.float64)
    active_x = np.empty(n_in, dtype=np.int64)
    active_d = np.empty(n_out, dtype=np.int64)
    threshold_x = np.empty(n_in, dtype=np.uint64)
    threshold_d = np.empty(n_out, dtype=np.uint64)
    cols = np.empty(n_in, dtype=np.int64)
    rows = np.empty(n_out, dtype=np.int64)
    col_masks = np.empty((chunks, n_in), dtype=np.uint64)
    row_masks = np.empty((chunks, n_out), dtype=np.uint64)
    col_up = np.empty(n_in, dtype=np.bool_)  # x_j > 0
    hits = np.empty(n_in, dtype=np.int64)
    all_slots = np.empty(chunks, dtype=np.uint64)  # every slot of the train
    for chunk in range(chunks):
        count = min(_SLOTS_PER_MASK, bl - chunk * _SLOTS_PER_MASK)
        all_slots[chunk] = (_ALL_SLOTS if count == _SLOTS_PER_MASK
                            else (np.uint64(1) << np.uint64(count)) - np.uint64(1))
    row_slots = np.empty(chunks, dtype=np.uint64)  # slots in which some row fires
    noisy = ctoc[0] > 0.0 or ctoc[1] > 0.0
    n_up = 0
    n_down = 0
    for s in range(batch):
        if not stochastic_probabilities_kernel(x[s], d[s], lr, bl, device_dw_min, p_x, p_d):
            continue
        m_x = _firing_thresholds(p_x, active_x, threshold_x)
        m_d = _firing_thresholds(p_d, active_d, threshold_d)
        if m_x == 0 or m_d == 0:
            continue
        first = np.int64(s) * bl * lines  # the line draws of the sample's slot 0
        n_rows = _firing_lines(key_lines, first, lines, all_slots, active_d, threshold_d, m_d,
                               0, rows, row_masks)
        if n_rows == 0:
            continue
        # columns only matter in slots where some row fires: draw only those
        for chunk in range(chunks):
            row_slots[chunk] = 0
            for r in range(n_rows):
                row_slots[chunk] |= row_masks[chunk, r]
        n_cols = _firing_lines(key_lines, first, lines, row_slots, active_x, threshold_x, m_x,
                               n_out, cols, col_masks)
        for c in range(n_cols):
            col_up[c] = x[s, cols[c]] > 0
        for r in range(n_rows):
            i = rows[r]
            row_up = d[s, i] > 0
            n_hits = 0  # branch-free gather of the columns sharing a slot with row i
            if chunks == 1:
                row_mask, col_mask = row_masks[0, r], col_masks[0]
                for c in range(n_cols):
                    hits[n_hits] = c
                    n_hits += (row_mask & col_mask[c]) != 0
            else:
                for c in range(n_cols):
                    common = np.uint64(0)
                    for chunk in range(chunks):
                        common |= row_masks[chunk, r] & col_masks[chunk, c]
                    hits[n_hits] = c
                    n_hits += common != 0
            for h in range(n_hits):
                c = hits[h]
                k = i * n_in + cols[c]
                if stuck[k] != FREE:
                    continue
                up = row_up != col_up[c]  # direction -sign(x_j d_i)
                lo, hi, su, sd = w_min[k], w_max[k], step_up[k], step_down[k]
                wk = np.float64(w[k])
                pulses = 0
                for chunk in range(chunks):
                    both = row_masks[chunk, r] & col_masks[chunk, c]
                    noise_first = (np.int64(s) * n + k) * bl + chunk * _SLOTS_PER_MASK
                    while both != 0:
                        t = trailing_zeros(both)
                        both &= both - np.uint64(1)
                        pulses += 1
                        dw = mean_response_kernel(code, wk, up, su, sd, lo, hi, gamma_up,
                                                  gamma_down, c_up, c_down, levels,
                                                  device_dw_min)
                        if noisy:
                            dw = _with_pulse_noise(dw, normal_at(key_noise, noise_first + t),
                                                   ctoc)
                        wk = min(max(wk + dw, lo), hi)
                w[k] = wk
                if up:
                    n_up += pulses
                else:
                    n_down += pulses
    return n_up, n_down


# ---------------------------------------------------------------------- wrappers
def device_args(state: DeviceState) -> tuple:
    """The device arguments of the kernels, in order: ``step_up, step_down, w_min, w_max,
    stuck, code, ctoc, gamma_up, gamma_down, c_up, c_down, levels, device_dw_min``, with
    ``ctoc`` the cycle-to-cycle noise (``dw_min_ctoc``, ``write_noise_std``) as a float64
    array."""
    return (state.step_up, state.step_down, state.w_min, state.w_max, state.stuck,
            np.int64(state.model_code),
            np.array([state.dw_min_ctoc, state.write_noise_std], dtype=np.float64),
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
    """:func:`neurosim.devices.stochastic_update`, compiled (same arguments, same results)."""
    x, d = devices._check_stochastic(w, x, d, state, lr, bl)
    if not w.flags.c_contiguous or w.dtype not in (np.float32, np.float64):
        raise ValueError("w must be a flat contiguous float32/float64 array (the layer's "
                         "weights)")
    x = np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))
    d = np.ascontiguousarray(d if d.dtype in (np.float32, np.float64) else d.astype(np.float64))
    n_up, n_down = stochastic_update_kernel(
        w, x, d, np.float64(lr), np.int64(bl), np.uint64(key_lines), np.uint64(key_noise),
        *device_args(state))
    return int(n_up), int(n_down)
