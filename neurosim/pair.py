"""Differential pairs: two devices per weight, each only potentiated, refreshed near saturation.

A phase-change device cannot be depressed gradually: its SET (crystallization) is gradual,
its RESET (melt-quench) abrupt, to the minimum conductance. The standard remedy (Burr et al.,
"Experimental demonstration and tolerancing of a large-scale neural network (165 000
synapses) using phase-change memory as the synaptic weight element", IEEE TED 62(11), 2015;
aihwkit's ``OneSidedUnitCell``) holds each weight on two devices, G+ and G-, reads their
difference, sends every update as SET pulses (an increase to G+, a decrease to G-) and,
when a device nears saturation, RESETs both and reprograms the weight ("occasional RESET",
a refresh). ``forward.pair.mode: one_sided`` (:class:`neurosim.config.PairConfig`).

The weight
----------
Weight ``i`` of a layer is held by two devices of the chip's model, each with its own
device-to-device parameters and stuck code: G+ draws from the streams of the single device
the same chip would have without the pair (``DEVICE_DTOD``, ``DEVICE_STUCK``), G- from
``PAIR_DTOD`` and ``PAIR_STUCK``. A device's state ``g`` lies in its own bounds ``[lo, hi]``
(the normalized units of :mod:`neurosim.devices`; ``lo`` is its G_min) and contributes its
conductance above G_min::

    w_i = (g+_i - lo+_i) - (g-_i - lo-_i)

so a pair spans ``[-(hi-_i - lo-_i), hi+_i - lo+_i]``, about twice a single device's range,
with the same pulse unit. The chip keeps the single-device chip's digital scale ``alpha``
(the same initial network weights and the same change per pulse): the pair adds headroom,
not resolution. The device states are kept in float64 whatever the simulation dtype (a
single device's state *is* its weight, stored in the array's dtype; a pair's weight is
computed from its two states and stored in the array's dtype after every event).

Initial weights are programmed exactly, as a single device's are: ``w0 >= 0`` on G+
(``g+ = lo+ + w0``, G- at its minimum), ``w0 < 0`` on G-, each clipped into its device's
bounds; a device stuck at its minimum or maximum sits there.

An update (one programming event; ``update.mode: pulsed``)
----------------------------------------------------------
The desired change ``dw`` (array units) is realized as :func:`neurosim.devices.pulsed_update`
realizes it on one device, with the same pulse counts, rounding draws and noise draws (weight
``i``'s pulses all go to one of its devices, so the pair draws exactly what the single device
would), except that every pulse is a SET (up) pulse: ``dw_i > 0`` to G+, ``dw_i < 0`` to G-.
A device's down response is never used.

Refresh
-------
After every ``refresh_every``-th programming event of the chip (``update_count + 1``
divisible by it) every pair of every layer is checked: pair ``i`` is refreshed when either
of its devices is above ``refresh_threshold`` of its range, ``g - lo > theta (hi - lo)``.
Refreshing it:

1. its weight ``w_i`` is read (the verify read is modelled as exact);
2. both devices are RESET to ``lo`` (one RESET pulse per device that is not stuck; a stuck
   device stays where it is stuck);
3. ``w_i`` is reprogrammed open-loop by SET pulses on G+ (``w_i > 0``) or G- (``w_i < 0``):
   ``min(stochastic_round(|w_i| / dw_min), cap)`` pulses, ``cap = ceil((w_max - w_min) /
   dw_min) + 1`` (a whole device range), rounding draw ``uniform_at(key_round, i)``, noise
   ``normal_at(key_noise, i * cap + k)`` for its ``k``-th pulse, keys ``(seed, update_count,
   layer, PAIR_REFRESH_ROUNDING / PAIR_REFRESH_NOISE)``.

The weight after a refresh differs from the one read by the device's nonlinearity (the pulse
unit is nominal), its device-to-device spread, the rounding and the write noise: the
refresh's cost in accuracy, simulated rather than assumed away.

Every backend runs this through its own :func:`pulsed_update` kernel
(``Backend.device_kernels``), so the pair is simulated alike on NumPy, Numba and torch.
What the chip pays for it (:mod:`neurosim.accounting`): every forward read, and BP's
transposed read, reads two cells per weight; SET pulses count as ``pulses_up``, RESET
pulses as ``pulses_down`` (so :mod:`neurosim.energy` prices a RESET at the chip's
depression pulse, ``energy.write_voltage_ltd_v`` and its width, where the chip gives one);
a check reads every device of the layer once (``2 n`` cells, one
ADC conversion each: a per-device verify read) and compares it with the threshold (``2 n``
digital operations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurosim import rng
from neurosim.config import MAX_PULSES, ForwardArrayConfig
from neurosim.devices import (FREE, DeviceState, draw_device_state, nominal_step,
                              place_initial_weights)

# Bytes of one device's state beside its DeviceState (PairState.g_plus / g_minus, float64).
PAIR_STATE_BYTES = np.dtype(np.float64).itemsize


@dataclass
class PairState:
    """The devices of one layer's forward array held as differential pairs: G+ (``plus``)
    and G- (``minus``), each a full :class:`DeviceState`, and their states (float64, flat,
    length ``n_out * n_in``)."""

    plus: DeviceState
    minus: DeviceState
    g_plus: np.ndarray
    g_minus: np.ndarray

    @property
    def n(self) -> int:
        return self.plus.n

    def weights(self) -> np.ndarray:
        """``w = (g+ - lo+) - (g- - lo-)`` of every pair (float64)."""
        return (self.g_plus - self.plus.w_min) - (self.g_minus - self.minus.w_min)

    def fill(self) -> tuple[np.ndarray, np.ndarray]:
        """Each device's state as a fraction of its range, ``(g - lo) / (hi - lo)``: G+,
        G-."""
        return tuple((g - state.w_min) / (state.w_max - state.w_min)
                     for g, state in ((self.g_plus, self.plus), (self.g_minus, self.minus)))


def draw_pairs(forward: ForwardArrayConfig, n: int, seed: int, layer: int) -> PairState:
    """The ``n`` pairs of forward layer ``layer``, both devices at their minimum."""
    args = (forward.device, forward.w_min, forward.w_max, n, seed, layer)
    plus = draw_device_state(*args)
    minus = draw_device_state(*args, dtod=rng.Purpose.PAIR_DTOD, stuck=rng.Purpose.PAIR_STUCK)
    return PairState(plus, minus, plus.w_min.copy(), minus.w_min.copy())


def program_initial_weights(pairs: PairState, w0: np.ndarray) -> np.ndarray:
    """Program initial weights ``w0`` (flat) into ``pairs`` (module docstring) and return the
    weights the pairs then hold, in ``w0``'s dtype."""
    w0_64 = np.asarray(w0, dtype=np.float64)
    for g, state, part in ((pairs.g_plus, pairs.plus, np.maximum(w0_64, 0.0)),
                           (pairs.g_minus, pairs.minus, np.maximum(-w0_64, 0.0))):
        g[:] = place_initial_weights(state, state.w_min + part)  # clipped; stuck devices
    return pairs.weights().astype(np.asarray(w0).dtype)


