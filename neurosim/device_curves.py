"""How a chip's forward devices answer pulses: response curves, symmetry points and the
drift of zero-mean random-sign pulse trains.

A *response curve* starts every device at its lower bound, sends ``n`` potentiation pulses
one at a time, then ``n`` depression pulses (``n`` = the device's levels by default), and
records the weight after each pulse. The *nominal* curve is one device with every spread and
noise set to zero (the model's equation); the *population* curve is the mean and standard
deviation over many devices drawn as on a chip (device-to-device spread and cycle-to-cycle
noise).

A *symmetry point* is a weight ``w*`` where one up pulse and one down pulse of the nominal
device move it by the same amount: ``r(w*) = 0`` with the net response
``r(w) = Δ↑(w) + Δ↓(w)`` (``Δ↓ < 0``; both as the device clips them at its bounds). Where
``r`` falls through zero (``r > 0`` below, ``< 0`` above) the point is *stable*: updates
of random sign and zero mean (a noise phase's, roughly) drive the weights there, whatever
the learning rule wants (Gokmen & Haensch, Front. Neurosci. 2020; Kim et al., 2020, the
"zero-shifting" technique). Where ``r`` rises through zero it is *unstable*: it splits the
range between two stable points. A device whose up and down steps are equal everywhere has
none (``r = 0``: no drift). A *random-sign walk* measures the drift on a population drawn
as on a chip: every device starts at the same weight and receives single pulses whose
directions are fair coin flips.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from scipy.optimize import brentq

from neurosim import rng
from neurosim.config import ChipConfig
from neurosim.devices import apply_pulses, net_response, nominal_step, place_initial_weights
from neurosim.reference import forward_devices, with_references

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


def devices(chip: ChipConfig, n_devices: int, seed: int, noiseless: bool):
    """``n_devices`` forward devices of ``chip`` as layer 0 draws them (with every spread and
    noise set to zero where ``noiseless``)."""
    forward = chip.forward
    if noiseless:
        forward = dataclasses.replace(forward, reference_error=0.0,
                                      device=dataclasses.replace(forward.device, **NOISELESS))
    return forward_devices(forward, n_devices, seed, 0)


def trace(chip: ChipConfig, n_devices: int, n_pulses: int, seed: int, noiseless: bool) -> np.ndarray:
    """Weights (``2 n_pulses + 1`` x ``n_devices``) along the up-then-down pulse sequence."""
    state = devices(chip, n_devices, seed, noiseless)
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


# ------------------------------------------------------------------- symmetry points
@dataclass(frozen=True)
class SymmetryPoints:
    """Zeros of the nominal device's net response ``r(w)`` (weight units), ascending."""

    stable: tuple[float, ...]  # r falls through zero: zero-mean pulses drive weights here
    unstable: tuple[float, ...]  # r rises through zero: splits the range between stable ones
    w_min: float
    w_max: float
    step: float  # the nominal step dw_min: a point within two of a bound is that bound

    @property
    def neutral(self) -> bool:
        """Up and down steps equal everywhere: random-sign pulses cause no drift."""
        return not self.stable

    def attractor(self, w: float) -> float | None:
        """The stable point that random-sign pulses drive weight ``w`` to (stable and unstable
        points alternate, a stable one at each end); ``None`` for a neutral device."""
        if self.neutral:
            return None
        return self.stable[sum(u < w for u in self.unstable)]

    def describe(self, w: float) -> str:
        """``w`` as a signed number, or the bound it sits within two steps of (there the
        point is the bound's clipping of one pulse, not a balance of whole ones)."""
        if w - self.w_min <= 2 * self.step:
            return "w_min"
        if self.w_max - w <= 2 * self.step:
            return "w_max"
        return f"{round(w, 2) + 0.0:+.2f}"

    def text(self) -> str:
        """The stable points, and the unstable ones that split the range between them;
        ``none (no drift)`` for a neutral device."""
        if self.neutral:
            return "none (no drift)"
        text = ", ".join(self.describe(w) for w in self.stable)
        if self.unstable:
            text += f" (split at {', '.join(self.describe(w) for w in self.unstable)})"
        return text


