"""The simulated chip: forward arrays, digital biases and fixed random feedback arrays.

State and meaning live here; arithmetic lives in :mod:`neurosim.backends`.

Layer ``l = 1..L`` (index ``l - 1`` in code) maps ``n_{l-1}`` inputs to ``n_l`` outputs:

* its **forward array** holds normalized weights ``w in [w_min, w_max]`` (shape
  ``n_l x n_{l-1}``); the network weight is ``W_l = alpha_l * w`` with a digital scale
  ``alpha_l`` fixed at construction so that the largest initial ``|w|`` fills
  ``init_fill`` of the range;
* its **bias** ``b_l`` lives in the digital periphery, in network units;
* its **feedback array** holds a fixed random ``B_l`` (shape given by the rule, see
  :meth:`neurosim.rules.Rule.feedback_shapes`), programmed once and never updated.
  ``stored`` / ``sign`` / ``ternary``: a crossbar holding ``B`` as programmed (precision,
  programming error, levels, stuck cells: :mod:`neurosim.feedback`); ``regenerated``: ``B``
  is re-drawn from its PRNG key into a scratch buffer on every use (zero storage; costs
  random numbers).

**Reads.** Every read of a forward or feedback crossbar goes through that array's periphery
(:mod:`neurosim.periphery`: DAC, read noise, ADC), tile by tile: each tile of ``tiles``
(``rows x cols`` cells) converts its own partial sums, which are added digitally. Read
noise is keyed by
:meth:`Chip.read_keys`: a training step's reads by the programming-event count (so the
noise of step ``k`` is the same whatever was measured before it), reads made to measure
(evaluation) by a separate count of measurement reads. Stored feedback cells drift
(``B (t / t0)^-nu``) on the chip's clock, ``t = t0 + update_count * step_time_s``.

All parameters sit in one flat buffer ``params = [w_1, b_1, w_2, b_2, ...]`` described by
``layout[l] = (w_offset, n_out, n_in, b_offset)``, so that compiled kernels and the
optimizer can work on the whole network at once; per-layer views are provided for the
reference backend and the metrics. Feedback matrices sit in ``feedback`` with
``feedback_layout[l] = (offset, rows, cols)`` (``rows = 0``: layer has none).

Initialization (PyTorch ``nn.Linear`` default, as in the paper): ``W_l, b_l ~
U(-1/sqrt(n_{l-1}), 1/sqrt(n_{l-1}))``. Feedback: uniform ``U(-g/sqrt(fan), g/sqrt(fan))``
or Gaussian with the same std, ``fan = n_{l-1}`` for FA-shaped arrays (the matched forward
layer's fan-in, so ``B_{l}`` is distributed like ``W_l^T``) and ``n_L`` for the direct
rules' arrays (DFA, SDFA, DRTP).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from neurosim import rng
from neurosim.config import ChipConfig, NetworkConfig
from neurosim.devices import (
    DeviceState,
    drift,
    drift_exponents,
    place_initial_weights,
)
from neurosim.feedback import program
from neurosim.ledger import Ledger
from neurosim.pair import PairState, draw_pairs, program_initial_weights
from neurosim.periphery import REREAD_COUNTERS, PeripheryConfig
from neurosim.reference import forward_devices
from neurosim.rules import Rule

ACTIVATIONS = {"relu": 0, "tanh": 1}


class PulledState:
    """A chip attribute that a population may hold on a GPU between steps
    (:mod:`neurosim.backends.torch_population`): reading it first brings the state back
    (:meth:`Population.pull`); it is stored as ``_<name>``."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, chip, owner=None):
        if chip is None:
            return self
        if chip.population is not None:
            chip.population.pull()
        return getattr(chip, self.slot)

    def __set__(self, chip, value) -> None:
        setattr(chip, self.slot, value)


@dataclass(frozen=True)
class FeedbackSpec:
    """How the feedback matrix of one layer is drawn: ``B = scale * X``, X from ``key``."""

    layer: int
    shape: tuple[int, int]
    key: int
    distribution: str
    scale: float

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]