def one_sided_update(kernels, pairs: PairState, dw: np.ndarray, dw_min: float,
                     max_pulses: int, key_round: int, key_noise: int) -> int:
    """One programming event realizing ``dw`` (array units, flat) as SET pulses on G+
    (``dw > 0``) and G- (``dw < 0``), by ``kernels.pulsed_update`` (a backend's
    :func:`neurosim.devices.pulsed_update`); returns the SET pulses applied."""
    dw64 = np.asarray(dw, dtype=np.float64)
    sent = 0
    for g, state, part in ((pairs.g_plus, pairs.plus, np.where(dw64 > 0.0, dw64, 0.0)),
                           (pairs.g_minus, pairs.minus, np.where(dw64 < 0.0, -dw64, 0.0))):
        up, _ = kernels.pulsed_update(g, part, state, dw_min, max_pulses, key_round, key_noise)
        sent += up
    return sent


def refresh_pulses(forward: ForwardArrayConfig) -> int:
    """Most SET pulses a refresh sends to reprogram one weight: a whole device range,
    ``ceil((w_max - w_min) / dw_min) + 1`` (at most :data:`neurosim.config.MAX_PULSES`)."""
    step = nominal_step(forward.device, forward.w_min, forward.w_max)
    return min(math.ceil((forward.w_max - forward.w_min) / step) + 1, MAX_PULSES)


def refresh(kernels, pairs: PairState, threshold: float, dw_min: float, cap: int,
            key_round: int, key_noise: int) -> tuple[int, int, int]:
    """Refresh the pairs with a device above ``threshold`` of its range (module docstring),
    in place. Returns (pairs refreshed, RESET pulses, SET pulses)."""
    plus_fill, minus_fill = pairs.fill()
    due = (plus_fill > threshold) | (minus_fill > threshold)
    if not due.any():
        return 0, 0, 0
    w = np.where(due, pairs.weights(), 0.0)
    resets = 0
    for g, state in ((pairs.g_plus, pairs.plus), (pairs.g_minus, pairs.minus)):
        reset = due & (state.stuck == FREE)
        g[reset] = state.w_min[reset]
        resets += int(reset.sum())
    sets = one_sided_update(kernels, pairs, w, dw_min, cap, key_round, key_noise)
    return int(due.sum()), resets, sets


def refresh_keys(seed: int, update_count: int, layer: int) -> tuple[int, int]:
    """Keys of the rounding and noise streams of a refresh after programming event
    ``update_count`` of layer ``layer``."""
    return (rng.stream_key(seed, update_count, layer, rng.Purpose.PAIR_REFRESH_ROUNDING),
            rng.stream_key(seed, update_count, layer, rng.Purpose.PAIR_REFRESH_NOISE))
