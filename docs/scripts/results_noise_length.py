"""Regenerate ``docs/results-noise-length.md``: how long must the noise phase be, and does a
short one pay for its energy?

Runs ``experiments/noise_length.yaml`` (FA without a noise phase and after noise phases of
several lengths, at the training learning rate and at ten times it; on the ideal chip, TaOx
RRAM and GST PCM; 3 seeds; finished runs are reused) and tabulates per chip and noise phase: its
energy (also in epochs of FA's training energy), the alignment it reaches, the first-epoch
test-accuracy AUC, and the energy to the target accuracy split into the noise phase and the
data training it saves, with the verdict "does it pay for itself?" seed by seed.

    .venv/bin/python docs/scripts/results_noise_length.py [--out runs/noise_length] [--set k=v ...]

Every number in the document is read from the run folders.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from neurosim import stats
from neurosim.device_curves import drift_text, range_steps, symmetry_points
from neurosim.plots import color, new_figure, save_png
from neurosim.report import markdown_table
from neurosim.reproduce.hardware import target_value, to_target
from neurosim.runio import write_text
from results_core import fmt, last_layer
from results_devices import REPO, study_header, study_main
from results_energy import (NOT_REACHED, bracket, difference_text, in_unit, noise_verdict,
                            outcome, per_epoch, seeds_of)

EXPERIMENT = REPO / "experiments" / "noise_length.yaml"
DOC = REPO / "docs" / "results-noise-length.md"
BASELINE = "fa"  # no noise phase
MJ = 1e9  # pJ per mJ


def noise_phase(run) -> tuple[int, float]:
    """Steps and learning rate of a run's noise phase, from its saved config: ``(0, nan)``
    without one; the noise phase's own optimizer where it has one, else the experiment's."""
    config = run.summary["config"]
    pre = config["precondition"]
    if not pre["enabled"]:
        return 0, math.nan
    return int(pre["steps"]), float((pre.get("optimizer") or config["optimizer"])["lr"])


def ordered(conditions: dict) -> list[str]:
    """The chip's conditions: no noise first, then by noise learning rate and length."""
    phase = {name: noise_phase(seeds_of(runs)[0]) for name, runs in conditions.items()}
    return sorted(conditions, key=lambda name: (phase[name][0] > 0,
                                                np.nan_to_num(phase[name][1]), phase[name][0]))


def check_prefixes(chip: str, conditions: dict) -> None:
    """A shorter noise phase is the longer one's beginning (same seed and learning rate):
    their noise-phase records must agree at every step both logged."""
    for seed in set.intersection(*(set(runs) for runs in conditions.values())):
        by_rate: dict[float, list] = {}
        for runs in conditions.values():
            steps, lr = noise_phase(runs[seed])
            if steps:
                by_rate.setdefault(lr, []).append(runs[seed])
        for runs in by_rate.values():
            runs.sort(key=lambda run: noise_phase(run)[0])
            for short, long in zip(runs, runs[1:]):
                at = {r["step"]: (r["probe_loss"], r["alignment_deg"]) for r in long.noise}
                for record in short.noise:
                    if at.get(record["step"]) != (record["probe_loss"], record["alignment_deg"]):
                        raise ValueError(f"{chip} seed {seed}: {long.label}'s noise phase does "
                                         f"not begin as {short.label}'s (step {record['step']})")


def label(run, train_lr: float) -> str:
    steps, lr = noise_phase(run)
    if not steps:
        return "no noise phase (FA)"
    return f"{steps:,} noise steps" + (f" at lr {lr:g}" if lr != train_lr else "")


def mj_cell(per_seed: list[float]) -> str:
    """Mean ± std (mJ) when every seed has a value, else the seeds one by one."""
    if all(math.isfinite(v) for v in per_seed):
        return in_unit(per_seed, MJ, 1)
    return ", ".join(f"{v / MJ:.1f}" if math.isfinite(v) else NOT_REACHED for v in per_seed)


def first_layer_norm(run) -> float:
    """The largest singular value of the first layer's weights ``W_1`` when data training
    starts (after the noise phase, if any), from the run's first evaluation record."""
    start = min(run.train, key=lambda record: record["step"])
    return float(max(start["singular_values"]["1"]))


