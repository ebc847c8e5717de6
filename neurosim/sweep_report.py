"""The report of a sweep folder: one table and figures over every finished trial.

``write_sweep_report(folder)`` reads the manifest (:mod:`neurosim.sweep_manifest`) and each
finished trial's ``summary.json``, and writes into the sweep folder::

    sweep_trials.csv          one row per trial: cell, its overrides, condition, seed,
                              status, error, where it diverged, metrics
    sweep_summary.csv         per cell, condition and metric: n, mean, std (ddof=1) over seeds
    sweep_tests.csv           paired t-tests (by seed) between every two conditions of a cell,
                              with the mean difference's 95 % confidence interval and p
                              Holm-adjusted over all of them
    figures/sweep_*.png       per metric: mean ± std per cell, a bar per condition
    report.md                 the table, the tests against the baseline condition, failed,
                              unfinished and diverged trials, figures
    <cell>/report.md, ...     each cell's comparison (curves, every test): neurosim.compare

A trial's status in the report comes from the folder, the source of its numbers: ``done``
when its ``summary.json`` exists, else ``failed`` when the manifest says so, else
``pending`` (unfinished). The manifest of a killed sweep can lag behind its folder (a worker
finished a trial after the driver died) or a folder can lose a trial's summary; the counts,
the unfinished trials named and the numbers then still agree.

Metrics per trial are :func:`neurosim.compare.run_metrics`'s final test accuracy,
first-epoch AUC, last-layer alignment after the noise phase and after training, and the
energy ledger's total energy and energy to the target test accuracy (``nan`` when not
reached, so n counts the trials that reached it). Accuracies are fractions in the files,
energies picojoules, angles degrees.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from neurosim import plots
from neurosim.compare import (DIVERGED_NOTE, KINDS, LABELS, _summarize, difference_cell,
                              diverged_where, energy_unit, entry_text, group_runs, holm_note,
                              holm_text, pair_test, run_metrics, with_holm, write_comparison)
from neurosim.report import (Run, data_notes_line, dig, figure_section, load_run, markdown_table,
                             write_csv)
from neurosim.runio import SUMMARY, write_text
from neurosim.sweep_manifest import STATUSES, read_manifest

# the compare metrics a sweep reports (keys of neurosim.compare.METRICS)
METRICS = ("test_accuracy", "auc_first_epoch", "alignment_after_precondition_deg",
           "alignment_after_training_deg", "energy_total_pj", "energy_to_target_pj")
TEST_METRICS = ("test_accuracy", "auc_first_epoch", "alignment_after_training_deg",
                "energy_total_pj", "energy_to_target_pj")
REPORT_TESTS = ("test_accuracy", "auc_first_epoch", "energy_to_target_pj")
FIGURE_METRICS = ("test_accuracy", "auc_first_epoch", "alignment_after_training_deg",
                  "energy_to_target_pj")


def trial_metrics(summary: dict) -> dict:
    """The :data:`METRICS` of one trial as floats (nan when absent or not reached)."""
    metrics, _ = run_metrics(summary)
    return {key: metrics[key] for key in METRICS}


def trial_statuses(folder: Path, manifest: dict) -> dict[str, str]:
    """Each trial's status by its folder: ``done`` if its ``summary.json`` exists, else
    the manifest's ``failed``, else ``pending`` (see the module docstring)."""
    return {t["id"]: "done" if (folder / t["path"] / SUMMARY).is_file()
            else "failed" if t["status"] == "failed" else "pending"
            for t in manifest["trials"]}


