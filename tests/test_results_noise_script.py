"""The script that regenerates docs/results-noise.md runs end to end (tiny settings), its
conditions differ only in their noise, and its measured pixel statistics are right."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from conftest import REPO, TINY_STUDY
from neurosim import rng
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.config import NoiseInputConfig, expand_runs, load_experiment
from neurosim.precondition import draw_noise_inputs

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_noise  # noqa: E402

EXPERIMENT = REPO / "experiments" / "noise_inputs.yaml"


def test_results_noise_regenerates_a_document(tmp_path, monkeypatch):
    """Seeds 1 and 2, fixed sets of 128: the noises' statistics are of the first seed's set,
    all of it, as the document says."""
    study = ["seeds=[1, 2]" if option == "seeds=[0, 1]" else option for option in TINY_STUDY]
    doc = tmp_path / "results-noise.md"
    monkeypatch.setattr(sys, "argv", [
        "results_noise.py", "--out", str(tmp_path / "runs"), "--doc", str(doc), *study])
    assert results_noise.main() == 0
    text = doc.read_text()
    assert "measured on the first 128 examples of seed 1's fixed set" in text
    binary = NoiseInputConfig(distribution="binary", rate=0.1)
    key = rng.stream_key(1, 0, 0, rng.Purpose.NOISE_SET_INPUTS)
    spikes = draw_noise_inputs(NumpyBackend(), binary, key, 128, (28, 28), np.dtype(np.float64))
    statistics = results_noise.pixel_statistics(spikes.reshape(128, 28, 28))
    assert "| binary | binary 0/1 at rate 0.1 | " + " | ".join(statistics) + " |" in text
    for heading in ("## The noises", "## ideal", "## rram_taox"):
        assert heading in text
    assert "| binary | binary 0/1 at rate 0.1 | " in text
    assert "| correlated_4px | N(0, 1²) correlated over 4 px | " in text
    assert "| *digits* | the training images (for scale) | " in text
    assert text.count("- **binary** noise ") == 2
    assert text.count("Holm-adjusted p = ") == 2 * 5  # each chip's 5 noises against none
    assert "noise-phase pulses" in text.split("## rram_taox")[1]  # pulsed updates
    assert "noise-phase pulses" not in text.split("## rram_taox")[0]  # the ideal chip's
    assert "paired t-test, n=2" in text


def test_the_study_conditions_differ_only_in_chip_and_noise():
    """Per chip, every condition is the chip's FA run with or without a noise phase, and the
    noise phases differ only in their inputs."""
    specs = expand_runs(load_experiment(EXPERIMENT))
    by_chip: dict[str, list] = {}
    for spec in specs:
        if spec.seed == 0:
            by_chip.setdefault(spec.condition.rsplit("-", 1)[0], []).append(spec)
    assert set(by_chip) == {"ideal", "rram_taox"}
    for chip_specs in by_chip.values():
        first = chip_specs[0]
        assert all(s.experiment.rule == "fa" and s.chip == first.chip for s in chip_specs)
        noisy = [s for s in chip_specs if s.experiment.precondition.enabled]
        assert len(noisy) == len(chip_specs) - 1
        without_input = [dataclasses.replace(s.experiment.precondition, input=NoiseInputConfig())
                         for s in noisy]
        assert all(phase == without_input[0] for phase in without_input)
        inputs = [s.experiment.precondition.input for s in noisy]
        assert all(inputs.count(noise) == 1 for noise in inputs)


@pytest.mark.parametrize("lag", [1, 4])
def test_pixel_statistics_measure_mean_std_zeros_and_correlation(lag):
    """On a field whose correlation is known (an image of equal columns, rows independent:
    correlation 1 along rows, 0 along columns, so 0.5 pooled) and of known zeros."""
    rows = np.random.default_rng(0).standard_normal((4000, 28, 1))
    images = np.repeat(rows, 28, axis=2)
    images[:, :, :7] = 0.0
    mean, std, zeros, *correlations = results_noise.pixel_statistics(images)
    assert zeros == "25%"
    assert float(mean) == pytest.approx(images.mean(), abs=1e-3)
    assert float(std) == pytest.approx(images.std(), abs=1e-3)
    correlation = float(correlations[results_noise.LAGS_PX.index(lag)])
    z = (images - images.mean()) / images.std()
    expected = (np.mean(z * np.roll(z, lag, axis=1)) + np.mean(z * np.roll(z, lag, axis=2))) / 2
    assert correlation == pytest.approx(expected, abs=0.006)
    assert 0.3 < correlation < 0.55  # along rows 3/4 and 1, pooled with the columns' 0
