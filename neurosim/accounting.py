"""What one pass or one training step of a chip costs, in ledger counts (DESIGN §6).

This module knows the chip (its layers, feedback arrays, periphery, tiles, update mode) and
turns it into :mod:`neurosim.ledger` count vectors; the ledger itself is pure bookkeeping.

* :func:`forward_counts` / :func:`backward_counts`: one batched pass. Every forward read is
  an array read of layer ``l`` (:func:`neurosim.ledger.array_read_counts`). The backward
  pass of layer ``l >= 2`` (carrying the error down to layer ``l - 1``) is, by rule:
  BP, a transposed read of the forward array **plus weight transport** (the ``n_l x
  n_{l-1}`` forward weights moved to the backward circuit: BP's defining cost, counted even
  though the simulated numbers come from the transposed read); FA, a read of the stored
  feedback array ``B_l`` (``n_{l-1}`` outputs, ``n_l`` inputs); the direct rules, a read of
  ``B_{l-1}`` with the output error (DFA), its sign (SDFA) or the target (DRTP) as input;
  regenerated feedback, a digital product and the PRNG
  draws of ``B``. Backward counts are booked on the layer whose array is read. The
  derivative ``f'(a)`` is one digital operation per hidden unit.
* :func:`update_counts`: batch modes (ideal, pulsed) form the gradient digitally
  (:func:`neurosim.ledger.gradient_counts`) and run the optimizer
  (:func:`neurosim.ledger.optimizer_counts`); pulsed updates draw one uniform per weight for
  the stochastic rounding. In-array (stochastic) updates send per-sample pulse trains: ``BL``
  Bernoulli draws per row and column line and the signals moved to the line drivers; the
  digital bias takes one operation per output per sample. Pulses themselves are counted
  by the update kernels (``chip.pulses``) and moved into the ledger by
  :class:`StepAccounting`, as are the refresh checks of differential pairs
  (:func:`refresh_check_counts`).

``random_numbers`` counts the numbers the chip's digital logic generates (stochastic
rounding, pulse trains, regenerated feedback, noise inputs), each priced as one PRNG step;
smoothing white noise into correlated noise inputs adds its ``digital_macs``
(:func:`neurosim.precondition.smoothing_macs`).
Physical noise (read noise, cycle-to-cycle write noise, device spread) is drawn by the
simulator to model the devices, but the chip spends no energy making it: it is not counted.

``ideal`` update mode has no device model, so it programs no pulses and costs no write
energy: use ``pulsed`` devices to price writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from neurosim.chip import Chip
from neurosim.config import OptimizerConfig
from neurosim.ledger import (
    COUNTER_INDEX,
    OPERATION_INDEX,
    STAGE_INDEX,
    Ledger,
    array_read_counts,
    count_vector,
    digital_matmul_counts,
    gradient_counts,
    optimizer_counts,
    weight_transport_counts,
)
from neurosim.rules import RuleCode

FORWARD, UPDATE = (OPERATION_INDEX[name] for name in ("forward", "update"))


def word_bytes(chip: Chip) -> int:
    """Bytes of one digital value the chip moves (its ``energy.digital_word_bits`` / 8),
    whatever float type simulates it."""
    return chip.config.energy.digital_word_bits // 8


def activation_buffer(chip: Chip, batch: int) -> dict:
    """The digital buffer a training step of ``batch`` samples needs for the forward-pass
    values its updates use (:meth:`neurosim.rules.Rule.held_activations`), at the chip's
    word size: ``bytes = batch x values_per_sample x digital_word_bits / 8``. A capacity,
    not traffic: the ``bytes_*`` counters count these values as they move."""
    values = chip.rule.held_activations(chip.dims)
    return {"values_per_sample": values, "batch": batch,
            "bytes": batch * values * word_bytes(chip)}


def forward_cells_per_weight(chip: Chip) -> int:
    """Cells a read of a forward array reads per weight: 2 where every device is read
    against a reference device (``forward.reference``, :mod:`neurosim.reference`) or every
    weight is a differential pair (``forward.pair``, :mod:`neurosim.pair`), else 1.
    Feedback arrays hold one cell per entry."""
    forward = chip.config.forward
    return 1 if forward.reference == "none" and forward.pair.mode == "none" else 2


def refresh_check_counts(chip: Chip, checks: np.ndarray) -> np.ndarray:
    """Counts ``[layer, counter]`` of ``checks[layer]`` refresh checks of a chip's
    differential pairs (:mod:`neurosim.pair`): each reads every device of the layer once,
    ``2 n`` cells with one ADC conversion each, and compares it with the threshold (``2 n``
    digital operations). The RESET and SET pulses of a refresh are counted as pulses."""
    devices = 2 * chip.layout[:, 1] * chip.layout[:, 2] * np.asarray(checks, dtype=np.int64)
    counts = np.zeros((chip.n_layers, len(COUNTER_INDEX)), dtype=np.int64)
    for name in ("cells_read", "adc_conversions", "digital_ops"):
        counts[:, COUNTER_INDEX[name]] = devices
    return counts


def _array_read(chip: Chip, batch: int, n_in: int, n_out: int, transposed: bool = False,
                traffic: str = "bytes_activations", cells_per_weight: int = 1) -> np.ndarray:
    """Counts of one read of a ``n_out x n_in`` array by the chip's tiles. Its read noise
    is physical: the simulator draws it, the chip spends nothing on it."""
    return array_read_counts(batch, n_in, n_out, *chip.tiles, word_bytes(chip), transposed,
                             traffic, cells_per_weight)


def forward_counts(chip: Chip, batch: int) -> np.ndarray:
    """Counts ``[layer, counter]`` of one forward pass of ``batch`` samples."""
    cells = forward_cells_per_weight(chip)
    return np.stack([_array_read(chip, batch, int(n_in), int(n_out), cells_per_weight=cells)
                     for _, n_out, n_in, _ in chip.layout])


def backward_counts(chip: Chip, batch: int, rule_code: int) -> np.ndarray:
    """Counts ``[layer, counter]`` of one backward pass of ``batch`` samples (see the module
    docstring for what each rule reads)."""
    counts = np.zeros((chip.n_layers, len(COUNTER_INDEX)), dtype=np.int64)
    size = word_bytes(chip)
    for l in range(1, chip.n_layers):
        _, n_out, n_in, _ = (int(v) for v in chip.layout[l])
        counts[l - 1] += count_vector(digital_ops=batch * n_in)  # times f'(a_{l-1})
        if rule_code == RuleCode.BP:
            counts[l] += _array_read(chip, batch, n_in, n_out, transposed=True,
                                     traffic="bytes_errors",
                                     cells_per_weight=forward_cells_per_weight(chip))
            counts[l] += weight_transport_counts(n_in, n_out, size)
            continue
        index = l if rule_code == RuleCode.FA else l - 1
        _, rows, cols = (int(v) for v in chip.feedback_layout[index])
        if chip.feedback_kind == "regenerated":
            counts[index] += digital_matmul_counts(batch, cols, rows, size, regenerated=True)
        else:  # a read of B (rows outputs, cols inputs)
            counts[index] += _array_read(chip, batch, cols, rows, traffic="bytes_errors")
    return counts


def update_counts(chip: Chip, batch: int, optimizer: OptimizerConfig) -> np.ndarray:
    """Counts ``[layer, counter]`` of one update from ``batch`` samples, pulses excluded."""
    size = word_bytes(chip)
    rows = []
    for _, n_out, n_in, _ in chip.layout:
        n_out, n_in = int(n_out), int(n_in)
        if chip.update_mode == "stochastic":
            bl = chip.config.forward.update.bl
            rows.append(count_vector(random_numbers=batch * bl * (n_in + n_out),
                                     digital_ops=batch * n_out,
                                     bytes_activations=batch * n_in * size,
                                     bytes_errors=batch * n_out * size))
            continue
        counts = gradient_counts(batch, n_in, n_out, size)
        counts += optimizer_counts(n_out * n_in + n_out, optimizer.name, optimizer.momentum, size)
        if chip.update_mode == "pulsed":
            counts[COUNTER_INDEX["random_numbers"]] += n_out * n_in  # stochastic rounding
        rows.append(counts)
    return np.stack(rows)


def step_counts(chip: Chip, batch: int, optimizer: OptimizerConfig) -> np.ndarray:
    """Counts ``[operation, layer, counter]`` of one training step (pulses excluded)."""
    return np.stack([forward_counts(chip, batch), backward_counts(chip, batch, chip.rule.code),
                     update_counts(chip, batch, optimizer)])


def book_rereads(chip: Chip, ledger: Ledger, stage: str, measurement: bool) -> None:
    """Move the chip's unbooked re-reads of iterative bound management (:attr:`Chip.rereads`
    of training or of ``measurement`` passes) into ``stage`` of the ledger
    (:meth:`Ledger.add_rereads`)."""
    pending = chip.rereads[int(measurement)]
    if not pending.any():
        return
    forward_cells = forward_cells_per_weight(chip)
    # Backward re-reads are of the forward arrays under BP, of the feedback arrays otherwise.
    backward_cells = forward_cells if chip.rule.code == RuleCode.BP else 1
    for axis, operation, cells in ((0, "forward", forward_cells),  # Chip.rereads' read kinds
                                   (1, "backward", backward_cells)):
        ledger.add_rereads(stage, operation, pending[axis], cells)
    pending[:] = 0


@contextmanager
def unbooked_reads(chip: Chip) -> Iterator[Chip]:
    """Within the block the chip's measurement reads are not chip operations (analyses only
    a simulator makes): the re-reads they make are dropped, not booked."""
    saved = chip.rereads[1].copy()
    try:
        yield chip
    finally:
        chip.rereads[1][...] = saved


def count_measurement(chip: Chip, ledger: Ledger, batch: int) -> None:
    """Book an inference pass of ``batch`` samples made to measure (stage ``eval``), with the
    re-reads its reads made."""
    ledger.counts[STAGE_INDEX["eval"], FORWARD] += forward_counts(chip, batch)
    book_rereads(chip, ledger, "eval", measurement=True)


class StepAccounting:
    """Books training steps into a ledger without per-step work: the counts of one step
    depend only on the geometry, so steps are tallied and added as ``count x template`` when
    the ledger is read (:meth:`flush`), together with the pulses the update kernels applied
    since the last flush (``chip.pulses``) and their cycle-to-cycle noise draws."""

    def __init__(self, chip: Chip, ledger: Ledger):
        self.chip = chip
        self.ledger = ledger
        self.templates: dict[tuple[str, int], np.ndarray] = {}
        self.pending: dict[tuple[str, int], int] = {}
        self.pulses_seen = chip.pulses.copy()
        self.checks_seen = chip.refreshes[:, 0].copy()
        self.stage = "precondition"
        self.optimizer: OptimizerConfig | None = None

    def begin(self, stage: str, optimizer: OptimizerConfig) -> None:
        """Steps from now on belong to ``stage`` and use ``optimizer``."""
        self.flush()
        self.stage, self.optimizer = stage, optimizer
        self.templates.clear()

    def step(self, batch: int, count: int = 1) -> None:
        """``count`` training steps of ``batch`` samples each (O(1): a tally)."""
        key = (self.stage, batch)
        if key not in self.pending:
            self.pending[key] = 0
            if key not in self.templates:
                self.templates[key] = step_counts(self.chip, batch, self.optimizer)
        self.pending[key] += count

    def add_work(self, operation: str, layer: int, counts: dict[str, int],
                 times: int = 1) -> None:
        """``times`` the digital work ``counts`` (counter name -> count) done outside the
        chip's passes (e.g. making noise inputs: :meth:`NoiseSource.example_counts`)."""
        for name, count in counts.items():
            self.ledger.add_counter(self.stage, operation, layer, name, count * times)

    def flush(self) -> None:
        """Move the tallied steps, the new pulses and the new refresh checks into the
        ledger."""
        for (stage, batch), steps in self.pending.items():
            self.ledger.counts[STAGE_INDEX[stage]] += steps * self.templates[(stage, batch)]
        self.pending.clear()
        book_rereads(self.chip, self.ledger, self.stage, measurement=False)
        new = self.chip.pulses - self.pulses_seen
        if new.any():
            update = self.ledger.counts[STAGE_INDEX[self.stage], UPDATE]
            update[:, COUNTER_INDEX["pulses_up"]] += new[:, 0]
            update[:, COUNTER_INDEX["pulses_down"]] += new[:, 1]
            self.pulses_seen = self.chip.pulses.copy()
        checks = self.chip.refreshes[:, 0] - self.checks_seen
        if checks.any():
            self.ledger.counts[STAGE_INDEX[self.stage], UPDATE] += refresh_check_counts(
                self.chip, checks)
            self.checks_seen = self.chip.refreshes[:, 0].copy()


def converter_bits(chip: Chip) -> tuple[dict, dict]:
    """ADC and DAC resolutions charged per operation and layer (``None``: ideal converter,
    charged the energy model's default): forward reads use the forward arrays' periphery;
    backward reads use it too under BP (a transposed read of the forward array) and the
    feedback arrays' periphery under FA and the direct rules."""
    forward, feedback = chip.forward_periphery, chip.feedback_periphery
    backward = forward if chip.rule.weight_transport else feedback
    n = chip.n_layers
    return ({"forward": [forward.adc_bits] * n, "backward": [backward.adc_bits] * n},
            {"forward": [forward.dac_bits] * n, "backward": [backward.dac_bits] * n})
