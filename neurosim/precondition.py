"""Noise preconditioning inputs (the paper's Algorithm 1, DESIGN §4).

Inputs are drawn per element from ``N(mean, std^2)`` (or ``U(low, high)``) and labels
uniformly over the classes, independent of the inputs. Two regimes:

* ``fixed_set``: ``N`` examples drawn once and reused every epoch, reshuffled each epoch
  (the paper's appendix gives a "number of examples");
* ``fresh_stream``: a new batch of noise every step (never repeats).

Every draw comes from a counter-based stream keyed by the run seed and the step (or
epoch), so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from neurosim import rng
from neurosim.backends.base import Backend
from neurosim.config import NoiseInputConfig, PreconditionConfig
from neurosim.rows import Rows, gathered


def draw_noise_inputs(backend: Backend, config: NoiseInputConfig, key: int, n: int,
                      n_features: int, dtype: np.dtype) -> np.ndarray:
    """``n x n_features`` noise inputs from stream ``key``."""
    count = n * n_features
    if config.distribution == "gaussian":  # mean + std z, in place (no 8-byte temporaries)
        values = backend.normal(key, count)
        values *= config.std
        values += config.mean
    else:  # low + (high - low) u
        values = backend.uniform(key, count)
        values *= config.high - config.low
        values += config.low
    return values.astype(dtype).reshape(n, n_features)


def draw_noise_labels(backend: Backend, key: int, n: int, n_classes: int) -> np.ndarray:
    """``n`` labels uniform over ``0..n_classes-1``, independent of everything else."""
    u = backend.uniform(key, n)
    return np.minimum((u * n_classes).astype(np.int64), n_classes - 1)


def batch_bounds(step: int, n_examples: int, batch_size: int) -> tuple[int, int, int]:
    """(epoch, start, stop) of ``step`` when ``n_examples`` are cut into batches per epoch
    (the last batch of an epoch may be smaller)."""
    batches_per_epoch = -(-n_examples // batch_size)
    epoch, index = divmod(step, batches_per_epoch)
    start = index * batch_size
    return epoch, start, min(start + batch_size, n_examples)


PROBES_KEPT = 4  # noise probe sets kept for runs with the same seed (31 MB each at 10k x 784)
_probes: OrderedDict = OrderedDict()


class NoiseSource:
    """The batches of the noise phase of one run."""

    def __init__(self, config: PreconditionConfig, backend: Backend, seed: int, n_features: int,
                 n_classes: int, dtype: np.dtype):
        self.config = config
        self.backend = backend
        self.seed = seed
        self.n_features = n_features
        self.n_classes = n_classes
        self.dtype = dtype
        self._fixed_set: tuple[np.ndarray, np.ndarray] | None = None
        self._permutation_epoch = -1
        self._permutation = None

    @property
    def fixed_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` (inputs, labels) of the fixed-set regime, drawn on first use."""
        if self._fixed_set is None:
            key = rng.stream_key(self.seed, 0, 0, rng.Purpose.NOISE_SET_INPUTS)
            inputs = draw_noise_inputs(self.backend, self.config.input, key,
                                       self.config.n_examples, self.n_features, self.dtype)
            key = rng.stream_key(self.seed, 0, 0, rng.Purpose.NOISE_SET_LABELS)
            labels = draw_noise_labels(self.backend, key, self.config.n_examples, self.n_classes)
            self._fixed_set = inputs, labels
        return self._fixed_set

    def setup_draws(self) -> int:
        """Random numbers drawn once before the first step: the fixed set's inputs and labels
        (``N (n_features + 1)``); none for a fresh stream."""
        if self.config.regime == "fresh_stream":
            return 0
        return self.config.n_examples * (self.n_features + 1)

    def draws_per_batch(self) -> int:
        """Random numbers drawn per step: a fresh batch's inputs and labels
        (``batch (n_features + 1)``); none from a fixed set (only the per-epoch shuffle,
        which is control logic, not a noise draw)."""
        if self.config.regime != "fresh_stream":
            return 0
        return self.config.batch_size * (self.n_features + 1)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The (inputs, labels) of noise step ``step`` (0-based)."""
        return tuple(gathered(part) for part in self.rows(step))

    def rows(self, step: int) -> tuple:
        """:meth:`batch` as :class:`neurosim.rows.Rows` of the fixed set (drawn batches of a
        fresh stream as arrays)."""
        size = self.config.batch_size
        if self.config.regime == "fresh_stream":
            x = draw_noise_inputs(self.backend, self.config.input,
                                  rng.stream_key(self.seed, step, 0, rng.Purpose.NOISE_INPUTS),
                                  size, self.n_features, self.dtype)
            y = draw_noise_labels(self.backend,
                                  rng.stream_key(self.seed, step, 0, rng.Purpose.NOISE_LABELS),
                                  size, self.n_classes)
            return x, y
        epoch, start, stop = batch_bounds(step, self.config.n_examples, size)
        if epoch != self._permutation_epoch:
            self._permutation = rng.permutation(
                rng.stream_key(self.seed, epoch, 0, rng.Purpose.NOISE_SHUFFLE),
                self.config.n_examples)
            self._permutation_epoch = epoch
        index = self._permutation[start:stop]
        inputs, labels = self.fixed_set
        return Rows(inputs, index), Rows(labels, index)

    def probe(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A separate noise probe set of ``n`` examples (never trained on), read-only. Runs
        with the same seed, noise and backend (an experiment's conditions, paired by seed)
        get the same probe, drawn once: the last :data:`PROBES_KEPT` are kept."""
        key = (self.backend.name, str(getattr(self.backend, "device", "")), self.seed, n,
               self.n_features, self.n_classes, np.dtype(self.dtype).str, self.config.input)
        if key in _probes:
            _probes.move_to_end(key)
            return _probes[key]
        x = draw_noise_inputs(self.backend, self.config.input,
                              rng.stream_key(self.seed, 0, 0, rng.Purpose.NOISE_PROBE_INPUTS),
                              n, self.n_features, self.dtype)
        y = draw_noise_labels(self.backend,
                              rng.stream_key(self.seed, 0, 0, rng.Purpose.NOISE_PROBE_LABELS),
                              n, self.n_classes)
        x.flags.writeable = y.flags.writeable = False
        _probes[key] = x, y
        while len(_probes) > PROBES_KEPT:
            _probes.popitem(last=False)
        return x, y