def condition_rows(conditions: dict) -> list[dict]:
    """Per condition (FA first, see :func:`ordered`), its seeds' values: the noise phase's
    steps, learning rate and energy (pJ), the energy to target (pJ, nan where not reached),
    the first-epoch AUC, θ after the noise phase (the initial θ for FA), ‖W_1‖₂ when data
    training starts and, for a noise phase, each seed's outcome against FA
    (:func:`results_energy.outcome`)."""
    fa = seeds_of(conditions[BASELINE])
    rows = []
    for name in ordered(conditions):
        runs = seeds_of(conditions[name])
        steps, lr = noise_phase(runs[0])
        rows.append({
            "runs": runs, "steps": steps, "lr": lr,
            "phase": [to_target(run)["precondition"]["energy_pj"] for run in runs],
            "total": [target_value(run, "energy_pj") for run in runs],
            "auc": [run.summary["train"]["auc_first_epoch"] for run in runs],
            "theta": [last_layer(run.summary["precondition"]["after"]["alignment_deg"] if steps
                                 else run.summary["train"]["initial_alignment_deg"])
                      for run in runs],
            "norm": [first_layer_norm(run) for run in runs],
            "outcomes": ([outcome(bracket(a), bracket(b)) for a, b in zip(fa, runs)]
                         if steps else [])})
    return rows


def training_lr(rows: list[dict]) -> float:
    return float(rows[0]["runs"][0].summary["config"]["optimizer"]["lr"])


def device_drift(chip) -> str:
    """Where zero-mean updates drive the chip's forward devices (:mod:`neurosim.device_curves`),
    the device-level side of what a noise phase's random updates do to the weights; empty for
    ideally updated devices."""
    if chip.forward.update.mode == "ideal":
        return ""
    return (f" Its devices' symmetry point: {symmetry_points(chip).text()}; "
            f"{range_steps(chip)} random-sign pulses from w = 0 leave them at w = "
            f"{drift_text(chip)} (mean ± std of 200; `neurosim devices show {chip.name}`).")


def chip_section(chip: str, config, rows: list[dict], target: float,
                 figure: str) -> list[str]:
    """A chip's two tables (the noise phase and learning speed; energy to target) and the
    verdict per noise phase, from :func:`condition_rows`; ``config`` is its chip config."""
    fa, train_lr = rows[0], training_lr(rows)
    fa_epoch = [per_epoch(run) for run in fa["runs"]]
    noisy = rows[1]
    step_costs = (f"A noise step costs {np.mean(noisy['phase']) / noisy['steps'] / 1e6:.2f} µJ "
                  "and a data step "
                  f"{np.mean([e['total'] / e['steps'] for e in fa_epoch]) / 1e6:.2f} µJ (FA)")
    speed, energy, verdicts = [], [], []
    for row in rows:
        runs, steps, lr = row["runs"], row["steps"], row["lr"]
        text = label(runs[0], train_lr)
        epochs = ", ".join("—" if e is None else f"{e:.2f}" for e in
                           (run.summary["ledger"]["to_target"]["epoch"] for run in runs))
        if not steps:
            speed.append([text, "", "", "", "", fmt(row["theta"], 1) + " (initial)",
                          fmt(row["norm"], 2), fmt(row["auc"], 3), ""])
            energy.append([text, epochs, mj_cell(row["total"]), "", "", "", ""])
            continue
        speed.append([text, f"{steps:,}", f"{steps * lr:g}", mj_cell(row["phase"]),
                      fmt([p / e["total"] for p, e in zip(row["phase"], fa_epoch)], 2),
                      fmt(row["theta"], 1), fmt(row["norm"], 2), fmt(row["auc"], 3),
                      str(stats.paired_ttest(row["auc"], fa["auc"]))])
        saved = [a - (b - p) for a, b, p in zip(fa["total"], row["total"], row["phase"])]
        outcomes = row["outcomes"]
        energy.append([text, epochs, mj_cell(row["total"]), mj_cell(saved),
                       mj_cell(row["phase"]), difference_text(runs, fa["runs"]),
                       ", ".join(f"{outcomes.count(o)} {o}" for o in dict.fromkeys(outcomes))])
        verdicts.append(f"- **{text}**: {noise_verdict(outcomes)}.")
    percent = f"{100 * target:g} %"
    return [
        f"## {chip}",
        "",
        f"{config.description}.{device_drift(config)} {step_costs}. The noise phase's energy is also given in epochs of "
        "FA's data-training energy (seed by seed); steps × lr: the noise phase's length "
        "times its Adam learning rate, about how far Adam can move a weight in it; θ: angle "
        "(degrees) between the last layer's forward weights and its feedback matrix after "
        "the noise phase; ‖W_1‖₂: the largest singular value of the first layer's weights "
        "when data training starts; first-epoch AUC: of test accuracy over epoch [0, 1]; the paired "
        "t-test compares each noise phase with FA seed by seed. Mean ± std over seeds.",
        "",
        markdown_table(["condition", "noise steps", "steps × lr", "noise phase (mJ)",
                        "in FA epochs", "θ after the noise phase", "‖W_1‖₂ at the data's start",
                        "first-epoch AUC", "paired t-test (AUC − FA's)"], speed),
        "",
        f"Energy (the chip's ledger; evaluation reads not included) from the start until the "
        f"test accuracy first reaches {percent}, split into the noise phase and the data "
        f"training it saves against FA (FA's energy to {percent} minus this run's data "
        "training to it, seed by seed). A noise phase pays when it saves more than it costs. "
        "Outcome per seed, from the evaluation points before and at each run's crossing: "
        "*pays* when this run's upper end is below FA's lower end, *does not pay* when its "
        "lower end is above FA's upper end, else the brackets overlap.",
        "",
        markdown_table(["condition", "epoch reaching it (per seed)", f"energy to {percent} (mJ)",
                        "data training saved (mJ)", "noise phase (mJ)",
                        "difference, paired t-test", "outcome (seeds)"], energy),
        "",
        "**Does the noise phase pay for itself?**",
        "",
        *verdicts,
        "",
        f"![energy to {percent} and first-epoch AUC against the noise phase's length]({figure})",
        "",
    ]


