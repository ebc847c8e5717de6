"""The ledger as the simulator fills it: closed-form counts of whole runs, pulses equal to
the kernels', weight transport only for BP, zero-cost chips, resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import batch, interrupted_then_resumed, make_chip
from test_train import spec_for

from neurosim import evaluation
from neurosim.accounting import book_rereads
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.config import DeviceConfig, TileConfig
from neurosim.energy import EnergyConfig
from neurosim.ledger import COUNTER_INDEX, STAGE_INDEX, OPERATION_INDEX, Ledger
from neurosim.periphery import PeripheryConfig
from neurosim.rules import RuleCode
from neurosim.report import energy_section
from neurosim.summary import trained_samples
from neurosim.train import Trainer, run_spec

DIMS = [784, 24, 10]
BATCH = 32
TRAIN_STEPS = 2 * 320 // BATCH  # 2 epochs of 320 examples, batch 32
NOISE_STEPS = 60


def counts(summary, stage, operation, counter, layer=None):
    rows = summary["ledger"]["counts"][stage][operation]
    rows = rows if layer is None else [rows[layer]]
    return sum(row[counter] for row in rows)


def tiled_spec(rule="fa", tiles=(100, 8), **overrides):
    spec = spec_for(rule=rule, **overrides)
    chip = dataclasses.replace(spec.chip, tiles=dataclasses.replace(
        spec.chip.tiles, rows=tiles[0], cols=tiles[1]))
    return dataclasses.replace(spec, chip=chip)


@pytest.fixture(scope="module")
def fa_run(tmp_path_factory):
    return run_spec(tiled_spec(), tmp_path_factory.mktemp("fa"))


@pytest.fixture(scope="module")
def bp_run(tmp_path_factory):
    return run_spec(tiled_spec("bp"), tmp_path_factory.mktemp("bp"))


def test_training_forward_counts_equal_the_closed_form(fa_run):
    pairs = list(zip(DIMS[:-1], DIMS[1:]))
    samples = TRAIN_STEPS * BATCH
    assert counts(fa_run, "train", "forward", "macs") == samples * sum(a * b for a, b in pairs)
    assert counts(fa_run, "precondition", "forward", "macs") == \
        NOISE_STEPS * BATCH * sum(a * b for a, b in pairs)
    # tiles of 100 rows x 8 columns: layer 1 (784 -> 24) has ceil(784/100) = 8 row tiles and
    # ceil(24/8) = 3 column tiles; layer 2 (24 -> 10) has 1 and 2.
    for layer, (n_in, n_out) in enumerate(pairs):
        row_tiles, col_tiles = math.ceil(n_in / 100), math.ceil(n_out / 8)
        assert counts(fa_run, "train", "forward", "adc_conversions", layer) == \
            samples * n_out * row_tiles
        assert counts(fa_run, "train", "forward", "dac_conversions", layer) == \
            samples * n_in * col_tiles
        assert counts(fa_run, "train", "forward", "partial_sum_adds", layer) == \
            samples * n_out * (row_tiles - 1)


def test_fa_backward_reads_the_feedback_array(fa_run):
    samples = TRAIN_STEPS * BATCH
    # B_2 is 24 x 10: the error (10) drives its rows (one row tile of 100), 24 columns
    # (three column tiles of 8) come out
    assert counts(fa_run, "train", "backward", "macs", 1) == samples * 24 * 10
    assert counts(fa_run, "train", "backward", "adc_conversions", 1) == samples * 24 * 1
    assert counts(fa_run, "train", "backward", "dac_conversions", 1) == samples * 10 * 3
    assert counts(fa_run, "train", "backward", "bytes_weight_transport") == 0


def test_bp_pays_weight_transport(bp_run, fa_run):
    transport = counts(bp_run, "train", "backward", "bytes_weight_transport", 1)
    assert transport == TRAIN_STEPS * 24 * 10 * 4  # float32 weights of layer 2 per step
    assert counts(bp_run, "train", "backward", "macs", 1) == TRAIN_STEPS * BATCH * 24 * 10
    bp_backward = bp_run["ledger"]["energy_pj"]["phases"]["backward"]
    fa_backward = fa_run["ledger"]["energy_pj"]["phases"]["backward"]
    assert bp_backward["memory"] > fa_backward["memory"]


@pytest.mark.parametrize("rule", ["fa", "bp"])
def test_bytes_moved_are_the_chips_words_not_the_simulations_floats(ideal_chip_config, rule):
    """The same chip simulated in float32 and float64 moves the same bytes (it was twice as
    many, and twice the memory energy, in float64); a chip of 16-bit words moves half."""
    from neurosim.accounting import backward_counts, forward_counts, update_counts
    from neurosim.config import OptimizerConfig
    from neurosim.ledger import BYTE_COUNTERS

    def moved(config, dtype):
        chip = make_chip(config, dims=DIMS, rule=rule, dtype=dtype)
        rows = (forward_counts(chip, BATCH), backward_counts(chip, BATCH, chip.rule.code),
                update_counts(chip, BATCH, OptimizerConfig()))
        return np.array([[row[..., COUNTER_INDEX[name]].sum() for name in BYTE_COUNTERS]
                         for row in rows])

    fp32 = moved(ideal_chip_config, "float32")
    assert fp32.sum() > 0 and fp32[1].sum() > 0  # the backward pass moves errors
    np.testing.assert_array_equal(moved(ideal_chip_config, "float64"), fp32)
    half = dataclasses.replace(ideal_chip_config, energy=dataclasses.replace(
        ideal_chip_config.energy, digital_word_bits=16))
    np.testing.assert_array_equal(2 * moved(half, "float64"), fp32)


def test_records_carry_cumulative_energy_and_target(fa_run, tmp_path):
    to_target = fa_run["ledger"]["to_target"]
    assert to_target["target"] == 0.9
    total = fa_run["ledger"]["energy_pj"]
    assert total["total"] > 0
    assert to_target["precondition"]["energy_pj"] == pytest.approx(
        sum(total["phases"]["precondition"].values()))


@pytest.mark.parametrize("noise", [{"dw_min_ctoc": 0.1}, {"write_noise": 0.01}])
def test_pulses_in_the_ledger_equal_the_kernels_pulses(tmp_path, noise):
    spec = spec_for()
    forward = dataclasses.replace(
        spec.chip.forward, device=DeviceConfig(model="constant_step", levels=300, **noise),
        update=dataclasses.replace(spec.chip.forward.update, mode="pulsed"))
    spec = dataclasses.replace(spec, chip=dataclasses.replace(spec.chip, forward=forward))
    trainer = Trainer(spec, tmp_path)
    summary = trainer.run()
    applied = trainer.chip.pulses
    assert applied.sum() > 0
    for direction, column in (("pulses_up", 0), ("pulses_down", 1)):
        for layer in range(2):
            in_ledger = sum(counts(summary, stage, "update", direction, layer)
                            for stage in ("precondition", "train"))
            assert in_ledger == applied[layer, column]
    # stochastic rounding draws one uniform per weight and step in the chip's logic; the
    # pulses' cycle-to-cycle noise is physical: the chip draws nothing for it
    weights = 784 * 24 + 24 * 10
    steps = NOISE_STEPS + TRAIN_STEPS
    draws = sum(counts(summary, stage, "update", "random_numbers")
                for stage in ("precondition", "train"))
    assert draws == steps * weights
    assert summary["ledger"]["energy_pj"]["components"]["write"] == pytest.approx(
        applied.sum() * 1.6 ** 2 * 10e-6 * 50e-9 * 1e12)


@pytest.mark.parametrize("regime", ["fixed_set", "fresh_stream"])
@pytest.mark.parametrize("noise, taps", [
    ({"distribution": "gaussian"}, 0), ({"distribution": "binary", "rate": 0.2}, 0),
    # r = int(4 * 1.5 + 0.5) = 6: 13 taps a side; r = int(4 * 5 + 0.5) = 20: folded to 28
    ({"distribution": "correlated", "length_scale": 1.5}, 13 + 13),
    ({"distribution": "correlated", "length_scale": 5.0}, 28 + 28)])
def test_making_the_noise_is_booked_to_the_noise_phase(tmp_path, regime, noise, taps):
    """Each noise example costs 785 random numbers (784 pixels and a label); a correlated
    field adds the multiply-adds of its two kernel passes over the 28 x 28 pixels. A fixed
    set of 256 is made once; a fresh stream makes every step's batch."""
    summary = run_spec(spec_for(train__epochs=0, precondition__regime=regime,
                                precondition__input=noise), tmp_path)
    examples = 256 if regime == "fixed_set" else NOISE_STEPS * BATCH
    assert counts(summary, "precondition", "forward", "random_numbers", 0) == examples * 785
    assert counts(summary, "precondition", "forward", "digital_macs", 0) == \
        examples * 784 * taps


