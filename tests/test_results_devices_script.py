"""docs/results-devices.md's section on where random updates drive each technology's devices:
read from the chips (symmetry point, random-sign drift) and the runs (first array's weights,
the noise phase's effect), and whether the drift separates helped from hurt presets."""

from __future__ import annotations

import dataclasses
import sys
from types import SimpleNamespace

from conftest import REPO
from neurosim.config import load_chip
from neurosim.device_curves import drift_text, symmetry_points

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_devices  # noqa: E402


def run(auc: float, before: float = 0.0, after: float = 0.0):
    return SimpleNamespace(summary={
        "train": {"auc_first_epoch": auc},
        "precondition": {when: {"array_weights": {"1": {"mean": mean, "std": 0.3}}}
                         for when, mean in (("before", before), ("after", after))}})


def rules(fa_aucs, noise_aucs, after):
    return {"bp": {s: run(0.8) for s in range(2)},
            "fa": {s: run(a) for s, a in enumerate(fa_aucs)},
            "fa_noise": {s: run(a, after=m) for s, (a, m) in enumerate(zip(noise_aucs, after))}}


def chips(*names):
    return {name: load_chip(REPO / "hw_configs" / f"{name}.yaml") for name in names}


def test_the_drift_section_reads_chips_and_runs_and_names_the_separation():
    presets = {"ideal": rules([0.6, 0.6], [0.8, 0.8], [0.0, 0.0]),
               "epiram": rules([0.6, 0.62], [0.78, 0.79], [-0.01, 0.01]),
               "pcm_gst": rules([0.64, 0.63], [0.6, 0.61], [-0.2, -0.22])}
    lines = results_devices.drift_section(presets, chips(*presets))
    text = "\n".join(lines)
    assert "| ideal |" not in text  # ideally updated: no pulses, no drift
    pcm = load_chip(REPO / "hw_configs" / "pcm_gst.yaml")
    assert (f"| pcm_gst | {symmetry_points(pcm).text()} | {drift_text(pcm)} | "
            "0.000 ± 0.000 | -0.210 ± 0.014 | 0/2 |") in text
    assert "| epiram | +0.00 | " in text and "| 2/2 |" in text
    assert ("The noise phase lowers FA's AUC in every seed on pcm_gst and raises it in every "
            "seed on epiram. The random-sign drift separates the two") in text


def test_the_drift_section_says_when_the_drift_does_not_separate():
    """PCM drifts further than Ag:a-Si in one range's steps; with PCM helped and Ag:a-Si
    hurt, the drift cannot be what separates them, and the section says so."""
    presets = {"pcm_gst": rules([0.6, 0.6], [0.8, 0.8], [-0.1, -0.1]),
               "rram_agsi": rules([0.64, 0.63], [0.6, 0.61], [-0.2, -0.22])}
    drifts = {name: abs(float(results_devices.random_sign_walk(chip).mean[-1]))
              for name, chip in chips(*presets).items()}
    assert drifts["pcm_gst"] > drifts["rram_agsi"]
    text = "\n".join(results_devices.drift_section(presets, chips(*presets)))
    assert "does not separate the two groups" in text


def test_the_zero_shifted_conditions_run_their_preset_with_references():

    from neurosim.config import load_experiment

    experiment = results_devices.EXPERIMENT
    chips_of = results_devices.study_chips(load_experiment(experiment), experiment)
    shifted = [name for name in chips_of if name.endswith("_zero_shifted")]
    assert sorted(shifted) == ["fefet_hzo_zero_shifted", "pcm_gst_zero_shifted",
                               "rram_agsi_zero_shifted", "rram_taox_zero_shifted"]
    for name in shifted:
        base = chips_of[name.removesuffix("_zero_shifted")]
        assert chips_of[name] == dataclasses.replace(
            base, forward=dataclasses.replace(base.forward, reference="symmetry_point"))


def test_the_zero_shift_section_pairs_each_preset_with_its_zero_shifted_chip():
    """Rows pair a preset with its zero-shifted chip; the sentences name the presets that
    zero-shifting turned from hurt to helped and those it did not; presets are left out of
    the drift section's separation when they read against references."""
    from neurosim.reference import with_references

    loaded = chips("rram_agsi", "pcm_gst")
    loaded.update({f"{name}_zero_shifted": with_references(chip)
                   for name, chip in list(loaded.items())})
    hurt = rules([0.64, 0.63], [0.6, 0.61], [-0.2, -0.22])
    presets = {"rram_agsi": hurt, "rram_agsi_zero_shifted": rules([0.6, 0.6], [0.8, 0.8],
                                                                   [0.01, 0.03]),
               "pcm_gst": hurt, "pcm_gst_zero_shifted": rules([0.6, 0.6], [0.5, 0.8],
                                                               [0.0, 0.0])}
    text = "\n".join(results_devices.zero_shift_section(presets, loaded))
    shifted = loaded["rram_agsi_zero_shifted"]
    assert (f"| rram_agsi | -0.34 | [-0.66, +1.34] | {drift_text(loaded['rram_agsi'])} | "
            "-0.210 ± 0.014 | 0.635 ± 0.007 | 0.605 ± 0.007 | 0/2 | "
            f"{drift_text(shifted)} | 0.020 ± 0.014 | 0.600 ± 0.000 | 0.800 ± 0.000 | 2/2 |"
            ) in text
    assert "| pcm_gst | w_min | [-0.02, +1.98] |" in text
    assert "in every seed on rram_agsi." in text
    assert "It does not rescue the noise phase on pcm_gst" in text
    assert ("| rram_agsi | 0.800 → 0.800 | 0.635 → 0.600 | 0.635 (FA) | 0.800 | 2/2 |"
            in text)
    assert "| pcm_gst | 0.800 → 0.800 | 0.635 → 0.600 | 0.635 (FA) | 0.650 | 1/2 |" in text
    drift = "\n".join(results_devices.drift_section(presets, loaded))
    assert "| rram_agsi |" in drift and "zero_shifted" not in drift


