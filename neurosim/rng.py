"""Counter-based random numbers keyed by (seed, step, layer, purpose).

Every random number the simulator draws is a pure function of where it is used, never of
how many numbers were drawn before it:

    key  = stream_key(seed, step, layer, purpose)           (a 64-bit integer)
    u_i  = mix64(key + (i + 1) * GOLDEN)   for i = 0, 1, ...   (SplitMix64 output function)

``mix64`` is the SplitMix64 finalizer (Steele, Lea & Flood, OOPSLA 2014); the sequence
``mix64(key + i * GOLDEN)`` is exactly SplitMix64's output stream started at state ``key``,
which passes BigCrush. Because draw ``i`` depends only on ``(key, i)``, any backend (NumPy,
Numba, torch), any thread count and any chunking produces the same numbers, and a resumed
run draws exactly what an uninterrupted one would.

Conversions: ``uniform = (u >> 11) * 2**-53`` in [0, 1); normals by Box-Muller on the pair
``(u_{2i}, u_{2i+1})``: ``z_i = sqrt(-2 ln(1 - a)) * cos(2 pi b)``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

#: Largest seed: seeds are mixed as uint64 (mod 2**64), so a larger one would silently
#: repeat the streams of a smaller one; configs refuse it.
MAX_SEED = 2**64 - 1

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB
TWO_PI = 2.0 * np.pi


class Purpose(IntEnum):
    """What a stream of random numbers is for (part of its key)."""

    INIT_WEIGHTS = 1
    INIT_BIAS = 2
    FEEDBACK = 3
    NOISE_SET_INPUTS = 4
    NOISE_SET_LABELS = 5
    NOISE_INPUTS = 6
    NOISE_LABELS = 7
    DATA_SHUFFLE = 8
    NOISE_SHUFFLE = 9
    NOISE_PROBE_INPUTS = 10
    NOISE_PROBE_LABELS = 11
    PROBE_SELECTION = 12
    DEVICE_DTOD = 13  # per-device parameters, drawn once (neurosim.devices)
    DEVICE_STUCK = 14  # which devices are stuck, drawn once
    PULSE_ROUNDING = 15  # stochastic rounding of pulse counts, per programming event
    PULSE_NOISE = 16  # cycle-to-cycle noise of each pulse, per programming event
    PULSE_LINES = 17  # stochastic update: Bernoulli firing of row/column lines per slot
    FEEDBACK_PROGRAMMING = 18  # programming error and stuck cells of a feedback array
    READ_FORWARD = 19  # read noise of a training step's forward read of layer l
    READ_TRANSPOSED = 20  # read noise of BP's transposed read of layer l (training step)
    READ_FEEDBACK = 21  # read noise of a training step's read of feedback array l
    MEASURE_READ_FORWARD = 22  # the same three, for reads made to measure (evaluation),
    MEASURE_READ_TRANSPOSED = 23  # keyed by the chip's count of measurement reads
    MEASURE_READ_FEEDBACK = 24
    DEVICE_DRIFT = 25  # per-device drift exponents of the forward arrays, drawn once
    FEEDBACK_DRIFT = 26  # per-cell drift exponents of a feedback array, drawn once
    FEEDBACK_STUCK = 27  # which cells of a feedback array are stuck, drawn once
    PULSE_SIGN = 28  # neurosim devices: directions of a random-sign pulse train, per pulse
    DEVICE_REFERENCE = 29  # programming errors of the forward devices' references, drawn once
    PAIR_DTOD = 30  # device-to-device parameters of a differential pair's G- devices
    PAIR_STUCK = 31  # which G- devices of a differential pair are stuck
    PAIR_REFRESH_ROUNDING = 32  # stochastic rounding of a pair refresh's reprogramming pulses
    PAIR_REFRESH_NOISE = 33  # cycle-to-cycle noise of those pulses


def mix64_scalar(z: int) -> int:
    """SplitMix64 finalizer on a Python int (mod 2**64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def mix64_array(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on a uint64 array (wrapping arithmetic, mod 2**64)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MUL1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MUL2)
        return z ^ (z >> np.uint64(31))


KEY_PART = 0x632BE59BD9B4E019  # added to each part of a key before it is mixed in


def stream_key(seed: int, step: int, layer: int, purpose: int) -> int:
    """The 64-bit key of the stream used at (seed, step, layer, purpose)."""
    key = mix64_scalar(seed * GOLDEN + 1)
    for part in (purpose, layer, step):
        key = mix64_scalar(key ^ ((part * GOLDEN + KEY_PART) & MASK64))
    return key


def stream_keys(seeds: np.ndarray, steps: np.ndarray, layer: int, purpose: int) -> np.ndarray:
    """:func:`stream_key` of many ``(seed, step)`` pairs at once (non-negative integers;
    uint64 keys, bit for bit): the keys of a population's chips."""
    seeds, steps = (np.asarray(a, dtype=np.uint64) for a in (seeds, steps))
    with np.errstate(over="ignore"):
        key = mix64_array(seeds * np.uint64(GOLDEN) + np.uint64(1))
        for part in (np.uint64(purpose), np.uint64(layer), steps):
            key = mix64_array(key ^ (part * np.uint64(GOLDEN) + np.uint64(KEY_PART)))
    return key


def uint64_stream(key: int, n: int, start: int = 0) -> np.ndarray:
    """Draws ``start .. start+n-1`` of the stream ``key`` as uint64."""
    with np.errstate(over="ignore"):
        return mix64_array(np.uint64(key) + (np.arange(start + 1, start + n + 1,
                                                       dtype=np.uint64) * np.uint64(GOLDEN)))


def uniform(key: int, n: int) -> np.ndarray:
    """``n`` float64 uniforms in [0, 1) from stream ``key``."""
    return (uint64_stream(key, n) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def normal(key: int, n: int) -> np.ndarray:
    """``n`` standard normals (Box-Muller on consecutive uniform pairs) from stream ``key``."""
    u = uniform(key, 2 * n)
    return np.sqrt(-2.0 * np.log1p(-u[0::2])) * np.cos(TWO_PI * u[1::2])


def uniform_at(key: int, index: np.ndarray) -> np.ndarray:
    """Draws ``index`` (any shape of non-negative integers) of stream ``key`` as float64
    uniforms: ``uniform_at(key, i) == uniform(key, n)[i]`` for every ``i < n``."""
    with np.errstate(over="ignore"):
        i = np.asarray(index).astype(np.uint64)
        z = np.uint64(key) + (i + np.uint64(1)) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MUL1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MUL2)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def normal_at(key: int, index: np.ndarray) -> np.ndarray:
    """Normal ``index`` of stream ``key`` (Box-Muller on uniforms ``2 index`` and
    ``2 index + 1``): ``normal_at(key, j) == normal(key, n)[j]`` for every ``j < n``."""
    j = np.asarray(index).astype(np.uint64)
    a = uniform_at(key, np.uint64(2) * j)
    b = uniform_at(key, np.uint64(2) * j + np.uint64(1))
    return np.sqrt(-2.0 * np.log1p(-a)) * np.cos(TWO_PI * b)


def integers(key: int, n: int, high: int) -> np.ndarray:
    """``n`` integers uniform on ``0 .. high-1`` (``floor(u * high)``), as int64."""
    return np.minimum((uniform(key, n) * high).astype(np.int64), high - 1)


def permutation(key: int, n: int) -> np.ndarray:
    """A uniformly random permutation of ``0 .. n-1`` (stable argsort of uniforms)."""
    return np.argsort(uniform(key, n), kind="stable")
