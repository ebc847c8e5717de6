"""One run's report: CSV curves, figures and ``report.md``, from its metric log and summary.

``write_run_report(run_dir)`` reads ``metrics.jsonl`` and ``summary.json`` (see
:mod:`neurosim.summary`) and writes, next to them::

    curves_precondition.csv   one row per noise-phase record (only when there is a noise phase)
    curves_train.csv          one row per data-phase record
    figures/*.png             the figures listed in FIGURES (each only when its data exist)
    report.md                 headline numbers and the figures

CSV columns are the record fields, nested ``{layer: value}`` fields flattened to
``<field>_<layer>`` (``alignment_deg_2``); a missing or null value is an empty cell. The
helpers for reading run folders and writing tables are shared with :mod:`neurosim.compare`.
``write_run_reports(run_dirs, processes)`` writes the reports of many runs (a population's
chips), several at once in worker processes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from neurosim import plots
from neurosim.config import NoiseInputConfig
from neurosim.energy import (EnergyConfig, bytes_text, cell_read_pj, energy_text,
                             write_pulse_pj)
from neurosim.ledger import COUNTER_INDEX, Ledger, bytes_moved, reread_totals
from neurosim.errors import NeurosimError
from neurosim.plots import column, finite, layer_keys, layers_in
from neurosim.rules import RULES, get_rule, is_direct
from neurosim.runio import METRICS, SUMMARY, write_text
from neurosim.schema import build

RUN_REPORT = "report.md"  # a run folder's report, written by write_run_report

DASH = "—"


# ----------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Run:
    """A run folder's summary and its metric records split by phase."""

    path: Path
    summary: dict
    noise: list[dict]
    train: list[dict]

    @property
    def label(self) -> str:
        return f"{self.summary.get('condition', '?')} seed {self.summary.get('seed', '?')}"


def read_json_file(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except OSError as error:
        raise NeurosimError(f"{path}: cannot read ({error.strerror or error})") from error
    except json.JSONDecodeError as error:
        raise NeurosimError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise NeurosimError(f"{path}: expected a JSON object")
    return value


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines metric log (blank lines ignored)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise NeurosimError(f"{path}: cannot read ({error.strerror or error})") from error
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise NeurosimError(f"{path}:{number}: not valid JSON ({error})") from error
    return records


def load_run(run_dir: Path) -> Run:
    """Read ``summary.json`` and ``metrics.jsonl`` of ``run_dir``."""
    run_dir = Path(run_dir)
    summary = read_json_file(run_dir / SUMMARY)
    records = read_records(run_dir / METRICS)
    return Run(run_dir, summary,
               [r for r in records if r.get("phase") == "precondition"],
               [r for r in records if r.get("phase") == "train"])


def dig(mapping, *keys):
    """``mapping[k1][k2]...``, or ``None`` when any level is missing or not a dict."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


# ----------------------------------------------------------------------------- tables
def flatten(record: dict, prefix: str = "") -> dict:
    """Nested dicts flattened with ``_``: ``{"alignment_deg": {"2": 3.0}}`` -> ``alignment_deg_2``."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}_"))
        else:
            out[name] = value
    return out


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)  # str(float) is the shortest exact round-trip form


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Rows of dicts as CSV; columns default to every key, in order of first appearance."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    write_text(path, buffer.getvalue())
    return Path(path)


def curve_rows(records: list[dict]) -> list[dict]:
    """CSV rows of metric records: flattened, without the (per-file constant) ``phase``."""
    return [flatten({k: v for k, v in r.items() if k != "phase"}) for r in records]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def number(value, digits: int = 3, unit: str = "") -> str:
    x = plots.as_float(value)
    return f"{x:.{digits}f}{unit}" if math.isfinite(x) else DASH


def percent(value, digits: int = 2) -> str:
    x = plots.as_float(value)
    return f"{100 * x:.{digits}f} %" if math.isfinite(x) else DASH


def ood_text(value) -> str:
    """An OOD entry: an accuracy fraction, or the ``"skipped: reason"`` string as is."""
    return value if isinstance(value, str) else percent(value)


# ----------------------------------------------------------------------------- figures
def _mark_fractional(ax, x, y, color: str) -> None:
    """Filled markers at whole epochs, open markers at fractional-epoch evaluations."""
    fractional = np.abs(x - np.round(x)) > 1e-9
    ax.plot(x[~fractional], y[~fractional], "o", color=color, markersize=4)
    ax.plot(x[fractional], y[fractional], "o", color=color, markersize=5,
            markerfacecolor="white")


