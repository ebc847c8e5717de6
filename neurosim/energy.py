"""Energy model: unit costs (the chip YAML's ``energy:`` block) times ledger counts (DESIGN §6).

Energy in picojoules of each ``[stage, operation, layer]`` cell of a :class:`~neurosim.ledger.
Ledger`, split into :data:`COMPONENTS`:

* ``cell_read`` = ``cells_read * V_r^2 G t_r``;
* ``write`` = ``pulses_up * V_w^2 G t_w + pulses_down * V_w,ltd^2 G t_w,ltd`` (depression
  pulses at their own amplitude and width where the chip gives them, as NeuroSim's
  ``writeVoltageLTD`` / ``writePulseWidthLTD``; else the same as potentiation);
* ``adc`` = ``adc_conversions * E_adc(bits)`` (:func:`adc_pj`);
* ``dac`` = ``dac_conversions * bits * dac_pj_per_bit``;
* ``shift_add`` = ``partial_sum_adds * shift_add_pj``;
* ``memory`` = ``(sum of the bytes_* counters) * 8 * (buffer or DRAM pJ per bit)``;
* ``rng`` = ``random_numbers * rng_pj_per_number``;
* ``digital`` = ``digital_macs * digital_mac_pj + digital_ops * digital_op_pj``.

``macs`` has no cost of its own (an analog MAC is a cell read). A read converts each input
and output once: a b-bit DAC conversion is charged as b one-bit drives, without the
bit-serial re-reads (and their extra ADC conversions) of ISAAC. Each component is linear in
each unit cost, so a config of zero costs gives zero energy. Units: ``V^2 * uS * ns =
1e-15 J = 1e-3 pJ``.

A run's ``summary.json`` holds ``"ledger"``: :func:`ledger_summary`'s output.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from neurosim.errors import ConfigError
from neurosim.ledger import (COUNTER_INDEX, OPERATIONS, STAGES, Ledger, bytes_moved,
                             phase_totals, pulses)
from neurosim.periphery import MAX_BITS
from neurosim.schema import spec

COMPONENTS = ("cell_read", "write", "adc", "dac", "shift_add", "memory", "rng", "digital")
TOTALS = ("energy_pj", "pulses", "bytes")
DEFAULT_TARGET = 0.9  # energy to 90 % test accuracy (the default on MNIST)
ISAAC = ("32 nm, ISAAC (Shafiee et al., ISCA 2016) as tabulated in Accelergy's "
         "hwcomponents-library isaac.py")
# SAR ADC, 32 nm: 8 bits from Kull et al. (ISSCC 2013, 3.1 mW 8b 1.2 GS/s), other
# resolutions scaled by Saberi et al. (IEEE TCAS-I 2011); ISAAC's table in hwcomponents-library.
ADC_PJ_BY_BITS = {4: 0.79, 5: 0.99, 6: 1.20, 7: 1.42, 8: 1.67, 9: 1.97, 10: 2.38}
ByBits = int | None | Sequence[int | None] | Mapping[str, int | None | Sequence[int | None]]


@dataclass(frozen=True)
class EnergyConfig:
    """Unit costs of the energy model (see :mod:`neurosim.energy`). Every field name carries
    its unit, so that a value given in other units is refused as an unknown field."""

    read_voltage_v: float = spec(0.5, ge=0.0, doc="read voltage V_r (V); NeuroSim Param.cpp")
    read_time_ns: float = spec(10.0, ge=0.0, doc="read pulse width t_r (ns); NeuroSim Param.cpp")
    cell_conductance_us: float = spec(
        10.0, ge=0.0,
        doc="conductance G of a cell in the read and write energies (uS): one average "
            "on-state value for every cell, not the programmed state (which would make energy "
            "depend on the weights); 10 uS is the default g_max of forward.device and the "
            "MLP+NeuroSim TaOx example")
    write_voltage_v: float = spec(1.6, ge=0.0,
                                  doc="write pulse amplitude V_w (V); TaOx, MLP+NeuroSim Cell.cpp")
    write_time_ns: float = spec(50.0, ge=0.0,
                                doc="write pulse width t_w (ns); TaOx, MLP+NeuroSim Cell.cpp "
                                    "(1.6^2 V^2 * 10 uS * 50 ns = 1.28 pJ per pulse)")
    write_voltage_ltd_v: float | None = spec(
        None, ge=0.0, doc="amplitude of a depression (LTD, weight-decreasing) pulse (V), where "
                          "it differs from potentiation's (NeuroSim's writeVoltageLTD); null: "
                          "write_voltage_v")
    write_time_ltd_ns: float | None = spec(
        None, ge=0.0, doc="width of a depression (LTD) pulse (ns) (NeuroSim's "
                          "writePulseWidthLTD); null: write_time_ns")
    adc_pj_by_bits: dict = spec(
        factory=lambda: dict(ADC_PJ_BY_BITS),
        doc="energy of one ADC conversion (pJ) by resolution in bits: SAR ADC, " + ISAAC +
            " (8 bits: Kull et al., ISSCC 2013; others scaled by Saberi et al., TCAS-I "
            "2011); other resolutions are linear in bits through the two nearest entries "
            "(extrapolated from the end pair outside the table, floored at 0); a single "
            "entry is used for every resolution")
    adc_bits_default: int = spec(8, ge=1, le=MAX_BITS,
                                 doc="ADC bits charged when the array's ADC is ideal "
                                     "(periphery adc_bits null); 1 .. 24, the periphery's "
                                     "own cap")
    dac_pj_per_bit: float = spec(0.417, ge=0.0,
                                 doc="DAC / row driver energy per bit of one conversion (pJ): "
                                     "ISAAC's 1-bit driver, " + ISAAC + "; a b-bit "
                                     "conversion is charged as b one-bit drives")
    dac_bits_default: int = spec(8, ge=1, le=MAX_BITS,
                                 doc="DAC bits charged when the array's DAC is ideal "
                                     "(periphery dac_bits null); 1 .. 24, the periphery's "
                                     "own cap")
    shift_add_pj: float = spec(0.021, ge=0.0, doc="one partial-sum shift-add (pJ): ISAAC's "
                                                 "16-bit shift-and-add, " + ISAAC)
    buffer_pj_per_bit: float = spec(0.08, ge=0.0,
                                    doc="on-chip buffer access per bit (pJ): ISAAC's "
                                        "eDRAM buffer, 20.45 pJ per 256-bit access, " + ISAAC)
    dram_pj_per_bit: float = spec(3.9, ge=0.0, doc="DRAM access per bit (pJ): HBM2, NeuroSim "
                                                   "DRAM.cpp (GDDR5: 14)")
    memory: str = spec("buffer", choices=("buffer", "dram"),
                       doc="the digital memory that the counted bytes move to and from")
    digital_word_bits: int = spec(
        32, choices=(8, 16, 32, 64),
        doc="bits of one digital value (an activation, error, gradient, optimizer state or "
            "transported weight) moved between the digital memory and the arrays: the "
            "bytes_* counters are values x digital_word_bits / 8. A property of the chip, "
            "not of the simulation's float type (simulation.dtype); 32 matches the fp32 "
            "digital_mac_pj and digital_op_pj")
    rng_pj_per_number: float = spec(
        0.4, ge=0.0,
        doc="one 32-bit pseudo-random number (pJ). An estimate, not a measurement: a "
            "xorshift32 step is three 32-bit XORs (its fixed shifts are wiring) plus a 32-bit "
            "state register, each costed as one 32-bit integer add, 0.1 pJ (Horowitz, ISSCC "
            "2014, 45 nm). For comparison, a 65 nm LFSR-based programmable PRNG reports "
            "0.57 pJ/bit = 18 pJ per 32-bit number (Wu et al., arXiv:2501.00193, 2025, "
            "post-layout). Gaussian draws are charged the same")
    digital_mac_pj: float = spec(4.6, ge=0.0,
                                 doc="fp32 multiply-add in digital logic (pJ): 3.7 mult + 0.9 "
                                     "add (Horowitz, ISSCC 2014, 45 nm)")
    digital_op_pj: float = spec(0.9, ge=0.0, doc="one other fp32 elementwise operation (pJ), "
                                                 "costed as an fp32 add (Horowitz, ISSCC 2014)")

    def check(self, source: str, path: str) -> None:
        where = f"{path}.adc_pj_by_bits" if path else "adc_pj_by_bits"
        if not self.adc_pj_by_bits:
            raise ConfigError(source, where, self.adc_pj_by_bits, "must have at least one entry")
        for bits, pj in self.adc_pj_by_bits.items():
            if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
                raise ConfigError(source, f"{where}.{bits}", pj,
                                  f"keys must be ADC resolutions in bits (integers >= 1), "
                                  f"not {bits!r}")
            if (isinstance(pj, bool) or not isinstance(pj, (int, float))
                    or not math.isfinite(pj) or pj < 0):
                raise ConfigError(source, f"{where}.{bits}", pj,
                                  "must be a finite number >= 0 (pJ per conversion)")


# ----------------------------------------------------------------- unit costs
def cell_read_pj(config: EnergyConfig) -> float:
    """``V_r^2 G t_r`` in pJ (0.5^2 V^2 * 10 uS * 10 ns = 0.025 pJ)."""
    return config.read_voltage_v ** 2 * config.cell_conductance_us * config.read_time_ns * 1e-3


def write_pulse_pj(config: EnergyConfig, up: bool = True) -> float:
    """One potentiation (``up``) or depression pulse, ``V_w^2 G t_w`` in pJ (1.6^2 V^2 *
    10 uS * 50 ns = 1.28 pJ); a depression pulse takes ``write_voltage_ltd_v`` and
    ``write_time_ltd_ns`` where they are given."""
    voltage, time_ns = config.write_voltage_v, config.write_time_ns
    if not up:
        if config.write_voltage_ltd_v is not None:
            voltage = config.write_voltage_ltd_v
        if config.write_time_ltd_ns is not None:
            time_ns = config.write_time_ltd_ns
    return voltage ** 2 * config.cell_conductance_us * time_ns * 1e-3


def adc_pj(config: EnergyConfig, bits: int) -> float:
    """One ADC conversion at ``bits`` (pJ): the table entry, else linear in bits through the
    two nearest entries (the end pair outside the table), floored at 0; a one-entry table
    is constant. Linear in the table's values."""
    table = config.adc_pj_by_bits
    if bits in table:
        return float(table[bits])
    keys = sorted(table)
    if len(keys) == 1:
        return float(table[keys[0]])
    i = min(max(bisect.bisect_left(keys, bits), 1), len(keys) - 1)
    b0, b1 = keys[i - 1], keys[i]
    return max(0.0, table[b0] + (table[b1] - table[b0]) * (bits - b0) / (b1 - b0))


