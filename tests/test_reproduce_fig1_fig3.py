"""``neurosim reproduce`` Fig. 1 (alignment during noise training) and Fig. 3
(pre-regularization), at tiny sizes on the ideal chip with two seeds.

Both sections run once into one folder (Fig. 3 reuses Fig. 1's noise study and Fig. 2's
MNIST study, as in the suite). Every verdict is recomputed here from the section's CSV files.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter

import numpy as np
import pytest

from conftest import data_dir
from neurosim import runner, stats
from neurosim.report import load_run
from neurosim.reproduce import alignment, regularization
from neurosim.reproduce.context import (AGREES, DIFFERS, NOT_REPRODUCED, NOT_RUN, WEAKER,
                                        Context, all_of, directional_verdict,
                                        threshold_verdict)
from neurosim.reproduce.settings import tiny

pytestmark = pytest.mark.skipif(data_dir() is None, reason="no MNIST copy (set NEUROSIM_DATA)")

SEEDS = (0, 1)
VERDICTS = {AGREES, WEAKER, NOT_REPRODUCED, DIFFERS, NOT_RUN}
PNG = b"\x89PNG\r\n\x1a\n"


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def floats(rows, key) -> list[float]:
    return [float(r[key]) for r in rows]


def by(rows, **match) -> list[dict]:
    """The rows whose columns equal ``match`` (as strings), in seed order."""
    chosen = [r for r in rows if all(r[k] == str(v) for k, v in match.items())]
    return sorted(chosen, key=lambda r: int(r["seed"]))


@pytest.fixture(scope="module")
def sections(tmp_path_factory):
    """Fig. 1 then Fig. 3 into one folder; the studies' comparison reports (figures of every
    run, not used by the sections) are skipped to keep the test short."""
    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "write_comparison", lambda run_dirs, out, title: out / "report.md")
    try:
        ctx = Context(out=tmp_path_factory.mktemp("fig1_fig3"), chip="ideal", seeds=SEEDS,
                      settings=tiny(), data_dir=str(data_dir()))
        fig1 = alignment.run(ctx)
        # a finished run that is reused keeps its checkpoint (its summary is rewritten)
        checkpoints = sorted((ctx.out / "fig1" / "runs" / "noise").glob("*/seed*/checkpoint.npz"))
        written = {path: path.stat().st_mtime_ns for path in checkpoints}
        fig3 = regularization.run(ctx)
    finally:
        patch.undo()
    return ctx, fig1, fig3, written


def check_section(section, folder, key, title) -> None:
    assert section.key == key and section.title == title
    assert section.figures and section.files and section.claims and section.text
    for caption, path in section.figures:
        assert caption and path.parent == folder
        assert path.read_bytes()[:8] == PNG
    for path in section.files:
        assert path.exists() and path.parent == folder and path.suffix == ".csv"
        assert read_csv(path)
    for claim in section.claims:
        assert claim.verdict in VERDICTS
        assert claim.paper and claim.ours
    # every statistical test is reported with its n (one value per seed), t and p
    texts = section.text + "".join(claim.ours for claim in section.claims)
    reported = re.findall(r"t-test, n=([^,]+), t=[^,]+, p=", texts)
    assert reported and set(reported) == {str(len(SEEDS))}


def test_all_of():
    assert all_of([AGREES, AGREES]) == AGREES
    assert all_of([AGREES, WEAKER]) == WEAKER
    assert all_of([AGREES, DIFFERS]) == WEAKER
    assert all_of([DIFFERS, DIFFERS]) == DIFFERS
    assert all_of([DIFFERS, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert all_of([AGREES, NOT_RUN]) == WEAKER
    assert all_of([NOT_RUN]) == NOT_RUN and all_of([]) == NOT_RUN


def test_subset_epochs_give_the_step_budget():
    assert regularization.subset_epochs(100, 10, 64) == 5     # 2 steps per epoch
    assert regularization.subset_epochs(200, 10, 64) == 3     # 4 steps per epoch
    assert regularization.subset_epochs(1600, 2000, 64) == 80
    assert regularization.subset_epochs(5000, 10, 64) == 1


# --------------------------------------------------------------------------- Fig. 1
def test_fig1_files_rows_and_figures(sections):
    ctx, fig1, _, _ = sections
    folder = ctx.out / alignment.KEY
    check_section(fig1, folder, "fig1", alignment.TITLE)
    assert len(fig1.figures) == 5
    s = ctx.settings

    runs = read_csv(folder / "fig1_noise_runs.csv")
    assert Counter((r["condition"], r["seed"]) for r in runs) == Counter(
        {(c, str(seed)): 1 for c in alignment.NOISE_CONDITIONS for seed in SEEDS})
    for row in runs:  # noise phase only: the data phase is skipped (train.epochs: 0)
        assert int(row["steps"]) == s.noise_steps
        assert float(row["angle_before_deg"]) == pytest.approx(90.0, abs=15.0)
    folders = sorted((ctx.out / "fig1" / "runs" / "noise").glob("*/seed*"))
    assert len(folders) == len(runs)
    for run in map(load_run, folders):
        assert run.summary["train"]["epochs"] == 0 and len(run.train) == 1
        row = by(runs, condition=run.summary["condition"], seed=run.summary["seed"])[0]
        assert float(row["angle_after_deg"]) == pytest.approx(alignment.angle(run, "after"),
                                                              rel=1e-12)

    curves = read_csv(folder / "fig1_noise_curves.csv")
    steps = list(range(0, s.noise_steps + 1, s.noise_log_every))
    for condition in alignment.NOISE_CONDITIONS:
        for seed in SEEDS:
            assert [int(r["step"]) for r in by(curves, condition=condition, seed=seed)] == steps
    angles = read_csv(folder / "fig1_neuron_angles.csv")
    assert Counter((r["condition"], r["seed"], r["when"]) for r in angles) == Counter(
        {(c, str(seed), when): 100 for c in alignment.NOISE_CONDITIONS for seed in SEEDS
         for when in ("before", "after")})

    grid = read_csv(folder / "fig1c_input_grid.csv")
    conditions = alignment.grid_conditions(ctx)
    assert len(conditions) == 2 * (len(s.grid_means) * len(s.grid_stds) + 1)
    assert Counter((r["condition"], r["seed"]) for r in grid) == Counter(
        {(c, str(seed)): 1 for c in conditions for seed in SEEDS})
    assert {r["distribution"] for r in grid} == {"gaussian", "uniform"}
    assert {r["regime"] for r in grid} == {"fixed_set", "fresh_stream"}
    for row in by(grid, distribution="uniform"):  # zero mean, unit variance
        assert float(row["mean"]) == pytest.approx(0.0, abs=1e-12)
        assert float(row["std"]) == pytest.approx(1.0)


def test_fig1_verdicts_follow_the_csv(sections):
    ctx, fig1, _, _ = sections
    folder = ctx.out / alignment.KEY
    runs = read_csv(folder / "fig1_noise_runs.csv")
    claims = fig1.claims
    assert len(claims) == 6

    def after(condition, key="angle_after_deg"):
        return floats(by(runs, condition=condition), key)

    for claim, condition in zip(claims[:2], ("fa_fixed", "fa_fresh")):
        test = stats.one_sample_ttest(after(condition), 90.0)
        assert test.n == len(SEEDS)
        assert claim.verdict == directional_verdict(test, expected_sign=-1)
        assert f"→ {np.mean(after(condition)):.1f} ± " in claim.ours
    neurons = stats.one_sample_ttest(after("fa_fixed", "neuron_mean_after_deg"), 90.0)
    assert claims[2].verdict == directional_verdict(neurons, expected_sign=-1)
    control = stats.paired_ttest(after("bp_fixed"), after("fa_fixed"))
    assert control.n == len(SEEDS)
    assert claims[3].verdict == directional_verdict(control, expected_sign=1)

    grid = read_csv(folder / "fig1c_input_grid.csv")
    for claim, regime in zip(claims[4:], ("fixed_set", "fresh_stream")):
        names = sorted({r["condition"] for r in grid if r["regime"] == regime})
        verdicts = [directional_verdict(stats.one_sample_ttest(
            floats(by(grid, condition=name), "angle_after_deg"), 90.0), expected_sign=-1)
            for name in names]
        assert claim.verdict == all_of(verdicts)
        assert f"of {len(names)} input conditions" in claim.ours


# --------------------------------------------------------------------------- Fig. 3
def test_fig3_reuses_the_fig1_and_fig2_runs(sections):
    ctx, _, fig3, written = sections
    assert len(written) == len(alignment.NOISE_CONDITIONS) * len(SEEDS)
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in written.items())
    studies = {p.name for p in (ctx.out / regularization.KEY / "runs").iterdir()}
    assert studies == {regularization.SUBSET_STUDY, regularization.DEPTH_STUDY}
    assert (ctx.out / "fig2" / "runs" / "mnist").is_dir()


def test_fig3_files_rows_and_figures(sections):
    ctx, _, fig3, _ = sections
    folder = ctx.out / regularization.KEY
    check_section(fig3, folder, "fig3", regularization.TITLE)
    assert len(fig3.figures) == 6
    s = ctx.settings

    readout = read_csv(folder / "fig3a_readout.csv")
    assert Counter((r["condition"], r["seed"], r["when"], r["probe"]) for r in readout) == \
        Counter({(c, str(seed), when, probe): 1 for c in regularization.NOISE_CONDITIONS
                 for seed in SEEDS for when, probe in (("before", "noise"), ("after", "noise"),
                                                       ("after", "mnist_test"))})
    for row in readout:
        p = [float(row[f"p_{k}"]) for k in range(10)]
        assert sum(p) == pytest.approx(1.0, abs=1e-6)
        assert float(row["max_deviation"]) == pytest.approx(max(abs(v - 0.1) for v in p))

    ranks = read_csv(folder / "fig3b_effective_rank.csv")
    assert Counter((r["condition"], r["seed"], r["layer"]) for r in ranks) == Counter(
        {(c, str(seed), layer): 1 for c in alignment.NOISE_CONDITIONS for seed in SEEDS
         for layer in ("1", "2")})
    assert {(r["step_before"], r["step_after"]) for r in ranks} == {("0", str(s.noise_steps))}
    spectra = read_csv(folder / "fig3b_spectra.csv")
    assert Counter((r["layer"], r["when"]) for r in spectra) == Counter(
        {("1", "before"): 100 * 6, ("1", "after"): 100 * 6,
         ("2", "before"): 10 * 6, ("2", "after"): 10 * 6})

    gap = read_csv(folder / "fig3c_gap.csv")
    assert Counter((r["condition"], r["seed"]) for r in gap) == Counter(
        {(c, str(seed)): 1 for c in regularization.RULES for seed in SEEDS})
    for row in gap:
        assert int(row["epochs"]) == s.epochs
        assert float(row["generalization_gap"]) == pytest.approx(
            float(row["test_loss"]) - float(row["train_loss"]))

    subsets = read_csv(folder / "fig3d_gap_vs_size.csv")
    conditions = regularization.subset_conditions(ctx)
    assert len(conditions) == len(regularization.RULES) * len(s.subset_sizes)
    assert Counter((r["condition"], r["seed"]) for r in subsets) == Counter(
        {(c, str(seed)): 1 for c in conditions for seed in SEEDS})
    for row in subsets:
        n, epochs = int(row["train_size"]), int(row["epochs"])
        per_epoch = math.ceil(n / 64)
        assert epochs == math.ceil(s.subset_steps / per_epoch)
        assert int(row["steps"]) == epochs * per_epoch
        assert s.subset_steps <= int(row["steps"]) < s.subset_steps + per_epoch

    depth = read_csv(folder / "fig3e_rank_vs_depth.csv")
    conditions = regularization.depth_conditions(ctx)
    assert Counter((r["condition"], r["seed"]) for r in depth) == Counter(
        {(c, str(seed)): 1 for c in conditions for seed in SEEDS})
    for row in depth:
        layers = [float(row[f"gram_rank_{k}"]) for k in range(1, int(row["depth"]) + 1)]
        assert all(1.0 <= v <= 100.0 for v in layers)
        assert float(row["mean_gram_rank"]) == pytest.approx(np.mean(layers))


def test_fig3_verdicts_follow_the_csv(sections):
    ctx, _, fig3, _ = sections
    folder = ctx.out / regularization.KEY
    s = ctx.settings
    claims = fig3.claims
    assert len(claims) == 7

    readout = read_csv(folder / "fig3a_readout.csv")
    for claim, condition in zip(claims[:2], regularization.NOISE_CONDITIONS):
        deviation = floats(by(readout, condition=condition, when="after", probe="noise"),
                           "max_deviation")
        holds = sum(d <= regularization.READOUT_TOLERANCE for d in deviation)
        assert claim.verdict == threshold_verdict(holds, len(SEEDS))
        assert f"in {holds} of {len(SEEDS)} seeds" in claim.ours

    ranks = read_csv(folder / "fig3b_effective_rank.csv")
    for claim, layer in zip(claims[2:4], ("1", "2")):
        rows = by(ranks, condition="fa_fixed", layer=layer)
        test = stats.paired_ttest(floats(rows, "rank_after"), floats(rows, "rank_before"))
        assert claim.verdict == directional_verdict(test, expected_sign=-1)

    gap = read_csv(folder / "fig3c_gap.csv")
    test = stats.paired_ttest(floats(by(gap, condition="fa_noise"), "generalization_gap"),
                              floats(by(gap, condition="fa"), "generalization_gap"))
    assert test.n == len(SEEDS)
    assert claims[4].verdict == directional_verdict(test, expected_sign=-1)

    subsets = read_csv(folder / "fig3d_gap_vs_size.csv")
    verdicts = [directional_verdict(stats.paired_ttest(
        floats(by(subsets, rule="fa_noise", train_size=n), "generalization_gap"),
        floats(by(subsets, rule="fa", train_size=n), "generalization_gap")), expected_sign=-1)
        for n in s.subset_sizes]
    assert claims[5].verdict == all_of(verdicts)

    depth = read_csv(folder / "fig3e_rank_vs_depth.csv")
    verdicts = [directional_verdict(stats.paired_ttest(
        floats(by(depth, rule="fa_noise", depth=d), "mean_gram_rank"),
        floats(by(depth, rule="fa", depth=d), "mean_gram_rank")), expected_sign=-1)
        for d in s.depths]
    assert claims[6].verdict == all_of(verdicts)
