"""Feedback arrays as hardware: precision, programming error, levels, stuck cells."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_chip

from neurosim.config import FeedbackArrayConfig
from neurosim.feedback import program, reduce_precision

DRAWN = np.random.default_rng(0).uniform(-0.1, 0.1, 20000)


def rms(values):
    return np.sqrt(np.mean(values * values))


def test_sign_feedback_has_two_values_and_keeps_the_scale():
    out = reduce_precision(DRAWN, FeedbackArrayConfig(kind="sign"))
    np.testing.assert_allclose(np.abs(out), rms(DRAWN), rtol=1e-12)
    np.testing.assert_array_equal(np.sign(out), np.sign(DRAWN))
    assert rms(out) == pytest.approx(rms(DRAWN))


@pytest.mark.parametrize("zero_fraction", [0.2, 0.5])
def test_ternary_feedback_zeroes_the_smallest_cells_and_keeps_the_scale(zero_fraction):
    out = reduce_precision(DRAWN, FeedbackArrayConfig(kind="ternary",
                                                      ternary_zero_fraction=zero_fraction))
    assert len(np.unique(out)) == 3
    assert np.mean(out == 0) == pytest.approx(zero_fraction, abs=1e-4)
    assert np.abs(DRAWN[out == 0]).max() <= np.abs(DRAWN[out != 0]).min()
    assert rms(out) == pytest.approx(rms(DRAWN))


def test_programming_error_has_the_configured_relative_std():
    config = FeedbackArrayConfig(programming_error=0.1)
    out = program(DRAWN, config, seed=1, layer=0)
    relative = out / DRAWN - 1
    assert relative.std() == pytest.approx(0.1, rel=0.03)  # 20,000 cells: ~1 % std error
    assert abs(relative.mean()) < 0.005
    np.testing.assert_array_equal(out, program(DRAWN, config, seed=1, layer=0))
    assert not np.array_equal(out, program(DRAWN, config, seed=1, layer=1))


def test_finite_levels_snap_to_an_even_grid():
    out = program(DRAWN, FeedbackArrayConfig(levels=9), seed=0, layer=0)
    reach = np.abs(DRAWN).max()
    grid = np.linspace(-reach, reach, 9)
    assert len(np.unique(out)) <= 9
    assert np.all(np.min(np.abs(out[:, None] - grid[None, :]), axis=1) < 1e-12)
    assert np.max(np.abs(out - DRAWN)) <= reach / 8 + 1e-12  # half a step


def test_stuck_cells_sit_at_the_extremes_in_the_configured_fractions():
    config = FeedbackArrayConfig(stuck_at_min=0.05, stuck_at_max=0.1)
    out = program(DRAWN, config, seed=2, layer=0)
    reach = np.abs(DRAWN).max()
    assert np.mean(out == -reach) == pytest.approx(0.05, abs=0.006)
    assert np.mean(out == reach) == pytest.approx(0.1, abs=0.008)


def test_regenerated_feedback_is_exact():
    assert program(DRAWN, FeedbackArrayConfig(kind="regenerated"), 0, 0) is DRAWN


@pytest.mark.parametrize("kind", ["sign", "ternary"])
def test_chip_applies_and_reports_the_programmed_feedback(ideal_chip_config, kind):
    exact = make_chip(ideal_chip_config, (784, 20, 10), "fa")
    chip = make_chip(ideal_chip_config, (784, 20, 10), "fa", feedback_kind=kind)
    B, B_exact = chip.feedback_matrix(1), exact.feedback_matrix(1)
    assert len(np.unique(B)) == (2 if kind == "sign" else 3)
    np.testing.assert_array_equal(np.sign(B)[B != 0], np.sign(B_exact)[B != 0])
    offset, rows, cols = chip.feedback_layout[1]
    np.testing.assert_array_equal(chip.feedback[offset:offset + rows * cols], B.ravel())


def test_stuck_cells_are_drawn_independently_of_the_programming_errors():
    """Which cells are stuck says nothing about any cell's programming error: over many
    chips (seeds), the correlation of every cell's stuck indicator with every cell's
    ``|xi|`` is ~0 (5 standard errors: 1 / sqrt(seeds) each). Drawn from one stream, a
    stuck cell's uniform was another cell's Box-Muller radius (|correlation| 0.55)."""
    drawn = np.array([0.05, -0.08, 0.02, -0.03])
    with_error = FeedbackArrayConfig(programming_error=0.1)
    both = FeedbackArrayConfig(programming_error=0.1, stuck_at_min=0.5)
    seeds = range(2000)
    error = np.array([np.abs(program(drawn, with_error, seed, 0) / drawn - 1) for seed in seeds])
    stuck = np.array([program(drawn, both, seed, 0) == -0.08 for seed in seeds])
    assert 0.4 < stuck.mean() < 0.6
    correlation = np.corrcoef(stuck.T, error.T)[:4, 4:]
    assert np.abs(correlation).max() < 5 / np.sqrt(len(seeds))