def figure_accuracy(run: Run, path: Path) -> Path | None:
    """Test and train accuracy (%) vs epoch; right panel zooms on the first epoch.

    Open markers are the fractional-epoch evaluations (0.02, 0.05, ...), filled ones whole
    epochs. Train accuracy is measured on a fixed probe of the training set.
    """
    epoch = column(run.train, "epoch")
    if not np.isfinite(epoch).any():
        return None
    zoom = bool(np.any((epoch > 0) & (epoch < 1)))
    fig, axes = plots.new_figure(1, 2 if zoom else 1, width=10 if zoom else 7)
    panels = [(axes[0, 0], np.inf, "whole run")]
    panels += [(axes[0, 1], 1.0, "first epoch")] if zoom else []
    for ax, end, what in panels:
        for key, label, c in (("test_accuracy", "test", plots.color(0)),
                              ("train_accuracy", "train (probe)", plots.color(1))):
            x, y = finite(epoch, 100 * column(run.train, key))
            x, y = x[x <= end], y[x <= end]
            ax.plot(x, y, color=c, label=label)
            _mark_fractional(ax, x, y, c)
        ax.plot([], [], "o", color="0.3", markerfacecolor="white", label="fractional-epoch eval")
        ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100),
               title=f"Accuracy, {what}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{run.label}: accuracy vs epoch")
    return plots.save_png(fig, path)


def figure_loss(run: Run, path: Path) -> Path | None:
    """Train/test cross-entropy (nats), generalization gap (test − train loss, nats) and
    error gap (train − test accuracy, percentage points) vs epoch."""
    epoch = column(run.train, "epoch")
    if not np.isfinite(epoch).any():
        return None
    fig, axes = plots.new_figure(1, 3, width=13, height=4)
    ax = axes[0, 0]
    for key, label, c in (("test_loss", "test", plots.color(0)),
                          ("train_loss", "train (probe)", plots.color(1))):
        ax.plot(*finite(epoch, column(run.train, key)), marker=".", color=c, label=label)
    ax.set(xlabel="epoch", ylabel="cross-entropy loss (nats)", title="Loss")
    ax.legend(fontsize=8)
    for ax, key, scale, ylabel, title in (
            (axes[0, 1], "generalization_gap", 1.0, "test − train loss (nats)",
             "Generalization gap"),
            (axes[0, 2], "error_gap", 100.0, "train − test accuracy (pp)", "Error gap")):
        ax.plot(*finite(epoch, scale * column(run.train, key)), marker=".", color=plots.color(2))
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.label}: loss and generalization vs epoch")
    return plots.save_png(fig, path)


def feedback_symbol(rule: str) -> str:
    """``B``, or ``−B`` for a rule whose alignment is measured against the negated
    feedback (DRTP: :attr:`neurosim.rules.Rule.feedback_sign`)."""
    return "−B" if get_rule(rule).feedback_sign < 0 else "B"


def compared_matrices(rule: str | None, layer: str) -> str:
    """What alignment angle ``layer`` (a key of ``alignment_deg``) compares
    (:func:`neurosim.evaluation.feedback_targets`): FA's feedback array of layer ``l`` with
    ``W_l``; a direct rule's (DFA, SDFA, DRTP) array of hidden layer ``l`` with the path from
    that layer to the output (DRTP's negated: :attr:`neurosim.rules.Rule.feedback_sign`)."""
    if is_direct(rule):
        return f"W_L⋯W_{int(layer) + 1} vs {feedback_symbol(rule)}_{layer}ᵀ"
    return f"W_{layer} vs B_{layer}ᵀ"


def figure_alignment(run: Run, path: Path) -> Path | None:
    """Alignment angle between W_l and B_l^T per layer (solid), mean per-neuron angle ± std
    (dashed, band), and the angle between the rule's update and the BP gradient, vs
    optimizer step: noise-phase steps first (shaded), then data-phase steps."""
    layers = layers_in(run.noise + run.train, "alignment_deg")
    update_layers = layers_in(run.noise + run.train, "update_vs_bp_deg")
    if not layers and not update_layers:
        return None
    line = plots.timeline(run.noise, run.train)
    rule = run.summary.get("rule")
    fig, axes = plots.new_figure(2, 1, width=8, height=7, sharex=True)
    top, bottom = axes[0, 0], axes[1, 0]
    for i, layer in enumerate(layers):
        c = plots.color(i)
        plots.plot_phased(top, line, run.noise, run.train, "alignment_deg", layer, color=c,
                          label=f"θ layer {layer} ({compared_matrices(rule, layer)})")
        x, mean = plots.phased(line, run.noise, run.train, "neuron_alignment_mean_deg", layer)
        _, std = plots.phased(line, run.noise, run.train, "neuron_alignment_std_deg", layer)
        keep = np.isfinite(x) & np.isfinite(mean)
        if keep.any():
            x, mean, std = x[keep], mean[keep], np.nan_to_num(std[keep])
            top.plot(x, mean, "--", color=c, label=f"per-neuron, layer {layer}: mean ± std")
            top.fill_between(x, mean - std, mean + std, color=c, alpha=0.15, linewidth=0)
    for i, layer in enumerate(update_layers):
        plots.plot_phased(bottom, line, run.noise, run.train, "update_vs_bp_deg", layer,
                          color=plots.color(i), label=f"layer {layer}")
    for ax, title in ((top, "Forward/feedback alignment"), (bottom, "Update vs BP gradient")):
        ax.axhline(90, color="0.5", linewidth=0.8, linestyle=":")
        plots.mark_noise_phase(ax, line)
        ax.set(ylabel="angle (degrees)", ylim=(0, 180 if ax is top else None))
        ax.set_title(title, pad=14)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel(plots.step_label(line))
    fig.suptitle(f"{run.label}: alignment angles vs step (90° = orthogonal)")
    return plots.save_png(fig, path)


