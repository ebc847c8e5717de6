"""The device models, the pulsed update and the stochastic update in torch, on any device.

Each function computes what :mod:`neurosim.devices` (the specification) computes, with the
same floating-point operations in float64, vectorized over weights, and draws the same
random numbers by index (:mod:`neurosim.backends.torch_rng`): rounding uniform
``start + j`` of ``key_round``; pulse ``k`` of weight ``i`` drawing normal
``i max_pulses + k`` of ``key_noise``; line ``l`` of slot ``t`` of sample ``s`` drawing uniform
``(s BL + t)(n_out + n_in) + l`` of ``key_lines``, and its pulse on device ``i`` normal
``(s n + i) BL + t`` of ``key_noise``. Pulse counts and the up/down totals depend on
uniforms and IEEE operations only, so they are the reference's on every device; weights
are bit-identical on the CPU, and on CUDA too except where a library function enters
(``exp_step``'s ``exp``/``expm1``/``log`` and the Box-Muller normals of cycle-to-cycle
noise), which CUDA rounds within a few ulp of the C library
(:mod:`neurosim.backends.torch_math`).

The arguments are the specification's: NumPy arrays, ``w`` updated in place. On the CPU
the tensors are views of them (``torch.as_tensor``: no copy); on CUDA the weights, the
update (or the layer's inputs and errors) and the per-device arrays of the
:class:`DeviceState` are copied to the GPU on every call and the weights back, and every
loop round synchronizes with the GPU: correct, not yet fast (:func:`kernels` binds the
device).

Loops: :func:`pulsed_update` applies pulse ``k`` of every weight that gets more than ``k``
pulses at once (``max_pulses`` rounds at most, work proportional to the pulses sent).
:func:`stochastic_update` draws every line of every slot of every sample at once, then runs
the samples in order (one programming event each, stored back in the array's dtype); inside
a sample it finds every coincidence (slot, device) and applies pulse ``k`` of every device's
train at once, ``k = 0, 1, ...``: each device still sees its pulses in slot order, and
devices are independent, so this is the reference's slot-by-slot result. Gathers and
scatters are ``index_select``/``index_copy_``/``masked_select``: torch's advanced indexing
(``t[i]``, ``t[i] = v``) runs a parallel kernel that, on the 2-core development machine
under load, waited ~8 ms per call for a descheduled worker thread (70x slower than NumPy
here), where these stay at tens of microseconds.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import torch

from neurosim.backends import torch_rng
from neurosim.backends.torch_math import divide, libm, store
from neurosim.devices import (CONSTANT_STEP, EXP_STEP, FREE, IDEAL, LINEAR_STEP, SOFT_BOUNDS,
                              DeviceState, _check_stochastic, with_pulse_noise)

F64 = torch.float64


class Devices:
    """The per-device arrays of a :class:`DeviceState` as float64 / bool tensors on one
    device, and its scalars."""

    def __init__(self, state: DeviceState, device: torch.device | str):
        def tensor(values):
            return torch.as_tensor(values, device=device)

        self.state = state
        self.step_up, self.step_down = tensor(state.step_up), tensor(state.step_down)
        self.w_min, self.w_max = tensor(state.w_min), tensor(state.w_max)
        self.free = tensor(state.stuck == FREE)


# ------------------------------------------------------------------- responses
def exp_curve(p: torch.Tensor, c: float) -> torch.Tensor:
    """:func:`neurosim.devices.exp_curve`: ``g(p) = expm1(-c p) / expm1(-c)``; ``c < 0`` as
    ``1 - g_{|c|}(1 - p)``; ``c = 0`` linear."""
    if c == 0.0:
        return p
    if c < 0.0:
        return 1.0 - exp_curve(1.0 - p, -c)
    return divide(libm("expm1", -c * p), float(np.expm1(-c)))


def exp_curve_inverse(x: torch.Tensor, c: float) -> torch.Tensor:
    """:func:`neurosim.devices.exp_curve_inverse`: ``-log((1 - x) + x exp(-c)) / c``."""
    if c == 0.0:
        return x
    if c < 0.0:
        return 1.0 - exp_curve_inverse(1.0 - x, -c)
    return divide(-libm("log", (1.0 - x) + x * float(np.exp(-c))), c)


def _exp_step(state: DeviceState, w, lo, hi, step, up: bool) -> torch.Tensor:
    """``exp_step``'s response in one direction (curve of ``A_up`` or ``A_down``)."""
    c = state.c_up if up else state.c_down
    span = hi - lo
    x = torch.clamp((w - lo) / span, 0.0, 1.0)
    p = torch.clamp(exp_curve_inverse(x, c), 0.0, 1.0)
    move = divide(divide(step, state.dw_min), float(state.levels))
    p_new = torch.clamp(p + move if up else p - move, 0.0, 1.0)
    return (lo + exp_curve(p_new, c) * span) - w