def findings(chip: str, rows: list[dict], target: float) -> list[str]:
    """What stands out on one chip: which noise phases pay in every seed, the lowest mean
    energy to target against FA's, and the alignment left by the fast noise phase and the
    training-rate one nearest in steps × lr (of equally near pairs, the longest)."""
    fa, noisy, train_lr = rows[0], rows[1:], training_lr(rows)
    name = lambda row: label(row["runs"][0], train_lr)
    mean_mj = lambda row: float(np.mean(row["total"])) / MJ
    pays = [name(row) for row in noisy if row["outcomes"].count("pays") == len(row["outcomes"])]
    slow = [row for row in noisy if row["lr"] == train_lr]
    fast = [row for row in noisy if row["lr"] != train_lr]
    text = (f"{' and '.join(pays)} {'pays for itself' if len(pays) == 1 else 'pay for themselves'}"
            " in every seed" if pays else "no noise phase pays for itself in every seed")
    if slow and all("pays" not in row["outcomes"] for row in slow):
        text += "; at the training learning rate no length pays in any seed"
    reached = [row for row in rows if all(map(math.isfinite, row["total"]))]
    if fa in reached and len(reached) > 1:
        best = min(reached[1:], key=mean_mj)
        text += (f". Lowest mean energy to {100 * target:g} % with a noise phase: {name(best)}, "
                 f"{mean_mj(best):.1f} mJ against FA's {mean_mj(fa):.1f} mJ")
    lines = [f"- **{chip}**: {text}."]
    short = [row for row in noisy if not any(map(math.isfinite, row["total"]))]
    if short and all(map(math.isfinite, fa["total"])):
        lines.append(
            f"  {' and '.join(map(name, short))} leave{'s' if len(short) == 1 else ''} the "
            f"chip short of {100 * target:g} % in every seed, where FA reaches it: first-"
            f"epoch AUC {', '.join(fmt(row['auc'], 3) for row in short)} against FA's "
            f"{fmt(fa['auc'], 3)}; ‖W_1‖₂ when data training starts "
            f"{', '.join(fmt(row['norm'], 2) for row in short)} against FA's "
            f"{fmt(fa['norm'], 2)}.")
    if fast and slow:
        budget = lambda row: row["steps"] * row["lr"]
        top, near = min(((f, s) for f in fast for s in slow), key=lambda pair: (
            abs(math.log(budget(pair[0]) / budget(pair[1]))), -budget(pair[0])))
        lines.append(f"  Alignment against steps × lr: {name(top)} (steps × lr "
                     f"{budget(top):g}) leaves {fmt(top['theta'], 1)}°, {name(near)} "
                     f"({budget(near):g}) {fmt(near['theta'], 1)}°, with "
                     f"{top['steps'] / near['steps']:.2g} of its steps and noise-phase energy.")
    return lines