def test_a_zero_cost_chip_gives_zero_energy(tmp_path):
    spec = spec_for(train__epochs=1)
    zero = {field.name: 0.0 for field in dataclasses.fields(EnergyConfig)
            if field.type in ("float", float)}
    energy = dataclasses.replace(EnergyConfig(), adc_pj_by_bits={8: 0.0}, **zero)
    spec = dataclasses.replace(spec, chip=dataclasses.replace(spec.chip, energy=energy))
    summary = run_spec(spec, tmp_path)
    assert summary["ledger"]["energy_pj"]["total"] == 0.0
    assert counts(summary, "train", "forward", "macs") > 0


def test_the_ledger_resumes_to_the_identical_counts(tmp_path, monkeypatch):
    spec = spec_for(train__checkpoint_every=1)
    reference = run_spec(spec, tmp_path / "whole")
    resumed = interrupted_then_resumed(monkeypatch, spec, tmp_path / "cut", 75)
    assert resumed["ledger"] == reference["ledger"]


def test_step_accounting_costs_nothing_per_step_until_flushed(tmp_path):
    trainer = Trainer(spec_for(), tmp_path)
    trainer.accounting.begin("train", trainer.experiment.optimizer)
    before = trainer.chip.ledger.counts.copy()
    trainer.accounting.step(BATCH)
    trainer.accounting.step(BATCH)
    np.testing.assert_array_equal(trainer.chip.ledger.counts, before)
    trainer.accounting.flush()
    added = trainer.chip.ledger.counts - before
    macs = added[STAGE_INDEX["train"], OPERATION_INDEX["forward"], :, COUNTER_INDEX["macs"]]
    assert macs.tolist() == [2 * BATCH * 784 * 24, 2 * BATCH * 24 * 10]
    assert isinstance(trainer.chip.ledger, Ledger)