def mean_response(devices: Devices, i: torch.Tensor, w: torch.Tensor,
                  up: torch.Tensor) -> torch.Tensor:
    """:func:`neurosim.devices.mean_response`: mean change of one pulse of devices ``i``
    (int64) at weights ``w`` (float64), direction ``up`` (bool)."""
    state = devices.state
    step_up, step_down = devices.step_up.index_select(0, i), devices.step_down.index_select(0, i)
    code = state.model_code
    if code == IDEAL or code == CONSTANT_STEP:
        return torch.where(up, step_up, -step_down)
    if code == LINEAR_STEP:
        return torch.where(up, step_up * torch.clamp_min(1.0 - state.gamma_up * w, 0.0),
                           -(step_down * torch.clamp_min(1.0 + state.gamma_down * w, 0.0)))
    lo, hi = devices.w_min.index_select(0, i), devices.w_max.index_select(0, i)
    if code == SOFT_BOUNDS:
        return torch.where(up, step_up * torch.clamp_min(1.0 - w / hi, 0.0),
                           -(step_down * torch.clamp_min(1.0 - w / lo, 0.0)))
    if code == EXP_STEP:
        return torch.where(up, _exp_step(state, w, lo, hi, step_up, True),
                           _exp_step(state, w, lo, hi, step_down, False))
    raise ValueError(f"unknown device model code {code}")


def pulse_normals(devices: Devices, key_noise: int | torch.Tensor,
                  index: torch.Tensor) -> torch.Tensor | None:
    """The cycle-to-cycle normals ``xi`` of pulses whose noise is normal ``index`` of
    ``key_noise``; ``None`` (nothing drawn) without cycle-to-cycle noise."""
    if not devices.state.noisy:
        return None
    return torch_rng.normal_at(key_noise, index)


def _pulse(devices: Devices, i: torch.Tensor, w: torch.Tensor, up: torch.Tensor,
           noise: torch.Tensor | None) -> torch.Tensor:
    """Weights ``w`` of devices ``i`` after one pulse each (direction ``up``): the mean
    response with its cycle-to-cycle noise (:func:`neurosim.devices.with_pulse_noise` of
    the pulses' :func:`pulse_normals`), clipped to the devices' bounds."""
    dw = mean_response(devices, i, w, up)
    if noise is not None:
        dw = with_pulse_noise(dw, noise, devices.state)
    return torch.minimum(torch.maximum(w + dw, devices.w_min.index_select(0, i)),
                         devices.w_max.index_select(0, i))


