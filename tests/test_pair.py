"""Differential pairs (neurosim.pair): two devices per weight moved by SET pulses only, the
single device's draws replayed, refreshes that reset a saturated pair and reprogram its
weight, every backend alike, the chip's ledger, checkpoints and populations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import REPO, interrupted_then_resumed, make_chip
from test_pulsed_training import pulsed_chip, spec

from neurosim import devices as D
from neurosim import rng
from neurosim.accounting import backward_counts, forward_counts
from neurosim.config import ChipConfig, load_chip
from neurosim.errors import ConfigError
from neurosim.ledger import COUNTER_INDEX, STAGE_INDEX
from neurosim.pair import (draw_pairs, one_sided_update, program_initial_weights, refresh,
                           refresh_keys, refresh_pulses)
from neurosim.rules import RuleCode
from neurosim.train import Trainer, run_spec

PCM = load_chip(REPO / "hw_configs" / "pcm_gst.yaml")


def paired(chip: ChipConfig, **pair) -> ChipConfig:
    """``chip`` with a one-sided differential pair per weight (``pair``: its other fields)."""
    return dataclasses.replace(chip, forward=dataclasses.replace(
        chip.forward, pair=dataclasses.replace(chip.forward.pair, mode="one_sided", **pair)))


def keys(t: int, layer: int = 1) -> tuple[int, int]:
    return (rng.stream_key(3, t, layer, rng.Purpose.PULSE_ROUNDING),
            rng.stream_key(3, t, layer, rng.Purpose.PULSE_NOISE))


def test_g_plus_is_the_single_device_and_g_minus_draws_its_own():
    forward = paired(pulsed_chip(dw_min=0.01, dw_min_dtod=0.3, stuck_at_min=0.1)).forward
    pairs = draw_pairs(forward, 5000, 3, 1)
    single = D.draw_device_state(forward.device, forward.w_min, forward.w_max, 5000, 3, 1)
    for name in ("step_up", "step_down", "w_min", "w_max", "stuck"):
        np.testing.assert_array_equal(getattr(pairs.plus, name), getattr(single, name))
    assert not np.array_equal(pairs.minus.step_up, pairs.plus.step_up)
    assert abs((pairs.minus.stuck != D.FREE).mean() - 0.1) < 0.015
    assert not np.array_equal(pairs.minus.stuck, pairs.plus.stuck)
    np.testing.assert_array_equal(pairs.weights(), 0.0)  # both devices at their minimum


def test_initial_weights_are_programmed_on_one_device_of_each_pair():
    forward = paired(pulsed_chip(dw_min=0.01, w_max_dtod=0.3, stuck_at_max=0.05)).forward
    pairs = draw_pairs(forward, 4000, 3, 0)
    w0 = np.random.default_rng(0).uniform(-0.5, 0.5, 4000)
    w = program_initial_weights(pairs, w0)
    free = (pairs.plus.stuck == D.FREE) & (pairs.minus.stuck == D.FREE)
    np.testing.assert_allclose(w[free], w0[free], rtol=0, atol=1e-15)
    positive = w0 > 0
    np.testing.assert_array_equal(pairs.g_minus[free & positive], pairs.minus.w_min[free & positive])
    np.testing.assert_array_equal(pairs.g_plus[free & ~positive], pairs.plus.w_min[free & ~positive])
    at_max = pairs.plus.stuck == D.STUCK_AT_MAX
    assert at_max.any()
    np.testing.assert_array_equal(pairs.g_plus[at_max], pairs.plus.w_max[at_max])


def test_an_update_is_set_pulses_with_the_single_devices_counts_and_noise():
    """Without device-to-device spread G+ and G- move as the single device would move up
    and down: the same pulse counts, so (noise-free) the same weight change, and with write
    noise an increase draws the single device's noise (the single device given wider
    bounds, and G+ starting well above its minimum: neither is clipped); every pulse is a
    SET pulse, and without noise no device's state ever decreases."""
    for noise in (0.0, 0.01):
        forward = paired(pulsed_chip(dw_min=0.01, write_noise=noise)).forward
        pairs = draw_pairs(forward, 3000, 3, 1)
        generator = np.random.default_rng(1)
        w = program_initial_weights(pairs, generator.uniform(0.5, 0.8, 3000))
        single = D.draw_device_state(forward.device, forward.w_min, forward.w_max, 3000, 3, 1)
        single = dataclasses.replace(single, w_min=3 * single.w_min, w_max=3 * single.w_max)
        for t in range(4):
            dw = generator.normal(0.0, 0.05, 3000)
            dw[:7] = (np.nan, 0.0, 0.0, -0.0, 0.0, 0.0, 0.0)
            before = (pairs.g_plus.copy(), pairs.g_minus.copy())
            moved = w.copy()
            up, down = D.pulsed_update(moved, dw, single, 0.01, 15, *keys(t))
            assert one_sided_update(D, pairs, dw, 0.01, 15, *keys(t)) == up + down
            rising = dw > 0
            np.testing.assert_allclose((pairs.weights() - w)[rising], (moved - w)[rising],
                                       rtol=0, atol=1e-12)
            if noise == 0.0:
                np.testing.assert_allclose(pairs.weights() - w, moved - w, rtol=0, atol=1e-12)
                assert np.all(pairs.g_plus >= before[0]) and np.all(pairs.g_minus >= before[1])
            np.testing.assert_array_equal(pairs.g_minus[rising], before[1][rising])
            np.testing.assert_array_equal(pairs.g_plus[dw < 0], before[0][dw < 0])
            np.testing.assert_array_equal(pairs.g_plus[:7], before[0][:7])
            np.testing.assert_array_equal(pairs.g_minus[:7], before[1][:7])
            w = pairs.weights()