def figure(chip: str, rows: list[dict], target: float, path) -> None:
    """Energy to target (noise phase included) and the noise phase's own energy (top), and
    the first-epoch AUC (bottom), against the noise steps, one line per noise learning
    rate, mean ± std over seeds; FA without noise as a dashed line with its ±std band."""
    fig, axes = new_figure(2, 1, width=6.0, height=6.4)
    top, bottom = axes[0, 0], axes[1, 0]
    for ax, key, scale in ((top, "total", 1 / MJ), (bottom, "auc", 1.0)):
        mean, std = stats.mean_std(np.asarray(rows[0][key]) * scale)
        ax.axhline(mean, color="black", linestyle="--", label="FA, no noise phase")
        ax.axhspan(mean - std, mean + std, color="black", alpha=0.1, linewidth=0)
    rates = sorted({row["lr"] for row in rows[1:]})
    for index, rate in enumerate(rates):
        line = sorted((row for row in rows[1:] if row["lr"] == rate), key=lambda r: r["steps"])
        for ax, key, scale, style, what in (
                (top, "total", 1 / MJ, "-", f"to {100 * target:g} %, noise lr {rate:g}"),
                (top, "phase", 1 / MJ, ":", f"noise phase alone, lr {rate:g}"),
                (bottom, "auc", 1.0, "-", f"noise lr {rate:g}")):
            means, stds = zip(*(stats.mean_std(np.asarray(row[key]) * scale) for row in line))
            ax.errorbar([row["steps"] for row in line], means, yerr=stds, color=color(index),
                        linestyle=style, marker="o", markersize=3, capsize=2, label=what)
    steps = sorted({row["steps"] for row in rows[1:]})
    for ax in (top, bottom):
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [f"{n:,}" for n in steps])
        ax.minorticks_off()
        ax.set_xlabel("noise steps")
        ax.legend(fontsize=6)
    top.set_title(f"{chip}: energy to {100 * target:g} % test accuracy")
    top.set_ylabel("energy (mJ)")
    bottom.set_ylabel("first-epoch AUC")
    save_png(fig, path)


def write_doc(out, doc, command: str, experiment) -> None:
    pre = experiment.precondition
    target = experiment.evaluation.energy_target
    runs, chips, header = study_header(
        "How long must the noise phase be, and does a short one pay?",
        "Each chip runs FA without a noise phase and after noise phases of different lengths "
        "and learning rates; runs with one seed share initial weights, feedback, device "
        "draws and noise set, so a shorter noise phase is the longer one's beginning (checked "
        "record by record). A noise step costs about what a data step costs, so a noise phase "
        "pays only if it saves more data-training steps than it takes.",
        command, out, EXPERIMENT, experiment,
        setting=(f"FA on {list(experiment.network.dims)}, {experiment.optimizer.name} lr "
                 f"{experiment.optimizer.lr:g}, batch {experiment.train.batch_size}, "
                 f"{experiment.train.epochs} epochs of {experiment.data.dataset}; the noise "
                 f"phase draws batches of {pre.batch_size} from a fixed set of "
                 f"{pre.n_examples:,} {pre.input.describe()} examples with uniform random "
                 "labels, with the experiment's optimizer or (where a condition says) a "
                 "faster one. Test accuracy is evaluated at "
                 f"{len(experiment.evaluation.fractional_epochs)} points in the first epoch "
                 f"and {experiment.evaluation.points_per_epoch} per epoch after it."))
    folder = doc.parent / "figures" / doc.stem
    folder.mkdir(parents=True, exist_ok=True)
    lines, stands_out = list(header), []
    for chip, conditions in runs.items():
        if BASELINE not in conditions or len(conditions) < 2:
            continue
        check_prefixes(chip, conditions)
        rows = condition_rows(conditions)
        name = f"{chip}_energy_by_noise_length"
        lines += chip_section(chip, chips[chip], rows, target,
                              f"figures/{doc.stem}/{name}.png")
        figure(chip, rows, target, folder / f"{name}.png")
        stands_out += findings(chip, rows, target)
    n_seeds = max(len(seeds) for conditions in runs.values() for seeds in conditions.values())
    lines += [
        "## What stands out",
        "",
        *stands_out,
        "",
        f"Read with care: {n_seeds} seeds; the target is read at evaluation points, so an "
        "energy to target is known to the data training between two points (after the first "
        f"epoch, 1/{experiment.evaluation.points_per_epoch} of an epoch here), and a noise "
        "phase that costs less than that can only show as *brackets overlap* or better.",
        "",
    ]
    write_text(doc, "\n".join(lines))


def main() -> int:
    return study_main(__doc__, "results_noise_length.py", EXPERIMENT,
                      REPO / "runs" / "noise_length", DOC, write_doc)


if __name__ == "__main__":
    sys.exit(main())
