"""Noise preconditioning inputs (the paper's Algorithm 1, DESIGN §4).

Inputs are drawn per pixel from ``N(mean, std^2)`` (the paper's), ``U(low, high)``, as
binary spikes, or as a spatially correlated Gaussian field (:func:`draw_noise_inputs`), and
labels uniformly over the classes, independent of the inputs. Two regimes:

* ``fixed_set``: ``N`` examples drawn once and reused every epoch, reshuffled each epoch
  (the paper's appendix gives a "number of examples");
* ``fresh_stream``: a new batch of noise every step (never repeats).

Every draw comes from a counter-based stream keyed by the run seed and the step (or
epoch), so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from neurosim import rng
from neurosim.backends.base import Backend
from neurosim.config import NoiseInputConfig, PreconditionConfig
from neurosim.rows import EpochOrder, Segment, gathered, step_rows


def draw_noise_inputs(backend: Backend, config: NoiseInputConfig, key: int, n: int,
                      image_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``n x prod(image_shape)`` noise inputs from stream ``key``, one draw per pixel:

    * gaussian: ``mean + std z`` (normals ``z``), uniform: ``low + (high - low) u``
      (uniforms ``u``), both :meth:`Backend.scaled_draws`;
    * binary: ``high`` where ``u < rate``, else ``low``;
    * correlated: ``mean + std (k * z) / ||k||``, each image's normals ``z`` (over its last
      two axes, the pixels; a leading axis holds channels) convolved circularly with the
      Gaussian kernel ``k`` of ``length_scale`` pixels (:func:`smoothed_field`).

    Made in float64 from the backend's draws, then rounded to ``dtype``: the same numbers on
    every backend (in place: at most the draws and one float64 field alive at once)."""
    n_features = math.prod(image_shape)
    if config.distribution == "gaussian":
        values = backend.scaled_draws(key, n * n_features, True, config.std, config.mean, dtype)
    elif config.distribution == "uniform":
        values = backend.scaled_draws(key, n * n_features, False, config.high - config.low,
                                      config.low, dtype)
    elif config.distribution == "binary":
        spikes = backend.uniform(key, n * n_features) < config.rate
        scalar = np.dtype(dtype).type
        values = np.where(spikes, scalar(config.high), scalar(config.low))
    else:
        field = smoothed_field(backend.normal(key, n * n_features).reshape(n, *image_shape),
                               config.length_scale)
        field *= config.std
        field += config.mean
        values = field.astype(dtype, copy=False)
    return values.reshape(n, n_features)


def smoothed_field(white: np.ndarray, length_scale: float) -> np.ndarray:
    """Unit-variance Gaussian random fields from white noise ``white`` (``n x ... x H x W``,
    standard normals): each ``H x W`` image convolved with the Gaussian kernel of standard
    deviation ``length_scale`` pixels (``scipy.ndimage.gaussian_filter``, truncated at 4
    length scales, wrapped at the edges so every pixel is alike), divided by the kernel's
    norm so every pixel is again ``N(0, 1)``. The correlation of two pixels ``d`` apart along
    an axis is ``sum_j k_j k_(j+d) / sum_j k_j^2`` (``k`` folded onto the ``H`` pixels of the
    axis, indices modulo ``H``: ``d`` and ``H - d`` alike), about
    ``exp(-min(d, H - d)^2 / (4 length_scale^2))`` (within 0.02 for
    ``0.7 <= length_scale <= H / 8``; above, the wrapped kernel correlates more)."""
    if white.ndim < 3:
        raise ValueError(f"correlated noise needs images (n x H x W), got shape {white.shape}")
    sigma = (0.0,) * (white.ndim - 2) + (length_scale, length_scale)
    field = ndimage.gaussian_filter(white, sigma, mode="wrap")
    impulse = np.zeros(white.shape[-2:])
    impulse[0, 0] = 1.0
    kernel = ndimage.gaussian_filter(impulse, length_scale, mode="wrap")  # k, folded
    field /= np.sqrt(np.sum(kernel * kernel))
    return field


def smoothing_macs(config: NoiseInputConfig, image_shape: tuple[int, ...]) -> int:
    """Digital multiply-adds to smooth one example's white noise into a correlated field
    (:func:`smoothed_field`): two passes of the separable kernel, ``taps(H) + taps(W)`` per
    pixel (per channel), ``taps(side) = min(2 r + 1, side)`` with ``r = int(4 length_scale +
    0.5)`` (the kernel truncated at 4 length scales, folded onto the side's pixels; its norm,
    ``std`` and ``mean`` folded into the taps and one add). 0 for the other distributions:
    their draws become the inputs directly."""
    if config.distribution != "correlated":
        return 0
    radius = int(4 * config.length_scale + 0.5)
    *_, height, width = image_shape
    taps = sum(min(2 * radius + 1, side) for side in (height, width))
    return math.prod(image_shape) * taps


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

    def __init__(self, config: PreconditionConfig, backend: Backend, seed: int,
                 image_shape: tuple[int, ...], n_classes: int, dtype: np.dtype):
        """``image_shape``: an input image's shape (the data's, say 28 x 28: the network's
        inputs are its pixels)."""
        self.config = config
        self.backend = backend
        self.seed = seed
        self.image_shape = tuple(image_shape)
        self.n_features = math.prod(self.image_shape)
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
                                      self.image_shape, self.dtype),
                    draw_noise_labels(self.backend, rng.stream_key(self.seed, 0, 0, labels),
                                      n, self.n_classes))
            key = (inputs, self.backend.name, str(getattr(self.backend, "device", "")),
                   self.seed, n, self.image_shape, self.n_classes, np.dtype(self.dtype).str,
                   self.config.input)
            self._sets[inputs, n] = shared_set(key, draw)
        drawn = self._sets[inputs, n]
        return drawn.inputs, drawn.labels

    @property
    def fixed_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` (inputs, labels) of the fixed-set regime, drawn on first use."""
        return self._set(self.config.n_examples, rng.Purpose.NOISE_SET_INPUTS,
                         rng.Purpose.NOISE_SET_LABELS)

    def example_counts(self) -> dict[str, int]:
        """The chip's digital work to make one noise example and its label (ledger counters,
        :mod:`neurosim.ledger`): ``n_features + 1`` random numbers (a PRNG step each), and
        for a correlated field the multiply-adds of :func:`smoothing_macs`."""
        return {"random_numbers": self.n_features + 1,
                "digital_macs": smoothing_macs(self.config.input, self.image_shape)}

    def setup_examples(self) -> int:
        """Examples made once before the first step: the fixed set's ``N``; none for a
        fresh stream."""
        return 0 if self.config.regime == "fresh_stream" else self.config.n_examples

    def examples_per_batch(self) -> int:
        """Examples made per step: a fresh batch; none from a fixed set (only the per-epoch
        shuffle, which is control logic, not noise made)."""
        return self.config.batch_size if self.config.regime == "fresh_stream" else 0

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
                              size, self.image_shape, self.dtype)
        y = draw_noise_labels(self.backend,
                              rng.stream_key(self.seed, step, 0, rng.Purpose.NOISE_LABELS),
                              size, self.n_classes)
        return x, y

    def probe(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A separate noise probe set of ``n`` examples (never trained on), read-only;
        shared with the runs of the same seed and noise (an experiment's conditions, paired
        by seed)."""
        return self._set(n, rng.Purpose.NOISE_PROBE_INPUTS, rng.Purpose.NOISE_PROBE_LABELS)