def memory_pj_per_bit(config: EnergyConfig) -> float:
    """pJ per bit moved to or from the configured digital memory (buffer or DRAM)."""
    return config.buffer_pj_per_bit if config.memory == "buffer" else config.dram_pj_per_bit


def converter_bits(bits: ByBits, default: int, n_layers: int) -> np.ndarray:
    """Converter resolution per ``[operation, layer]`` (int64, ``len(OPERATIONS) x n_layers``).

    ``bits`` is one value for every array, a list with one value per layer, or a mapping
    ``operation -> value or per-layer list`` (e.g. ``{"forward": 8, "backward": 6}`` for FA
    feedback arrays with 6-bit ADCs; missing operations take ``default``). ``None``
    anywhere (an ideal converter) is charged ``default`` bits."""
    per_operation = bits if isinstance(bits, Mapping) else dict.fromkeys(OPERATIONS, bits)
    unknown = set(per_operation) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"converter bits for unknown operations {sorted(unknown)}")
    rows = []
    for operation in OPERATIONS:
        value = per_operation.get(operation)
        row = ([value] * n_layers if value is None or isinstance(value, (int, np.integer))
               else list(value))
        if len(row) != n_layers:
            raise ValueError(f"{operation}: {len(row)} converter bits for {n_layers} layers")
        rows.append([default if b is None else b for b in row])
    return np.array(rows, dtype=np.int64)