def test_the_pair_conditions_run_their_preset_with_a_pair_per_weight():
    from neurosim.config import load_experiment

    experiment = results_devices.EXPERIMENT
    chips_of = results_devices.study_chips(load_experiment(experiment), experiment)
    pairs = sorted(name for name in chips_of if name.endswith("_pair"))
    assert pairs == ["pcm_gst_pair", "rram_agsi_pair"]
    for name in pairs:
        base = chips_of[name.removesuffix("_pair")]
        assert chips_of[name] == dataclasses.replace(base, forward=dataclasses.replace(
            base.forward, pair=dataclasses.replace(base.forward.pair, mode="one_sided")))


def test_the_pair_section_compares_each_preset_with_its_pair_chip():
    """Rows: each rule's AUC, one device per weight → a pair; the noise phase's effect
    both ways; the first array after noise; pulses and refreshes; the sentences name where
    the pairs turned the noise phase into a gain and where they did not; the drift section
    leaves pair chips out."""
    loaded = chips("rram_agsi", "pcm_gst")
    for name, chip in list(loaded.items()):
        loaded[f"{name}_pair"] = dataclasses.replace(chip, forward=dataclasses.replace(
            chip.forward, pair=dataclasses.replace(chip.forward.pair, mode="one_sided")))

    def costed(presets, pulses, refreshed):
        for seeds in presets.values():
            for seed in seeds.values():
                seed.summary["final"] = {
                    "pulses_up": [pulses, 0], "pulses_down": [0, 10],
                    "array_pairs": {"1": {"pairs_refreshed": refreshed},
                                    "2": {"pairs_refreshed": 1}}}
                seed.summary["ledger"] = {"energy_pj": {"components": {
                    "cell_read": pulses * 1e3, "write": 2e6, "digital": 1e9}}}
        return presets

    hurt = rules([0.64, 0.63], [0.6, 0.61], [-0.2, -0.22])
    presets = {"rram_agsi": costed(hurt, 1000, 0),
               "rram_agsi_pair": costed(rules([0.6, 0.6], [0.8, 0.8], [0.01, 0.03]), 3000, 40),
               "pcm_gst": costed(rules([0.64, 0.63], [0.6, 0.61], [-0.2, -0.22]), 1000, 0),
               "pcm_gst_pair": costed(rules([0.6, 0.6], [0.5, 0.8], [0.0, 0.0]), 2000, 9)}
    text = "\n".join(results_devices.pair_section(presets, loaded))
    assert ("| rram_agsi | 0.800 ± 0.000 → 0.800 ± 0.000 | 0.635 ± 0.007 → 0.600 ± 0.000 | "
            "0.605 ± 0.007 → 0.800 ± 0.000 | 0/2 | 2/2 | -0.210 ± 0.014 → 0.020 ± 0.014 | "
            "1.01e+03 → 3.01e+03 | 3 → 5 | 41 |") in text
    assert "| pcm_gst |" in text and "| 0/2 | 1/2 |" in text
    assert "Every 100 programming events the pairs with a device above 0.75" in text
    assert "raises FA's first-epoch AUC in every seed on rram_agsi, where" in text
    assert "still does not raise FA's AUC in every seed on pcm_gst." in text
    assert "zero-shifted" not in text  # no zero-shifted runs to compare with
    from neurosim.reference import with_references

    presets["pcm_gst_zero_shifted"] = rules([0.6, 0.6], [0.7, 0.7], [0.0, 0.0])
    loaded["pcm_gst_zero_shifted"] = with_references(loaded["pcm_gst"])
    text = "\n".join(results_devices.pair_section(presets, loaded))
    assert ("Pairs against zero-shifting (AUC means over seeds, BP / FA + noise): pcm_gst: "
            "pairs 0.800 / 0.650, zero-shifted 0.800 / 0.700.") in text
    drift = "\n".join(results_devices.drift_section(presets, loaded))
    assert "| rram_agsi |" in drift and "_pair" not in drift
