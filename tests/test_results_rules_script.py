"""The script that regenerates docs/results-rules.md runs end to end (tiny settings), and its
conditions differ only in chip, rule and noise phase."""

from __future__ import annotations

import dataclasses
import sys

from conftest import REPO, TINY_STUDY
from neurosim.config import expand_runs, load_experiment

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_rules  # noqa: E402

EXPERIMENT = REPO / "experiments" / "rules.yaml"


def test_results_rules_regenerates_a_document(tmp_path, monkeypatch):
    doc = tmp_path / "results-rules.md"
    monkeypatch.setattr(sys, "argv", [
        "results_rules.py", "--out", str(tmp_path / "runs"), "--doc", str(doc), *TINY_STUDY])
    assert results_rules.main() == 0
    text = doc.read_text()
    for heading in ("## ideal\n", "## rram_taox\n", "## ideal_2_hidden\n"):
        assert heading in text
    for rule in ("FA", "DFA", "SDFA", "DRTP"):
        assert text.count(f"- **{rule}** (") == 3
        assert text.count(f"| {rule} | ") == 9  # AUC, accuracy and energy rows per section
    assert text.count("| rule | common level L | energy to L | ") == 3
    # [784, 16, 10]: every rule holds 784 + 16 inputs x batch 64 x 4 bytes; two hidden
    # layers: the locked rules 784 + 100 + 100, DRTP 784 + 100
    assert text.count("Activation buffer a training step needs (the forward values its "
                      "updates use, batch 64, the chip's digital words): BP, FA, DFA, SDFA, "
                      "DRTP 204.8 kB. ") == 2
    assert "BP, FA, DFA, SDFA 251.9 kB; DRTP 226.3 kB. " in text
    assert text.count("| BP | ") == 6
    assert text.count("Holm-adjusted p = ") == 3 * 4  # each section's 4 rules
    assert "paired t-test, n=2" in text
    assert "from 54 runs in" in text
    assert "network [784, 16, 10]. " in text and "network [784, 100, 100, 10]. " in text
    assert "W_2 and the feedback that stands in for them: FA B_2ᵀ; DFA B_1ᵀ; SDFA B_1ᵀ; " \
           "DRTP −B_1ᵀ." in text
    assert "W_3 and the feedback that stands in for them: FA B_3ᵀ; DFA B_2ᵀ" in text


def test_the_study_conditions_differ_only_in_chip_rule_and_noise():
    """Per chip and rule, the two conditions differ only in the noise phase being on; every
    noise phase is the same, and BP runs without one."""
    experiment = load_experiment(EXPERIMENT)
    specs = {spec.condition: spec for spec in expand_runs(experiment) if spec.seed == 0}
    chips = {name.rsplit("-", 1)[0] for name in specs}
    assert chips == {"ideal", "rram_taox", "ideal_2_hidden"}
    phases = set()
    for chip in chips:
        assert not specs[f"{chip}-bp"].experiment.precondition.enabled
        for rule in results_rules.local_rules(
                [name.rsplit("-", 1)[1] for name in specs if name.startswith(chip + "-")]):
            without, noisy = specs[f"{chip}-{rule}"], specs[f"{chip}-{rule}_noise"]
            assert without.experiment.rule == noisy.experiment.rule == rule
            assert without.chip == noisy.chip
            assert not without.experiment.precondition.enabled
            assert noisy.experiment.precondition.enabled
            assert dataclasses.replace(noisy.experiment, precondition=without.experiment.
                                       precondition) == without.experiment
            phases.add(noisy.experiment.precondition)
    assert len(phases) == 1
    assert results_rules.local_rules(["bp", "fa", "fa_noise", "dfa", "sdfa", "sdfa_noise"]) == [
        "fa", "sdfa"]


def test_energy_is_compared_at_the_accuracy_every_run_reaches():
    """Without noise the runs reach 80 % (the common level: the noise runs reach 90 %) at
    their third evaluation, 20 pJ; with noise at their second, 10 pJ of data training after
    a noise phase of 100 pJ (5 pJ: the noise pays)."""
    from types import SimpleNamespace

    def run(accuracies, noise_pj):
        records = [{"phase": "train", "step": step, "test_accuracy": accuracy,
                    "energy_pj": 10.0 * step, "pulses": step, "bytes": step}
                   for step, accuracy in enumerate(accuracies)]
        precondition = {"energy_pj": noise_pj, "pulses": 0, "bytes": 0}
        return SimpleNamespace(train=records, summary={"ledger": {"to_target": {
            "precondition": precondition}}})

    without = {seed: run([0.1, 0.5, 0.8], 0.0) for seed in (0, 1)}
    for noise_pj, cheaper in ((100.0, "0/2"), (5.0, "2/2")):
        noisy = {seed: run([0.3, 0.85, 0.9], noise_pj) for seed in (0, 1)}
        assert results_rules.energy_row("FA", without, noisy) == [
            "FA", "80.0 %", "20.0 ± 0.0 pJ", f"{noise_pj + 10:.1f} ± 0.0 pJ",
            f"{noise_pj:.1f} ± 0.0 pJ", cheaper]
    stuck = {seed: run([0.1, 0.15, 0.12], 0.0) for seed in (0, 1)}  # never above 20 %
    assert results_rules.energy_row("FA", stuck, noisy)[2] == "no comparison: a run never " \
                                                             "exceeds 20 %"
