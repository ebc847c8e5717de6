"""Symmetry points and random-sign walks (neurosim.device_curves): the points are the
analytic balance of up and down steps where the model has one, the walk of zero-mean pulses
settles there, and a device with equal steps does not drift."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from conftest import REPO

from neurosim.cli import main
from neurosim.config import DeviceConfig, UpdateConfig, load_chip
from neurosim.device_curves import drift_text, random_sign_walk, range_steps, symmetry_points
from neurosim.devices import draw_device_state, net_response

IDEAL = load_chip(REPO / "hw_configs" / "ideal.yaml")


def pulsed_chip(w_min=-1.0, w_max=1.0, **device):
    """The ideal preset with pulsed devices of ``device``'s fields and bounds."""
    forward = dataclasses.replace(IDEAL.forward, device=DeviceConfig(**device),
                                  update=UpdateConfig(mode="pulsed"), w_min=w_min, w_max=w_max)
    return dataclasses.replace(IDEAL, forward=forward)


def test_linear_step_symmetry_point_is_the_analytic_balance():
    su, sd, gu, gd = 0.005 * 1.1, 0.005 * 0.9, 0.5, 0.8
    chip = pulsed_chip(model="linear_step", dw_min=0.005, up_down=0.1, gamma_up=gu,
                       gamma_down=gd)
    # su (1 - gu w) = sd (1 + gd w)
    points = symmetry_points(chip)
    assert points.stable == pytest.approx(((su - sd) / (su * gu + sd * gd),), abs=1e-9)
    assert points.unstable == ()


@pytest.mark.parametrize("w_min,w_max,up_down", [(-1.0, 1.0, 0.3), (-0.5, 1.5, -0.2)])
def test_soft_bounds_symmetry_point_is_the_analytic_balance(w_min, w_max, up_down):
    chip = pulsed_chip(w_min, w_max, model="soft_bounds", dw_min=0.005, up_down=up_down)
    su, sd = 0.005 * (1 + up_down), 0.005 * (1 - up_down)
    # su (1 - w/M) = sd (1 - w/m)
    expected = (su - sd) / (su / w_max - sd / w_min)
    assert symmetry_points(chip).stable == pytest.approx((expected,), abs=1e-9)


def test_exp_step_with_mirrored_labels_balances_at_the_centre():
    """LTP label a and LTD label -a give the same curve traced both ways: w -> -w maps an up
    pulse onto a down pulse, so the balance is the middle of the range."""
    chip = pulsed_chip(model="exp_step", levels=64, nonlinearity_ltp=1.5,
                       nonlinearity_ltd=-1.5)
    assert symmetry_points(chip).stable == pytest.approx((0.0,), abs=1e-9)


@pytest.mark.parametrize("preset", ["rram_agsi", "pcm_gst", "fefet_hzo", "rram_taox"])
def test_exp_step_symmetry_points_are_where_one_up_and_one_down_pulse_cancel(preset):
    chip = load_chip(REPO / "hw_configs" / f"{preset}.yaml")
    points = symmetry_points(chip)
    state = draw_device_state(dataclasses.replace(chip.forward.device, dw_min_dtod=0.0),
                              chip.forward.w_min, chip.forward.w_max, 1, 0, 0)
    step = points.step
    for w in points.stable + points.unstable:
        assert abs(net_response(state, np.zeros(1, dtype=int), np.array([w]))[0]) < 1e-12
    for w in points.stable:  # up wins below, down above
        below, above = net_response(state, np.zeros(2, dtype=int),
                                    np.array([w - step / 10, w + step / 10]))
        assert below > 0 > above
    for w in points.unstable:
        below, above = net_response(state, np.zeros(2, dtype=int),
                                    np.array([w - step / 10, w + step / 10]))
        assert below < 0 < above
    # stable and unstable points alternate along the range, a stable one at each end
    kinds = sorted([(w, "s") for w in points.stable] + [(w, "u") for w in points.unstable])
    assert "".join(k for _, k in kinds) == "s" + "us" * len(points.unstable)


def test_devices_with_equal_steps_are_neutral_and_unequal_constant_steps_drift_to_a_bound():
    assert symmetry_points(IDEAL).neutral
    assert symmetry_points(pulsed_chip(model="constant_step", levels=100)).neutral
    assert symmetry_points(pulsed_chip(model="constant_step", levels=100)).text() == \
        "none (no drift)"
    upward = symmetry_points(pulsed_chip(model="constant_step", levels=100, up_down=0.2))
    assert [upward.describe(w) for w in upward.stable] == ["w_max"]
    downward = symmetry_points(pulsed_chip(model="constant_step", levels=100, up_down=-0.2))
    assert [downward.describe(w) for w in downward.stable] == ["w_min"]


@pytest.mark.parametrize("start", [-0.8, 0.0, 0.8])
def test_random_sign_pulses_drive_the_weights_to_the_stable_symmetry_point(start):
    """Soft bounds with small steps: r(w) ~ -k (w - w*) with k ~ 2 dw_min, so the walk
    relaxes in ~1/k = 125 pulses and its spread is ~sqrt(dw_min / 4) = 0.03; after 3,000
    pulses the mean of 400 devices sits at w* from either side."""
    chip = pulsed_chip(model="soft_bounds", dw_min=0.004, up_down=0.3)
    expected = symmetry_points(chip).stable[0]
    assert expected > 0.25  # far from the start at 0: the test can tell
    walk = random_sign_walk(chip, n_devices=400, n_pulses=3000, start=start)
    assert walk.mean[0] == pytest.approx(start)
    assert walk.mean[-1] == pytest.approx(expected, abs=0.01)
    assert walk.std[-1] < 0.06


