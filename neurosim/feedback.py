"""Feedback arrays as hardware: the values a feedback crossbar holds once programmed.

A feedback matrix is first drawn (:func:`neurosim.chip.draw_feedback_numpy`), then, for a
crossbar (``stored``, ``sign``, ``ternary``):

1. **precision** (``sign`` / ``ternary``): ``sign`` keeps ``c sign(B)``; ``ternary`` sets the
   ``ternary_zero_fraction`` cells of smallest ``|B|`` to 0 and the others to ``c sign(B)``;
   ``c`` is chosen so that the matrix keeps the drawn entries' root-mean-square value (the
   feedback's scale, which sets the size of the error signal, is unchanged);
2. **programming error**: each cell holds ``B (1 + programming_error xi)``, ``xi ~ N(0, 1)``;
3. **finite levels**: values snap to the nearest of ``levels`` evenly spaced levels over
   ``[-max|B|, max|B|]`` (the drawn matrix's largest magnitude sets the conductance range);
4. **stuck cells**: a fraction of cells is stuck at ``-max|B|`` and one at ``+max|B|``.

Random draws come from two streams, like a forward array's (:mod:`neurosim.devices`):
normal ``i`` of ``(seed, 0, layer, FEEDBACK_PROGRAMMING)`` is cell ``i``'s programming error;
uniform ``i`` of ``(seed, 0, layer, FEEDBACK_STUCK)`` decides whether it is stuck. (One
stream for both would not do: normal ``i`` is made of the stream's uniforms ``2i`` and
``2i + 1``, so any other uniform index of it is some cell's programming error.)
``regenerated`` feedback is digital logic and returns the drawn values unchanged.
"""

from __future__ import annotations

import numpy as np

from neurosim import rng
from neurosim.config import FeedbackArrayConfig


def reduce_precision(values: np.ndarray, config: FeedbackArrayConfig) -> np.ndarray:
    """Step 1: ``sign`` or ``ternary`` values with the drawn root-mean-square kept."""
    rms = np.sqrt(np.mean(values * values))
    if config.kind == "sign":
        return rms * np.sign(values)
    if config.kind == "ternary":
        n_zero = int(round(config.ternary_zero_fraction * values.size))
        keep = np.ones(values.size, dtype=bool)
        keep[np.argsort(np.abs(values), kind="stable")[:n_zero]] = False
        c = rms / np.sqrt(max(keep.mean(), 1.0 / values.size))
        return np.where(keep, c * np.sign(values), 0.0)
    return values


def program(values: np.ndarray, config: FeedbackArrayConfig, seed: int, layer: int) -> np.ndarray:
    """The values a feedback crossbar of layer ``layer`` holds (float64, flat)."""
    if config.kind == "regenerated":
        return values
    out = reduce_precision(values, config)
    reach = np.max(np.abs(out)) if out.size else 0.0
    if config.programming_error > 0:
        key = rng.stream_key(seed, 0, layer, rng.Purpose.FEEDBACK_PROGRAMMING)
        out = out * (1.0 + config.programming_error * rng.normal(key, out.size))
    if config.levels is not None and reach > 0:
        step = 2.0 * reach / (config.levels - 1)
        out = -reach + step * np.rint((np.clip(out, -reach, reach) + reach) / step)
    if config.stuck_at_min > 0 or config.stuck_at_max > 0:
        u = rng.uniform(rng.stream_key(seed, 0, layer, rng.Purpose.FEEDBACK_STUCK), out.size)
        out = np.where(u < config.stuck_at_min, -reach, out)
        out = np.where((u >= config.stuck_at_min)
                       & (u < config.stuck_at_min + config.stuck_at_max), reach, out)
    return out