def saturated_pairs(model: str = "constant_step", **device):
    """Pairs of which about half have a device above 0.75 of its range."""
    chip = pulsed_chip(dw_min=0.01, stuck_at_min=0.05, **device) if model == "constant_step" \
        else dataclasses.replace(PCM, forward=dataclasses.replace(
            PCM.forward, device=dataclasses.replace(PCM.forward.device, stuck_at_min=0.05)))
    forward = paired(chip).forward
    pairs = draw_pairs(forward, 4000, 3, 1)
    generator = np.random.default_rng(2)
    for g, state in ((pairs.g_plus, pairs.plus), (pairs.g_minus, pairs.minus)):
        free = state.stuck == D.FREE
        g[free] = (state.w_min + generator.uniform(0.0, 1.0, 4000)
                   * (state.w_max - state.w_min))[free]
    return forward, pairs


def test_a_refresh_resets_saturated_pairs_and_reprograms_their_weights():
    forward, pairs = saturated_pairs()
    plus, minus = pairs.fill()
    due = (plus > 0.75) | (minus > 0.75)
    before, g_before = pairs.weights(), (pairs.g_plus.copy(), pairs.g_minus.copy())
    cap = refresh_pulses(forward)
    assert cap == 201  # a device's whole range of 2.0 in pulses of 0.01, and one more
    refreshed, resets, sets = refresh(D, pairs, 0.75, 0.01, cap, *refresh_keys(3, 9, 1))
    assert refreshed == due.sum() > 1000
    free = [state.stuck == D.FREE for state in (pairs.plus, pairs.minus)]
    assert resets == int((due & free[0]).sum() + (due & free[1]).sum())
    # untouched pairs keep their states; a stuck device stays where it was
    np.testing.assert_array_equal(pairs.g_plus[~due], g_before[0][~due])
    np.testing.assert_array_equal(pairs.g_minus[~due], g_before[1][~due])
    for g, state, g0 in ((pairs.g_plus, pairs.plus, g_before[0]),
                         (pairs.g_minus, pairs.minus, g_before[1])):
        stuck = state.stuck != D.FREE
        np.testing.assert_array_equal(g[stuck], g0[stuck])
    # a free pair: one device at its minimum, the other reprogrammed with the weight read,
    # to within one pulse (stochastic rounding): a whole number of pulses of 0.01
    both_free = due & free[0] & free[1]
    after = pairs.weights()
    assert np.all(np.abs(after[both_free] - before[both_free]) < 0.01 + 1e-12)
    rising = before > 0
    low = np.where(rising, pairs.g_minus - pairs.minus.w_min, pairs.g_plus - pairs.plus.w_min)
    np.testing.assert_array_equal(low[both_free], 0.0)
    pulses = np.abs(after[both_free]) / 0.01
    np.testing.assert_allclose(pulses, np.round(pulses), rtol=0, atol=1e-9)
    programmed = due & np.where(rising, free[0], free[1])
    high = np.where(rising, pairs.g_plus - pairs.plus.w_min, pairs.g_minus - pairs.minus.w_min)
    assert sets == int(np.round(high[programmed] / 0.01).sum())


