"""Regenerate ``docs/results-noise.md``: does the kind of noise matter?

Runs ``experiments/noise_inputs.yaml`` (FA without a noise phase, and FA preconditioned on
Gaussian, uniform, binary-spike and spatially correlated noise; on the ideal chip and on
TaOx RRAM; 3 seeds; finished runs are reused) and tabulates the noises' measured pixel
statistics, then per chip and noise the first-epoch test-accuracy AUC against no noise and
against the paper's Gaussian noise, the last layer's alignment after the noise phase, the
readout on a noise probe, and the programming pulses the noise phase spent.

    .venv/bin/python docs/scripts/results_noise.py [--out runs/noise_inputs] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

from neurosim import rng, stats
from neurosim.backends.numpy_ref import NumpyBackend
from neurosim.config import NoiseInputConfig
from neurosim.data import load_dataset
from neurosim.precondition import draw_noise_inputs
from neurosim.report import markdown_table, noise_input
from neurosim.runio import write_text
from results_core import fmt, last_layer, paired
from results_devices import REPO, study_header, study_main, values, verdict

EXPERIMENT = REPO / "experiments" / "noise_inputs.yaml"
DOC = REPO / "docs" / "results-noise.md"
BASELINE = "none"  # FA without a noise phase
PAPER = "gaussian"  # the paper's noise
PAPER_NOISE_STEPS = 10_000  # the paper's noise phase (its appendix)
SAMPLE = 2000  # examples (at most) of the first seed's fixed set measured for pixel statistics
LAGS_PX = (1, 4)  # distances of the measured pixel correlations


def noise_config(seeds: dict) -> NoiseInputConfig:
    """The noise input of a condition's runs, as their summaries record it."""
    return noise_input(seeds[min(seeds)].summary["config"]["precondition"]["input"])


def pixel_statistics(images: np.ndarray) -> list[str]:
    """Mean, standard deviation, share of zero pixels and the correlation of pixels
    :data:`LAGS_PX` apart (along rows and columns, pooled; the frame wrapped) of ``images``
    (``n x ... x H x W``)."""
    z = (images - images.mean()) / images.std()
    correlations = [np.mean([np.mean(z * np.roll(z, lag, axis=axis)) for axis in (-2, -1)])
                    for lag in LAGS_PX]
    return [f"{images.mean():.3f}", f"{images.std():.3f}", f"{np.mean(images == 0):.0%}",
            *[f"{c:.2f}" for c in correlations]]


def noise_sample(config: NoiseInputConfig, seed: int, n: int,
                 image_shape: tuple[int, ...]) -> np.ndarray:
    """The first ``n`` examples of seed ``seed``'s fixed set of noise ``config``, as
    ``image_shape`` images (float64)."""
    key = rng.stream_key(seed, 0, 0, rng.Purpose.NOISE_SET_INPUTS)
    return draw_noise_inputs(NumpyBackend(), config, key, n, image_shape,
                             np.dtype(np.float64)).reshape(n, *image_shape)


def noises_section(first_chip: dict, noises: list[str], dataset: str,
                   data_dir: str | None) -> list[str]:
    """The noises' distributions and pixel statistics, and the data's for scale: of the
    first seed's fixed sets (up to :data:`SAMPLE` examples) and as many training images."""
    data = load_dataset(dataset, data_dir)
    seeds = first_chip[noises[0]]
    seed = min(seeds)
    n = min(SAMPLE, seeds[seed].summary["config"]["precondition"]["n_examples"],
            len(data.x_train))
    images = data.x_train[:n].astype(np.float64).reshape(-1, *data.image_shape)
    rows = []
    for noise in noises:
        config = noise_config(first_chip[noise])
        rows.append([noise, config.describe(),
                     *pixel_statistics(noise_sample(config, seed, n, data.image_shape))])
    rows.append([f"*{dataset}*", "the training images (for scale)", *pixel_statistics(images)])
    return [
        "## The noises",
        "",
        f"Pixel statistics measured on the first {n:,} examples of seed {seed}'s fixed set "
        f"(the drawn numbers, float64) and of the training images of {dataset}; correlation: of "
        "pixels the given distance apart along rows and columns.",
        "",
        markdown_table(["noise", "distribution", "mean", "std", "zero pixels",
                        *[f"correlation at {lag} px" for lag in LAGS_PX]], rows),
        "",
    ]


def noise_pulses(summary: dict) -> int:
    """Programming pulses the noise phase sent to the forward arrays (all layers)."""
    return sum(layer["pulses_up"] + layer["pulses_down"]
               for layers in summary["ledger"]["counts"]["precondition"].values()
               for layer in layers)