def figure_neuron_angles(run: Run, path: Path) -> Path | None:
    """Histogram of per-neuron alignment angles (outgoing forward weights W_{l+1}[:, j] vs
    feedback weights B_{l+1}[j, :]; for direct rules, hidden layer l's neuron's path to the
    output vs its row of B_l, of -B_l for DRTP) before and after noise preconditioning and
    after training, one panel per feedback array."""
    sets = [(label, dig(run.summary, *keys)) for label, keys in (
        ("before noise", ("precondition", "before", "neuron_angles")),
        ("after noise", ("precondition", "after", "neuron_angles")),
        ("after training", ("final", "neuron_angles")))]
    sets = [(label, angles) for label, angles in sets if isinstance(angles, dict) and angles]
    layers = layer_keys(*(angles for _, angles in sets))
    if not layers:
        return None
    fig, axes = plots.new_figure(1, len(layers), width=6.5 * len(layers), height=4.2)
    bins = np.arange(0, 181, 5)
    for ax, layer in zip(axes[0], layers):
        for i, (label, angles) in enumerate(sets):
            values = np.asarray([plots.as_float(v) for v in angles.get(layer) or []])
            values = values[np.isfinite(values)]
            if values.size:
                ax.hist(values, bins=bins, histtype="step", linewidth=1.8, color=plots.color(i),
                        label=f"{label} (mean {values.mean():.1f}°)")
        ax.axvline(90, color="0.5", linewidth=0.8, linestyle=":")
        ax.set(xlabel="per-neuron angle (degrees)", ylabel="number of neurons", xlim=(0, 180),
               title=(f"Neurons of hidden layer {layer} (their paths to the output)"
                      if is_direct(run.summary.get("rule"))
                      else f"Hidden neurons projecting to layer {layer}"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{run.label}: per-neuron alignment angles")
    return plots.save_png(fig, path)


def _max_rank(dims, layer: str) -> int | None:
    """``min(n_l, n_{l-1})``, the largest possible rank of ``W_l``."""
    if not (isinstance(dims, list) and layer.isdigit() and 1 <= int(layer) < len(dims)):
        return None
    return int(min(dims[int(layer)], dims[int(layer) - 1]))


def figure_effective_rank(run: Run, path: Path) -> Path | None:
    """Effective rank (Roy & Vetterli 2007) of each forward matrix W_l vs optimizer step, one
    panel per layer (dotted: the largest possible rank); noise phase shaded."""
    layers = layers_in(run.noise + run.train, "effective_rank")
    if not layers:
        return None
    line = plots.timeline(run.noise, run.train)
    fig, axes = plots.new_figure(1, len(layers), width=5.5 * len(layers), height=4)
    for i, (ax, layer) in enumerate(zip(axes[0], layers)):
        plots.plot_phased(ax, line, run.noise, run.train, "effective_rank", layer,
                          color=plots.color(i), label="effective rank")
        limit = _max_rank(run.summary.get("dims"), layer)
        if limit:
            ax.axhline(limit, color="0.4", linestyle=":", label=f"max rank {limit}")
        plots.mark_noise_phase(ax, line)
        ax.set(xlabel=plots.step_label(line), ylabel="effective rank")
        ax.set_title(f"$W_{{{layer}}}$", pad=14)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{run.label}: effective rank of the forward weights")
    return plots.save_png(fig, path)


def figure_readout(run: Run, path: Path) -> Path | None:
    """Readout probability (mean softmax output) per class before and after noise
    preconditioning and after training, against chance 1/C (dashed)."""
    sets = [(label, dig(run.summary, *keys)) for label, keys in (
        ("before noise (noise probe)", ("precondition", "before", "readout_probability")),
        ("after noise (noise probe)", ("precondition", "after", "readout_probability")),
        ("after training (noise probe)", ("final", "readout_probability")),
        ("after training (test set)", ("final", "test_readout_probability")))]
    sets = [(label, np.asarray([plots.as_float(v) for v in p])) for label, p in sets
            if isinstance(p, list) and p]
    if not sets:
        return None
    classes = max(p.size for _, p in sets)
    fig, axes = plots.new_figure(1, 1, width=max(7.0, 0.8 * classes + 2), height=4.2)
    ax = axes[0, 0]
    width = 0.8 / len(sets)
    for i, (label, p) in enumerate(sets):
        ax.bar(np.arange(p.size) + (i - (len(sets) - 1) / 2) * width, p, width,
               color=plots.color(i), label=label)
    ax.axhline(1 / classes, color="black", linestyle="--", linewidth=1,
               label=f"chance 1/C = {1 / classes:.3g}")
    ax.set(xlabel="class", ylabel="mean softmax probability", xticks=range(classes),
           title=f"{run.label}: readout probability per class vs chance")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plots.save_png(fig, path)


def figure_energy(run: Run, path: Path) -> Path | None:
    """The energy ledger: one bar per phase, stacked by component (µJ)."""
    phases = dig(run.summary, "ledger", "energy_pj", "phases")
    if not isinstance(phases, dict) or not phases:
        return None
    labels = list(phases)
    components = list(next(iter(phases.values())))
    fig, axes = plots.new_figure(1, 1, width=7.5, height=4.2)
    ax = axes[0, 0]
    plots.stacked_bars(ax, labels, {c: [phases[p][c] for p in labels] for c in components},
                       scale=1e-6)
    ax.set(ylabel="energy (µJ)", title=f"{run.label}: energy per phase and component")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plots.save_png(fig, path)


FIGURES = (  # file name, caption, function
    ("accuracy.png", "Test and train accuracy vs epoch (open markers: fractional epochs)",
     figure_accuracy),
    ("loss.png", "Loss, generalization gap and error gap vs epoch", figure_loss),
    ("alignment.png", "Alignment angles vs step, noise phase then data phase", figure_alignment),
    ("neuron_angles.png", "Per-neuron alignment angles before/after noise and after training",
     figure_neuron_angles),
    ("effective_rank.png", "Effective rank of each W_l vs step", figure_effective_rank),
    ("readout_probability.png", "Readout probability per class vs chance", figure_readout),
    ("energy.png", "Energy ledger per phase, stacked by component", figure_energy),
)


# ----------------------------------------------------------------------------- report.md
def _angles(snapshot, layer: str) -> str:
    """``θ (neurons mean ± std)`` of one layer from a dict holding ``alignment_deg``,
    ``neuron_alignment_mean_deg`` and ``neuron_alignment_std_deg`` (a dash if absent)."""
    if not isinstance(snapshot, dict):
        return DASH
    theta = number(dig(snapshot, "alignment_deg", layer), 1, "°")
    mean = plots.as_float(dig(snapshot, "neuron_alignment_mean_deg", layer))
    std = plots.as_float(dig(snapshot, "neuron_alignment_std_deg", layer))
    if math.isfinite(mean):
        theta += f" (neurons {mean:.1f}" + (f" ± {std:.1f}°)" if math.isfinite(std) else "°)")
    return theta


def alignment_definition(rule: str | None) -> str:
    """One sentence saying what the alignment table's angles compare."""
    if is_direct(rule):
        return (f"{rule.upper()}: layer l is hidden layer l; θ_l is the angle between "
                f"{feedback_symbol(rule)}_lᵀ (its feedback from the output: "
                f"{get_rule(rule).direct_input}) and the product W_L⋯W_{{l+1}} of the forward "
                "weights from that layer to the output (ReLU derivatives left out).\n\n")
    return "θ_l is the angle between W_l and B_lᵀ, layer l's feedback array.\n\n"


def alignment_table(run: Run) -> str:
    """θ_l and per-neuron mean ± std: initial, after preconditioning, after training."""
    s = run.summary
    first, last = (run.train[0], run.train[-1]) if run.train else ({}, {})
    initial = dig(s, "precondition", "before") or {
        **first, "alignment_deg": dig(s, "train", "initial_alignment_deg")}
    trained = {**last, "alignment_deg": dig(s, "train", "alignment_deg")}
    after_noise = dig(s, "precondition", "after")
    rows = [[layer, _angles(initial, layer), _angles(after_noise, layer), _angles(trained, layer)]
            for layer in layer_keys(initial.get("alignment_deg"), trained["alignment_deg"])]
    if not rows:
        return "No alignment data.\n"
    return markdown_table(["layer", "initial", "after preconditioning", "after training"], rows)


def array_weights_table(summary: dict) -> str:
    """Where the forward arrays' devices sit, per layer, ``mean ± std`` of the normalized
    array weights: before and after the noise phase and after training (``""`` where the
    run recorded none)."""
    when = [("before noise", ("precondition", "before")), ("after noise", ("precondition", "after")),
            ("after training", ("final",))]
    found = [(label, dig(summary, *path, "array_weights")) for label, path in when]
    found = [(label, stats) for label, stats in found if isinstance(stats, dict)]
    if not found:
        return ""
    references = dig(summary, "final", "array_references")
    if isinstance(references, dict) and references:
        found.append(("reference", references))
    layers = sorted({layer for _, stats in found for layer in stats}, key=int)
    cell = lambda stats, layer: (f"{round(stats[layer]['mean'], 3) + 0.0:+.3f} ± "
                                 f"{stats[layer]['std']:.3f}" if layer in stats else DASH)
    zero_shifted = (" Each device is read against a reference device at its symmetry point "
                    "(zero-shifting, `forward.reference`): w is the device's minus its "
                    "reference, and the last column is where the references sit, in the "
                    "devices' units." if len(found) > 1 and found[-1][0] == "reference" else "")
    return ("\n## Array weights\n\nMean ± std of each forward array's normalized weights "
            "w (the devices' own units; the network weight is α_l w). Random-sign updates, "
            "such as a noise phase's, move the mean towards the devices' symmetry point "
            "(`neurosim devices list`)." + zero_shifted + "\n\n"
            + markdown_table(["layer", *(label for label, _ in found)],
                             [[layer, *(cell(stats, layer) for _, stats in found)]
                              for layer in layers]))


def array_pairs_table(summary: dict) -> str:
    """A chip of differential pairs (``forward.pair``): per layer, the pairs refreshed and
    the mean fill of G+ / G- before and after the noise phase and after training (``""``
    for a chip without pairs)."""
    when = [("before noise", ("precondition", "before")), ("after noise", ("precondition", "after")),
            ("after training", ("final",))]
    found = [(label, dig(summary, *path, "array_pairs")) for label, path in when]
    found = [(label, stats) for label, stats in found if isinstance(stats, dict) and stats]
    if not found:
        return ""
    layers = sorted({layer for _, stats in found for layer in stats}, key=int)
    cell = lambda stats, layer: (f"{stats[layer]['pairs_refreshed']} · "
                                 f"{stats[layer]['fill_plus']:.2f} / "
                                 f"{stats[layer]['fill_minus']:.2f}" if layer in stats else DASH)
    return ("\n## Differential pairs\n\nEvery weight is a pair of devices, w = (G+ − G+_min) − "
            "(G− − G−_min), moved by SET pulses only; a pair with a device above "
            "`forward.pair.refresh_threshold` of its range is RESET and reprogrammed at each "
            "refresh check. Per cell: pairs refreshed so far · mean fill of G+ / G− (state "
            "above G_min as a fraction of the range).\n\n"
            + markdown_table(["layer", *(label for label, _ in found)],
                             [[layer, *(cell(stats, layer) for _, stats in found)]
                              for layer in layers]))


def headline_rows(summary: dict) -> list[list[str]]:
    train, final = summary.get("train") or {}, summary.get("final") or {}
    pre = summary.get("precondition") or {}
    seconds = summary.get("seconds") or {}
    speed = summary.get("samples_per_second") or {}
    deviation = " / ".join(number(x, 4) for x in (dig(pre, "before", "readout_max_deviation"),
                                                   dig(pre, "after", "readout_max_deviation"),
                                                   final.get("readout_max_deviation")))
    gram = final.get("gram_effective_rank")
    rows = [
        ["final test accuracy", percent(train.get("test_accuracy"))],
        ["final train accuracy (probe)", percent(train.get("train_accuracy"))],
        ["test-accuracy AUC, whole run (1.0 = 100 % from the start)", number(train.get("auc"), 4)],
        ["test-accuracy AUC, first epoch", number(train.get("auc_first_epoch"), 4)],
        ["generalization gap (test − train loss, nats)", number(train.get("generalization_gap"), 4)],
        ["error gap (train − test accuracy, percentage points)",
         number(100 * plots.as_float(train.get("error_gap")), 2, " pp")],
        ["readout max deviation from 1/C: before noise / after noise / final", deviation],
    ]
    rows += [[f"gram effective rank of hidden layer {k}", number(v, 2)]
             for k, v in (gram.items() if isinstance(gram, dict) else [])]
    ran = {"precondition": bool(pre.get("enabled"))}  # a phase that did not run has no time
    rows += [[f"time: {phase}", number(sec, 1, " s")] for phase, sec in seconds.items()
             if ran.get(phase, True)]
    rows += [[f"throughput: {phase}", number(v, 0, " samples/s")] for phase, v in speed.items()]
    return rows


def converter_text(energy: dict, chip: dict | None, rule: str | None = None) -> str:
    """The converter resolutions the ledger charged, and whether the reads simulated them
    or ran with ideal converters (then the energy model's default resolutions are
    charged); the feedback array's converters only where the run read it (not under BP,
    nor with regenerated feedback)."""
    charged = {kind: sorted({b for bits in energy.get(f"{kind}_bits", {}).values()
                             for b in bits if b is not None}) for kind in ("adc", "dac")}
    text = (f"Converters are charged as {'/'.join(map(str, charged['adc'])) or '?'}-bit ADC and "
            f"{'/'.join(map(str, charged['dac'])) or '?'}-bit DAC conversions.")
    arrays = ("forward",) if rule == "bp" or (isinstance(chip, dict) and dig(
        chip, "feedback", "kind") == "regenerated") else ("forward", "feedback")
    ideal = [f"`{array}.periphery.{kind}_bits`" for array in arrays for kind in ("adc", "dac")
             if isinstance(chip, dict) and dig(chip, array, "periphery", f"{kind}_bits") is None]
    if ideal:
        verb = "is" if len(ideal) == 1 else "are"
        text += (f" The reads simulated ideal converters where {', '.join(ideal)} {verb} "
                 "null: there the energy model's default resolution "
                 "(`energy.adc_bits_default`, `energy.dac_bits_default`) is charged, not a "
                 "simulated one.")
    return text + " "


def unit_cost_text(chip: dict | None) -> str:
    """The chip's array unit costs as the ledger priced them: a cell read and a write pulse
    up / down (pJ), from the run's ``chip.yaml`` (empty when it has none or cannot be read)."""
    if not isinstance(chip, dict):
        return ""
    try:
        costs = build(EnergyConfig, chip.get("energy"), "chip.yaml", "energy")
    except NeurosimError:
        return ""
    return (f"A cell read costs {cell_read_pj(costs):.3g} pJ, a write pulse "
            f"{write_pulse_pj(costs):.3g} pJ up and {write_pulse_pj(costs, up=False):.3g} pJ "
            "down. ")


def rereads_text(ledger: dict) -> str:
    """What iterative bound management read again (:func:`neurosim.ledger.reread_totals`):
    its ADC conversions and cells, and their shares of all of the run's."""
    totals = reread_totals(ledger)
    return ", ".join(f"{totals[name][0]:,} {what} "
                     f"({percent(totals[name][0] / max(totals[name][1], 1))} of all)"
                     for name, what in (("adc_conversions", "ADC conversions"),
                                        ("cells_read", "cells read")))


def activation_buffer_text(buffer: dict, rule: str | None) -> str:
    """The buffer a training step needs (:func:`neurosim.accounting.activation_buffer`)
    and why: an update-locked rule holds every layer's input until the output error
    exists; DRTP one hidden layer's input and output at a time."""
    why = ("one hidden layer's input and output at a time: DRTP updates a layer as soon as "
           "its read is done" if rule in RULES and not RULES[rule].update_locked else
           "every layer's input, until the output error exists")
    return (f"{bytes_text(buffer['bytes'])}: {buffer['values_per_sample']:,} values per "
            f"sample × batch {buffer['batch']} ({why})")


def energy_section(summary: dict, chip: dict | None = None) -> str:
    """The run's ledger: energy per phase and component, pulses, bytes, energy to target."""
    ledger = summary.get("ledger")
    if not isinstance(ledger, dict):
        return ""
    energy = ledger["energy_pj"]
    components = list(energy["components"])
    rows = [[phase, *(energy_text(values[c]) for c in components),
             energy_text(sum(values.values()))] for phase, values in energy["phases"].items()]
    rows.append(["**total**", *(energy_text(energy["components"][c]) for c in components),
                 f"**{energy_text(energy['total'])}**"])
    counts = Ledger.from_json(ledger["counts"]).counts
    target = ledger.get("to_target") or {}
    totals = [["programming pulses (up / down)",
               f"{int(counts[..., COUNTER_INDEX['pulses_up']].sum()):,} / "
               f"{int(counts[..., COUNTER_INDEX['pulses_down']].sum()):,}"],
              ["bytes moved (digital memory <-> arrays)", bytes_text(int(bytes_moved(counts).sum()))],
              ["of which weight transport (BP)",
               bytes_text(int(counts[..., COUNTER_INDEX["bytes_weight_transport"]].sum()))]]
    if "rereads" in ledger:
        totals.append(["re-reads of iterative bound management", rereads_text(ledger)])
    if "activation_buffer" in ledger:
        totals.append(["activation buffer (forward values held for the updates)",
                       activation_buffer_text(ledger["activation_buffer"], summary.get("rule"))])
    if target:
        reached = (f"{energy_text(target['energy_pj'])}, {target['pulses']:,} pulses, "
                   f"{bytes_text(target['bytes'])} (step {target['step']}; noise phase: "
                   f"{energy_text(target['precondition']['energy_pj'])})"
                   if target.get("reached") else "not reached")
        totals.append([f"energy to {percent(target['target'], 0)} test accuracy", reached])
    return ("\n## Energy and memory traffic (ledger)\n\n"
            "Counted as the chip ran (`neurosim.accounting`), priced with the chip's `energy:` "
            "unit costs. " + unit_cost_text(chip)
            + converter_text(energy, chip, summary.get("rule"))
            + "`eval` holds the inference passes made to measure accuracy; it is not part of "
            "the energy to target.\n\n"
            + markdown_table(["phase", *components, "total"], rows) + "\n"
            + markdown_table(["quantity", "value"], totals))


def noise_input(fields: dict | None) -> NoiseInputConfig:
    """A summary's ``precondition.input`` as its config (a :class:`NeurosimError` where it
    cannot be read)."""
    return build(NoiseInputConfig, fields, SUMMARY, "config.precondition.input")


def noise_input_text(fields: dict | None, number: str = "g") -> str:
    """The noise phase's input distribution in a few words (:meth:`NoiseInputConfig.describe`,
    ``N(0, 1²)``, numbers in the format spec ``number``), from a summary's
    ``precondition.input``; ``?`` when it cannot be read."""
    try:
        return noise_input(fields).describe(number)
    except NeurosimError:
        return "?"


def _setup_line(s: dict, chip: dict | None) -> str:
    """What was run: the rule, the chip's devices and update, the data, the noise phase
    and the optimizer (from the summary's experiment and the run's ``chip.yaml``)."""
    config = s.get("config") or {}
    noise = config.get("precondition") or {}
    noise_text = (f"noise preconditioning: {noise.get('regime', '?')}, {noise.get('steps', '?')}"
                  f" steps of {noise.get('batch_size', '?')}, "
                  f"{noise_input_text(noise.get('input'))} inputs"
                  + (f", a set of {noise['n_examples']:,}" if noise.get("regime") == "fixed_set"
                     and isinstance(noise.get("n_examples"), int) else "")
                  if dig(s, "precondition", "enabled") else "no noise preconditioning")
    devices = ""
    if isinstance(chip, dict):
        devices = (f" (forward devices `{dig(chip, 'forward', 'device', 'model')}`, "
                   f"`{dig(chip, 'forward', 'update', 'mode')}` updates; "
                   f"`{dig(chip, 'feedback', 'kind')}` feedback)")
    optimizer = config.get("optimizer") or {}
    epochs = dig(s, "train", "epochs")
    return (f"rule **{s.get('rule', '?')}**, chip `{s.get('chip', '?')}`{devices}, backend "
            f"`{s.get('backend', '?')}` ({dig(config, 'simulation', 'dtype') or '?'}), "
            f"network {s.get('dims', '?')}, dataset `{s.get('dataset', '?')}`, {noise_text}, "
            f"{epochs} epoch{'' if epochs == 1 else 's'} of batch "
            f"{dig(config, 'train', 'batch_size')}, "
            f"optimizer {optimizer.get('name', '?')} (lr {optimizer.get('lr', '?')}), seed "
            f"{s.get('seed', '?')}")


def data_notes_line(summaries: list[dict]) -> str:
    """The datasets' notes of runs (``summary.json``'s ``data_notes``), each once, as a
    paragraph; empty when there are none."""
    notes = dict.fromkeys(note for s in summaries for note in s.get("data_notes") or [])
    return f"Data: {'; '.join(notes)}.\n\n" if notes else ""


def provenance_line(summary: dict) -> str:
    """Which code made the run (:mod:`neurosim.provenance`), as a paragraph; empty for a
    summary written before neurosim recorded it."""
    env = summary.get("environment")
    if not isinstance(env, dict):
        return ""
    libraries = ", ".join(f"{name} {env[name]}" for name in ("python", "numpy", "scipy",
                                                              "numba", "torch") if env.get(name))
    revision = f" (revision `{env['revision']}`)" if env.get("revision") else ""
    return (f"Made by neurosim {env.get('neurosim', '?')}{revision} with {libraries} on "
            f"{env.get('platform', '?')}.\n\n")


def figure_section(figures: list[tuple[str, str]], root: Path) -> str:
    """Markdown embedding ``(path, caption)`` figures with paths relative to ``root``."""
    return "".join(f"### {caption}\n\n![{caption}]({path.relative_to(root).as_posix()})\n\n"
                   for path, caption in figures)


def _csv_line(run: Run) -> str:
    files = [f"`{name}`" for name, records in (("curves_train.csv", run.train),
                                               ("curves_precondition.csv", run.noise)) if records]
    return f"Curves as CSV: {', '.join(files)}.\n" if files else "No metric records.\n"


def write_run_report(run_dir: Path) -> Path:
    """Write CSV curves, figures and ``report.md`` into ``run_dir``; returns the report path."""
    run = load_run(run_dir)
    run_dir = run.path
    if run.noise:
        write_csv(run_dir / "curves_precondition.csv", curve_rows(run.noise))
    if run.train:
        write_csv(run_dir / "curves_train.csv", curve_rows(run.train))
    figures = []
    for name, caption, draw in FIGURES:
        path = draw(run, run_dir / "figures" / name)
        if path is not None:
            figures.append((path, caption))
    s = run.summary
    ood = dig(s, "final", "ood")
    chip_file = run_dir / "chip.yaml"
    chip = yaml.safe_load(chip_file.read_text()) if chip_file.exists() else None
    text = [f"# Run {s.get('name', run_dir.name)}: {run.label}\n\n", _setup_line(s, chip),
            ".\n\n", data_notes_line([s]), provenance_line(s),
            "Inputs: `config.yaml` (the experiment, overrides applied) and `chip.yaml`; every "
            "evaluation point: `metrics.jsonl`; the numbers below: `summary.json`.\n\n",
            "## Headline numbers\n\n", markdown_table(["quantity", "value"], headline_rows(s)),
            "\n## Alignment angle θ_l, degrees\n\n", alignment_definition(s.get("rule")),
            ("BP does not use the feedback arrays: its angles are to the matrices B its seed's "
             "other conditions use, a control (about 90° when W ignores B).\n\n"
             if s.get("rule") == "bp" else ""), alignment_table(run), array_weights_table(s),
             array_pairs_table(s)]
    if isinstance(ood, dict) and ood:
        text += ["\n## Out-of-distribution accuracy\n\n",
                 markdown_table(["test set", "accuracy"], [[k, ood_text(v)] for k, v in ood.items()])]
    drifted = dig(s, "final", "drift_accuracy")
    if isinstance(drifted, dict) and drifted:
        text += ["\n## Accuracy after conductance drift\n\n",
                 markdown_table(["seconds after programming", "test accuracy"],
                                [[k, percent(v)] for k, v in drifted.items()])]
    text.append(energy_section(s, chip))
    text += ["\n## Figures\n\n", figure_section(figures, run_dir),
             _csv_line(run)]
    report = run_dir / RUN_REPORT
    write_text(report, "".join(text))
    return report


def write_run_reports(run_dirs: list[Path], processes: int = 1) -> list[Path]:
    """:func:`write_run_report` of every folder of ``run_dirs``; returns the report paths.

    With ``processes > 1`` up to that many reports are written at once, each in a worker
    process: a report's figures take seconds of one core (matplotlib), so a population's
    reports would otherwise take longer than its training (a few seconds per chip). The
    workers are started fresh (``spawn``), not forked from a process whose backend threads
    may hold locks; so, as with any ``spawn``, a script that calls this must guard its top
    level with ``if __name__ == "__main__":``. Every report depends only on its own
    folder: they are the same files whatever ``processes`` is.
    """
    processes = max(1, min(processes, len(run_dirs)))
    if processes == 1:
        return [write_run_report(run_dir) for run_dir in run_dirs]
    with report_pool(processes) as pool:
        return list(pool.map(write_run_report, run_dirs))


def report_pool(processes: int) -> ProcessPoolExecutor:
    """``processes`` spawned worker processes for :func:`write_run_reports`, each of which
    ends when the process that started it is gone (:func:`_end_with_parent`)."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_end_with_parent, initargs=(os.getpid(),))


def _end_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """A worker's initializer: a daemon thread ends the worker once ``parent`` is no longer
    its parent. A command killed with SIGKILL (or SIGTERM) cannot stop its workers, which
    then waited for work forever, 150 MB each."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="end-with-parent").start()
