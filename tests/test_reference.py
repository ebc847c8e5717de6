"""Zero-shifting (neurosim.reference): each device's reference is its stable symmetry point,
the shifted model is the device read against it, every backend simulates it, zero-mean
updates no longer drift the weights, and every forward read costs the reference cells."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import REPO, make_chip

from neurosim import devices as D
from neurosim import rng
from neurosim.accounting import backward_counts, forward_counts
from neurosim.config import ChipConfig, DeviceConfig, ForwardArrayConfig, UpdateConfig, load_chip
from neurosim.device_curves import random_sign_walk, symmetry_points
from neurosim.errors import ConfigError
from neurosim.ledger import COUNTER_INDEX, Ledger
from neurosim.reference import forward_devices, shifted, symmetry_references, with_references

SPREAD = dict(dw_min_dtod=0.3, up_down=-0.2, up_down_dtod=0.2, w_min_dtod=0.2, w_max_dtod=0.2)
AGSI = load_chip(REPO / "hw_configs" / "rram_agsi.yaml")


def forward(model: str, reference="symmetry_point", reference_error=0.0, **device):
    return ForwardArrayConfig(device=DeviceConfig(model=model, **device),
                              update=UpdateConfig(mode="pulsed"), reference=reference,
                              reference_error=reference_error)


def zero_shifted(chip: ChipConfig, **fields) -> ChipConfig:
    """:func:`with_references` of ``chip``, with ``fields`` of its forward arrays set."""
    shifted = with_references(chip)
    return dataclasses.replace(shifted, forward=dataclasses.replace(shifted.forward, **fields))


def test_soft_bounds_references_are_the_analytic_balance_of_each_device():
    """step_up (1 - w / hi) = step_down (1 - w / lo) at w* = (su - sd) / (su / hi - sd / lo),
    device by device."""
    state = D.draw_device_state(DeviceConfig(model="soft_bounds", **SPREAD), -1.0, 1.0, 2000, 3, 1)
    su, sd, lo, hi = state.step_up, state.step_down, state.w_min, state.w_max
    moves = su > 0  # a device drawn with step 0 never moves: it stays at the start, 0
    assert 0 < np.count_nonzero(~moves) < 100
    references = symmetry_references(state)
    su, sd, lo, hi = su[moves], sd[moves], lo[moves], hi[moves]
    np.testing.assert_allclose(references[moves], (su - sd) / (su / hi - sd / lo),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(references[~moves], 0.0)


@pytest.mark.parametrize("preset", ["rram_agsi", "rram_taox", "fefet_hzo"])
def test_exp_step_references_are_stable_zeros_of_each_devices_net_response(preset):
    chip = load_chip(REPO / "hw_configs" / f"{preset}.yaml")
    f = chip.forward
    state = D.draw_device_state(f.device, f.w_min, f.w_max, 500, 0, 0)
    ref = symmetry_references(state)
    i = np.arange(state.n)
    step = D.nominal_step(f.device, f.w_min, f.w_max)
    assert np.all(np.abs(D.net_response(state, i, ref)) < 1e-9 * step)
    assert np.all(D.net_response(state, i, ref - step / 10) > 0)  # up wins below
    assert np.all(D.net_response(state, i, ref + step / 10) < 0)  # down wins above
    nominal = symmetry_points(chip).stable
    assert len(nominal) == 1 and abs(np.median(ref) - nominal[0]) < 0.02


def test_a_bistable_device_gets_the_bound_of_its_basin():
    """GST PCM is stable at both bounds, split at +0.34: from w = 0 a device is driven to
    w_min, where its reference lands (zero-shifting cannot centre it)."""
    chip = load_chip(REPO / "hw_configs" / "pcm_gst.yaml")
    f = chip.forward
    state = D.draw_device_state(f.device, f.w_min, f.w_max, 300, 0, 0)
    step = D.nominal_step(f.device, f.w_min, f.w_max)
    assert np.all(symmetry_references(state) - state.w_min < 2 * step)
    assert np.all(state.w_max - symmetry_references(state, start=0.9) < 2 * step)


@pytest.mark.parametrize("model, device", [
    ("soft_bounds", SPREAD),
    ("exp_step", dict(SPREAD, nonlinearity_ltp=2.4, nonlinearity_ltd=-4.88, levels=97))])
def test_the_shifted_device_is_the_device_read_against_its_reference(model, device):
    """In w = device - reference, a pulse moves the shifted model exactly as it moves the
    device at w + reference, and the bounds are the device's minus the reference."""
    state = D.draw_device_state(DeviceConfig(model=model, **device), -1.0, 1.0, 4000, 5, 0)
    generator = np.random.default_rng(0)
    reference = generator.uniform(0.5, 0.9, state.n) * np.where(
        generator.random(state.n) < 0.5, state.w_min, state.w_max)
    moved = shifted(state, reference)
    np.testing.assert_array_equal(moved.w_min, state.w_min - reference)
    np.testing.assert_array_equal(moved.w_max, state.w_max - reference)
    np.testing.assert_array_equal(moved.reference, reference)
    w = moved.w_min + generator.random(state.n) * (moved.w_max - moved.w_min)
    i = np.arange(state.n)
    for up in (np.ones(state.n, bool), np.zeros(state.n, bool)):
        np.testing.assert_allclose(D.mean_response(moved, i, w, up),
                                   D.mean_response(state, i, w + reference, up),
                                   rtol=1e-9, atol=1e-12)
    # pulse trains with cycle-to-cycle noise, clipped at the shifted bounds
    noisy = dataclasses.replace(state, dw_min_ctoc=0.3)
    device = np.clip(reference, state.w_min, state.w_max)
    read = device - reference
    signs = np.where(generator.random(state.n) < 0.5, 1, -1)
    D.apply_pulses(device, noisy, signs, 40, key_noise=11)
    D.apply_pulses(read, dataclasses.replace(moved, dw_min_ctoc=0.3), signs, 40, key_noise=11)
    np.testing.assert_allclose(read, device - reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("model", ["soft_bounds", "exp_step"])
def test_fast_backends_replay_the_reference_on_shifted_devices(fast, model):
    """The backends simulate a shifted device as any other, by pulsed and by in-array
    (stochastic) updates: the same pulses and weights."""
    device = dict(SPREAD, dw_min=0.02, dw_min_ctoc=0.3) if model == "soft_bounds" else dict(
        SPREAD, dw_min_ctoc=0.3, nonlinearity_ltp=2.4, nonlinearity_ltd=-4.88, levels=97)
    state = forward_devices(forward(model, reference_error=0.02, **device), 3000, 9, 2)
    generator = np.random.default_rng(1)
    w = D.place_initial_weights(state, generator.uniform(-0.6, 0.6, state.n))
    replayed = w.copy()
    for t in range(3):
        dw = generator.normal(0, 0.15, state.n)
        keys = (rng.stream_key(9, t, 2, rng.Purpose.PULSE_ROUNDING),
                rng.stream_key(9, t, 2, rng.Purpose.PULSE_NOISE))
        assert D.pulsed_update(w, dw, state, 0.02, 31, *keys) == fast.devices.pulsed_update(
            replayed, dw, state, 0.02, 31, *keys)
        fast.assert_replays(replayed, w)
    x, d = generator.random((4, 100)), generator.normal(0, 1, (4, 30))  # 30 x 100 devices
    assert D.stochastic_update(w, x, d, state, 0.05, 31, 3, 4) == (
        fast.devices.stochastic_update(replayed, x, d, state, 0.05, 31, 3, 4))
    fast.assert_replays(replayed, w)


def test_reference_errors_are_drawn_once_per_device_at_the_configured_spread():
    config = forward("soft_bounds", reference_error=0.01, **SPREAD)
    exact = forward_devices(dataclasses.replace(config, reference_error=0.0), 20000, 4, 1)
    noisy = forward_devices(config, 20000, 4, 1)
    error = noisy.reference - exact.reference
    assert abs(error.std() / (0.01 * 2.0) - 1) < 0.03 and abs(error.mean()) < 0.001
    np.testing.assert_array_equal(forward_devices(config, 20000, 4, 1).reference,
                                  noisy.reference)
    assert not np.array_equal(forward_devices(config, 20000, 5, 1).reference, noisy.reference)
    wild = forward_devices(dataclasses.replace(config, reference_error=1.0), 20000, 4, 1)
    assert np.all(wild.w_min < 0) and np.all(wild.w_max > 0)  # references kept inside


def test_zero_shifting_moves_the_symmetry_point_to_zero_and_stops_the_drift():
    points, walk = symmetry_points(zero_shifted(AGSI)), random_sign_walk(zero_shifted(AGSI))
    assert points.text() == "+0.00" and abs(points.stable[0]) < 1e-6
    assert random_sign_walk(AGSI).mean[-1] < -0.3
    assert abs(walk.mean[-1]) < 0.05


def test_a_noise_phase_no_longer_pulls_zero_shifted_weights_down(tmp_path):
    """A gentle noise phase (weights well inside the bounds) drifts Ag:a-Si's first layer
    down, towards its symmetry point -0.34 (test_device_symmetry); with references the
    symmetry point reads 0 and the mean stays close to where it was. (A strong one spreads the
    weights into the bounds, and the shifted range [-0.66, 1.34] then pushes the mean up:
    docs/results-devices.md.)"""
    from test_device_symmetry import noise_phase_drift

    assert noise_phase_drift(AGSI, tmp_path / "plain", lr=3e-4) < -0.05
    assert abs(noise_phase_drift(zero_shifted(AGSI), tmp_path / "shifted", lr=3e-4)) < 0.025


def test_a_chip_reads_its_devices_against_their_references():
    chip = make_chip(zero_shifted(AGSI), dims=(64, 12, 10))
    for index, state in enumerate(chip.devices):
        expected = forward_devices(chip.config.forward, state.n, 0, index)
        np.testing.assert_array_equal(state.w_min, expected.w_min)
        np.testing.assert_array_equal(state.reference, expected.reference)
        w = chip.weights(index).reshape(-1)
        assert np.all((state.w_min <= w) & (w <= state.w_max))


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_every_forward_array_read_reads_the_reference_cells_too(rule):
    """cells_read doubles on the forward arrays' reads (forward, and BP's transposed read);
    MACs, conversions and the feedback array's reads do not change."""
    plain = make_chip(AGSI, dims=(64, 12, 10), rule=rule)
    paired = make_chip(zero_shifted(AGSI), dims=(64, 12, 10), rule=rule)
    cells = COUNTER_INDEX["cells_read"]
    for count in (forward_counts, lambda chip, b: backward_counts(chip, b, chip.rule.code)):
        a, b = count(plain, 8), count(paired, 8)
        expected = a.copy()
        if count is forward_counts or rule == "bp":
            expected[:, cells] *= 2
        np.testing.assert_array_equal(b, expected)
        assert a[:, cells].sum() > 0


def test_re_reads_of_a_zero_shifted_array_read_its_reference_cells():
    ledger = Ledger(2)
    ledger.add_rereads("train", "forward", np.array([[600, 30, 20], [0, 0, 0]]), 2)
    row = ledger.counts[1, 0, 0]
    assert (row[COUNTER_INDEX["macs"]], row[COUNTER_INDEX["cells_read"]],
            row[COUNTER_INDEX["dac_conversions"]]) == (600, 1200, 30)
    assert ledger.rereads[1, 0, 0].tolist() == [600, 30, 20]


@pytest.mark.parametrize("model, message", [
    ("linear_step", "chip-wide scalars"), ("constant_step", "no symmetry point inside"),
    ("ideal", "updated exactly")])
def test_a_reference_needs_a_device_with_a_symmetry_point(model, message):
    update = UpdateConfig(mode="ideal" if model == "ideal" else "pulsed")
    config = ForwardArrayConfig(device=DeviceConfig(model=model), update=update,
                                reference="symmetry_point")
    with pytest.raises(ConfigError, match=message) as error:
        config.check("chip.yaml", "forward")
    assert "forward.reference" in str(error.value)


def test_a_reference_error_without_a_reference_is_refused():
    config = forward("soft_bounds", reference="none", reference_error=0.1)
    with pytest.raises(ConfigError, match="forward.reference_error"):
        config.check("chip.yaml", "forward")
    with pytest.raises(ConfigError, match="reference"):
        load_chip(REPO / "hw_configs" / "rram_agsi.yaml", ["forward.reference=zero"])


def test_a_run_records_and_reports_where_the_references_sit(tmp_path):
    from test_train import spec_for

    from neurosim.report import write_run_report
    from neurosim.runio import SUMMARY, write_json
    from neurosim.train import Trainer

    spec = spec_for(precondition__steps=20, train__epochs=0)
    trainer = Trainer(dataclasses.replace(spec, chip=zero_shifted(AGSI)), tmp_path / "run")
    summary = trainer.run()
    for index, state in enumerate(trainer.chip.devices):
        assert summary["final"]["array_references"][str(index + 1)] == {
            "mean": float(state.reference.mean()), "std": float(state.reference.std())}
    assert abs(summary["final"]["array_references"]["1"]["mean"] + 0.34) < 0.01
    write_json(tmp_path / "run" / SUMMARY, summary)
    write_run_report(tmp_path / "run")
    text = (tmp_path / "run" / "report.md").read_text()
    assert "| layer | before noise | after noise | after training | reference |" in text
    assert "read against a reference device at its symmetry point" in text
    plain = Trainer(dataclasses.replace(spec, chip=AGSI), tmp_path / "plain").run()
    assert "array_references" not in plain["final"]


def test_the_memory_bound_counts_each_devices_reference():
    from test_train import spec_for

    from neurosim.memory import chip_floor_bytes

    spec = dataclasses.replace(spec_for(), chip=AGSI)
    dims = spec.experiment.network.dims
    cells = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    assert (chip_floor_bytes(dataclasses.replace(spec, chip=zero_shifted(AGSI)))
            - chip_floor_bytes(spec)) == D.REFERENCE_BYTES * cells


def test_devices_list_and_show_tell_what_zero_shifting_makes_of_each_preset(tmp_path, capsys):
    from neurosim.cli import main
    from neurosim.device_curves import drift_text

    assert main(["devices", "list"]) == 0
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and not line.startswith("| preset")}
    assert cells["rram_agsi"][10] == (f"{drift_text(zero_shifted(AGSI))} (reference -0.34; "
                                      "range [-0.66, +1.34])")
    assert cells["pcm_gst"][10].endswith("(reference w_min; range [-0.02, +1.98])")
    assert cells["ecram"][10] == cells["ideal"][10] == "–"
    assert main(["devices", "show", "rram_agsi", "--out", str(tmp_path), "--devices", "20",
                 "--random-pulses", "40", "--set", "forward.reference=symmetry_point"]) == 0
    assert "symmetry point of the nominal device: +0.00" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_chips_with_and_without_references_are_one_population_of_separate_runs(tmp_path,
                                                                               backend):
    """A reference only shapes the devices a chip draws, so chips with exact, erroneous and
    no references step as one population, and each gets its separate run."""
    from test_population import variants_are_one_population_of_separate_runs

    chips = [AGSI, zero_shifted(AGSI), zero_shifted(AGSI, reference_error=0.05)]
    separate = variants_are_one_population_of_separate_runs(chips, backend, tmp_path)
    assert [("array_references" in s["final"]) for s in separate] == [False, True, True]