def test_fast_backends_replay_pair_updates_and_refreshes(fast):
    forward, pairs = saturated_pairs("exp_step")
    replayed = dataclasses.replace(pairs, g_plus=pairs.g_plus.copy(),
                                   g_minus=pairs.g_minus.copy())
    generator = np.random.default_rng(4)
    for t in range(3):
        dw = generator.normal(0.0, 0.1, pairs.n)
        assert one_sided_update(D, pairs, dw, 0.02, 31, *keys(t)) == one_sided_update(
            fast.devices, replayed, dw, 0.02, 31, *keys(t))
        fast.assert_replays(replayed.g_plus, pairs.g_plus)
        fast.assert_replays(replayed.g_minus, pairs.g_minus)
    cap = refresh_pulses(forward)
    assert refresh(D, pairs, 0.75, 0.02, cap, *refresh_keys(3, 5, 1)) == refresh(
        fast.devices, replayed, 0.75, 0.02, cap, *refresh_keys(3, 5, 1))
    fast.assert_replays(replayed.g_plus, pairs.g_plus)
    fast.assert_replays(replayed.g_minus, pairs.g_minus)


PAIRED = paired(pulsed_chip(dw_min=0.002, write_noise=0.01, dw_min_dtod=0.2, stuck_at_min=0.02),
                refresh_every=7, refresh_threshold=0.3)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_a_pair_chip_trains_alike_on_every_backend(tmp_path, backend):
    """Noise phase and training with refreshes: the same pulses, refreshes and weights as
    the numpy reference (float64; the products' rounding apart)."""
    if backend == "torch":
        pytest.importorskip("torch")
    runs = {}
    for name in ("numpy", backend):
        trainer = Trainer(spec(PAIRED, backend=name, dtype="float64"), tmp_path / name)
        runs[name] = trainer, trainer.run()
    (reference, summary), (other, other_summary) = runs["numpy"], runs[backend]
    assert reference.chip.refreshes[:, 1].sum() > 0
    np.testing.assert_array_equal(other.chip.refreshes, reference.chip.refreshes)
    np.testing.assert_array_equal(other.chip.pulses, reference.chip.pulses)
    np.testing.assert_allclose(other.chip.params, reference.chip.params, rtol=0, atol=1e-12)
    for a, b in zip(other.chip.pairs, reference.chip.pairs):
        np.testing.assert_allclose(a.g_plus, b.g_plus, rtol=0, atol=1e-12)
    for layer, stats in summary["final"]["array_pairs"].items():
        assert other_summary["final"]["array_pairs"][layer] == pytest.approx(stats, abs=1e-12)


def test_a_pair_run_records_reports_and_resumes_to_the_identical_result(tmp_path, monkeypatch):
    from neurosim.report import write_run_report
    from neurosim.runio import SUMMARY, write_json

    whole = run_spec(spec(PAIRED), tmp_path / "whole")
    resumed = interrupted_then_resumed(monkeypatch, spec(PAIRED), tmp_path / "cut", 25)
    assert resumed["train"] == whole["train"] and resumed["final"] == whole["final"]
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == \
        (tmp_path / "whole" / "metrics.jsonl").read_text()
    pairs = whole["final"]["array_pairs"]
    assert set(pairs) == {"1", "2"}
    checks = (30 + 8) // 7  # programming events: 30 noise steps, one epoch of 8 batches
    assert all(layer["refresh_checks"] == checks for layer in pairs.values())
    assert whole["precondition"]["after"]["array_pairs"]["1"]["refresh_checks"] == 30 // 7
    assert pairs["1"]["pairs_refreshed"] > 0 and pairs["1"]["fill_plus"] > 0
    write_json(tmp_path / "whole" / SUMMARY, whole)
    write_run_report(tmp_path / "whole")
    text = (tmp_path / "whole" / "report.md").read_text()
    assert "## Differential pairs" in text and "| layer | before noise | after noise |" in text


