"""The ledger: counts of what the chip did, per stage, operation, layer and counter (DESIGN §6).

The simulator adds counts as it runs, one vector per array read, digital product, gradient or
optimizer update, built by the pure functions below from the call's geometry. Energy is
computed from the counts afterwards by :mod:`neurosim.energy`.

Axes of :attr:`Ledger.counts` (int64):

* stage (:data:`STAGES`): ``precondition`` (the noise phase), ``train`` (data training),
  ``eval`` (evaluation reads, which are measurement, not learning);
* operation (:data:`OPERATIONS`): ``forward`` (inference reads), ``backward`` (error
  propagation), ``update`` (gradients, optimizer, programming pulses);
* layer ``l = 0 .. n_layers - 1`` (layer ``l`` maps ``n_l -> n_{l+1}``);
* counter (:data:`COUNTERS`), each a count of events or bytes:

  ``macs`` analog multiply-accumulates; ``digital_macs`` multiply-adds in digital logic;
  ``cells_read`` cells read (one per analog MAC); ``dac_conversions`` / ``adc_conversions``
  converter operations (one per value per tile); ``partial_sum_adds`` digital additions
  merging the partial sums of row tiles; ``pulses_up`` / ``pulses_down`` programming pulses;
  ``random_numbers`` numbers the chip's digital logic draws from a PRNG (not the simulator's
  draws of physical noise); ``digital_ops`` other elementwise digital
  operations; ``bytes_*`` bytes moved between digital memory and the arrays or digital logic:
  activations, errors, gradients, optimizer state, and weight transport (forward weights
  moved for the backward pass, which only BP needs).

Reports group (stage, operation) into :data:`PHASES` with :func:`phase_totals`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from neurosim.periphery import REREAD_COUNTERS

STAGES = ("precondition", "train", "eval")
OPERATIONS = ("forward", "backward", "update")
COUNTERS = ("macs", "digital_macs", "cells_read", "dac_conversions", "adc_conversions",
            "partial_sum_adds", "pulses_up", "pulses_down", "random_numbers", "digital_ops",
            "bytes_activations", "bytes_errors", "bytes_gradients", "bytes_optimizer_state",
            "bytes_weight_transport")
BYTE_COUNTERS = tuple(name for name in COUNTERS if name.startswith("bytes_"))
PHASES = ("precondition", "forward", "backward", "update", "eval")

STAGE_INDEX = {name: i for i, name in enumerate(STAGES)}
OPERATION_INDEX = {name: i for i, name in enumerate(OPERATIONS)}
COUNTER_INDEX = {name: i for i, name in enumerate(COUNTERS)}

# Digital operations per parameter of one optimizer step (the formulas of neurosim.optimizers):
# sgd: dW = -eta g (1); momentum: v = mu v + g (2), dW = -eta v (1);
# adam: m = b1 m + (1-b1) g (3), v = b2 v + (1-b2) g^2 (4),
#       dW = (-step_size m) / (sqrt(v) inverse_sqrt_c2 + eps) (5: mul, sqrt, mul, add, div).
OPTIMIZER_OPS = {"sgd": 1, "sgd_momentum": 3, "adam": 12}
OPTIMIZER_STATE_TENSORS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}


def count_vector(**counts: int) -> np.ndarray:
    """An int64 vector over :data:`COUNTERS` with the named counters set, the others 0."""
    vector = np.zeros(len(COUNTERS), dtype=np.int64)
    for name, value in counts.items():
        vector[COUNTER_INDEX[name]] = value
    return vector


class Ledger:
    """Counts ``counts[stage, operation, layer, counter]`` (int64), added as the chip runs.

    ``rereads[stage, operation, layer, k]`` (int64, ``k`` over :data:`REREAD_COUNTERS`)
    keeps apart what iterative bound management's re-reads added to ``counts`` (their
    cells, each one MAC and one cell read, and their DAC and ADC conversions), so that a
    reader can tell them from the reads every pass makes (:meth:`add_rereads`)."""

    def __init__(self, n_layers: int):
        self.counts = np.zeros((len(STAGES), len(OPERATIONS), n_layers, len(COUNTERS)),
                               dtype=np.int64)
        self.rereads = np.zeros((len(STAGES), len(OPERATIONS), n_layers,
                                 len(REREAD_COUNTERS)), dtype=np.int64)

    def add_rereads(self, stage: str, operation: str, rereads: np.ndarray,
                    cells_per_weight: int = 1) -> None:
        """Book re-reads ``rereads[layer, k]`` (over :data:`REREAD_COUNTERS`, ``cells_read``
        counting weights) as reads: their weights as MACs and ``cells_per_weight`` cell
        reads each (:func:`array_read_counts`), their conversions; and keep them apart."""
        s, o = STAGE_INDEX[stage], OPERATION_INDEX[operation]
        self.rereads[s, o] += rereads
        cells = REREAD_COUNTERS.index("cells_read")
        for k, name in enumerate(REREAD_COUNTERS):
            self.counts[s, o, :, COUNTER_INDEX[name]] += rereads[:, k] * (
                cells_per_weight if k == cells else 1)
        self.counts[s, o, :, COUNTER_INDEX["macs"]] += rereads[:, cells]

    def add(self, stage: str, operation: str, layer: int, vector: np.ndarray) -> None:
        """Add an int64 vector over :data:`COUNTERS` (e.g. from :func:`array_read_counts`)."""
        self.counts[STAGE_INDEX[stage], OPERATION_INDEX[operation], layer] += vector

    def add_counter(self, stage: str, operation: str, layer: int, name: str, value: int) -> None:
        """Add ``value`` to one counter (e.g. the pulses an update kernel applied)."""
        self.counts[STAGE_INDEX[stage], OPERATION_INDEX[operation], layer,
                    COUNTER_INDEX[name]] += value

    def state(self) -> dict[str, np.ndarray]:
        """The checkpoint arrays."""
        return {"counts": self.counts.copy(), "rereads": self.rereads.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        counts = np.asarray(state["counts"])
        if counts.shape != self.counts.shape:
            raise ValueError(f"checkpoint ledger {counts.shape} does not match the ledger's "
                             f"{self.counts.shape} (stage, operation, layer, counter)")
        self.counts[:] = counts
        self.rereads[:] = state.get("rereads", 0)  # checkpoints before iterative reads: none

    def rereads_json(self) -> dict:
        """``{stage: {operation: [{REREAD_COUNTERS: int} per layer]}}`` (see :attr:`rereads`)."""
        return _by_stage(self.rereads, REREAD_COUNTERS)

    def to_json(self) -> dict:
        """``{stage: {operation: [{counter: int} per layer]}}``."""
        return _by_stage(self.counts, COUNTERS)

    @classmethod
    def from_json(cls, data: Mapping) -> Ledger:
        """The inverse of :meth:`to_json` (counters missing from a layer's mapping are 0)."""
        ledger = cls(len(data[STAGES[0]][OPERATIONS[0]]))
        for s, stage in enumerate(STAGES):
            for o, operation in enumerate(OPERATIONS):
                for layer, row in enumerate(data[stage][operation]):
                    ledger.counts[s, o, layer] = count_vector(**row)
        return ledger


def _by_stage(array: np.ndarray, names: tuple[str, ...]) -> dict:
    """``array[stage, operation, layer, k]`` as ``{stage: {operation: [{names[k]: int} per
    layer]}}``."""
    return {stage: {operation: [dict(zip(names, map(int, row))) for row in array[s, o]]
                    for o, operation in enumerate(OPERATIONS)}
            for s, stage in enumerate(STAGES)}


def reread_totals(ledger: Mapping) -> dict[str, tuple[int, int]]:
    """From a run summary's ``ledger`` entry (:func:`neurosim.energy.ledger_summary`): per
    counter of :data:`REREAD_COUNTERS`, (what iterative bound management's re-reads counted,
    the whole run's count), over every stage, operation and layer."""
    def total(counts: Mapping, name: str) -> int:
        return sum(row[name] for operations in counts.values()
                   for layers in operations.values() for row in layers)
    return {name: (total(ledger.get("rereads", {}), name), total(ledger["counts"], name))
            for name in REREAD_COUNTERS}


def phase_totals(array: np.ndarray) -> dict[str, np.ndarray]:
    """Group an array indexed ``[stage, operation, ...]`` (counts or energies) into
    :data:`PHASES`: ``precondition`` and ``eval`` sum their stage over operations;
    ``forward``, ``backward`` and ``update`` are the ``train`` stage's operations."""
    array = np.asarray(array)
    train = array[STAGE_INDEX["train"]]
    return {"precondition": array[STAGE_INDEX["precondition"]].sum(axis=0),
            **{operation: train[OPERATION_INDEX[operation]] for operation in OPERATIONS},
            "eval": array[STAGE_INDEX["eval"]].sum(axis=0)}


def pulses(counts: np.ndarray) -> np.ndarray:
    """``pulses_up + pulses_down`` of counts indexed ``[..., counter]``."""
    return counts[..., COUNTER_INDEX["pulses_up"]] + counts[..., COUNTER_INDEX["pulses_down"]]


def bytes_moved(counts: np.ndarray) -> np.ndarray:
    """The sum of every ``bytes_*`` counter of counts indexed ``[..., counter]``."""
    return sum(counts[..., COUNTER_INDEX[name]] for name in BYTE_COUNTERS)


# ------------------------------------------------------------ per-call counts
def array_read_counts(batch: int, n_in: int, n_out: int, tile_rows: int, tile_cols: int,
                      word_bytes: int, transposed: bool = False,
                      traffic: str = "bytes_activations", cells_per_weight: int = 1) -> np.ndarray:
    """Counts of one batched read of a crossbar array with ``n_in`` rows (inputs of a forward
    read) and ``n_out`` columns, cut into tiles of ``tile_rows x tile_cols`` cells.

    With ``R = ceil(n_in / tile_rows)`` row tiles and ``C = ceil(n_out / tile_cols)`` column
    tiles, a forward read (``y = x @ W.T``, inputs on the rows) costs

    * ``macs = cells_read = batch n_in n_out`` (every cell is read once per sample);
    * ``dac_conversions = batch n_in C``: every tile drives its own rows;
    * ``adc_conversions = batch n_out R``: every tile digitizes its own columns;
    * ``partial_sum_adds = batch n_out (R - 1)``: the R partial sums of an output are merged;
    * ``<traffic> = batch (n_in + n_out) word_bytes`` bytes: inputs from digital memory
      into the array, outputs back (``traffic`` names the counter: ``bytes_activations`` for
      forward reads, ``bytes_errors`` for reads propagating errors).

    ``transposed=True`` is a read of the same physical array from the columns (BP's backward
    pass ``d @ W``): inputs are ``n_out`` long and outputs ``n_in`` long, while the tiles
    still cut the physical array, so ``dac_conversions = batch n_out R``,
    ``adc_conversions = batch n_in C``, ``partial_sum_adds = batch n_in (C - 1)``.
    Pass the forward geometry (``n_in``, ``n_out``) in both cases.

    A weight held as a device read against a reference device (zero-shifting,
    :mod:`neurosim.reference`) reads ``cells_per_weight = 2`` cells per MAC:
    ``cells_read = cells_per_weight batch n_in n_out``; the two currents are subtracted
    before the ADC, so the conversions do not change.
    """
    row_tiles, col_tiles = math.ceil(n_in / tile_rows), math.ceil(n_out / tile_cols)
    n_drive, drive_copies, n_sense, sense_copies = (
        (n_out, row_tiles, n_in, col_tiles) if transposed
        else (n_in, col_tiles, n_out, row_tiles))
    cells = batch * n_in * n_out
    return count_vector(macs=cells, cells_read=cells * cells_per_weight,
                        dac_conversions=batch * n_drive * drive_copies,
                        adc_conversions=batch * n_sense * sense_copies,
                        partial_sum_adds=batch * n_sense * (sense_copies - 1),
                        **{traffic: batch * (n_in + n_out) * word_bytes})


def digital_matmul_counts(batch: int, n_in: int, n_out: int, word_bytes: int,
                          regenerated: bool = False,
                          traffic: str = "bytes_errors") -> np.ndarray:
    """Counts of one batched product ``(batch x n_in) @ (n_in x n_out)`` in digital logic
    (feedback that is not an array, e.g. regenerated feedback):
    ``digital_macs = batch n_in n_out``; ``<traffic> = batch (n_in + n_out) word_bytes``
    bytes in and out; with ``regenerated``, the matrix is re-drawn from its seed once per
    call (each entry used for the whole batch): ``random_numbers = n_in n_out``."""
    return count_vector(digital_macs=batch * n_in * n_out,
                        random_numbers=n_in * n_out if regenerated else 0,
                        **{traffic: batch * (n_in + n_out) * word_bytes})


def gradient_counts(batch: int, n_in: int, n_out: int, word_bytes: int) -> np.ndarray:
    """Counts of the digital gradient of one layer, ``G = delta.T @ x`` (``n_out x n_in``)
    and the bias gradient ``sum_b delta_b``:
    ``digital_macs = batch n_in n_out``; ``digital_ops = batch n_out`` (bias sums);
    ``bytes_activations = batch n_in word_bytes`` and ``bytes_errors = batch n_out
    word_bytes`` read; ``bytes_gradients = (n_in + 1) n_out word_bytes`` written.
    In-array (stochastic) updates form the outer product in the array and skip this."""
    return count_vector(digital_macs=batch * n_in * n_out, digital_ops=batch * n_out,
                        bytes_activations=batch * n_in * word_bytes,
                        bytes_errors=batch * n_out * word_bytes,
                        bytes_gradients=(n_in + 1) * n_out * word_bytes)


def optimizer_counts(n_params: int, name: str, momentum: float, word_bytes: int) -> np.ndarray:
    """Counts of one optimizer step over ``n_params`` parameters (``name``: sgd or adam):
    ``digital_ops = n_params ops`` with ``ops`` = 1 (SGD), 3 (SGD with momentum), 12 (Adam)
    (see :data:`OPTIMIZER_OPS`); ``bytes_gradients = 2 n_params word_bytes`` (the gradient
    read, the desired update ``dW`` written); ``bytes_optimizer_state = 2 n_params k
    word_bytes`` (each of ``k`` state tensors read and written: 0 SGD, 1 momentum, 2 Adam)."""
    kind = "sgd_momentum" if name == "sgd" and momentum > 0 else name
    return count_vector(
        digital_ops=n_params * OPTIMIZER_OPS[kind],
        bytes_gradients=2 * n_params * word_bytes,
        bytes_optimizer_state=2 * n_params * OPTIMIZER_STATE_TENSORS[kind] * word_bytes)


def weight_transport_counts(n_in: int, n_out: int, word_bytes: int) -> np.ndarray:
    """Weight transport of one BP backward call: the ``n_in x n_out`` forward weights moved to
    where the backward product is formed, ``bytes_weight_transport = n_in n_out
    word_bytes`` (once per call, shared by the batch). FA and the direct rules never add it."""
    return count_vector(bytes_weight_transport=n_in * n_out * word_bytes)