def symmetry_points(chip: ChipConfig, grid: int = 4001) -> SymmetryPoints:
    """The nominal forward device's symmetry points: sign changes of :func:`net_response` on
    ``grid`` weights spanning the bounds, each refined to 1e-12 by Brent's method. ``r`` is
    taken as zero where ``|r| <= 1e-9 dw_min`` (equal steps up to rounding); a device whose
    ``r`` is zero wherever both pulses are whole (more than a step from the bounds), or that
    is updated ideally (no pulses), is neutral. With a reference array
    (``forward.reference``) the weights are the device's minus its reference, so the
    range is the nominal device's bounds shifted by its reference."""
    forward = chip.forward
    state = devices(chip, 1, 0, noiseless=True)
    w_min, w_max = float(state.w_min[0]), float(state.w_max[0])
    step = nominal_step(forward.device, forward.w_min, forward.w_max)
    w = np.linspace(w_min, w_max, grid)
    first = np.zeros(grid, dtype=np.int64)
    r = net_response(state, first, w)
    nonzero = np.abs(r) > 1e-9 * step
    interior = (w - w_min > step) & (w_max - w > step)
    if forward.update.mode == "ideal" or not np.any(nonzero & interior):
        return SymmetryPoints((), (), w_min, w_max, step)

    def zero(a: int, b: int) -> float:
        return brentq(lambda x: float(net_response(state, first[:1], np.array([x]))[0]),
                      w[a], w[b], xtol=1e-12)

    stable, unstable = [], []
    signed = np.flatnonzero(nonzero)
    for a, b in zip(signed[:-1], signed[1:]):
        if r[a] > 0 > r[b]:
            stable.append(zero(a, b))
        elif r[a] < 0 < r[b]:
            unstable.append(zero(a, b))
    return SymmetryPoints(tuple(stable), tuple(unstable), w_min, w_max, step)


# ------------------------------------------------------------------- random-sign walk
@dataclass(frozen=True)
class RandomSignWalk:
    pulse: np.ndarray  # 0 .. n: pulses sent so far
    mean: np.ndarray  # population mean weight after each pulse
    std: np.ndarray  # population standard deviation
    p10: np.ndarray  # population 10th percentile
    p90: np.ndarray  # population 90th percentile
    start: float
    n_devices: int


def range_steps(chip: ChipConfig) -> int:
    """Nominal steps across the forward device's range: ``(w_max - w_min) / dw_min``."""
    forward = chip.forward
    return round((forward.w_max - forward.w_min)
                 / nominal_step(forward.device, forward.w_min, forward.w_max))


def random_sign_walk(chip: ChipConfig, n_devices: int = 200, n_pulses: int | None = None,
                     seed: int = 0, start: float = 0.0) -> RandomSignWalk:
    """Send ``n_pulses`` (default: :func:`range_steps`) single pulses of random direction to
    ``n_devices`` forward devices drawn as on a chip, all starting at weight ``start`` (clipped
    into each device's bounds; stuck devices where they are stuck). Pulse ``k``'s directions
    are uniforms ``< 0.5`` (up) of stream ``(seed, k, 0, PULSE_SIGN)``, draw ``i`` for device
    ``i``; its cycle-to-cycle noise comes from ``(seed, k, 0, PULSE_NOISE)``."""
    n = n_pulses or range_steps(chip)
    state = devices(chip, n_devices, seed, noiseless=False)
    w = place_initial_weights(state, np.full(n_devices, start))
    out = [w.copy()]
    for k in range(n):
        up = rng.uniform(rng.stream_key(seed, k, 0, rng.Purpose.PULSE_SIGN), n_devices) < 0.5
        apply_pulses(w, state, np.where(up, 1, -1), 1,
                     rng.stream_key(seed, k, 0, rng.Purpose.PULSE_NOISE))
        out.append(w.copy())
    weights = np.array(out)
    p10, p90 = np.percentile(weights, [10.0, 90.0], axis=1)
    return RandomSignWalk(np.arange(n + 1), weights.mean(axis=1), weights.std(axis=1), p10,
                          p90, float(start), n_devices)


def walk_text(walk: RandomSignWalk) -> str:
    """``mean ± std`` of the weights at the end of ``walk``."""
    return f"{round(float(walk.mean[-1]), 2) + 0.0:+.2f} ± {walk.std[-1]:.2f}"


def drift_text(chip: ChipConfig) -> str:
    """:func:`walk_text` of a default :func:`random_sign_walk` (``range_steps`` pulses from
    ``w = 0``, 200 devices); ``–`` for ideally updated devices (no pulses)."""
    return "–" if chip.forward.update.mode == "ideal" else walk_text(random_sign_walk(chip))


def zero_shifted_text(chip: ChipConfig) -> str:
    """What zero-shifting (:mod:`neurosim.reference`) makes of ``chip``'s devices: the
    :func:`drift_text` of the chip with references, the nominal device's reference and the
    range its weights keep (``device bounds - reference``); ``–`` where the device model has
    no symmetry point to hold (or the chip already reads against references)."""
    shifted = with_references(chip)
    if shifted is None or chip.forward.reference != "none":
        return "–"
    points = symmetry_points(chip)
    reference = "+0.00" if points.neutral else points.describe(points.attractor(0.0))
    kept = symmetry_points(shifted)
    return (f"{drift_text(shifted)} (reference {reference}; range "
            f"[{kept.w_min:+.2f}, {kept.w_max:+.2f}])")