def test_simulator_analyses_are_not_booked(fa_run):
    """The update-vs-BP angle computes a BP gradient for analysis: no chip would, so FA's
    ledger holds no weight transport and no backward pass in the eval stage."""
    assert counts(fa_run, "eval", "backward", "macs") == 0
    assert sum(counts(fa_run, stage, "backward", "bytes_weight_transport")
               for stage in ("precondition", "train", "eval")) == 0
    assert counts(fa_run, "eval", "forward", "macs") > 0


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_read_noise_is_physical_and_costs_no_random_numbers(ideal_chip_config, rule):
    """Read noise is drawn by the simulator, not by the chip: a noisy chip's passes cost
    what a noiseless chip's with the same converters cost."""
    from conftest import make_chip

    from neurosim.accounting import backward_counts, forward_counts
    from neurosim.periphery import PeripheryConfig

    def chip(periphery):
        config = dataclasses.replace(
            ideal_chip_config,
            forward=dataclasses.replace(ideal_chip_config.forward, periphery=periphery),
            feedback=dataclasses.replace(ideal_chip_config.feedback, periphery=periphery))
        return make_chip(config, rule=rule)

    quiet = chip(PeripheryConfig(adc_bits=6))
    noisy = chip(PeripheryConfig(adc_bits=6, w_noise=0.05, out_noise=0.02))
    np.testing.assert_array_equal(forward_counts(noisy, 16), forward_counts(quiet, 16))
    np.testing.assert_array_equal(backward_counts(noisy, 16, noisy.rule.code),
                                  backward_counts(quiet, 16, quiet.rule.code))


# ------------------------------------------------- iterative bound management
ITERATIVE = PeripheryConfig(dac_bits=7, dac_bound="managed", adc_bits=8, adc_range=0.5,
                            adc_bound="iterative", out_noise=0.01)


def iterative_spec(rule="fa", backend="numba", **overrides):
    """A tiled chip whose every array manages its ADC bounds iteratively, with a range
    small enough that reads saturate."""
    spec = tiled_spec(rule, simulation__backend=backend, **overrides)
    chip = dataclasses.replace(
        spec.chip,
        forward=dataclasses.replace(spec.chip.forward, periphery=ITERATIVE),
        feedback=dataclasses.replace(spec.chip.feedback, periphery=ITERATIVE))
    return dataclasses.replace(spec, chip=chip)


