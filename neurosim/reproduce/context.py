"""What every experiment of the reproduction needs: where results go, the chip, the seeds,
the sizes, a way to run conditions through the experiment runner, and the pieces a section
of the report is made of (text, figures, data files, claims with computed verdicts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from neurosim import stats
from neurosim.compare import diverged_runs
from neurosim.config import apply_overrides, build_experiment, load_chip, resolve_chip_path
from neurosim.data import load_dataset
from neurosim.errors import DataError
from neurosim.plots import as_float, color, mean_std_curves, new_figure, plot_band, save_png
from neurosim.report import Run, load_run, write_csv
from neurosim.runner import run_dir_of, run_experiment
from neurosim.config import expand_runs
from neurosim.reproduce.settings import Settings

ALPHA = 0.05  # significance level of every verdict
PAPER_DIMS = (784, 100, 10)

# ------------------------------------------------------------------------- claims
AGREES, WEAKER, NOT_REPRODUCED, DIFFERS = "agrees", "weaker", "not reproduced", "differs"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper beside our measurement and the verdict computed from it."""

    paper: str
    ours: str
    verdict: str


def directional_verdict(test: stats.TestResult, expected_sign: int = 1) -> str:
    """From a test of the paper's effect (``mean_difference`` expected to have
    ``expected_sign``): ``agrees`` - that sign and p < :data:`ALPHA`; ``weaker`` - that sign,
    not significant (or not computable); ``not reproduced`` - the opposite sign, not
    significant; ``differs`` - the opposite sign and p < :data:`ALPHA`."""
    effect = test.mean_difference * expected_sign
    if not math.isfinite(effect):
        return NOT_RUN
    significant = math.isfinite(test.pvalue) and test.pvalue < ALPHA
    if effect > 0:
        return AGREES if significant else WEAKER
    return DIFFERS if significant and effect < 0 else NOT_REPRODUCED


def threshold_verdict(holds: int, total: int) -> str:
    """A per-seed criterion: ``agrees`` when it holds in every seed, ``weaker`` in some,
    ``not reproduced`` in none."""
    if total == 0:
        return NOT_RUN
    return AGREES if holds == total else WEAKER if holds else NOT_REPRODUCED


def all_of(verdicts: list[str]) -> str:
    """The verdict of a claim that should hold in each of several tests: ``agrees`` when
    every test agrees, ``differs`` when every test differs, ``not reproduced`` when every
    test has the opposite sign, ``not run`` without any test that ran, otherwise
    ``weaker``."""
    ran = [v for v in verdicts if v != NOT_RUN]
    if not ran:
        return NOT_RUN
    if all(v == AGREES for v in ran) and len(ran) == len(verdicts):
        return AGREES
    if all(v == DIFFERS for v in ran):
        return DIFFERS
    if all(v in (DIFFERS, NOT_REPRODUCED) for v in ran):
        return NOT_REPRODUCED
    return WEAKER


def describe(test: stats.TestResult) -> str:
    """``paired t-test, n=3, t=4.1, p=0.054`` (the test's statistic and p, with n)."""
    return str(test)


def mean_std_text(values, digits: int = 3, unit: str = "") -> str:
    """``mean ± std`` over seeds; one value has no std: ``mean (n=1)``."""
    mean, std = stats.mean_std(values)
    if math.isnan(std) and math.isfinite(mean):
        return f"{mean:.{digits}f}{unit} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"


# ------------------------------------------------------------------------ sections
@dataclass
class Section:
    """One experiment's part of the report: markdown ``text`` (figures are embedded by the
    report from ``figures``), data files, and the paper's claims with verdicts."""

    key: str
    title: str
    text: str = ""
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, path)
    files: list[Path] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- studies
@dataclass
class Study:
    """The finished runs of one experiment, by condition, each list ordered by seed (so the
    same index is the same seed - paired initializations - in every condition)."""

    folder: Path
    runs: dict[str, list[Run]]

    def values(self, condition: str, metric: Callable[[Run], float]) -> list[float]:
        """``metric`` of each seed's run of ``condition`` (nan where a diverged run has none:
        it records ``null``)."""
        return [as_float(metric(run)) for run in self.runs[condition]]

    def paired(self, a: str, b: str, metric: Callable[[Run], float]) -> stats.TestResult:
        """Paired t-test of ``metric`` between conditions ``a`` and ``b`` (same seeds)."""
        return stats.paired_ttest(self.values(a, metric), self.values(b, metric))


def common_accuracy(curves: list[list[dict]]) -> float:
    """The highest test accuracy that every curve (a run's metric records) reaches:
    ``min over curves of max over records of test_accuracy``; nan when a curve has no finite
    accuracy (a run that diverged before its first evaluation)."""
    best = []
    for records in curves:
        values = [as_float(r.get("test_accuracy")) for r in records]
        best.append(max((v for v in values if math.isfinite(v)), default=math.nan))
    return min(best) if all(math.isfinite(b) for b in best) else math.nan


