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

import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from neurosim import rng
from neurosim.backends.base import Backend
from neurosim.config import NoiseInputConfig, PreconditionConfig
from neurosim.rows import EpochOrder, Segment, gathered, step_rows


def draw_noise_inputs(backend: Backend, config: NoiseInputConfig, key: int, n: int,
                      n_features: int, dtype: np.dtype) -> np.ndarray:
    """``n x n_features`` noise inputs from stream ``key``: ``mean + std z`` (normals
    ``z``) or ``low + (high - low) u`` (uniforms ``u``), :meth:`Backend.scaled_draws`."""
    if config.distribution == "gaussian":
        values = backend.scaled_draws(key, n * n_features, True, config.std, config.mean, dtype)
    else:
        values = backend.scaled_draws(key, n * n_features, False, config.high - config.low,
                                      config.low, dtype)
    return values.reshape(n, n_features)


def draw_noise_labels(backend: Backend, key: int, n: int, n_classes: int) -> np.ndarray:
    """``n`` labels uniform over ``0..n_classes-1``, independent of everything else."""
    u = backend.uniform(key, n)
    return np.minimum((u * n_classes).astype(np.int64), n_classes - 1)


class DrawnSet:
    """A drawn noise set, (``inputs``, ``labels``), read-only: shared by the runs that draw
    the same one (:func:`shared_set`)."""

    __slots__ = ("inputs", "labels", "__weakref__")

    def __init__(self, inputs: np.ndarray, labels: np.ndarray):
        inputs.flags.writeable = labels.flags.writeable = False
        self.inputs, self.labels = inputs, labels


SETS_KEPT = 4  # sets kept after their runs end (31 MB each at 10,000 x 784 float32)
_live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # sets some run holds
_recent: OrderedDict = OrderedDict()  # the last SETS_KEPT sets drawn or shared


def shared_set(key: tuple, draw: Callable[[], DrawnSet]) -> DrawnSet:
    """The noise set ``key`` names (its stream, size and backend): the one a run
    already holds (a population's chips of one seed, across conditions), or one of the
    last :data:`SETS_KEPT` (runs made one after another), else ``draw()``."""
    found = _live.get(key) or _recent.get(key)
    if found is None:
        found = draw()
    _live[key] = found
    _recent[key] = found
    _recent.move_to_end(key)
    while len(_recent) > SETS_KEPT:
        _recent.popitem(last=False)
    return found


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
        self._sets: dict[tuple, DrawnSet] = {}  # this run's drawn sets (kept alive here)
        self._order = EpochOrder(seed, rng.Purpose.NOISE_SHUFFLE, config.n_examples)

    def _set(self, n: int, inputs: rng.Purpose,
             labels: rng.Purpose) -> tuple[np.ndarray, np.ndarray]:
        """``n`` noise examples of this run's streams ``inputs`` and ``labels`` (read-only;
        :func:`shared_set`: drawn once for all the runs with the same seed, noise and
        backend)."""
        if (inputs, n) not in self._sets:
            def draw() -> DrawnSet:
                return DrawnSet(
                    draw_noise_inputs(self.backend, self.config.input,
                                      rng.stream_key(self.seed, 0, 0, inputs), n,
                                      self.n_features, self.dtype),
                    draw_noise_labels(self.backend, rng.stream_key(self.seed, 0, 0, labels),
                                      n, self.n_classes))
            key = (inputs, self.backend.name, str(getattr(self.backend, "device", "")),
                   self.seed, n, self.n_features, self.n_classes, np.dtype(self.dtype).str,
                   self.config.input)
            self._sets[inputs, n] = shared_set(key, draw)
        drawn = self._sets[inputs, n]
        return drawn.inputs, drawn.labels

    @property
    def fixed_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` (inputs, labels) of the fixed-set regime, drawn on first use."""
        return self._set(self.config.n_examples, rng.Purpose.NOISE_SET_INPUTS,
                         rng.Purpose.NOISE_SET_LABELS)

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
        return tuple(gathered(part) for part in self.segment(step, step + 1).batch(0))

    def segment(self, start: int, stop: int) -> Segment:
        """Noise steps from ``start`` on, up to ``stop``: rows of the fixed set, in each
        epoch's order (up to an epoch's short last batch, :func:`step_rows`), or batches of
        the fresh stream (drawn when a step is taken)."""
        size = self.config.batch_size
        if self.config.regime == "fresh_stream":
            return Segment.drawn("precondition", start, stop, self._fresh_batch, size)
        inputs, labels = self.fixed_set
        return Segment.of_rows("precondition", start, inputs, labels,
                               step_rows(start, stop, size, self._order))

    def _fresh_batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The fresh stream's batch of step ``step``."""
        size = self.config.batch_size
        x = draw_noise_inputs(self.backend, self.config.input,
                              rng.stream_key(self.seed, step, 0, rng.Purpose.NOISE_INPUTS),
                              size, self.n_features, self.dtype)
        y = draw_noise_labels(self.backend,
                              rng.stream_key(self.seed, step, 0, rng.Purpose.NOISE_LABELS),
                              size, self.n_classes)
        return x, y

    def probe(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A separate noise probe set of ``n`` examples (never trained on), read-only;
        shared with the runs of the same seed and noise (an experiment's conditions, paired
        by seed)."""
        return self._set(n, rng.Purpose.NOISE_PROBE_INPUTS, rng.Purpose.NOISE_PROBE_LABELS)
