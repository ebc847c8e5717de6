"""Zero-shifting: a reference device per weight, holding the device's symmetry point.

Zero-mean updates (a noise phase's, roughly) drive a device whose up and down steps differ
to its *symmetry point* ``w*``, where one up and one down pulse balance (``r(w*) = 0``, ``r``
the net response :func:`neurosim.devices.net_response`; :mod:`neurosim.device_curves`).
Where ``w*`` is not 0 the weights drift away from 0 whatever the learning rule wants.
Zero-shifting (Kim et al., "Zero-shifting technique for deep neural network training on
resistive cross-point arrays", arXiv:1907.10228, 2019/2020; aihwkit's
``subtract_symmetry_point`` of its reference devices) pairs every device with a reference
device programmed to that device's symmetry point ``ref_i`` and reads the weight
differentially::

    w_i = w_dev,i - ref_i

so the symmetry point reads as ``w = 0``: random-sign updates then pull weights to 0 (a
weight decay) instead of to ``w*``. The reference is programmed once, before training, and
never updated.

What the simulator does
-----------------------
The device's physics is unchanged; it is expressed in the weight ``w``. A pulse moves the
device by ``Δ_dev(w + ref_i)`` and the device is clipped to its own bounds, so in ``w`` the
device is the same model with its bounds shifted, ``[w_min_i - ref_i, w_max_i - ref_i]``,
and for ``soft_bounds`` its steps rescaled (every backend then simulates it unchanged,
:func:`shifted`)::

    exp_step:     the response depends on (w - lo) / (hi - lo): shifting lo and hi is exact;
    soft_bounds:  step_up (1 - (w + ref) / hi) = step_up' (1 - w / hi')
                  with hi' = hi - ref, step_up' = step_up (hi - ref) / hi,
                  and likewise step_down' = step_down (lo - ref) / lo, lo' = lo - ref.

The reference (:func:`symmetry_references`) is, per device, the stable symmetry point that
zero-mean pulses drive a device starting at ``w = 0`` to: computed from the device's own
drawn parameters (its steps and bounds; cycle-to-cycle noise has zero mean), as aihwkit
computes it from a device's parameters rather than by pulsing the device. A bistable device
(PCM's GST preset: stable at both bounds) gets the bound of its basin, and zero-shifting
cannot centre it. ``reference_error`` adds a programming error ``N(0, (reference_error
(w_max - w_min))^2)``, standard normal ``i`` of stream ``(seed, 0, layer,
DEVICE_REFERENCE)`` for device ``i``. A reference is kept at least ``m_i = min(dw_min,
(hi_i - lo_i) / 4)`` inside its device's bounds (``dw_min`` nominal), so the shifted bounds
keep ``lo' < 0 < hi'``.

Stuck devices get the reference of their parameters too (the reference array is
programmed from the model, not from a measurement of the device), so they read their stuck
conductance minus it. Conductance drift (:func:`neurosim.devices.drift`) already scales the
signed weight, as a pair whose devices drift alike does. Reading the reference cells is
charged as cell reads (:mod:`neurosim.accounting`); programming the references once before
training is not charged, as the initial weights' programming is not.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neurosim import rng
from neurosim.config import REFERENCE_MODELS, ChipConfig, ForwardArrayConfig
from neurosim.devices import (SOFT_BOUNDS, DeviceState, draw_device_state, net_response,
                              nominal_step)

SCAN_CELLS = 32  # equal cells from the start to the bound the device drifts towards
BISECTIONS = 44  # halvings of that cell: a cell of range / 32 to ~1e-14 of the range


def symmetry_references(state: DeviceState, start: float = 0.0) -> np.ndarray:
    """Per device (float64, length ``state.n``): the stable symmetry point that zero-mean
    pulses drive the device to from ``w = start`` (clipped into its bounds).

    The net response ``r`` is positive at a device's lower bound (only the up pulse moves
    it) and negative at its upper bound, so from the start it moves up (``r > 0``) or down
    (``r < 0``) to the first sign change: found by scanning :data:`SCAN_CELLS` equal cells
    towards that bound, then bisecting the cell (``r`` of the start's sign on one side, of
    the other sign or 0 on the other). A device with ``r = 0`` at the start stays there."""
    i = np.arange(state.n)
    lo, hi = state.w_min, state.w_max
    w0 = np.clip(float(start), lo, hi)
    r0 = net_response(state, i, w0)
    rising = r0 > 0
    target = np.where(rising, hi, lo)
    near, far = w0.copy(), target.copy()  # r has r0's sign at near, not at far
    found = r0 == 0  # already balanced: near = far = the start
    far[found] = w0[found]
    for k in range(1, SCAN_CELLS + 1):
        x = w0 + (target - w0) * (k / SCAN_CELLS)
        r = net_response(state, i, x)
        crossed = ~found & np.where(rising, r <= 0, r >= 0)
        far[crossed] = x[crossed]
        found |= crossed
        near[~found] = x[~found]
    for _ in range(BISECTIONS):
        mid = 0.5 * (near + far)
        r = net_response(state, i, mid)
        same = np.where(rising, r > 0, r < 0)
        near = np.where(same, mid, near)
        far = np.where(same, far, mid)
    return 0.5 * (near + far)


def shifted(state: DeviceState, reference: np.ndarray) -> DeviceState:
    """``state``'s devices read against references ``reference`` (float64 per device,
    strictly inside each device's bounds): the same model in ``w = w_dev - reference``
    (module docstring), with ``reference`` recorded."""
    lo, hi = state.w_min - reference, state.w_max - reference
    step_up, step_down = state.step_up, state.step_down
    if state.model_code == SOFT_BOUNDS:
        step_up = step_up * (hi / state.w_max)
        step_down = step_down * (lo / state.w_min)
    return dataclasses.replace(state, w_min=lo, w_max=hi, step_up=step_up,
                               step_down=step_down, reference=np.asarray(reference, np.float64))


def forward_devices(forward: ForwardArrayConfig, n: int, seed: int, layer: int) -> DeviceState:
    """The ``n`` devices of forward layer ``layer`` as the chip reads them: drawn
    (:func:`neurosim.devices.draw_device_state`) and, with ``forward.reference``, shifted
    to their references (module docstring)."""
    state = draw_device_state(forward.device, forward.w_min, forward.w_max, n, seed, layer)
    if forward.reference == "none":
        return state
    span = forward.w_max - forward.w_min
    reference = symmetry_references(state)
    if forward.reference_error > 0.0:
        key = rng.stream_key(seed, 0, layer, rng.Purpose.DEVICE_REFERENCE)
        reference = reference + forward.reference_error * span * rng.normal(key, n)
    margin = np.minimum(nominal_step(forward.device, forward.w_min, forward.w_max),
                        (state.w_max - state.w_min) / 4.0)
    return shifted(state, np.clip(reference, state.w_min + margin, state.w_max - margin))


def with_references(chip: ChipConfig) -> ChipConfig | None:
    """``chip`` with every forward device read against an exact reference at its symmetry
    point (``forward.reference: symmetry_point``); ``None`` where its device model has no
    symmetry point to hold (:data:`neurosim.config.REFERENCE_MODELS`)."""
    if chip.forward.device.model not in REFERENCE_MODELS:
        return None
    return dataclasses.replace(chip, forward=dataclasses.replace(
        chip.forward, reference="symmetry_point", reference_error=0.0))