def figure_metric(cells: list[str], conditions: list[str], stats: dict, metric: str,
                  path: Path) -> Path | None:
    """Mean ± std over seeds of ``metric``: a group of bars per cell, one per condition."""
    means = np.array([[stats[c, k][metric]["mean"] if (c, k) in stats else math.nan
                       for k in conditions] for c in cells], dtype=np.float64)
    stds = np.array([[stats[c, k][metric]["std"] if (c, k) in stats else math.nan
                      for k in conditions] for c in cells], dtype=np.float64)
    if not np.isfinite(means).any():
        return None
    kind, label = KINDS[metric], LABELS[metric]
    scale, unit = {"pct": (100.0, " (%)"), "deg": (1.0, " (degrees)")}.get(kind, (1.0, ""))
    if kind == "energy":
        name, factor = energy_unit(means)
        scale, unit = 1.0 / factor, f" ({name})"
    width = 0.8 / len(conditions)
    fig, axes = plots.new_figure(1, 1, width=min(40.0, 7.0 + 0.3 * len(cells) * len(conditions)),
                                 height=4.6)
    ax = axes[0, 0]
    x = np.arange(len(cells))
    for i, condition in enumerate(conditions):
        ax.bar(x - 0.4 + (i + 0.5) * width, means[:, i] * scale, width,  # nan: no bar
               yerr=stds[:, i] * scale, capsize=2, label=condition, color=plots.color(i))
    tilted = len(cells) > 1
    ax.set_xticks(x, cells, rotation=30 if tilted else 0, ha="right" if tilted else "center",
                  fontsize=8)
    missing = "\n(no bar: no trial reached it)" if metric == "energy_to_target_pj" else ""
    ax.set(ylabel=label + unit, title=f"{label}: mean ± std over seeds, per cell{missing}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plots.save_png(fig, path)


def _tests(cell: str, pairs, groups: dict[str, list[Run]], table: dict, metrics) -> list[dict]:
    """Paired t-tests of ``metrics`` between the ``(a, b)`` condition pairs of a cell."""
    return [{"cell": cell, "a": a, "b": b, **pair_test(groups[a], groups[b], metric, table)}
            for a, b in pairs for metric in metrics]


def _report(manifest: dict, statuses: dict[str, str], stats: dict, shown: list[dict], figures,
            folder: Path, compared: list[str], targets: list[float], data_notes: str,
            diverged: dict[str, str]) -> str:
    counts = {status: list(statuses.values()).count(status) for status in STATUSES}
    baseline = manifest["baseline"]
    seeds = sorted({t["seed"] for t in manifest["trials"]})
    text = [f"# Sweep {manifest['name']}\n\n",
            f"{len(manifest['trials'])} trials ({counts['done']} done, {counts['failed']} "
            f"failed, {counts['pending']} unfinished): {len(manifest['cells'])} cells × "
            f"{len(manifest['conditions'])} conditions × seeds {seeds}. Sweep file "
            f"`{manifest['sweep_file']}`, base experiment `{manifest['experiment_file']}`. "
            "Mean ± std over seeds (sample std, ddof=1); n = trials with a value. Energy "
            "from the ledger: total, and to target = noise phase + data training until the "
            f"test accuracy first reaches {' / '.join(f'{t:.0%}' for t in targets) or '—'} "
            "(n = trials that reached it).\n\n", data_notes,
            "## Results per cell\n\n"]
    rows = [[cell, condition] + [entry_text(stats[cell, condition], k) for k in METRICS]
            for cell, condition in stats]
    text.append(markdown_table(["cell", "condition"] + [LABELS[k] for k in METRICS], rows)
                if rows else "No finished trials yet.\n")
    text.append(f"\n## Paired t-tests against {baseline} (pairing by seed; difference = "
                f"condition − {baseline}, with its 95 % confidence interval)\n\n")
    if shown:
        text.append(holm_note(shown, "this table") + "; `sweep_tests.csv` adjusts over its "
                    "own, larger family (every pair of conditions), so its Holm p can be "
                    "larger.\n\n")
    text.append(markdown_table(
        ["cell", "condition", "metric", "seeds", "mean difference [95 % CI]", "result",
         "Holm p"],
        [[t["cell"], t["a"], LABELS[t["metric"]], str(t["seeds"]),
          difference_cell(t), t["text"], holm_text(t)] for t in shown])
        if shown else "No condition shares seeds with the baseline in any cell.\n")
    text.append("\nEvery pair of conditions and more metrics: `sweep_tests.csv`.\n")
    failed = [t for t in manifest["trials"] if statuses[t["id"]] == "failed"]
    if failed:
        text.append(f"\n## Failed trials ({len(failed)})\n\n")
        text += [f"- `{t['id']}`: {t['error']['type']}: {t['error']['message']}"
                 + (f" (traceback: `{t['path']}/{t['error']['traceback']}`)"
                    if t["error"]["traceback"] else "") + "\n" for t in failed]
    unfinished = [t for t in manifest["trials"] if statuses[t["id"]] == "pending"]
    if unfinished:
        text.append(f"\n## Unfinished trials ({len(unfinished)})\n\nNo `{SUMMARY}` yet "
                    "(never started, running, or interrupted: `neurosim sweep` again "
                    "continues them); left out of every number above.\n\n")
        text += [f"- `{t['id']}`\n" for t in unfinished]
    if diverged:
        text.append(f"\n## Diverged trials ({len(diverged)})\n\n{DIVERGED_NOTE}\n\n")
        text += [f"- `{trial}`: {where}\n" for trial, where in diverged.items()]
    text += ["\n## Figures\n\n", figure_section(figures, folder)]
    if compared:
        text.append("## Per-cell comparisons (curves, every test)\n\n")
        text += [f"- [{cell}]({cell}/report.md)\n" for cell in compared]
    text.append("\nNumbers: `sweep_trials.csv` (per trial), `sweep_summary.csv` (per cell and "
                "condition), `sweep_tests.csv` (paired t-tests); trial status: "
                "`sweep_trials.csv` (by the trial folders), `sweep.json` (as the sweep "
                "recorded it).\n")
    return "".join(text)


def write_sweep_report(folder: Path) -> Path:
    """Write the sweep report of ``folder`` (see the module docstring); returns its path."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    overrides = {c["name"]: c["overrides"] for c in manifest["cells"]}
    keys = list(dict.fromkeys(k for o in overrides.values() for k in o))
    statuses = trial_statuses(folder, manifest)
    loaded = [(trial, load_run(folder / trial["path"])) for trial in manifest["trials"]
              if statuses[trial["id"]] == "done"]
    table = {run.path: trial_metrics(run.summary) for _, run in loaded}
    metrics_by_id = {trial["id"]: table[run.path] for trial, run in loaded}
    diverged = {trial["id"]: diverged_where(run.summary) for trial, run in loaded
                if diverged_where(run.summary)}
    runs_by_cell: dict[str, list[Run]] = {}
    for trial, run in loaded:
        runs_by_cell.setdefault(trial["cell"], []).append(run)
    stats, tests, against_baseline = {}, [], []
    baseline = manifest["baseline"]
    for cell, runs in runs_by_cell.items():
        groups = group_runs(runs)
        for condition, group in groups.items():
            stats[cell, condition] = {k: _summarize([table[r.path][k] for r in group])
                                      for k in METRICS}
        tests += _tests(cell, itertools.combinations(groups, 2), groups, table, TEST_METRICS)
        if baseline in groups:
            against_baseline += _tests(cell, [(c, baseline) for c in groups if c != baseline],
                                       groups, table, REPORT_TESTS)
        write_comparison([r.path for r in runs], folder / cell,
                         title=f"{manifest['name']}: cell {cell}")
    write_csv(folder / "sweep_trials.csv", [
        {"id": t["id"], "cell": t["cell"], **{k: overrides[t["cell"]].get(k) for k in keys},
         "condition": t["condition"], "seed": t["seed"], "status": statuses[t["id"]],
         "error": (f"{t['error']['type']}: {t['error']['message']}"
                   if statuses[t["id"]] == "failed" else None),
         "diverged": diverged.get(t["id"]),
         **metrics_by_id.get(t["id"], {})}
        for t in manifest["trials"]])
    write_csv(folder / "sweep_summary.csv", [
        {"cell": cell, **{k: overrides[cell].get(k) for k in keys}, "condition": condition,
         "metric": metric, **entry}
        for (cell, condition), entries in stats.items() for metric, entry in entries.items()])
    write_csv(folder / "sweep_tests.csv", [
        {"cell": t["cell"], "a": t["a"], "b": t["b"], "metric": t["metric"], "n": t["n"],
         "seeds": t["seeds"], "mean_difference": t["mean_difference"],
         "ci95_low": t["ci95_low"], "ci95_high": t["ci95_high"],
         "statistic": t["statistic"], "pvalue": t["pvalue"], "df": t["df"],
         "holm_pvalue": t["holm_pvalue"]} for t in with_holm(tests)])
    cells = [c["name"] for c in manifest["cells"] if c["name"] in runs_by_cell]
    conditions = [c for c in manifest["conditions"] if any((cell, c) in stats for cell in cells)]
    figures = []
    for metric in FIGURE_METRICS:
        path = figure_metric(cells, conditions, stats, metric,
                             folder / "figures" / f"sweep_{metric}.png")
        if path is not None:
            figures.append((path, LABELS[metric]))
    report = folder / "report.md"
    targets = sorted({dig(run.summary, "ledger", "to_target", "target")
                      for _, run in loaded} - {None})
    write_text(report, _report(manifest, statuses, stats, with_holm(against_baseline), figures,
                               folder, list(runs_by_cell), targets,
                               data_notes_line([run.summary for _, run in loaded]), diverged))
    return report