class Chip:
    """A chip running a ``dims[0] -> ... -> dims[-1]`` network (see module docstring)."""

    def __init__(self, config: ChipConfig, network: NetworkConfig, rule: Rule, seed: int,
                 dtype: str = "float32"):
        self.config = config
        self.rule = rule
        self.seed = seed
        self.dims = tuple(network.dims)
        self.activation = network.activation
        self.activation_code = ACTIVATIONS[network.activation]
        self.dtype = np.dtype(dtype)
        self.n_layers = len(self.dims) - 1
        self.population = None  # the Population holding this chip's state, if any

        layout, offset = [], 0
        for n_in, n_out in zip(self.dims[:-1], self.dims[1:]):
            layout.append((offset, n_out, n_in, offset + n_out * n_in))
            offset += n_out * n_in + n_out
        self.layout = np.array(layout, dtype=np.int64)
        self.n_params = offset
        self.params = np.zeros(offset, dtype=self.dtype)
        self.bounds = np.tile([config.forward.w_min, config.forward.w_max], (self.n_layers, 1))
        self.alphas = np.ones(self.n_layers, dtype=np.float64)
        self._initialize_forward()
        # alpha is fixed from here on; kernels read these copies in the simulation dtype.
        self.alphas_typed = self.alphas.astype(self.dtype)
        self.inverse_alphas_typed = (1.0 / self.alphas).astype(self.dtype)
        self.bounds_typed = self.bounds.astype(self.dtype)

        forward = config.forward
        self.update_mode = forward.update.mode
        # One device per weight (its state is the weight in params), or differential pairs
        # whose states the chip keeps beside params (neurosim.pair); None: ideal devices.
        self.devices: list[DeviceState] | None = None
        self.pairs: list[PairState] | None = None
        if forward.device.model != "ideal":
            paired = forward.pair.mode != "none"
            held = []
            for index, (_, n_out, n_in, _) in enumerate(self.layout):
                w = self.weights(index).reshape(-1)
                if paired:
                    state = draw_pairs(forward, int(n_out * n_in), seed, index)
                    w[:] = program_initial_weights(state, w)
                else:
                    state = forward_devices(forward, int(n_out * n_in), seed, index)
                    w[:] = place_initial_weights(state, w)
                held.append(state)
            if paired:
                self.pairs = held
            else:
                self.devices = held
        self.update_count = 0  # programming events so far (keys the pulse noise)
        self.pulses = np.zeros((self.n_layers, 2), dtype=np.int64)  # up, down per layer
        # Differential pairs' refreshes per layer: checks made, pairs refreshed.
        self.refreshes = np.zeros((self.n_layers, 2), dtype=np.int64)
        # Re-reads of iterative bound management not yet booked in the ledger (host memory
        # on every backend): [training (0) or measurement (1) pass, forward (0) or backward
        # (1) read, layer whose array was read, neurosim.periphery.REREAD_COUNTERS].
        self.rereads = np.zeros((2, 2, self.n_layers, len(REREAD_COUNTERS)), dtype=np.int64)
        self.ledger = Ledger(self.n_layers)  # what the chip did (neurosim.accounting books it)

        self.feedback_specs: list[FeedbackSpec | None] = []
        fb_layout, fb_offset = [], 0
        for index, shape in enumerate(rule.feedback_shapes(self.dims)):
            if shape is None:
                self.feedback_specs.append(None)
                fb_layout.append((fb_offset, 0, 0))
                continue
            # FA: n_{l-1}, the fan-in of the matched forward layer; direct rules: n_L.
            fan = shape[1] if rule.direct else shape[0]
            bound = config.feedback.gain / np.sqrt(fan)
            spec = FeedbackSpec(
                layer=index, shape=shape,
                key=rng.stream_key(seed, 0, index, rng.Purpose.FEEDBACK),
                distribution=config.feedback.distribution,
                scale=bound if config.feedback.distribution == "uniform" else bound / np.sqrt(3.0))
            self.feedback_specs.append(spec)
            fb_layout.append((fb_offset, shape[0], shape[1]))
            fb_offset += spec.size
        self.feedback_layout = np.array(fb_layout, dtype=np.int64)
        self.feedback = np.zeros(fb_offset, dtype=self.dtype)
        self.feedback_kind = config.feedback.kind
        self.feedback_nu: np.ndarray | None = None  # per-cell drift exponents
        if self.feedback_kind != "regenerated":  # a crossbar, programmed once
            drawn = draw_feedback_numpy(self.feedback_specs, fb_offset)
            self.feedback_nu = np.zeros(fb_offset)
            for spec in filter(None, self.feedback_specs):
                offset = self.feedback_layout[spec.layer, 0]
                part = slice(offset, offset + spec.size)
                self.feedback[part] = program(drawn[part], config.feedback, seed, spec.layer)
                self.feedback_nu[part] = drift_exponents(
                    config.feedback.drift_nu, config.feedback.drift_nu_dtod, spec.size,
                    rng.stream_key(seed, 0, spec.layer, rng.Purpose.FEEDBACK_DRIFT))
            if not self.feedback_nu.any():
                self.feedback_nu = None

        self.tiles = (config.tiles.rows, config.tiles.cols)  # cells of one tile (reads)
        self.forward_periphery = config.forward.periphery
        self.feedback_periphery = config.feedback.periphery
        self.ideal_reads = self.forward_periphery.is_ideal and self.feedback_periphery.is_ideal
        self.measurement_reads = 0  # reads made to measure so far (keys their noise)
        self._no_keys = np.zeros((self.n_layers, 3), dtype=np.uint64)

    # Training state a population may hold on a GPU between steps (see PulledState).
    params = PulledState()  # flat [w_1, b_1, w_2, b_2, ...] (see the module docstring)
    pulses = PulledState()  # pulses sent so far, [layer, (up, down)] (int64)

    # ------------------------------------------------------------------ init
    def _initialize_forward(self) -> None:
        forward = self.config.forward
        reach = max(abs(forward.w_min), abs(forward.w_max))
        for index, (w_off, n_out, n_in, b_off) in enumerate(self.layout):
            bound = 1.0 / np.sqrt(n_in)
            W = bound * (2.0 * rng.uniform(
                rng.stream_key(self.seed, 0, index, rng.Purpose.INIT_WEIGHTS), n_out * n_in) - 1.0)
            b = bound * (2.0 * rng.uniform(
                rng.stream_key(self.seed, 0, index, rng.Purpose.INIT_BIAS), n_out) - 1.0)
            alpha = np.max(np.abs(W)) / (forward.init_fill * reach)
            self.alphas[index] = alpha
            self.params[w_off:w_off + n_out * n_in] = W / alpha
            self.params[b_off:b_off + n_out] = b

    # ----------------------------------------------------------------- views
    def weights(self, index: int) -> np.ndarray:
        """Array weights ``w`` of layer ``index`` (normalized units), a view."""
        w_off, n_out, n_in, _ = self.layout[index]
        return self.params[w_off:w_off + n_out * n_in].reshape(n_out, n_in)

    def bias(self, index: int) -> np.ndarray:
        """Bias ``b`` of layer ``index`` (network units), a view."""
        _, n_out, _, b_off = self.layout[index]
        return self.params[b_off:b_off + n_out]

    def effective_weights(self) -> list[np.ndarray]:
        """Network weights ``W_l = alpha_l * w_l`` as float64 copies."""
        return [self.alphas[i] * self.weights(i).astype(np.float64) for i in range(self.n_layers)]

    def feedback_matrix(self, index: int) -> np.ndarray | None:
        """The feedback matrix ``B`` of layer ``index`` as the chip applies it (float64)."""
        spec = self.feedback_specs[index]
        if spec is None:
            return None
        offset = self.feedback_layout[index, 0]
        if self.feedback_kind != "regenerated":
            flat = self.drifted_feedback()[offset:offset + spec.size]
        else:
            flat = draw_feedback_numpy([spec], spec.size).astype(self.dtype)
        return flat.astype(np.float64).reshape(spec.shape)

    # ------------------------------------------------------------------ reads
    @property
    def time_s(self) -> float:
        """The chip's clock: seconds since the feedback arrays were programmed, counted from
        the drift reference ``t0`` (``t0 + update_count * step_time_s``)."""
        return self.config.feedback.drift_t0_s + self.update_count * self.config.step_time_s

    def drifted_feedback(self) -> np.ndarray:
        """The stored feedback cells as they read now: ``B (t / t0)^-nu`` per cell
        (:func:`neurosim.devices.drift`); the programmed buffer itself when nothing drifts."""
        if self.feedback_nu is None:
            return self.feedback
        return drift(self.feedback, self.time_s, self.config.feedback.drift_t0_s,
                     self.feedback_nu)

    @contextmanager
    def reading_exactly(self) -> Iterator[Chip]:
        """Within the block every read of the chip is the exact product (ideal converters,
        no read noise): what an analysis compares the chip with, such as the true BP
        gradient of the weights it holds (:func:`neurosim.evaluation.gradients`). The
        periphery is restored after; measurement passes still count (their keys)."""
        saved = self.forward_periphery, self.feedback_periphery, self.ideal_reads
        self.forward_periphery = self.feedback_periphery = PeripheryConfig()
        self.ideal_reads = True
        try:
            yield self
        finally:
            self.forward_periphery, self.feedback_periphery, self.ideal_reads = saved

    def read_keys(self, training: bool) -> np.ndarray:
        """Read-noise keys of one pass (``n_layers x 3`` uint64): per layer, the forward
        read, BP's transposed read and the read of feedback array ``l``.

        ``training``: the reads of the training step about to run (keyed by
        ``update_count``); otherwise reads made to measure, keyed by, and advancing, the
        count of measurement reads. All zeros when every read is ideal (nothing is drawn).
        """
        if not training:
            self.measurement_reads += 1
        if self.ideal_reads:
            return self._no_keys
        if training:
            step = self.update_count
            purposes = (rng.Purpose.READ_FORWARD, rng.Purpose.READ_TRANSPOSED,
                        rng.Purpose.READ_FEEDBACK)
        else:
            step = self.measurement_reads - 1
            purposes = (rng.Purpose.MEASURE_READ_FORWARD, rng.Purpose.MEASURE_READ_TRANSPOSED,
                        rng.Purpose.MEASURE_READ_FEEDBACK)
        return np.array([[rng.stream_key(self.seed, step, layer, purpose)
                          for purpose in purposes] for layer in range(self.n_layers)],
                        dtype=np.uint64)

    # ------------------------------------------------------------ checkpoint
    def pulse_keys(self, index: int) -> tuple[int, int]:
        """Keys of the rounding and noise streams of layer ``index``'s next programming event."""
        return (rng.stream_key(self.seed, self.update_count, index, rng.Purpose.PULSE_ROUNDING),
                rng.stream_key(self.seed, self.update_count, index, rng.Purpose.PULSE_NOISE))

    def stochastic_keys(self, index: int) -> tuple[int, int]:
        """Keys of the line (Bernoulli) and noise streams of the next in-array update."""
        return (rng.stream_key(self.seed, self.update_count, index, rng.Purpose.PULSE_LINES),
                rng.stream_key(self.seed, self.update_count, index, rng.Purpose.PULSE_NOISE))

    def state(self) -> dict[str, np.ndarray]:
        """Everything that changes during training (the feedback never does)."""
        state = {"params": self.params.copy(), "update_count": np.array(self.update_count),
                 "pulses": self.pulses.copy(), "rereads": self.rereads.copy(),
                 "measurement_reads": np.array(self.measurement_reads),
                 "ledger_counts": self.ledger.counts.copy(),
                 "ledger_rereads": self.ledger.rereads.copy()}
        if self.pairs is not None:
            state["pair_states"] = np.concatenate(
                [g for pairs in self.pairs for g in (pairs.g_plus, pairs.g_minus)])
            state["refreshes"] = self.refreshes.copy()
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if self.population is not None:
            self.population.release()
        params = np.asarray(state["params"])
        if params.shape != self.params.shape or params.dtype != self.params.dtype:
            raise ValueError(f"checkpoint params {params.shape}/{params.dtype} do not match "
                             f"the chip's {self.params.shape}/{self.params.dtype}")
        self.params[:] = params
        self.update_count = int(state["update_count"])
        self.pulses[:] = state["pulses"]
        self.rereads[:] = state.get("rereads", 0)  # checkpoints before iterative reads: none
        self.measurement_reads = int(state["measurement_reads"])
        if self.pairs is not None:
            self._load_pair_states(state)
        self.ledger.load_state({"counts": state["ledger_counts"],
                                "rereads": state.get("ledger_rereads", 0)})


    def _load_pair_states(self, state: dict[str, np.ndarray]) -> None:
        """Restore the differential pairs' device states and refresh counts."""
        flat = np.asarray(state.get("pair_states", np.zeros(0)))
        size = 2 * sum(pairs.n for pairs in self.pairs)
        if flat.shape != (size,):
            raise ValueError(f"checkpoint pair states {flat.shape} do not match the chip's "
                             f"{size} pair devices")
        offset = 0
        for pairs in self.pairs:
            for g in (pairs.g_plus, pairs.g_minus):
                g[:] = flat[offset:offset + pairs.n]
                offset += pairs.n
        self.refreshes[:] = state["refreshes"]


def draw_feedback_numpy(specs: list[FeedbackSpec | None], total: int) -> np.ndarray:
    """Draw the feedback matrices of ``specs`` back to back (float64, flat)."""
    out = np.empty(total, dtype=np.float64)
    offset = 0
    for spec in specs:
        if spec is None:
            continue
        if spec.distribution == "uniform":
            values = spec.scale * (2.0 * rng.uniform(spec.key, spec.size) - 1.0)
        else:
            values = spec.scale * rng.normal(spec.key, spec.size)
        out[offset:offset + spec.size] = values
        offset += spec.size
    return out
