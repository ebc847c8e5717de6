"""The script that regenerates docs/results-noise-length.md runs end to end (a tiny study of
its own), reads each run's noise phase from the run's saved config, checks that a shorter
noise phase is the longer one's beginning, and the shipped study's conditions differ only in
chip and noise phase."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import yaml

from conftest import REPO
from neurosim.config import expand_runs, load_chip, load_experiment
from neurosim.device_curves import drift_text, symmetry_points

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_noise_length  # noqa: E402
from results_core import load_runs  # noqa: E402
from results_devices import by_preset  # noqa: E402

EXPERIMENT = REPO / "experiments" / "noise_length.yaml"
FAST = {"name": "adam", "lr": 0.05}


def tiny_study(tmp_path):
    """The shipped study's setting on digits, a small network and short noise phases."""
    noisy = lambda steps, **more: {"chip": "ideal", "precondition.enabled": True,
                                   "precondition.steps": steps, **more}
    experiment = yaml.safe_load(EXPERIMENT.read_text())
    experiment.update(
        data={"dataset": "digits", "train_size": 256, "test_size": 64},
        network={"dims": [784, 16, 10], "activation": "relu"},
        optimizer={"name": "adam", "lr": 0.01}, seeds=[0, 1],
        train={"epochs": 3, "batch_size": 16},
        conditions={"ideal-fa": {"chip": "ideal"}, "ideal-noise_20": noisy(20),
                    "ideal-noise_40": noisy(40),
                    "ideal-fast_noise_20": noisy(20, **{"precondition.optimizer": FAST})})
    experiment["precondition"].update(n_examples=128, log_every=10, batch_size=16)
    experiment["evaluation"].update(fractional_epochs=[0.25, 0.5, 0.75], points_per_epoch=4,
                                    train_probe_size=64, noise_probe_size=64,
                                    energy_target=0.5)
    path = tmp_path / "noise_length.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("noise_length")
    experiment = tiny_study(tmp_path)
    doc = tmp_path / "results-noise-length.md"
    patch = pytest.MonkeyPatch()
    patch.setattr(results_noise_length, "EXPERIMENT", experiment)
    patch.setattr(sys, "argv", ["results_noise_length.py", "--out", str(tmp_path / "runs"),
                                "--doc", str(doc)])
    try:
        assert results_noise_length.main() == 0
    finally:
        patch.undo()
    return tmp_path, doc


def test_results_noise_length_regenerates_a_document(study):
    tmp_path, doc = study
    text = doc.read_text()
    assert "## ideal\n" in text and "from 8 runs in" in text
    for condition in ("no noise phase (FA)", "20 noise steps", "40 noise steps",
                      "20 noise steps at lr 0.05"):
        assert text.count(f"| {condition} | ") == 2  # a speed row and an energy row
    # No noise first, then by learning rate and length.
    assert (text.index("| no noise phase (FA) | ") < text.index("| 20 noise steps | ")
            < text.index("| 40 noise steps | ") < text.index("| 20 noise steps at lr 0.05 | "))
    assert text.count("paired t-test, n=2") == 3  # each noise phase's AUC against FA's
    assert "**Does the noise phase pay for itself?**" in text
    for condition in ("20 noise steps", "40 noise steps", "20 noise steps at lr 0.05"):
        assert text.count(f"- **{condition}**: ") == 1  # its verdict
    assert "## What stands out\n\n- **ideal**: " in text
    assert "| 20 noise steps | 20 | 0.2 | " in text and "| 20 noise steps at lr 0.05 | 20 | 1 | " in text
    assert "(initial)" in text
    figure = tmp_path / "figures" / "results-noise-length" / "ideal_energy_by_noise_length.png"
    assert figure.stat().st_size > 0
    assert "](figures/results-noise-length/ideal_energy_by_noise_length.png)" in text


def test_a_noise_phase_is_read_from_the_run_and_orders_the_conditions(study):
    tmp_path, _ = study
    conditions = by_preset(load_runs(tmp_path / "runs"))["ideal"]
    phases = {name: results_noise_length.noise_phase(runs[0])
              for name, runs in conditions.items()}
    assert phases["noise_20"] == (20, 0.01) and phases["noise_40"] == (40, 0.01)
    assert phases["fast_noise_20"] == (20, 0.05)
    steps, lr = phases["fa"]
    assert steps == 0 and lr != lr  # nan: no noise phase
    assert results_noise_length.ordered(conditions) == ["fa", "noise_20", "noise_40",
                                                        "fast_noise_20"]


def test_a_noise_phase_that_does_not_begin_as_the_shorter_one_is_refused(study):
    tmp_path, _ = study
    conditions = by_preset(load_runs(tmp_path / "runs"))["ideal"]
    results_noise_length.check_prefixes("ideal", conditions)  # the real runs agree
    long = conditions["noise_40"][1]
    records = [dict(r) for r in long.noise]
    records[1]["probe_loss"] += 1e-9
    conditions["noise_40"][1] = dataclasses.replace(long, noise=records)
    with pytest.raises(ValueError, match=r"ideal seed 1: ideal-noise_40 seed 1.s noise phase does "
                                         r"not begin as ideal-noise_20 seed 1.s \(step 10\)"):
        results_noise_length.check_prefixes("ideal", conditions)