def test_every_forward_read_reads_both_cells_and_the_ledger_books_refreshes(tmp_path):
    single, pair = (make_chip(chip, dims=(64, 12, 10), rule="bp")
                    for chip in (pulsed_chip(dw_min=0.01), paired(pulsed_chip(dw_min=0.01))))
    cells = COUNTER_INDEX["cells_read"]
    for counts in (forward_counts, lambda chip, b: backward_counts(chip, b, RuleCode.BP)):
        a, b = counts(single, 8), counts(pair, 8)
        np.testing.assert_array_equal(b[:, cells], 2 * a[:, cells])
        mask = np.ones(a.shape[1], dtype=bool)
        mask[cells] = False
        np.testing.assert_array_equal(b[:, mask], a[:, mask])
    trainer = Trainer(spec(PAIRED), tmp_path / "run")
    trainer.run()
    chip, ledger = trainer.chip, trainer.chip.ledger.counts
    update = ledger[:, 2].sum(axis=0)  # the update operation, every stage
    devices = 2 * chip.layout[:, 1] * chip.layout[:, 2]
    for name in ("cells_read", "adc_conversions", "digital_ops"):
        assert np.all(update[:, COUNTER_INDEX[name]] >= chip.refreshes[:, 0] * devices)
    np.testing.assert_array_equal(update[:, COUNTER_INDEX["cells_read"]],
                                  chip.refreshes[:, 0] * devices)
    np.testing.assert_array_equal(update[:, COUNTER_INDEX["pulses_down"]], chip.pulses[:, 1])
    assert chip.pulses[:, 1].sum() > 0  # RESETs of the refreshed pairs
    assert ledger[STAGE_INDEX["precondition"], 2][:, COUNTER_INDEX["cells_read"]].sum() > 0


def test_a_pcm_pair_keeps_a_noise_phase_from_dragging_the_weights_to_a_bound(tmp_path):
    """GST PCM is bistable (test_device_symmetry): a noise phase drags its single devices
    down; a pair moved by SET pulses only has no such pull (both devices climb alike)."""
    from test_device_symmetry import noise_phase_drift

    assert noise_phase_drift(PCM, tmp_path / "single") < -0.05
    assert abs(noise_phase_drift(paired(PCM), tmp_path / "pair")) < 0.02


@pytest.mark.parametrize("overrides, field, message", [
    (["forward.update.mode=stochastic"], "forward.pair.mode", "needs update.mode pulsed"),
    (["forward.reference=symmetry_point"], "forward.reference", "use pair or reference"),
    (["forward.pair.mode=none", "forward.pair.refresh_every=5"], "forward.pair.refresh_every",
     "only a differential pair"),
    (["forward.pair.refresh_threshold=1.5"], "forward.pair.refresh_threshold", "<= 1.0"),
])
def test_a_pair_is_refused_where_it_cannot_work(overrides, field, message):
    path = REPO / "hw_configs" / "pcm_gst.yaml"
    with pytest.raises(ConfigError, match=message) as error:
        load_chip(path, ["forward.pair.mode=one_sided", *overrides])
    assert field in str(error.value) and str(path) in str(error.value)


def test_the_memory_bound_counts_both_devices_of_each_pair():
    from test_train import spec_for

    from neurosim.memory import chip_floor_bytes
    from neurosim.pair import PAIR_STATE_BYTES

    base = dataclasses.replace(spec_for(), chip=PCM)
    dims = base.experiment.network.dims
    cells = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    assert (chip_floor_bytes(dataclasses.replace(base, chip=paired(PCM)))
            - chip_floor_bytes(base)) == (D.DEVICE_BYTES + 2 * PAIR_STATE_BYTES) * cells


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_pair_chips_are_one_population_of_separate_runs(tmp_path, backend):
    """Pair chips step one by one inside a population, and each gets its separate run."""
    from test_population import variants_are_one_population_of_separate_runs

    chips = [PAIRED, dataclasses.replace(PAIRED, forward=dataclasses.replace(
        PAIRED.forward, device=dataclasses.replace(PAIRED.forward.device, dw_min_dtod=0.0)))]
    separate = variants_are_one_population_of_separate_runs(chips, backend, tmp_path)
    assert all(s["final"]["array_pairs"]["1"]["refresh_checks"] > 0 for s in separate)


def test_devices_show_says_the_curves_are_of_one_device_of_each_pair(tmp_path, capsys):
    from neurosim.cli import main
    from neurosim.commands.devices import PAIR_NOTE

    assert main(["devices", "show", "pcm_gst", "--out", str(tmp_path), "--devices", "10",
                 "--random-pulses", "20", "--set", "forward.pair.mode=one_sided"]) == 0
    assert capsys.readouterr().out.startswith(PAIR_NOTE)
    assert main(["devices", "show", "pcm_gst", "--out", str(tmp_path), "--devices", "10",
                 "--random-pulses", "20"]) == 0
    assert PAIR_NOTE not in capsys.readouterr().out
