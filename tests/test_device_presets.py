"""Chip presets and ``neurosim devices``: every preset loads, builds a chip, trains by
pulses within its devices' bounds, and shows a response curve that follows its model."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from conftest import REPO

from neurosim.cli import main
from neurosim.config import DeviceConfig, load_chip
from neurosim.device_curves import response_curve
from neurosim.devices import draw_device_state, mean_response

PRESETS = sorted(p.stem for p in (REPO / "hw_configs").glob("*.yaml"))


def test_the_published_presets_are_all_shipped():
    assert set(PRESETS) >= {"ideal", "rram_taox", "rram_agsi", "pcm_gst", "epiram", "fefet_hzo",
                            "ecram"}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_cites_its_source(name):
    chip = load_chip(REPO / "hw_configs" / f"{name}.yaml")
    assert chip.source and chip.description
    text = (REPO / "hw_configs" / f"{name}.yaml").read_text()
    assert text.startswith("#")  # the file explains its numbers


def test_devices_list_prints_every_preset(capsys):
    assert main(["devices", "list"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"| {name} |" in out


@pytest.mark.parametrize("name", ["rram_agsi", "ecram"])
def test_devices_show_writes_curve_and_table(tmp_path, capsys, name):
    assert main(["devices", "show", name, "--out", str(tmp_path), "--devices", "20"]) == 0
    png, table = tmp_path / f"{name}_response.png", tmp_path / f"{name}_response.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table.open()))
    levels = load_chip(REPO / "hw_configs" / f"{name}.yaml").forward.device.levels
    assert len(rows) == 2 * levels + 1
    assert str(png) in capsys.readouterr().out


def test_unknown_preset_is_a_one_line_error(capsys):
    assert main(["devices", "show", "unobtainium"]) == 2
    assert "must be a preset" in capsys.readouterr().err


def test_nominal_exp_step_curve_spans_the_range_in_levels_pulses():
    chip = load_chip(REPO / "hw_configs" / "rram_taox.yaml")
    curve = response_curve(chip, n_devices=10)
    levels = chip.forward.device.levels
    assert curve.nominal[0] == pytest.approx(-1.0)
    assert curve.nominal[levels] == pytest.approx(1.0, abs=1e-9)
    assert curve.nominal[2 * levels] == pytest.approx(-1.0, abs=1e-9)
    assert np.all(np.diff(curve.nominal[:levels + 1]) > 0)
    assert np.all(np.diff(curve.nominal[levels:]) < 0)
    assert curve.std[levels // 2] > 0  # the population is noisy


def test_nominal_constant_step_curve_is_linear():
    chip = load_chip(REPO / "hw_configs" / "ideal.yaml")
    device = DeviceConfig(model="constant_step", levels=50)
    chip = dataclasses.replace(chip, forward=dataclasses.replace(chip.forward, device=device))
    curve = response_curve(chip, n_devices=5)
    np.testing.assert_allclose(np.diff(curve.nominal[:51]), 2.0 / 50, rtol=1e-9)
    np.testing.assert_allclose(curve.mean, curve.nominal, atol=1e-12)  # no noise configured


def test_ecram_preset_has_aihwkits_ecram_response():
    """aihwkit's EcRamPresetDevice (LinearStepDevice, mean_bound_reference): range
    [-0.8276, 1.1724], dw_min 0.002, step dw_min (1 - 0.1153) up at w_max and
    dw_min (1 - 0.5085) down at w_min, equal up and down steps at w = 0."""
    chip = load_chip(REPO / "hw_configs" / "ecram.yaml")
    forward = chip.forward
    nominal = dataclasses.replace(forward.device, dw_min_dtod=0.0, up_down_dtod=0.0,
                                  w_min_dtod=0.0, w_max_dtod=0.0)
    state = draw_device_state(nominal, forward.w_min, forward.w_max, 3, seed=0, layer=0)
    assert (forward.w_min, forward.w_max) == (-0.8276, 1.1724)
    assert state.dw_min == pytest.approx(0.002)
    devices = np.arange(3)
    w = np.array([forward.w_max, forward.w_min, 0.0])
    up = mean_response(state, devices, w, np.ones(3, dtype=bool))
    down = mean_response(state, devices, w, np.zeros(3, dtype=bool))
    assert up[0] == pytest.approx(0.002 * (1 - 0.1153), rel=1e-4)
    assert down[1] == pytest.approx(-0.002 * (1 - 0.5085), rel=1e-4)
    assert up[2] == pytest.approx(-down[2])


def test_devices_list_says_whose_write_pulse_each_preset_is_charged(capsys):
    """Ag:a-Si is charged NeuroSim's own pulses (3.2 V / 2.8 V, 300 us, 38.5 nS); a preset
    without its own pulse is marked as charged TaOx's default."""
    assert main(["devices", "list"]) == 0
    lines = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and not line.startswith("| preset")}
    assert "| 118 / 90.5 |" in lines["rram_agsi"]
    assert "| 1.28 / 1.28 (TaOx default) |" in lines["rram_taox"]


def test_devices_list_shows_only_the_on_off_and_spreads_a_preset_gives(capsys):
    """ECRAM's source gives no conductances: no on/off (the defaults showed 10.0 as its);
    its d2d column lists every spread it draws, not only dw_min's (audit)."""
    assert main(["devices", "list"]) == 0
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and not line.startswith("| preset")}
    assert cells["ecram"][5] == "–" and cells["ideal"][5] == "–"
    assert cells["rram_agsi"][5] == "12.5"
    assert cells["ecram"][7] == "step 0.1, w_min 0.05, w_max 0.05, up_down 0.01"