def test_re_reads_are_booked_in_their_stage_operation_and_layer(ideal_chip_config):
    """Chip.rereads[pass, read kind, layer] moves into the ledger as reads of that layer:
    its cells as MACs and cell reads, its conversions; training passes into the stage being
    trained, measurement passes into eval; then it is empty."""
    chip = make_chip(ideal_chip_config, rule="fa")
    ledger = Ledger(chip.n_layers)
    chip.rereads[0, 1, 1] = (600, 30, 20)  # a training step's backward re-reads, layer 2
    chip.rereads[1, 0, 0] = (7000, 70, 100)  # a measurement's forward re-reads, layer 1
    book_rereads(chip, ledger, "precondition", measurement=False)
    book_rereads(chip, ledger, "eval", measurement=True)
    assert not chip.rereads.any()
    booked = {(stage, operation, layer, counter): int(ledger.counts[
        STAGE_INDEX[stage], OPERATION_INDEX[operation], layer, COUNTER_INDEX[counter]])
        for stage in STAGE_INDEX for operation in OPERATION_INDEX for layer in range(2)
        for counter in COUNTER_INDEX}
    expected = {("precondition", "backward", 1, "macs"): 600,
                ("precondition", "backward", 1, "cells_read"): 600,
                ("precondition", "backward", 1, "dac_conversions"): 30,
                ("precondition", "backward", 1, "adc_conversions"): 20,
                ("eval", "forward", 0, "macs"): 7000, ("eval", "forward", 0, "cells_read"): 7000,
                ("eval", "forward", 0, "dac_conversions"): 70,
                ("eval", "forward", 0, "adc_conversions"): 100}
    assert {key: value for key, value in booked.items() if value} == expected


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sdfa"])
def test_a_pass_counts_its_re_reads_by_pass_kind_and_layer(ideal_chip_config, any_backend,
                                                           rule):
    """Every backend routes each read's re-reads to the row of Chip.rereads of its pass
    (training or measurement), read kind and layer, and the analyses' reads are dropped."""
    reads = dataclasses.replace(ITERATIVE, adc_range=0.05)  # the errors' reads saturate too
    config = dataclasses.replace(
        ideal_chip_config, tiles=TileConfig(100, 8),
        forward=dataclasses.replace(ideal_chip_config.forward, periphery=reads),
        feedback=dataclasses.replace(ideal_chip_config.feedback, periphery=reads))
    x, y = batch(16)
    found = []
    for backend in (NumpyBackend("float64"), any_backend.backend("float64")):
        chip = make_chip(config, (784, 30, 20, 10), rule)
        out = np.zeros(chip.n_params)
        backend.gradients(chip, backend.feedback_buffer(chip), x, y, chip.rule.code, out,
                          training=True)
        backend.logits(chip, x)
        evaluation.gradients(chip, backend, x, y, RuleCode.BP)  # an analysis: not booked
        found.append(chip.rereads.copy())
    reference, got = found
    assert reference[0, 0].all() and reference[1, 0].all()  # every layer's forward reads
    assert reference[0, 1].any() and not reference[1, 1].any()  # backward: training only
    np.testing.assert_array_equal(got, reference)


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_runs_charge_their_re_reads_on_every_backend(tmp_path, rule):
    """A run's ledger holds the closed-form reads plus the re-reads (more reads than a
    fixed range would make), identically on the reference and on Numba (in float64: in
    float32 the two BLAS builds' products round differently, and a read at the edge of the
    range may saturate on one and not on the other)."""
    ledgers = [run_spec(iterative_spec(rule, backend, simulation__dtype="float64"),
                        tmp_path / backend)["ledger"] for backend in ("numpy", "numba")]
    assert ledgers[0]["counts"] == ledgers[1]["counts"]
    assert ledgers[0]["rereads"] == ledgers[1]["rereads"]
    summary = {"ledger": ledgers[0]}
    samples = TRAIN_STEPS * BATCH
    pairs = list(zip(DIMS[:-1], DIMS[1:]))
    for layer, (n_in, n_out) in enumerate(pairs):
        rereads = ledgers[0]["rereads"]["train"]["forward"][layer]
        assert counts(summary, "train", "forward", "macs", layer) == \
            samples * n_in * n_out + rereads["cells_read"]  # the closed form + the re-reads
        assert counts(summary, "train", "forward", "cells_read", layer) == \
            counts(summary, "train", "forward", "macs", layer)
        row_tiles, col_tiles = math.ceil(n_in / 100), math.ceil(n_out / 8)
        assert counts(summary, "train", "forward", "adc_conversions", layer) == \
            samples * n_out * row_tiles + rereads["adc_conversions"]
        assert counts(summary, "train", "forward", "dac_conversions", layer) == \
            samples * n_in * col_tiles + rereads["dac_conversions"]
    assert ledgers[0]["rereads"]["train"]["forward"][0]["cells_read"] > 0
    assert trained_samples(ledgers[0], "train", DIMS) == samples  # re-reads are not samples
    assert "re-reads of iterative bound management" in energy_section(summary | {
        "ledger": ledgers[0]})


