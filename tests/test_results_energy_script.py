"""The script that regenerates docs/results-energy.md runs end to end (tiny settings), and
the feedback-variant chips of experiments/energy.yaml stay copies of their presets."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from conftest import REPO
from neurosim.config import load_chip

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_energy  # noqa: E402


def test_results_energy_regenerates_a_document(tmp_path, monkeypatch):
    doc = tmp_path / "doc" / "results-energy.md"
    monkeypatch.setattr(sys, "argv", [
        "results_energy.py", "--out", str(tmp_path / "runs"), "--doc", str(doc),
        "--set", "data.dataset=digits", "--set", "data.train_size=256",
        "--set", "data.test_size=64", "--set", "seeds=[0, 1]",
        "--set", "network.dims=[784, 16, 10]", "--set", "train.epochs=2",
        "--set", "evaluation.fractional_epochs=[0.5]",
        "--set", "precondition.steps=20", "--set", "precondition.n_examples=128",
        "--set", "precondition.log_every=10", "--set", "precondition.checkpoint_every=20",
        "--set", "evaluation.train_probe_size=64", "--set", "evaluation.noise_probe_size=64",
        "--set", "evaluation.gradient_probe_size=32",
        "--set", "optimizer.lr=0.01", "--set", "evaluation.energy_target=0.5"])
    assert results_energy.main() == 0
    text = doc.read_text()
    for heading in ("## Energy model", "## 1.", "## 2.", "## 3.", "### Does preconditioning",
                    "**Verdict per chip**", "## What stands out"):
        assert heading in text
    for chip in ("ideal", "rram_taox", "pcm_gst"):
        assert f"- **{chip}**: " in text
    for name in ("energy_per_epoch", "backward_feedback", "energy_to_target"):
        assert (doc.parent / "figures" / "results-energy" / f"{name}.png").is_file()
        assert f"figures/results-energy/{name}.png" in text
    # Numbers come from the runs' ledgers: BP moves weights for its backward pass, FA does not.
    runs = results_energy.load_runs(tmp_path / "runs")
    bp, fa = (results_energy.per_epoch(runs[f"ideal-{r}"][0]) for r in ("bp", "fa"))
    assert bp["weight_transport"] > 0 and fa["weight_transport"] == 0
    regenerated = results_energy.per_epoch(runs["ideal-fa_regenerated"][0])
    assert regenerated["backward_random"] > 0 and fa["backward_random"] == 0
    # Some runs reach the (low) target: their brackets end at the ledger's to_target energy.
    hits = [run for seeds in runs.values() for run in seeds.values()
            if run.summary["ledger"]["to_target"]["reached"]]
    assert hits
    for run in hits:
        assert results_energy.bracket(run)[1] == pytest.approx(
            run.summary["ledger"]["to_target"]["energy_pj"])
    noisy = runs["pcm_gst-fa_noise"][0].summary["ledger"]["to_target"]
    assert noisy["precondition"]["energy_pj"] > 0
    lo, hi = results_energy.bracket(runs["pcm_gst-fa_noise"][0])
    assert lo <= hi and lo >= noisy["precondition"]["energy_pj"]


def test_feedback_variants_are_their_preset_with_another_feedback_kind():
    from neurosim.config import expand_runs, load_experiment

    chips = {spec.condition: spec.chip
             for spec in expand_runs(load_experiment(results_energy.EXPERIMENT),
                                     results_energy.EXPERIMENT)}
    for preset in ("ideal", "rram_taox", "pcm_gst"):
        base = load_chip(REPO / "hw_configs" / f"{preset}.yaml")
        assert chips[f"{preset}-fa"] == base
        for kind in ("regenerated", "sign"):
            assert chips[f"{preset}-fa_{kind}"] == dataclasses.replace(
                base, feedback=dataclasses.replace(base.feedback, kind=kind))


def test_stacked_bars_stack_segments_in_order():
    from neurosim.plots import new_figure, stacked_bars

    fig, axes = new_figure()
    tops = stacked_bars(axes[0, 0], ["a", "b"], {"x": [1e9, 2e9], "y": [3e9, float("nan")],
                                                 "z": [0.0, 0.0]}, scale=1e-9)
    assert list(tops) == [4.0, 2.0]
    labels = axes[0, 0].get_legend_handles_labels()[1]
    assert labels == ["x", "y"]  # an all-zero segment is left out of the legend
    bars = axes[0, 0].patches
    assert [b.get_y() for b in bars[2:4]] == [1.0, 2.0]  # y sits on x
    with pytest.raises(ValueError, match="3 values for 2 bars"):
        stacked_bars(axes[0, 0], ["a", "b"], {"x": [1, 2, 3]})
