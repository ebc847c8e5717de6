"""Response curves of a chip's forward devices: weight vs pulse number, up then down.

A curve starts every device at its lower bound, sends ``n`` potentiation pulses one at a
time, then ``n`` depression pulses (``n`` = the device's levels by default), and records the
weight after each pulse. The *nominal* curve is one device with every spread and noise set
to zero (the model's equation); the *population* curve is the mean and standard deviation
over many devices drawn as on a chip (device-to-device spread and cycle-to-cycle noise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from neurosim import rng
from neurosim.config import ChipConfig
from neurosim.devices import apply_pulses, draw_device_state

NOISELESS = {"dw_min_dtod": 0.0, "dw_min_ctoc": 0.0, "write_noise": 0.0, "up_down_dtod": 0.0,
             "w_min_dtod": 0.0, "w_max_dtod": 0.0, "stuck_at_min": 0.0, "stuck_at_max": 0.0,
             "stuck_at_initial": 0.0}


@dataclass(frozen=True)
class ResponseCurve:
    pulse: np.ndarray  # 0 .. 2n: pulses sent so far (first n up, then n down)
    nominal: np.ndarray  # weight of the nominal device after each pulse
    mean: np.ndarray  # population mean weight
    std: np.ndarray  # population standard deviation
    n_up: int
    n_devices: int


def trace(chip: ChipConfig, n_devices: int, n_pulses: int, seed: int, noiseless: bool) -> np.ndarray:
    """Weights (``2 n_pulses + 1`` x ``n_devices``) along the up-then-down pulse sequence."""
    forward = chip.forward
    device = dataclasses.replace(forward.device, **NOISELESS) if noiseless else forward.device
    state = draw_device_state(device, forward.w_min, forward.w_max, n_devices, seed, 0)
    w = state.w_min.copy()
    out = [w.copy()]
    for k in range(2 * n_pulses):
        key = rng.stream_key(seed, k, 0, rng.Purpose.PULSE_NOISE)
        apply_pulses(w, state, +1 if k < n_pulses else -1, 1, key)
        out.append(w.copy())
    return np.array(out)


def response_curve(chip: ChipConfig, n_devices: int = 200, n_pulses: int | None = None,
                   seed: int = 0) -> ResponseCurve:
    n = n_pulses or chip.forward.device.levels
    population = trace(chip, n_devices, n, seed, noiseless=False)
    nominal = trace(chip, 1, n, seed, noiseless=True)[:, 0]
    return ResponseCurve(np.arange(2 * n + 1), nominal, population.mean(axis=1),
                         population.std(axis=1), n, n_devices)