def last_layer_value(mapping: dict) -> float:
    """The value of the highest-numbered layer in a ``{"1": .., "2": ..}`` mapping."""
    return as_float(mapping[max(mapping, key=int)])


@dataclass
class Context:
    """Where and how the reproduction runs."""

    out: Path
    chip: str
    seeds: tuple[int, ...]
    settings: Settings
    data_dir: str | None = None
    backend: str = "numba"
    progress: bool = False
    # the runs that diverged among those studied, ``study/condition seed S (where)``, in the
    # order met (the suite reports them under the section that read them)
    diverged: list[str] = field(default_factory=list)

    def folder(self, key: str) -> Path:
        path = self.out / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def missing_dataset(self, name: str) -> str | None:
        """Why dataset ``name`` cannot be used here (its files are absent or corrupt), or
        None when it loads."""
        try:
            load_dataset(name, self.data_dir, train_size=1, test_size=1)
        except DataError as error:
            return str(error)
        return None

    def chip_config(self, chip: str | None = None):
        return load_chip(resolve_chip_path(chip or self.chip))

    def in_array_sgd(self, chip: str | None = None) -> bool:
        """Whether the chip updates in the array (stochastic mode: plain SGD only)."""
        return self.chip_config(chip).forward.update.mode == "stochastic"

    def experiment(self, name: str, overrides: dict | None = None,
                   conditions: dict[str, dict] | None = None, chip: str | None = None) -> dict:
        """The paper's experiment (DESIGN §4-5) at this context's sizes, as plain data, with
        dotted ``overrides`` applied."""
        s = self.settings
        chip = chip or self.chip
        optimizer = {"name": "adam", "lr": 1e-4}
        if self.in_array_sgd(chip):  # the array is the optimizer: SGD (stated in the report)
            optimizer = {"name": "sgd", "lr": 0.01}
        data = {
            "name": name, "chip": chip,
            "network": {"dims": list(PAPER_DIMS), "activation": "relu"},
            "rule": "fa", "optimizer": optimizer,
            "precondition": {"enabled": False, "regime": "fixed_set",
                             "n_examples": s.noise_examples, "steps": s.noise_steps,
                             "batch_size": 64, "log_every": s.noise_log_every,
                             "checkpoint_every": max(s.noise_log_every, s.noise_steps // 4),
                             "input": {"distribution": "gaussian", "mean": 0.0, "std": 1.0}},
            "data": {"dataset": "mnist", "train_size": s.train_size, "test_size": s.test_size},
            "train": {"epochs": s.epochs, "batch_size": 64},
            "evaluation": {"ood": [], "train_probe_size": s.probe_size,
                           "noise_probe_size": s.probe_size},
            "seeds": list(self.seeds),
            "simulation": {"backend": self.backend},
            "conditions": conditions or {"default": {}},
        }
        return apply_overrides(data, list((overrides or {}).items()))

    def study(self, key: str, name: str, conditions: dict[str, dict],
              overrides: dict | None = None, chip: str | None = None) -> Study:
        """Run every condition x seed of the experiment ``name`` into
        ``<out>/<key>/runs/<name>`` (finished runs are reused) and load them."""
        data = self.experiment(name, overrides, conditions, chip)
        experiment = build_experiment(data, f"reproduce {key}/{name}")
        out = self.folder(key) / "runs" / name
        run_experiment(experiment, None, out, resume=True, progress=self.progress,
                       data_dir=self.data_dir, run_reports=False)
        runs: dict[str, list[Run]] = {}
        for spec in expand_runs(experiment):
            runs.setdefault(spec.condition, []).append(load_run(run_dir_of(out, spec)))
        self.diverged += [f"{key}/runs/{name}/{run}" for run in diverged_runs(runs)]
        return Study(out, runs)


# --------------------------------------------------------------------------- figures
def band_figure(path: Path, curves: dict[str, list[tuple[np.ndarray, np.ndarray]]],
                xlabel: str, ylabel: str, title: str, scale: float = 1.0,
                hline: float | None = None, logx: bool = False) -> Path:
    """Mean ± std over seeds of each labelled set of (x, y) curves, one band per label."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    for index, (label, members) in enumerate(curves.items()):
        x, mean, std, n = mean_std_curves(members)
        plot_band(ax, x, mean, std, n, label, color(index), scale)
    if hline is not None:
        ax.axhline(hline * scale, color="0.5", linestyle=":", linewidth=1)
    if logx:
        ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def save_rows(path: Path, rows: list[dict]) -> Path:
    """A CSV of ``rows`` (the data behind a figure or table)."""
    return write_csv(path, rows)