def test_random_sign_pulses_leave_a_device_with_equal_steps_where_it_was():
    """Equal constant steps: the walk is a fair one (clipped at symmetric bounds), so its
    mean stays at 0 within sampling error while its spread grows as sqrt(pulses) dw_min."""
    chip = pulsed_chip(model="constant_step", levels=200)
    walk = random_sign_walk(chip, n_devices=2000, n_pulses=400)
    sem = walk.std[1:] / np.sqrt(2000)
    assert np.all(np.abs(walk.mean[1:]) < 5 * sem)
    assert walk.std[400] == pytest.approx(np.sqrt(400) * 0.01, rel=0.1)


def test_random_sign_walk_is_keyed_by_its_seed():
    chip = load_chip(REPO / "hw_configs" / "rram_taox.yaml")
    first, again = (random_sign_walk(chip, n_devices=50, n_pulses=30, seed=3) for _ in range(2))
    other = random_sign_walk(chip, n_devices=50, n_pulses=30, seed=4)
    np.testing.assert_array_equal(first.mean, again.mean)
    assert not np.array_equal(first.mean, other.mean)
    assert len(random_sign_walk(chip, n_devices=5).pulse) == range_steps(chip) + 1


def test_devices_list_shows_each_presets_symmetry_point_and_drift(capsys):
    assert main(["devices", "list"]) == 0
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and not line.startswith("| preset")}
    for name in ("pcm_gst", "ideal", "rram_agsi"):
        chip = load_chip(REPO / "hw_configs" / f"{name}.yaml")
        assert cells[name][8] == symmetry_points(chip).text()
        assert cells[name][9] == drift_text(chip)
    assert cells["ideal"][9] == "–"


def test_devices_show_writes_the_random_sign_walk(tmp_path, capsys):
    assert main(["devices", "show", "rram_agsi", "--out", str(tmp_path), "--devices", "20",
                 "--random-pulses", "40"]) == 0
    png, table = tmp_path / "rram_agsi_random_sign.png", tmp_path / "rram_agsi_random_sign.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table.open()))
    assert [int(r["pulse"]) for r in rows] == list(range(41))
    assert all(float(r["p10_w"]) <= float(r["p90_w"]) for r in rows)
    assert float(rows[0]["std_w"]) == 0.0  # every device starts at w = 0
    out = capsys.readouterr().out
    chip = load_chip(REPO / "hw_configs" / "rram_agsi.yaml")
    assert f"symmetry point of the nominal device: {symmetry_points(chip).text()}" in out
    assert str(png) in out


def noise_phase_drift(chip, run_dir, lr: float = 1e-2) -> float:
    """Mean first-layer weight change of ``chip`` (a ChipConfig) over a 300-step noise phase
    at ``lr`` (numpy backend, the tiny network of test_train), run in ``run_dir``."""
    from test_train import spec_for

    from neurosim.train import Trainer

    spec = spec_for(simulation__backend="numpy", train__epochs=0, precondition__steps=300,
                    optimizer__lr=lr, precondition__log_every=100,
                    precondition__checkpoint_every=300)
    trainer = Trainer(dataclasses.replace(spec, chip=chip), run_dir)
    before = trainer.chip.weights(0).astype(np.float64).mean()
    trainer.run()
    return trainer.chip.weights(0).astype(np.float64).mean() - before


@pytest.mark.parametrize("preset", ["pcm_gst", "rram_agsi"])
def test_a_noise_phase_drifts_asymmetric_devices_towards_their_attractor(preset, tmp_path):
    """A noise phase's updates have random sign, so on devices whose down steps outweigh
    their up steps around w = 0 (w = 0 lies in the basin of a stable point below it) the
    first layer's weights drift down as the random-sign walk does; on the ideal chip the
    same noise phase leaves their mean where it was."""
    chip = load_chip(REPO / "hw_configs" / f"{preset}.yaml")
    assert symmetry_points(chip).attractor(0.0) < 0
    assert random_sign_walk(chip).mean[-1] < -0.1
    assert noise_phase_drift(chip, tmp_path / preset) < -0.05
    assert abs(noise_phase_drift(IDEAL, tmp_path / "ideal")) < 0.01


def test_the_attractor_of_a_weight_is_the_stable_point_of_its_basin():
    pcm = symmetry_points(load_chip(REPO / "hw_configs" / "pcm_gst.yaml"))
    (split,) = pcm.unstable
    low, high = pcm.stable
    assert pcm.attractor(split - 0.01) == low and pcm.attractor(split + 0.01) == high
    agsi = symmetry_points(load_chip(REPO / "hw_configs" / "rram_agsi.yaml"))
    assert agsi.attractor(-0.9) == agsi.attractor(0.9) == agsi.stable[0]
    assert symmetry_points(IDEAL).attractor(0.0) is None
