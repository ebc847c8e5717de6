"""The script that regenerates docs/results-periphery.md runs end to end (tiny settings),
and the study's chips differ from the ideal chip only in how their arrays are read."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from conftest import REPO, TINY_STUDY
from neurosim.config import load_chip, load_experiment, resolve_chip_path
from neurosim.periphery import PeripheryConfig

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_devices  # noqa: E402
import results_periphery  # noqa: E402

EXPERIMENT = REPO / "experiments" / "periphery.yaml"


def test_results_periphery_regenerates_a_document(tmp_path, monkeypatch):
    doc = tmp_path / "results-periphery.md"
    monkeypatch.setattr(sys, "argv", [
        "results_periphery.py", "--out", str(tmp_path / "runs"), "--doc", str(doc), *TINY_STUDY])
    assert results_periphery.main() == 0
    text = doc.read_text()
    for heading in ("## Chips", "## First-epoch test-accuracy AUC", "## Verdict per chip",
                    "## What the converters cost", "## Tiling: the same converters",
                    "## Bound management: aihwkit's re-reads or clipping"):
        assert heading in text
    for chip in ("ideal", "periphery_aihwkit", "periphery_aihwkit_clipped", "periphery_adc6",
                 "periphery_adc4", "periphery_adc4_one_tile"):
        assert f"- **{chip}** (" in text
    # the chips table is read from the chip files
    assert "| periphery_aihwkit | 7 bits, per-sample range | 9 bits, ±20, iterative re-reads |" \
        in text
    assert "| periphery_aihwkit_clipped | 7 bits, per-sample range | 9 bits, fixed ±20 |" in text
    assert "| periphery_adc4_one_tile | 7 bits, per-sample range | 4 bits, per-sample range " \
           "| none | 1024 × 1024 | same |" in text
    # the tiled and the one-tile chip are different chips: their runs differ
    runs = results_devices.study_runs(tmp_path / "runs")
    accuracy = {name: runs[name]["fa"][0].summary["train"]["test_accuracy"]
                for name in ("periphery_adc4", "periphery_adc4_one_tile")}
    losses = {name: runs[name]["fa"][0].summary["train"]["test_loss"]
              for name in ("periphery_adc4", "periphery_adc4_one_tile")}
    assert len(set(losses.values())) == 2, (accuracy, losses)
    # 4 row tiles convert each first-layer output 4 times: more ADC energy than one tile
    adc = {name: runs[name]["fa_noise"][0].summary["ledger"]["energy_pj"]["components"]["adc"]
           for name in ("periphery_adc4", "periphery_adc4_one_tile")}
    assert adc["periphery_adc4"] > adc["periphery_adc4_one_tile"] > 0


@pytest.mark.parametrize("condition", sorted(
    {name.rsplit("-", 1)[0] for name in load_experiment(EXPERIMENT).conditions} - {"ideal"}))
def test_periphery_chips_are_the_ideal_chip_read_differently(condition):
    """Same devices, updates, feedback and energy as hw_configs/ideal.yaml: only names,
    periphery and tiles differ, so the study compares reads alone."""
    chip = results_devices.study_chips(load_experiment(EXPERIMENT), EXPERIMENT)[condition]
    ideal = load_chip(resolve_chip_path("ideal"))
    assert chip.forward.periphery != PeripheryConfig()
    assert chip.feedback.periphery == chip.forward.periphery
    same = dataclasses.replace(
        chip, name=ideal.name, description=ideal.description, source=ideal.source,
        tiles=ideal.tiles,
        forward=dataclasses.replace(chip.forward, periphery=PeripheryConfig()),
        feedback=dataclasses.replace(chip.feedback, periphery=PeripheryConfig()))
    assert same == ideal