def chip_section(chip: str, description: str, conditions: dict, noises: list[str]) -> list[str]:
    """The table of one chip's noises and the verdict on each."""
    auc = lambda s: s["train"]["auc_first_epoch"]
    after_noise = lambda s: last_layer(s["precondition"]["after"]["alignment_deg"])
    readout = lambda s: s["precondition"]["after"]["readout_max_deviation"]
    final = lambda s: s["train"]["test_accuracy"] * 100
    pulses = [np.mean(values(conditions[noise], noise_pulses)) for noise in noises]
    rows = [[BASELINE, fmt(values(conditions[BASELINE], auc), 3), "", "", "", "", "",
             fmt(values(conditions[BASELINE], final), 1)]]
    verdicts, tests = [], []
    for noise in noises:
        a, b, test = paired(conditions, noise, BASELINE, auc)
        wins = sum(x > y for x, y in zip(a, b))
        against_paper = "" if noise == PAPER else str(paired(conditions, noise, PAPER, auc)[2])
        rows.append([noise, fmt(values(conditions[noise], auc), 3), str(test),
                     f"{wins}/{len(a)}", against_paper,
                     fmt(values(conditions[noise], after_noise), 1),
                     fmt(values(conditions[noise], readout), 3),
                     fmt(values(conditions[noise], final), 1)])
        verdicts.append(f"- **{noise}** noise {verdict(wins, len(a))}")
        tests.append(test.pvalue)
    header = ["noise", "first-epoch AUC", f"paired t-test (noise − {BASELINE})",
              f"> {BASELINE} (seeds)", f"paired t-test (noise − {PAPER})", "θ after noise",
              "readout max |p − 1/C|", "test acc (%)"]
    if any(pulses):
        header.append("noise-phase pulses")
        rows[0].append("")
        for row, count in zip(rows[1:], pulses):
            row.append(f"{count:.3g}")
    best = max(noises, key=lambda noise: np.mean(values(conditions[noise], auc)))
    best_text = (f"{best}, the paper's noise" if best == PAPER
                 else f"{best} ({best} − {PAPER}: {paired(conditions, best, PAPER, auc)[2]})")
    return [
        f"## {chip}",
        "",
        f"{description}. {BASELINE}: FA without a noise phase. θ: angle between the last "
        "layer's forward weights and its feedback matrix after the noise phase (degrees); "
        "readout: the largest distance of the mean softmax output of a class from chance on "
        "a separate probe of the same noise, after the noise phase"
        + ("; pulses: programming pulses the noise phase sent to the forward arrays (mean "
           "over seeds)." if any(pulses) else "."),
        "",
        markdown_table(header, rows),
        "",
        *[f"{line}; Holm-adjusted p = {p:.3g} over the {len(noises)} noises."
          for line, p in zip(verdicts, stats.holm_adjusted(tests))],
        f"- Highest mean first-epoch AUC: {best_text}.",
        "",
    ]


def write_doc(out: Path, doc: Path, command: str, experiment, data_dir: str | None) -> None:
    pre = experiment.precondition
    chips_runs, chips, header = study_header(
        "Does the kind of noise matter?",
        "Every condition is FA; the preconditioned ones differ only in the noise inputs "
        "(`precondition.input`); runs with one seed share their initial weights, feedback "
        "and device draws, and their noise labels.",
        command, out, EXPERIMENT, experiment,
        setting=(f"{list(experiment.network.dims)}, {experiment.optimizer.name} lr "
                 f"{experiment.optimizer.lr:g}, batch {experiment.train.batch_size}, "
                 f"{experiment.train.epochs} epoch of {experiment.data.dataset}; the noise "
                 f"phase runs {pre.steps} steps on a fixed set of {pre.n_examples} examples "
                 f"with uniform random labels (the paper runs {PAPER_NOISE_STEPS:,} steps)."))
    noises = [noise for noise in dict.fromkeys(
        condition.rsplit("-", 1)[1] for condition in experiment.conditions)
        if noise != BASELINE]
    complete = {chip: runs for chip, runs in chips_runs.items()
                if all(noise in runs for noise in (BASELINE, *noises))}
    n_seeds = len(next(iter(complete.values()))[BASELINE])
    lines = [*header, *noises_section(next(iter(complete.values())), noises,
                                      experiment.data.dataset, data_dir)]
    for chip, conditions in complete.items():
        lines += chip_section(chip, chips[chip].description, conditions, noises)
    lines += [
        f"Read with care: {n_seeds} seeds, {experiment.train.epochs} epoch, "
        f"a noise phase {100 * pre.steps / PAPER_NOISE_STEPS:.0f} % of the paper's; the noises "
        "are matched in nothing but what the first table shows. A fixed set can be "
        "memorized: the readout column is how far the chip's outputs are from chance on "
        "unseen noise of the same kind.",
        "",
    ]
    write_text(doc, "\n".join(lines))


def main() -> int:
    # the data folder the runs read, for the data's pixel statistics (study_main parses the
    # whole command line)
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--data-dir")
    data_dir = options.parse_known_args()[0].data_dir
    return study_main(__doc__, "results_noise.py", EXPERIMENT, REPO / "runs" / "noise_inputs",
                      DOC, functools.partial(write_doc, data_dir=data_dir))


if __name__ == "__main__":
    sys.exit(main())