# ------------------------------------------------------------------- energies
def energy_array(counts: np.ndarray, config: EnergyConfig, adc_bits: ByBits = None,
                 dac_bits: ByBits = None) -> np.ndarray:
    """Energy (pJ, float64) per ``[stage, operation, layer, component]`` of ledger counts
    ``[stage, operation, layer, counter]``; ``adc_bits``/``dac_bits`` as in
    :func:`converter_bits`."""
    counts = np.asarray(counts, dtype=np.float64)
    n_layers = counts.shape[2]
    adc = converter_bits(adc_bits, config.adc_bits_default, n_layers)
    dac = converter_bits(dac_bits, config.dac_bits_default, n_layers)
    adc_unit = np.array([[adc_pj(config, int(b)) for b in row] for row in adc])

    def count(name: str) -> np.ndarray:
        return counts[..., COUNTER_INDEX[name]]

    return np.stack([
        count("cells_read") * cell_read_pj(config),
        count("pulses_up") * write_pulse_pj(config)
        + count("pulses_down") * write_pulse_pj(config, up=False),
        count("adc_conversions") * adc_unit,
        count("dac_conversions") * dac * config.dac_pj_per_bit,
        count("partial_sum_adds") * config.shift_add_pj,
        bytes_moved(counts) * 8 * memory_pj_per_bit(config),
        count("random_numbers") * config.rng_pj_per_number,
        count("digital_macs") * config.digital_mac_pj + count("digital_ops") * config.digital_op_pj,
    ], axis=-1)