def _pulse_trains(w: torch.Tensor, n: torch.Tensor, up: torch.Tensor, devices: Devices,
                  start: int, key_noise: int | torch.Tensor, stride: int,
                  row_length: int | None = None) -> None:
    """Send ``n[j]`` pulses of direction ``up[j]`` to device ``start + j`` (``w``: the
    weights, in place, any float dtype); pulse ``k`` of device ``i`` draws noise
    ``normal_at(key_noise, i stride + k)``. All pulses in float64, stored back once.

    With ``row_length``, ``w`` (flat) is the rows of several chips, ``row_length`` weights
    each, ``devices`` their devices likewise and ``key_noise`` a tensor of a key per row:
    weight ``j`` is device ``j mod row_length`` of chip ``j // row_length`` (``start`` 0)."""
    w64 = w.to(F64)
    j = torch.nonzero(n > 0).flatten()
    k = 0
    while j.numel():
        i = start + j
        noise = None
        if devices.state.noisy:
            key, local = ((key_noise, i) if row_length is None else
                          (key_noise.index_select(0, j // row_length), j % row_length))
            noise = pulse_normals(devices, key, local * stride + k)
        w64.index_copy_(0, j, _pulse(devices, i, w64.index_select(0, j), up.index_select(0, j),
                                     noise))
        k += 1
        j = torch.masked_select(j, n.index_select(0, j) > k)
    w.copy_(w64)


def pulse_counts(dw: torch.Tensor, dw_min: float, max_pulses: int,
                 key_round: int | torch.Tensor, start: int) -> torch.Tensor:
    """:func:`neurosim.devices.pulse_counts`: ``min(floor(x) + [u < x - floor(x)],
    max_pulses)``, ``x = |dw| / dw_min`` (NaN: 0), ``u = uniform_at(key_round, start + j)``
    for weight ``j`` of the last dimension (``key_round`` may be a tensor of keys broadcast
    against ``dw``: a key per row, the chips of a population)."""
    x = divide(torch.abs(dw.to(F64)), dw_min)
    x = torch.where(torch.isnan(x), 0.0, x)
    whole = torch.floor(x)
    index = start + torch.arange(x.shape[-1], dtype=torch.int64, device=x.device)
    u = torch_rng.uniform_at(key_round, index)
    n = torch.clamp_max(whole, float(max_pulses)).to(torch.int64) + (u < x - whole)
    return torch.clamp_max(n, max_pulses)


def pulsed_update(w: np.ndarray, dw: np.ndarray, state: DeviceState, dw_min: float,
                  max_pulses: int, key_round: int, key_noise: int, start: int = 0, *,
                  device: torch.device | str = "cpu") -> tuple[int, int]:
    """:func:`neurosim.devices.pulsed_update` on ``device`` (same arguments, same results;
    see the module docstring)."""
    if np.shape(dw) != w.shape:
        raise ValueError(f"dw {np.shape(dw)} does not match w {w.shape}")
    devices = Devices(state, device)
    w_t = torch.as_tensor(w, device=device)
    dw_t = torch.as_tensor(np.asarray(dw), device=device)
    n = pulse_counts(dw_t, dw_min, max_pulses, key_round, start)
    up = dw_t > 0
    n = torch.where(devices.free[start:start + w.shape[0]], n, 0)
    n_up, n_down = int(torch.where(up, n, 0).sum()), int(torch.where(up, 0, n).sum())
    _pulse_trains(w_t, n, up, devices, start, key_noise, max_pulses)
    store(w, w_t)
    return n_up, n_down


def apply_pulses(w: np.ndarray, state: DeviceState, direction, n_pulses=1, key_noise: int = 0,
                 start: int = 0, *, device: torch.device | str = "cpu") -> None:
    """:func:`neurosim.devices.apply_pulses` on ``device`` (same arguments, same results)."""
    m = w.shape[0]
    n = np.broadcast_to(np.asarray(n_pulses, dtype=np.int64), (m,)).copy()
    up = np.broadcast_to(np.asarray(direction) > 0, (m,)).copy()
    n[state.stuck[start:start + m] != FREE] = 0
    w_t = torch.as_tensor(w, device=device)
    _pulse_trains(w_t, torch.as_tensor(n, device=device), torch.as_tensor(up, device=device),
                  Devices(state, device), start, key_noise, max(int(n.max(initial=0)), 1))
    store(w, w_t)


# -------------------------------------------------------------- stochastic update
def stochastic_probabilities(x: torch.Tensor, d: torch.Tensor, lr: float, bl: int,
                             dw_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`neurosim.devices.stochastic_probabilities` of every sample at once: ``x``
    ``(batch, n_in)``, ``d`` ``(batch, n_out)`` (or with a leading chip dimension); returns
    float64 ``(p_x, p_d)`` of the same shapes, rows all zero where the sample's ``x`` or
    ``d`` is all zero or ``lr == 0``."""
    ax, ad = torch.abs(x.to(F64)), torch.abs(d.to(F64))
    ax = torch.where(ax < np.inf, ax, 0.0)  # NaN and inf send nothing
    ad = torch.where(ad < np.inf, ad, 0.0)
    x_max = torch.amax(ax, dim=-1, keepdim=True)
    d_max = torch.amax(ad, dim=-1, keepdim=True)
    sends = (x_max > 0.0) & (d_max > 0.0) & (lr != 0.0)
    floor = dw_min * dw_min
    x_max, d_max = torch.clamp_min(x_max, floor), torch.clamp_min(d_max, floor)
    c = float(np.sqrt(lr / (dw_min * bl)))
    c_x = c * libm("sqrt", d_max / x_max)
    c_d = c * libm("sqrt", x_max / d_max)
    return (torch.where(sends, torch.clamp_max(ax * c_x, 1.0), 0.0),
            torch.where(sends, torch.clamp_max(ad * c_d, 1.0), 0.0))


def stochastic_update(w: np.ndarray, x: np.ndarray, d: np.ndarray, state: DeviceState,
                      lr: float, bl: int, key_lines: int, key_noise: int, *,
                      device: torch.device | str = "cpu") -> tuple[int, int]:
    """:func:`neurosim.devices.stochastic_update` on ``device`` (same arguments, same
    results; see the module docstring)."""
    x, d = _check_stochastic(w, x, d, state, lr, bl)
    lr, bl = float(lr), int(bl)
    batch, n_in = x.shape
    n_out = d.shape[1]
    devices = Devices(state, device)
    x_t, d_t = torch.as_tensor(x, device=device), torch.as_tensor(d, device=device)
    p_x, p_d = stochastic_probabilities(x_t, d_t, lr, bl, state.dw_min)
    # every line draw of the call: [sample, slot, line], rows (errors) before columns
    lines = n_out + n_in
    index = torch.arange(batch * bl * lines, dtype=torch.int64, device=device)
    u = torch_rng.uniform_at(key_lines, index).reshape(batch, bl, lines)
    rows_fire = u[:, :, :n_out] < p_d[:, None, :]
    cols_fire = u[:, :, n_out:] < p_x[:, None, :]
    sending = ((p_x > 0).any(dim=1) & (p_d > 0).any(dim=1)).tolist()
    w_t = torch.as_tensor(w, device=device)
    n = state.n
    n_up = n_down = 0
    for s in range(batch):  # one programming event per sample
        if not sending[s]:
            continue
        # device (i, j) gets a pulse in slot t iff row i and column j both fire in it: look
        # for coincidences among the rows and columns that fire at all
        rows = torch.nonzero(rows_fire[s].any(dim=0)).flatten()
        cols = torch.nonzero(cols_fire[s].any(dim=0)).flatten()
        hits = (rows_fire[s].index_select(1, rows)[:, :, None]
                & cols_fire[s].index_select(1, cols)[:, None, :])
        slot, row, col = torch.nonzero(hits, as_tuple=True)  # every coincidence, slot order
        i = rows.index_select(0, row) * n_in + cols.index_select(0, col)
        free = devices.free.index_select(0, i)
        slot, i = torch.masked_select(slot, free), torch.masked_select(i, free)
        if i.numel() == 0:
            continue
        # direction -sign(x_j d_i): up iff the signs differ
        up = ((d_t[s] > 0)[:, None] != (x_t[s] > 0)[None, :]).flatten().index_select(0, i)
        ups = int(up.sum())
        n_up += ups
        n_down += i.numel() - ups
        noise = pulse_normals(devices, key_noise, (s * n + i) * bl + slot)
        w64 = w_t.to(F64)
        _event_pulses(w64, i, up, noise, devices)
        w_t.copy_(w64)  # stored back in the array's dtype at the end of the event
    store(w, w_t)
    return n_up, n_down


def _event_pulses(w64: torch.Tensor, i: torch.Tensor, up: torch.Tensor,
                  noise: torch.Tensor | None, devices) -> None:
    """The pulses of one programming event of an in-array update on the float64 weights
    ``w64`` (in place): pulse ``p`` to device ``i[p]`` in direction ``up[p]`` with noise
    normal ``noise[p]``, given in slot order. Each device's train keeps that order (a
    stable sort by device) and the pulses of one rank in the trains, which hit distinct
    devices, are applied together."""
    order = torch.argsort(i, stable=True)
    i, up = i.index_select(0, order), up.index_select(0, order)
    noise = None if noise is None else noise.index_select(0, order)
    _, trains = torch.unique_consecutive(i, return_counts=True)
    rank = (torch.arange(i.numel(), device=i.device)
            - torch.repeat_interleave(torch.cumsum(trains, 0) - trains, trains))
    for k in range(int(trains.max())):
        this = rank == k
        device_k = torch.masked_select(i, this)
        w64.index_copy_(0, device_k, _pulse(
            devices, device_k, w64.index_select(0, device_k), torch.masked_select(up, this),
            None if noise is None else torch.masked_select(noise, this)))


def _firing_first(fires: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chip (row of ``fires``, ``A x lines`` bool), the indices of its firing lines in
    increasing order, padded to ``width`` with other lines, and which of them fire."""
    index = torch.sort((~fires).to(torch.int8), dim=1, stable=True).indices[:, :width]
    return index, torch.gather(fires, 1, index)


def population_stochastic_update(w: torch.Tensor, x: torch.Tensor, d: torch.Tensor, devices,
                                 lr: float, bl: int, key_lines: torch.Tensor,
                                 key_noise: torch.Tensor) -> torch.Tensor:
    """:func:`stochastic_update` of one layer of ``A`` chips at once: ``w`` (``A x n``,
    each chip's flat weights, in place), ``x`` (``A x batch x n_in``), ``d`` (``A x batch x
    n_out``), ``devices`` their devices flat (``A n``, chip after chip: ``state`` and
    ``step_up``, ``step_down``, ``w_min``, ``w_max``, ``free``), ``key_lines`` and
    ``key_noise`` a key per chip (int64 words). Returns the (up, down) pulses of each chip
    (``A x 2``). Each chip gets exactly its own update: its own line draws (drawn sample
    by sample here, ``A x bl x lines`` at a time) and noise draws by index, its
    coincidences in slot order, each device's pulses in that order."""
    n_chips, batch, n_in = x.shape
    n_out = d.shape[2]
    n = n_out * n_in
    lines = n_out + n_in
    p_x, p_d = stochastic_probabilities(x, d, lr, bl, devices.state.dw_min)
    sending = (p_x > 0).any(dim=2) & (p_d > 0).any(dim=2)  # A x batch
    counts = torch.zeros((n_chips, 2), dtype=torch.int64, device=x.device)
    draws = torch.arange(bl * lines, dtype=torch.int64, device=x.device)
    for s in range(batch):  # one programming event per sample, all chips at once
        u = torch_rng.uniform_at(key_lines[:, None], s * bl * lines + draws)
        u = u.view(n_chips, bl, lines)
        rows_fire = (u[:, :, :n_out] < p_d[:, s, None, :]) & sending[:, s, None, None]
        cols_fire = u[:, :, n_out:] < p_x[:, s, None, :]
        rows_any, cols_any = rows_fire.any(dim=1), cols_fire.any(dim=1)
        width_r, width_c = int(rows_any.sum(1).max()), int(cols_any.sum(1).max())
        if width_r == 0 or width_c == 0:
            continue
        rows, row_ok = _firing_first(rows_any, width_r)
        cols, col_ok = _firing_first(cols_any, width_c)
        hits = (torch.gather(rows_fire, 2, rows[:, None, :].expand(-1, bl, -1))[:, :, :, None]
                & torch.gather(cols_fire, 2, cols[:, None, :].expand(-1, bl, -1))[:, :, None, :]
                & row_ok[:, None, :, None] & col_ok[:, None, None, :])
        chip, slot, r, c = torch.nonzero(hits, as_tuple=True)  # chip after chip, slot order
        row, col = rows[chip, r], cols[chip, c]
        i = row * n_in + col
        free = devices.free.index_select(0, chip * n + i)
        chip, slot, row, col, i = (torch.masked_select(t, free) for t in (chip, slot, row, col, i))
        if i.numel() == 0:
            continue
        up = (d[chip, s, row] > 0) != (x[chip, s, col] > 0)  # direction -sign(x_j d_i)
        counts[:, 0] += torch.bincount(chip[up], minlength=n_chips)
        counts[:, 1] += torch.bincount(chip[~up], minlength=n_chips)
        noise = pulse_normals(devices, key_noise.index_select(0, chip), (s * n + i) * bl + slot)
        w64 = w.to(F64).view(-1)
        _event_pulses(w64, chip * n + i, up, noise, devices)
        w.copy_(w64.view(n_chips, n))  # stored back in the arrays' dtype after the event
    return counts


def kernels(device: torch.device | str) -> SimpleNamespace:
    """The device updates on ``device``, as :class:`neurosim.backends.base.Backend` calls
    them (its ``device_kernels``): the specification's signatures."""
    return SimpleNamespace(
        pulsed_update=functools.partial(pulsed_update, device=device),
        stochastic_update=functools.partial(stochastic_update, device=device),
        apply_pulses=functools.partial(apply_pulses, device=device))