def test_the_study_conditions_differ_only_in_chip_and_noise_phase():
    """Per chip, every condition is FA with the same schedule; they differ only in whether
    the noise phase runs, its length and its optimizer; the chips' noise phases are the
    same."""
    experiment = load_experiment(EXPERIMENT)
    specs = {spec.condition: spec for spec in expand_runs(experiment) if spec.seed == 0}
    chips = {name.rsplit("-", 1)[0] for name in specs}
    assert chips == {"ideal", "rram_taox", "pcm_gst"}
    phases = {}
    for chip in chips:
        base = specs[f"{chip}-fa"]
        assert not base.experiment.precondition.enabled
        mine = set()
        for name, spec in specs.items():
            if not name.startswith(chip + "-") or spec is base:
                continue
            pre = spec.experiment.precondition
            assert spec.experiment.rule == "fa" and spec.chip == base.chip and pre.enabled
            assert dataclasses.replace(spec.experiment, precondition=base.experiment.
                                       precondition) == base.experiment
            mine.add((pre.steps, pre.optimizer))
        phases[chip] = mine
    assert phases["ideal"] == phases["rram_taox"] == phases["pcm_gst"]
    assert len(phases["ideal"]) == 10


def synthetic_rows(phases):
    """Rows as :func:`results_noise_length.condition_rows` makes them, for noise phases
    ``(steps, lr, per-seed energy to target in mJ, outcomes, θ)``; FA first (steps 0)."""
    from types import SimpleNamespace

    rows = []
    for steps, lr, total, outcomes, theta in phases:
        pre = {"enabled": bool(steps), "steps": steps,
               "optimizer": {"name": "adam", "lr": lr} if lr != 1e-4 else None}
        run = SimpleNamespace(summary={"config": {"optimizer": {"lr": 1e-4},
                                                  "precondition": pre}})
        rows.append({"runs": [run], "steps": steps, "lr": lr if steps else float("nan"),
                     "total": [t * 1e9 for t in total], "outcomes": outcomes, "theta": theta,
                     "auc": [0.5 + steps / 1e4] * 2, "norm": [1.0 + steps / 1e3] * 2})
    return rows


def test_what_stands_out_names_the_phases_that_pay_and_the_cheapest():
    rows = synthetic_rows([
        (0, 1e-4, [60.0, 58.0], [], [90.0, 91.0]),
        (500, 1e-4, [70.0, 72.0], ["does not pay"] * 2, [89.0, 88.0]),
        (4000, 1e-4, [130.0, 140.0], ["does not pay"] * 2, [35.0, 36.0]),
        (250, 1e-3, [57.0, 57.0], ["pays", "brackets overlap"], [66.0, 67.0]),
        (500, 1e-3, [50.0, 48.0], ["pays", "pays"], [38.0, 37.0]),
        (1000, 1e-3, [float("nan"), 55.0], ["pays", "does not pay"], [28.0, 27.0])])
    first, second = results_noise_length.findings("chip", rows, 0.9)
    assert first == ("- **chip**: 500 noise steps at lr 0.001 pays for itself in every seed; at "
                     "the training learning rate no length pays in any seed. Lowest mean "
                     "energy to 90 % with a noise phase: 500 noise steps at lr 0.001, 49.0 mJ "
                     "against FA's 59.0 mJ.")
    # steps × lr: 500 at 1e-3 is 0.5 and 4,000 at 1e-4 is 0.4, the nearest fast / slow pair.
    assert second == ("  Alignment against steps × lr: 500 noise steps at lr 0.001 (steps × lr "
                      "0.5) leaves 37.5 ± 0.7°, 4,000 noise steps (0.4) 35.5 ± 0.7°, with 0.12 "
                      "of its steps and noise-phase energy.")
    nan = float("nan")
    rows.append(synthetic_rows([(2000, 1e-3, [nan, nan], ["does not pay"] * 2, [20.0, 20.0])])[0])
    assert results_noise_length.findings("chip", rows, 0.9)[1] == (
        "  2,000 noise steps at lr 0.001 leaves the chip short of 90 % in every seed, where FA "
        "reaches it: first-epoch AUC 0.700 ± 0.000 against FA's 0.500 ± 0.000; ‖W_1‖₂ when "
        "data training starts 3.00 ± 0.00 against FA's 1.00 ± 0.00.")
    rows[1]["outcomes"] = ["pays", "does not pay"]  # a training-rate phase paid once
    assert "no length pays" not in results_noise_length.findings("chip", rows, 0.9)[0]
    rows[0]["total"] = [float("nan"), 58e9]  # FA did not reach it: no lowest energy against it
    assert "Lowest mean" not in results_noise_length.findings("chip", rows, 0.9)[0]


def test_a_pulsed_chips_section_says_where_random_updates_drive_its_devices():
    pcm = load_chip(REPO / "hw_configs" / "pcm_gst.yaml")
    text = results_noise_length.device_drift(pcm)
    assert f"symmetry point: {symmetry_points(pcm).text()};" in text
    assert f"leave them at w = {drift_text(pcm)}" in text
    assert results_noise_length.device_drift(load_chip(REPO / "hw_configs" / "ideal.yaml")) == ""