def _by_component(values: np.ndarray) -> dict[str, float]:
    return dict(zip(COMPONENTS, map(float, values)))


def energy_breakdown(counts: np.ndarray, config: EnergyConfig, adc_bits: ByBits = None,
                     dac_bits: ByBits = None) -> dict:
    """The energy (pJ) of ledger counts, as plain data:

    ``{"total": pJ, "components": {component: pJ}, "phases": {phase: {component: pJ}},
    "layers": [{component: pJ}], "detail": {stage: {operation: [{component: pJ} per
    layer]}}, "adc_bits": {operation: [bits per layer]}, "dac_bits": {...}}`` (the bits
    charged, defaults filled in; ``None`` where no conversion of that kind was counted, as
    in every update)."""
    energy = energy_array(counts, config, adc_bits, dac_bits)
    n_layers = energy.shape[2]

    def charged(kind: str, bits: ByBits, default: int) -> dict:
        converted = np.asarray(counts)[..., COUNTER_INDEX[f"{kind}_conversions"]].sum(axis=0)
        table = converter_bits(bits, default, n_layers)
        return {operation: [int(b) if n else None for b, n in zip(table[o], converted[o])]
                for o, operation in enumerate(OPERATIONS)}

    return {
        "total": float(energy.sum()),
        "components": _by_component(energy.sum(axis=(0, 1, 2))),
        "phases": {phase: _by_component(values.sum(axis=0))
                   for phase, values in phase_totals(energy).items()},
        "layers": [_by_component(energy[:, :, layer].sum(axis=(0, 1)))
                   for layer in range(n_layers)],
        "detail": {stage: {operation: [_by_component(row) for row in energy[s, o]]
                           for o, operation in enumerate(OPERATIONS)}
                   for s, stage in enumerate(STAGES)},
        "adc_bits": charged("adc", adc_bits, config.adc_bits_default),
        "dac_bits": charged("dac", dac_bits, config.dac_bits_default),
    }


