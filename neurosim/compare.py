"""Comparison of runs across conditions and seeds: tables, paired t-tests and figures.

``write_comparison(run_dirs, out_dir, title)`` groups the runs by the ``condition`` of their
``summary.json`` and writes into ``out_dir``::

    comparison.csv            one row per run: condition, seed and its key metrics
    comparison_summary.csv    per condition and metric: n, mean, std (ddof=1) over seeds
    comparison.json           the same numbers, plus the paired t-tests
    figures/compare_*.png     test accuracy, last-layer alignment, generalization gap
    report.md                 tables, t-tests and figures

Accuracies, AUCs and gaps are fractions in the files (percentages only in ``report.md``);
angles are degrees; energies (the ledger's total, and to the target test accuracy: ``nan``
when a run never reached it, so n counts the runs that did) are picojoules. "Alignment" is that of the last feedback layer (the highest layer key).
Paired t-tests pair runs of two conditions by seed (only seeds present in both, with finite
values in both); fewer than two pairs give no test. OOD entries that were skipped (strings)
are left out of the numbers and listed in ``comparison.json`` under ``ood_skipped``. Run
folders without a ``summary.json`` that the caller found beside the runs (``unfinished``:
failed, interrupted or still running) are named in ``report.md`` and ``comparison.json``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from functools import partial
from pathlib import Path

import numpy as np

from neurosim import plots
from neurosim.config import ChipConfig, ExperimentConfig, as_this_version, read_yaml
from neurosim.errors import ConfigError, NeurosimError
from neurosim.plots import column, last_layer, layers_in
from neurosim.report import (SUMMARY, Run, data_notes_line, dig, figure_section, load_run,
                             markdown_table, number, percent, provenance_line, write_csv)
from neurosim.runio import write_json, write_text
from neurosim.schema import differences_text, differing
from neurosim.stats import holm_adjusted, mean_std, paired_ttest

# key, label in report.md, how it is shown ("pct": fraction as %, "deg": degrees, "num",
# "energy": pJ, shown in the unit that suits it)
METRICS = (
    ("test_accuracy", "final test accuracy", "pct"),
    ("auc", "test-accuracy AUC", "num"),
    ("auc_first_epoch", "first-epoch AUC", "num"),
    ("alignment_after_precondition_deg", "θ after noise", "deg"),
    ("alignment_after_training_deg", "θ after training", "deg"),
    ("generalization_gap", "generalization gap (nats)", "num"),
    ("energy_total_pj", "total energy", "energy"),
    ("energy_to_target_pj", "energy to target", "energy"),
    ("train_accuracy", "final train accuracy", "pct"),
    ("error_gap", "error gap", "pct"),
    ("alignment_initial_deg", "θ initial", "deg"),
    ("readout_max_deviation", "readout max deviation", "num"),
)
REPORT_METRICS = METRICS[:8]
TEST_METRICS = ("auc_first_epoch", "auc", "test_accuracy", "energy_to_target_pj")
LABELS = {key: label for key, label, _ in METRICS}
KINDS = {key: kind for key, _, kind in METRICS}
ENERGY_UNITS = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))
NO_TEST = "n<2: no test"


# ----------------------------------------------------------------------------- numbers
def _layer_value(mapping, layer: str | None) -> float:
    return plots.as_float(dig(mapping, layer)) if layer is not None else math.nan


def run_metrics(summary: dict) -> tuple[dict, dict]:
    """The key metrics of one run as floats (nan when absent) and its skipped OOD entries.

    Returns ``(metrics, skipped)``: ``metrics`` maps every :data:`METRICS` key and
    ``ood_<name>`` to a float; ``skipped`` maps OOD names to their ``"skipped: ..."`` text.
    """
    train, final, pre = (summary.get(k) or {} for k in ("train", "final", "precondition"))
    initial = dig(pre, "before", "alignment_deg") or train.get("initial_alignment_deg")
    layer = last_layer({**(initial or {}), **(train.get("alignment_deg") or {})})
    values = {
        "test_accuracy": train.get("test_accuracy"),
        "auc": train.get("auc"),
        "auc_first_epoch": train.get("auc_first_epoch"),
        "alignment_after_precondition_deg": _layer_value(dig(pre, "after", "alignment_deg"), layer),
        "alignment_after_training_deg": _layer_value(train.get("alignment_deg"), layer),
        "generalization_gap": train.get("generalization_gap"),
        "train_accuracy": train.get("train_accuracy"),
        "error_gap": train.get("error_gap"),
        "alignment_initial_deg": _layer_value(initial, layer),
        "readout_max_deviation": final.get("readout_max_deviation"),
        "energy_total_pj": dig(summary, "ledger", "energy_pj", "total"),
        "energy_to_target_pj": dig(summary, "ledger", "to_target", "energy_pj"),
    }
    metrics = {key: plots.as_float(value) for key, value in values.items()}
    skipped = {}
    ood = final.get("ood")
    for name, value in (ood.items() if isinstance(ood, dict) else []):
        metrics[f"ood_{name}"] = plots.as_float(value)
        if isinstance(value, str):
            skipped[name] = value
    return metrics, skipped


def _seed_key(seed) -> tuple:
    """Numeric seeds in numeric order, anything else after them by its text."""
    value = plots.as_float(seed)
    return (0, value, "") if math.isfinite(value) else (1, 0.0, str(seed))


def _configuration(run: Run) -> dict:
    """The experiment a run was made with (its summary's ``config``) but for its seed, with
    its chip (``chip.yaml`` beside the summary, when there is one) under ``chip.yaml``. Each
    is read as this version's schema reads it, so runs made before a field existed compare
    by meaning with runs made after (the field's default); as saved where it cannot be."""
    config = _as_this_version(ExperimentConfig, run.summary.get("config"), run.path / SUMMARY)
    configuration = ({k: v for k, v in config.items() if k != "seed"}
                     if isinstance(config, dict) else {})
    if (chip := run.path / "chip.yaml").is_file():
        try:
            configuration["chip.yaml"] = _as_this_version(ChipConfig, read_yaml(chip), chip)
        except ConfigError as error:
            configuration["chip.yaml"] = str(error)
    return configuration


def _as_this_version(kind: type, data, source: Path):
    """``data`` (a saved config from ``source``) as this version reads it; as it is where
    this version cannot."""
    try:
        return as_this_version(kind, data, str(source))
    except ConfigError:
        return data


def _check_same_configuration(run: Run, first: Run, condition: str) -> None:
    """Refuse to average ``run`` with ``first`` (the condition's first run) when they were
    made with different experiments: one condition's seeds must differ only in the seed."""
    differences = [f"{field} {old!r} -> {new!r}" for field, old, new
                   in differing(_configuration(first), _configuration(run))]
    if differences:
        raise NeurosimError(f"{run.path}: condition '{condition}' was run with another "
                            f"configuration than {first.path} ({differences_text(differences)});"
                            " its seeds cannot be averaged: compare them separately")


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by condition (in order of first appearance), each group sorted by seed; the
    runs of a condition must share their configuration but for the seed."""
    groups: dict[str, list[Run]] = {}
    seen: dict[tuple, Path] = {}
    for run in runs:
        condition, seed = str(run.summary.get("condition")), run.summary.get("seed")
        if (condition, seed) in seen:
            raise NeurosimError(f"{run.path} and {seen[condition, seed]} are both condition "
                                f"'{condition}' seed {seed}; compare them separately")
        seen[condition, seed] = run.path
        if condition in groups:
            _check_same_configuration(run, groups[condition][0], condition)
        groups.setdefault(condition, []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: _seed_key(r.summary.get("seed")))
    return groups


def _summarize(values: list[float]) -> dict:
    """``n``, mean and sample std (ddof=1) of the finite ``values``; the std is undefined
    (nan: null in JSON, empty in CSV) for fewer than two."""
    v = [x for x in values if math.isfinite(x)]
    mean, std = mean_std(v)
    return {"n": len(v), "mean": mean, "std": std if len(v) > 1 else math.nan}


def pair_test(a: list[Run], b: list[Run], metric: str, table: dict[Path, dict]) -> dict:
    """Paired t-test of ``metric`` between two conditions, pairing runs by seed."""
    by_seed = {r.summary.get("seed"): table[r.path][metric] for r in b}
    pairs = [(r.summary.get("seed"), table[r.path][metric], by_seed.get(r.summary.get("seed")))
             for r in a if r.summary.get("seed") in by_seed]
    pairs = [(s, x, y) for s, x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    out = {"metric": metric, "seeds": [s for s, _, _ in pairs], "n": len(pairs)}
    if len(pairs) < 2:
        diff = float(np.mean([x - y for _, x, y in pairs])) if pairs else math.nan
        return {**out, "statistic": math.nan, "pvalue": math.nan, "mean_difference": diff,
                "ci95_low": math.nan, "ci95_high": math.nan, "df": math.nan, "text": NO_TEST}
    result = paired_ttest([x for _, x, _ in pairs], [y for _, _, y in pairs])
    return {**out, "statistic": result.statistic, "pvalue": result.pvalue,
            "mean_difference": result.mean_difference, "ci95_low": result.ci95[0],
            "ci95_high": result.ci95[1], "df": result.df, "text": str(result)}


def with_holm(tests: list[dict]) -> list[dict]:
    """``tests`` with ``holm_pvalue``: each p adjusted for all of them as one family
    (:func:`neurosim.stats.holm_adjusted`), since a report makes many tests at once."""
    adjusted = holm_adjusted([t["pvalue"] for t in tests])
    return [{**t, "holm_pvalue": p} for t, p in zip(tests, adjusted)]


def holm_text(test: dict) -> str:
    """A test's Holm-adjusted p for a report table (``—`` where no test was made)."""
    p = test["holm_pvalue"]
    return f"{p:.3g}" if math.isfinite(p) else "—"


def holm_note(tests: list[dict], family: str) -> str:
    """The sentence that says what a table's Holm p is adjusted for: the tests of
    ``family`` that could be made (:func:`holm_adjusted` counts no test without a p)."""
    made = sum(1 for t in tests if math.isfinite(t["pvalue"]))
    return (f"Holm p: the p-value adjusted for the {made} test{'s' * (made != 1)} of {family} "
            f"that could be made (Holm-Bonferroni; rows without a test do not count)")


# ----------------------------------------------------------------------------- figures
def _curves(runs: list[Run], x_key: str, y_key: str, layer_of=None, phase: str = "train"):
    curves = []
    for run in runs:
        records = run.train if phase == "train" else run.noise
        layer = layer_of(run) if layer_of else None
        if records and (layer_of is None or layer is not None):
            curves.append((column(records, x_key), column(records, y_key, layer)))
    return plots.mean_std_curves(curves)


def _last_alignment_layer(run: Run) -> str | None:
    layers = layers_in(run.noise + run.train, "alignment_deg")
    return layers[-1] if layers else None


def _band_figure(groups, path: Path, y_key: str, ylabel: str, title: str, scale: float = 1.0,
                 zoom_first_epoch: bool = False) -> Path | None:
    """Mean ± std over seeds of ``record[y_key]`` vs epoch, one curve per condition."""
    stats = {c: _curves(runs, "epoch", y_key) for c, runs in groups.items()}
    if not any(len(s[0]) for s in stats.values()):
        return None
    zoom = zoom_first_epoch and any(np.any((s[0] > 0) & (s[0] < 1)) for s in stats.values())
    fig, axes = plots.new_figure(1, 2 if zoom else 1, width=11 if zoom else 7, height=4.4)
    panels = [(axes[0, 0], np.inf, "whole run")]
    panels += [(axes[0, 1], 1.0, "first epoch")] if zoom else []
    for ax, end, what in panels:
        for i, (condition, (x, mean, std, n)) in enumerate(stats.items()):
            keep = x <= end
            plots.plot_band(ax, x[keep], mean[keep], std[keep], n[keep], condition,
                            plots.color(i), scale)
        ax.set(xlabel="epoch", ylabel=ylabel, title=what if zoom else title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if zoom:
        fig.suptitle(title)
    return plots.save_png(fig, path)


def figure_test_accuracy(groups, path: Path) -> Path | None:
    """Test accuracy (%) vs epoch: mean over seeds with a ±std band per condition; the right
    panel zooms on the first epoch (fractional-epoch evaluations)."""
    return _band_figure(groups, path, "test_accuracy", "test accuracy (%)",
                        "Test accuracy vs epoch (mean ± std over seeds)", 100.0, True)


def figure_generalization_gap(groups, path: Path) -> Path | None:
    """Generalization gap (test − train loss, nats) vs epoch, mean ± std per condition."""
    return _band_figure(groups, path, "generalization_gap", "test − train loss (nats)",
                        "Generalization gap vs epoch (mean ± std over seeds)")


def figure_alignment(groups, path: Path) -> Path | None:
    """Alignment angle of the last feedback layer, mean ± std per condition: vs noise step
    during preconditioning (left, only when some run has a noise phase) and vs epoch during
    data training (right)."""
    phases = [("precondition", "step", "noise preconditioning", "noise step"),
              ("train", "epoch", "data training", "epoch")]
    stats = [{c: _curves(runs, x_key, "alignment_deg", _last_alignment_layer, phase)
              for c, runs in groups.items()} for phase, x_key, _, _ in phases]
    panels = [(p, s) for p, s in zip(phases, stats) if any(len(v[0]) for v in s.values())]
    if not panels:
        return None
    fig, axes = plots.new_figure(1, len(panels), width=5.5 * len(panels) + 1.5, height=4.4,
                                 sharey=True)
    colors = {c: plots.color(i) for i, c in enumerate(groups)}
    for ax, ((_, _, title, xlabel), s) in zip(axes[0], panels):
        for condition, (x, mean, std, n) in s.items():
            plots.plot_band(ax, x, mean, std, n, condition, colors[condition])
        ax.axhline(90, color="0.5", linewidth=0.8, linestyle=":")
        ax.set(xlabel=xlabel, title=title, ylim=(0, 180))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("last-layer alignment angle θ (degrees)")
    fig.suptitle("Forward/feedback alignment of the last feedback layer (mean ± std over seeds; "
                 "90° = orthogonal)", fontsize=10)
    return plots.save_png(fig, path)


FIGURES = (  # file name, caption, function
    ("compare_test_accuracy.png", "Test accuracy vs epoch", figure_test_accuracy),
    ("compare_alignment.png", "Last-layer alignment angle, noise phase and data phase",
     figure_alignment),
    ("compare_generalization_gap.png", "Generalization gap vs epoch", figure_generalization_gap),
)


# ----------------------------------------------------------------------------- report
def _show(value: float, kind: str, unit: bool = True) -> str:
    """A number as shown in report.md: fractions as %, angles in degrees."""
    if kind == "pct":
        return percent(value) if unit else number(100 * plots.as_float(value), 2)
    if kind == "pp":  # a difference of fractions: percentage points
        return number(100 * plots.as_float(value), 2, " pp" if unit else "")
    if kind == "deg":
        return number(value, 1, "°" if unit else "")
    return number(value, 4)


def difference_kind(kind: str) -> str:
    """How a difference of two values of ``kind`` is shown: fractions in percentage points
    (``pp``), anything else in the values' own unit."""
    return "pp" if kind == "pct" else kind


def difference_text(test: dict, show) -> str:
    """A test's mean difference and its 95 % confidence interval, each shown by ``show``
    (a number in the metric's unit): ``d [low, high]``, or ``d`` alone without a test."""
    low, high = test["ci95_low"], test["ci95_high"]
    interval = f" [{show(low)}, {show(high)}]" if math.isfinite(low) else ""
    return show(test["mean_difference"]) + interval


def _cell(entry: dict, kind: str) -> str:
    """``mean ± std unit (n=k)``, or a dash when no run has the value."""
    if not entry["n"]:
        return "—"
    unit = {"pct": " %", "deg": "°"}.get(kind, "")
    spread = f" ± {_show(entry['std'], kind, False)}" if entry["n"] > 1 else ""
    return f"{_show(entry['mean'], kind, False)}{spread}{unit} (n={entry['n']})"


def energy_unit(values) -> tuple[str, float]:
    """The unit (and its size in pJ) in which the largest of ``values`` is below 1000."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    largest = np.nanmax(values) if np.isfinite(values).any() else 1.0
    return next(((unit, scale) for unit, scale in ENERGY_UNITS if largest < 1e3 * scale),
                ENERGY_UNITS[-1])


def entry_text(entries: dict, metric: str) -> str:
    """``mean ± std unit (n=k)`` of ``metric``'s summary entry (``{n, mean, std}``) among a
    condition's ``entries``; the energy to target says of how many runs with a ledger
    ``n`` reached it (``n=1 of 3``, ``not reached (0 of 3)``): a condition that never
    reached the target has no mean, not a missing value."""
    entry, kind = entries[metric], KINDS[metric]
    if kind != "energy":
        return _cell(entry, kind)
    ledgers = entries["energy_total_pj"]["n"]
    of = f" of {ledgers}" if metric == "energy_to_target_pj" and ledgers else ""
    if not entry["n"]:
        return f"not reached (0{of})" if of else "—"
    unit, scale = energy_unit(entry["mean"])
    spread = f" ± {entry['std'] / scale:.2g}" if entry["n"] > 1 else ""
    return f"{entry['mean'] / scale:.4g}{spread} {unit} (n={entry['n']}{of})"


def difference_cell(test: dict) -> str:
    """A test's mean difference of two conditions and its 95 % confidence interval
    (fractions in percentage points; energies in one unit, that of the largest)."""
    kind = KINDS[test["metric"]]
    if kind != "energy":
        return difference_text(test, partial(_show, kind=difference_kind(kind)))
    unit, scale = energy_unit([test[k] for k in ("mean_difference", "ci95_low", "ci95_high")])
    return difference_text(test, lambda value: f"{value / scale:.4g} {unit}"
                           if math.isfinite(value) else "—")


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()


def diverged_where(summary: dict) -> str:
    """Where a run diverged (:func:`neurosim.summary.diverged_at`): ``noise phase, step S``
    and/or ``data training, epoch E``; empty when it did not."""
    step = dig(summary, "precondition", "diverged_at_step")
    epoch = dig(summary, "train", "diverged_at_epoch")
    return ", ".join(([f"noise phase, step {step}"] if step is not None else []) + (
        [f"data training, epoch {epoch:.3g}"] if epoch is not None else []))


DIVERGED_NOTE = ("The chip's outputs stopped being finite numbers: the run's metrics from "
                 "there on are blank and left out of the means.")


def diverged_runs(groups) -> list[str]:
    """``condition seed S (where)`` of every run that diverged."""
    return [f"{condition} seed {run.summary.get('seed')} ({diverged_where(run.summary)})"
            for condition, runs in groups.items() for run in runs
            if diverged_where(run.summary)]


def _report(title, groups, summaries, ood_names, tests, figures, out_dir, skipped,
            unfinished) -> str:
    text = [f"# {title}\n\n", f"{sum(map(len, groups.values()))} runs in {len(groups)} "
            "conditions; mean ± std over seeds (sample std, ddof=1; no std for one run), n = runs "
            "with a value.\n\n"]
    for condition, runs in groups.items():
        s = runs[0].summary
        noise = "noise preconditioning" if dig(s, "precondition", "enabled") else "no noise"
        optimizer = dig(s, "config", "optimizer") or {}
        chips = ", ".join(f"`{chip}`" for chip in dict.fromkeys(r.summary.get("chip")
                                                                 for r in runs))
        text.append(f"- **{condition}**: rule {s.get('rule', '?')}, chip {chips}, {noise}, "
                    f"dataset `{s.get('dataset', '?')}`, {dig(s, 'train', 'epochs')} epoch(s), "
                    f"optimizer {optimizer.get('name', '?')} (lr {optimizer.get('lr', '?')}), "
                    f"backend `{s.get('backend', '?')}`, seeds "
                    f"{[r.summary.get('seed') for r in runs]}\n")
    if unfinished:
        text.append("\nUnfinished (no `summary.json`: failed, interrupted or still running), "
                    "left out of every number: "
                    + ", ".join(f"`{path}`" for path in unfinished) + ".\n")
    notes = data_notes_line([r.summary for runs in groups.values() for r in runs])
    if notes:  # a paragraph; the next one opens with its own blank line
        text.append("\n" + notes.rstrip("\n") + "\n")
    environments = {json.dumps(r.summary.get("environment"), sort_keys=True): r.summary
                    for group in groups.values() for r in group}
    if len(environments) == 1:
        text += ["\n", provenance_line(next(iter(environments.values())))]
    else:
        text.append("\nThe runs were made by different versions of neurosim or its libraries "
                    "(each run's `report.md` says which).\n")
    text += ["\n## Summary\n\n", markdown_table(
        ["condition"] + [label for _, label, _ in REPORT_METRICS],
        [[c] + [entry_text(summaries[c], k) for k, _, _ in REPORT_METRICS] for c in groups])]
    diverged = diverged_runs(groups)
    if diverged:
        text.append(f"\nDiverged: {'; '.join(diverged)}. {DIVERGED_NOTE}\n")
    if set(ood_names) - {"in_distribution"} or skipped:  # not the test set's column alone
        text += ["\n## Out-of-distribution accuracy\n\n", markdown_table(
            ["condition"] + ood_names,
            [[c] + [_cell(summaries[c][f"ood_{n}"], "pct") for n in ood_names] for c in groups])]
        if skipped:
            reasons: dict[tuple[str, str], list[str]] = {}
            for run, name, why in skipped:
                reasons.setdefault((name, why), []).append(run)
            text.append("\nSkipped:\n\n" + "".join(
                f"- {name} in {', '.join(runs)}: {why}\n" for (name, why), runs in reasons.items()))
    text.append("\n## Paired t-tests (pairing by seed; difference = first − second, with "
                "its 95 % confidence interval)\n\n")
    if tests:
        text.append(holm_note(tests, "this report") + ", to read when asking whether any of "
                    "them is significant.\n\n")
        text.append(markdown_table(
            ["conditions", "metric", "seeds", "mean difference [95 % CI]", "result", "Holm p"],
            [[f"{t['a']} vs {t['b']}", LABELS[t["metric"]], str(t["seeds"]),
              difference_cell(t),
              t["text"], holm_text(t)]
             for t in tests]))
    else:
        text.append("Only one condition: no tests.\n")
    text += ["\n## Figures\n\n", figure_section(figures, out_dir),
             "Numbers: `comparison.csv` (per run), `comparison_summary.csv` (per condition), "
             "`comparison.json` (all, with the tests).\n"]
    return "".join(text)


def write_comparison(run_dirs: list[Path], out_dir: Path, title: str,
                     unfinished: list[Path] = ()) -> Path:
    """Compare the runs in ``run_dirs`` (see the module docstring), naming the
    ``unfinished`` run folders found beside them; returns ``report.md``."""
    if not run_dirs:
        raise NeurosimError("no runs to compare")
    out_dir = Path(out_dir)
    if (out_dir / SUMMARY).exists():
        raise NeurosimError(f"{out_dir}: is a run folder; write the comparison elsewhere")
    unique = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))
    groups = group_runs([load_run(d) for d in unique])
    table, skipped_by_run, skipped = {}, {}, []
    for runs in groups.values():
        for run in runs:
            table[run.path], skipped_by_run[run.path] = run_metrics(run.summary)
            skipped += [(run.label, name, why) for name, why in skipped_by_run[run.path].items()]
    ood_names = list(dict.fromkeys(k for m in table.values() for k in m if k.startswith("ood_")))
    unfinished = [_relative(path, out_dir) for path in unfinished]
    metric_keys = [key for key, _, _ in METRICS] + ood_names
    rows = [{"condition": c, "seed": r.summary.get("seed"), "run": _relative(r.path, out_dir),
             "rule": r.summary.get("rule"),
             "precondition": bool(dig(r.summary, "precondition", "enabled")),
             **{k: table[r.path].get(k, math.nan) for k in metric_keys}}
            for c, runs in groups.items() for r in runs]
    summaries = {c: {k: _summarize([table[r.path].get(k, math.nan) for r in runs])
                     for k in metric_keys} for c, runs in groups.items()}
    tests = with_holm([{"a": a, "b": b, **pair_test(groups[a], groups[b], metric, table)}
                       for a, b in itertools.combinations(groups, 2) for metric in TEST_METRICS])

    write_csv(out_dir / "comparison.csv", rows)
    write_csv(out_dir / "comparison_summary.csv",
              [{"condition": c, "metric": k, **summaries[c][k]}
               for c in groups for k in metric_keys])
    write_json(out_dir / "comparison.json", {
        "title": title,
        "conditions": {c: {"seeds": [r.summary.get("seed") for r in runs],
                           "runs": [_relative(r.path, out_dir) for r in runs],
                           "metrics": summaries[c]} for c, runs in groups.items()},
        "runs": [{**row, "ood_skipped": skipped_by_run[r.path]}
                 for row, r in zip(rows, (r for runs in groups.values() for r in runs))],
        "tests": tests,
        "unfinished": unfinished,
    })
    figures = []
    for name, caption, draw in FIGURES:
        path = draw(groups, out_dir / "figures" / name)
        if path is not None:
            figures.append((path, caption))
    report = out_dir / "report.md"
    ood_short = [name.removeprefix("ood_") for name in ood_names]
    write_text(report, _report(title, groups, summaries, ood_short, tests, figures, out_dir,
                               skipped, unfinished))
    return report