def test_re_reads_resume_to_the_identical_ledger(tmp_path, monkeypatch):
    spec = iterative_spec(train__checkpoint_every=1)
    reference = run_spec(spec, tmp_path / "whole")
    resumed = interrupted_then_resumed(monkeypatch, spec, tmp_path / "cut", 75)
    assert resumed["ledger"] == reference["ledger"]


@pytest.mark.parametrize("dims, locked, drtp", [
    ((784, 100, 10), 884, 884),  # one hidden layer: h_0 and h_1 live together under both
    ((784, 100, 100, 10), 984, 884),
    ((20, 300, 300, 300, 10), 920, 600),  # DRTP: two adjacent hidden layers at most
    ((784, 50, 300, 20, 10), 1154, 834)])
def test_held_activations_are_every_input_or_for_drtp_one_layer_s(dims, locked, drtp):
    """Update-locked rules hold every layer's input until the output error exists; DRTP
    holds one hidden layer's input and output at a time."""
    from neurosim.rules import RULES

    for name, rule in RULES.items():
        assert rule.held_activations(dims) == (drtp if name == "drtp" else locked), name


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_drtp_updates_a_hidden_layer_from_the_values_its_buffer_holds(ideal_chip_config,
                                                                      activation):
    """What DRTP's buffer keeps is enough: hidden layer 2's gradient is a function of its
    input h_1, its output h_2 (f'(a_2) from h_2: a_2 > 0 for relu, 1 - h_2² for tanh) and
    the target alone, as the reference computes it on the whole chip."""
    from test_backends import gradients

    chip = make_chip(ideal_chip_config, (784, 16, 12, 10), "drtp", seed=3,
                     activation=activation)
    x, y = batch(9, seed=5)
    f = (lambda a: np.maximum(a, 0)) if activation == "relu" else np.tanh
    h1 = f(x @ chip.effective_weights()[0].T + chip.bias(0))
    h2 = f(h1 @ chip.effective_weights()[1].T + chip.bias(1))
    derivative = (h2 > 0) if activation == "relu" else 1 - h2 * h2
    delta2 = (np.eye(10)[y] @ chip.feedback_matrix(1).T) * derivative / len(y)
    grads, _, _ = gradients(NumpyBackend("float64"), chip, x, y)
    w_off, n_out, n_in, _ = chip.layout[1]
    np.testing.assert_allclose(grads[w_off:w_off + n_out * n_in].reshape(n_out, n_in),
                               delta2.T @ h1, rtol=1e-10, atol=1e-14)


def test_a_run_records_the_activation_buffer_of_its_largest_training_batch(
        fa_run, tmp_path):
    """values per sample x the larger of the noise and data batches x the chip's word
    (32-bit): in the summary, the report and `neurosim energy`."""
    from neurosim.commands.energy import run_row, run_table

    assert fa_run["ledger"]["activation_buffer"] == {
        "values_per_sample": 784 + 24, "batch": BATCH, "bytes": (784 + 24) * BATCH * 4}
    assert "| activation buffer (forward values held for the updates) | 103.4 kB: 808 " \
           f"values per sample × batch {BATCH} (every layer's input, until the output error " \
           "exists) |" in energy_section(fa_run)
    wide = run_spec(tiled_spec("drtp", precondition__batch_size=64, train__epochs=1),
                    tmp_path / "wide")
    assert wide["ledger"]["activation_buffer"]["batch"] == 64
    assert "(one hidden layer's input and output at a time" in energy_section(wide)
    row = run_row(tmp_path / "wide", wide["ledger"])
    assert row["activation_buffer_bytes"] == 808 * 64 * 4
    assert f"activation buffer           {808 * 64 * 4 / 1000:.4g} kB" in run_table(row)