def stage_totals(counts: np.ndarray, stage: str, config: EnergyConfig, adc_bits: ByBits = None,
                 dac_bits: ByBits = None) -> dict:
    """``{"energy_pj", "pulses", "bytes"}`` of one stage so far: the values to record in
    each evaluation record (stage ``train``) and the preconditioning cost (``precondition``)."""
    s = STAGES.index(stage)
    return {"energy_pj": float(energy_array(counts, config, adc_bits, dac_bits)[s].sum()),
            "pulses": int(pulses(counts[s]).sum()),
            "bytes": int(bytes_moved(counts[s]).sum())}


def energy_to_target(records: Sequence[Mapping], target: float,
                     precondition: Mapping | None = None) -> dict:
    """Cost of reaching test accuracy ``target``: preconditioning plus data training until
    the test accuracy first reaches ``target``.

    ``records``: metric records; those with ``phase`` ``train`` (or no phase) and a
    ``test_accuracy`` are taken in order of ``step``, each holding the train stage's
    cumulative ``energy_pj``, ``pulses`` and ``bytes`` at that evaluation
    (:func:`stage_totals`). ``precondition``: the precondition stage's totals (same keys;
    None: no preconditioning, zeros). Returns ``{"target", "reached", "step", "epoch",
    "energy_pj", "pulses", "bytes", "precondition"}``: at the first record with
    ``test_accuracy >= target``, each of ``energy_pj, pulses, bytes`` = precondition +
    training so far; ``reached`` false and those None if no record reaches it."""
    base = dict(precondition) if precondition is not None else {"energy_pj": 0.0, "pulses": 0,
                                                                "bytes": 0}
    evaluated = sorted((r for r in records if r.get("phase", "train") == "train"
                        and r.get("test_accuracy") is not None), key=lambda r: r["step"])
    hit = next((r for r in evaluated if r["test_accuracy"] >= target), None)
    return {"target": target, "reached": hit is not None,
            "step": hit["step"] if hit else None, "epoch": hit.get("epoch") if hit else None,
            **{key: base[key] + hit[key] if hit else None for key in TOTALS},
            "precondition": {key: base[key] for key in TOTALS}}


def ledger_summary(ledger: Ledger, config: EnergyConfig, adc_bits: ByBits = None,
                   dac_bits: ByBits = None, records: Sequence[Mapping] = (),
                   target: float = DEFAULT_TARGET) -> dict:
    """The ``"ledger"`` entry of a run's ``summary.json``:

    ``{"counts": Ledger.to_json(), "energy_pj": energy_breakdown(...),
    "to_target": energy_to_target(records, target, <precondition stage totals>)}``, and
    ``"rereads": Ledger.rereads_json()`` when iterative bound management read anything
    again (what of ``counts`` its re-reads are)."""
    precondition = stage_totals(ledger.counts, "precondition", config, adc_bits, dac_bits)
    return {"counts": ledger.to_json(),
            **({"rereads": ledger.rereads_json()} if ledger.rereads.any() else {}),
            "energy_pj": energy_breakdown(ledger.counts, config, adc_bits, dac_bits),
            "to_target": energy_to_target(records, target, precondition)}


# ------------------------------------------------------------------- display
def _scaled(value: float, units: tuple[str, ...], step: float) -> str:
    for unit in units[:-1]:
        if abs(value) < step:
            return f"{value:.4g} {unit}"
        value /= step
    return f"{value:.4g} {units[-1]}"


def energy_text(pj: float) -> str:
    """An energy given in pJ, in the largest unit that keeps it >= 1 (``"6.337 mJ"``)."""
    return _scaled(pj, ("pJ", "nJ", "uJ", "mJ", "J"), 1000.0)


def bytes_text(n: int) -> str:
    """A byte count in decimal units (``"828.8 MB"``)."""
    return _scaled(n, ("B", "kB", "MB", "GB", "TB"), 1000.0)
