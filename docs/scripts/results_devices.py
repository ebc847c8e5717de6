"""Regenerate ``docs/results-devices.md``: does noise preconditioning survive each device?

Runs ``experiments/devices.yaml`` (BP, FA and FA + noise preconditioning on MNIST for every
chip preset; 3 seeds; finished runs are reused) and tabulates, per preset, first-epoch
test-accuracy AUC, final accuracy, the last layer's alignment angle after preconditioning
and after training, the programming pulses spent, and where random updates drive each
technology's devices (symmetry point, random-sign drift, the first array's weights after the
noise phase) beside the noise phase's effect, and whether zero-shifting (a reference device at
each device's symmetry point) rescues the noise phase where it fails.

    .venv/bin/python docs/scripts/results_devices.py [--out runs/devices] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from neurosim.config import expand_runs, load_experiment
from neurosim.device_curves import random_sign_walk, symmetry_points, walk_text
from neurosim.report import markdown_table
from neurosim.runio import write_text
from neurosim.runner import run_experiment
from results_core import fmt, last_layer, load_runs, paired

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / "experiments" / "devices.yaml"
DOC = REPO / "docs" / "results-devices.md"
RULES = ("bp", "fa", "fa_noise")


def by_preset(runs: dict) -> dict[str, dict[str, dict]]:
    """``{preset: {rule: {seed: run}}}`` from conditions named ``<preset>-<rule>``."""
    table: dict[str, dict[str, dict]] = {}
    for condition, seeds in runs.items():
        preset, rule = condition.rsplit("-", 1) if condition.count("-") else (condition, "")
        table.setdefault(preset, {})[rule] = seeds
    return table


def values(seeds: dict, get) -> list[float]:
    return [get(run.summary) for _, run in sorted(seeds.items())]


def verdict(wins: int, n: int, rule: str = "FA") -> str:
    """Raises (every seed better), lowers (every seed worse), or mixed: the effect on
    ``rule``'s first-epoch AUC."""
    if wins == n:
        return f"raises {rule}'s first-epoch AUC in every seed"
    if wins == 0:
        return f"**lowers** {rule}'s first-epoch AUC in every seed"
    return (f"has no consistent effect on {rule}'s first-epoch AUC ({wins} of {n} seeds "
            "better)")


def preset_rows(presets: dict) -> tuple[list[list[str]], list[list[str]], dict[str, str]]:
    auc = lambda s: s["train"]["auc_first_epoch"]
    final = lambda s: s["train"]["test_accuracy"] * 100
    after_noise = lambda s: last_layer(s["precondition"]["after"]["alignment_deg"])
    after_train = lambda s: last_layer(s["train"]["alignment_deg"])
    pulses = lambda s: sum(s["final"]["pulses_up"]) + sum(s["final"]["pulses_down"])
    rows, detail, survives = [], [], {}
    for preset, rules in presets.items():
        if not all(rule in rules for rule in RULES):
            continue
        a, b, test = paired({"x": rules["fa_noise"], "y": rules["fa"]}, "x", "y", auc)
        wins = sum(x > y for x, y in zip(a, b))
        survives[preset] = verdict(wins, len(a))
        rows.append([preset] + [fmt(values(rules[r], auc), 3) for r in RULES]
                    + [f"{wins}/{len(a)}", str(test)])
        detail.append([preset] + [fmt(values(rules[r], final), 1) for r in RULES]
                      + [fmt(values(rules["fa_noise"], after_noise), 1),
                         fmt(values(rules["fa"], after_train), 1),
                         fmt(values(rules["fa_noise"], after_train), 1),
                         f"{np.mean(values(rules['fa'], pulses)):.3g}",
                         f"{np.mean(values(rules['fa_noise'], pulses)):.3g}"])
    return rows, detail, survives


def shown(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it."""
    path = path.resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def study_runs(out: Path) -> dict[str, dict[str, dict]]:
    """The study's runs by chip (``ideal`` first, then presets in ``hw_configs/`` order,
    then other chips by name) and rule."""
    presets = by_preset(load_runs(out))
    order = [p.stem for p in sorted((REPO / "hw_configs").glob("*.yaml"))]
    return {p: presets[p] for p in sorted(presets, key=lambda p: (
        p != "ideal", order.index(p) if p in order else len(order), p))}


def run_minutes(presets: dict) -> float:
    """Time measured inside the runs (noise phase, training, evaluation), in minutes."""
    return sum(run.summary["seconds"].get(k, 0.0) for rules in presets.values()
               for seeds in rules.values() for run in seeds.values()
               for k in ("precondition", "train", "evaluation")) / 60


def study_chips(experiment, experiment_path: Path) -> dict:
    """The chip each group of a study's conditions, ``<name>-<anything>``, runs on (its
    chip file with the condition's ``chip_set``), by ``<name>``."""
    return {spec.condition.rsplit("-", 1)[0]: spec.chip
            for spec in expand_runs(experiment, experiment_path)}


def study_header(title: str, about: str, command: str, out: Path, experiment_path: Path,
                 experiment, setting: str | None = None) -> tuple[dict, dict, list[str]]:
    """A study's runs (:func:`study_runs`), its chips by name and its document's first
    lines: the title, then where the document comes from (the command, the runs, the
    setting: :func:`setting_text` unless given), ``about`` the study, and the time measured
    inside the runs."""
    presets = study_runs(out)
    known = study_chips(experiment, experiment_path)
    chips = {p: known[p] for p in presets}
    n_runs = sum(len(s) for rules in presets.values() for s in rules.values())
    return presets, chips, [
        f"# {title}",
        "",
        f"Generated by `{command}` from {n_runs} runs in `{shown(out)}`; regenerate with the "
        f"same command (finished runs are reused). Setting (`{shown(experiment_path)}`): "
        f"{setting or setting_text(experiment)} {about} Time measured inside the runs: "
        f"{run_minutes(presets):.1f} min.",
        "",
    ]


def setting_text(experiment) -> str:
    """The schedule every condition shares (network, optimizer, data, noise phase)."""
    pre = experiment.precondition
    return (f"{list(experiment.network.dims)}, {experiment.optimizer.name} lr "
            f"{experiment.optimizer.lr:g}, batch {experiment.train.batch_size}, "
            f"{experiment.train.epochs} epoch of {experiment.data.dataset}; FA + noise first "
            f"runs {pre.steps} noise steps on a fixed set of {pre.n_examples} N(0, 1) examples "
            f"(the paper uses 10,000 steps: this is the short schedule).")


def result_sections(presets: dict, chips: dict, label: str) -> list[str]:
    """The AUC table, the accuracy / alignment / pulses table and a verdict per chip
    (``label``: what the first column names, e.g. "preset")."""
    rows, detail, survives = preset_rows(presets)
    pulses = ["pulses FA", "pulses FA + noise"]
    if all(row[-2:] == ["0", "0"] for row in detail):  # every chip updates exactly
        detail, pulses = [row[:-2] for row in detail], []
    return [
        "## First-epoch test-accuracy AUC",
        "",
        "AUC of test accuracy over epoch [0, 1] (evaluated at 0, 0.02, 0.05, 0.1, 0.2, 0.5, "
        "1); mean ± std over seeds; the paired t-test compares FA + noise with FA seed by seed.",
        "",
        markdown_table([label, "BP", "FA", "FA + noise", "FA + noise > FA (seeds)",
                        "paired t-test (FA + noise − FA)"], rows),
        "",
        "## Accuracy, alignment and pulses" if pulses else "## Accuracy and alignment",
        "",
        "Final test accuracy (%) after the epoch; θ = angle between the last layer's forward "
        "weights and its feedback matrix (degrees)"
        + ("; pulses = programming pulses sent to the forward arrays over the whole run "
           "(mean over seeds; noise phase included)." if pulses else "."),
        "",
        markdown_table([label, "acc BP", "acc FA", "acc FA + noise",
                        "θ after noise", "θ FA after training", "θ FA + noise after training",
                        *pulses], detail),
        "",
        f"## Verdict per {label}",
        "",
        *[f"- **{p}** ({chips[p].description}): noise preconditioning {text}."
          for p, text in survives.items()],
        "",
    ]


def listed(names) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def drift_section(presets: dict, chips: dict) -> list[str]:
    """Per pulsed preset: its devices' symmetry point and random-sign drift
    (:mod:`neurosim.device_curves`), the first array's weights (mean) before and after the
    FA runs' noise phase, and whether the noise phase raised FA's first-epoch AUC; then
    whether the drift separates the presets where the noise phase helps from those where it
    hurts."""
    auc = lambda s: s["train"]["auc_first_epoch"]
    first_mean = lambda when: lambda s: s["precondition"][when]["array_weights"]["1"]["mean"]
    rows, helped, hurt = [], {}, {}
    for preset, rules in presets.items():
        chip = chips[preset]
        if (chip.forward.update.mode == "ideal" or chip.forward.reference != "none"
                or chip.forward.pair.mode != "none" or not all(r in rules for r in RULES)):
            continue
        noisy, plain = values(rules["fa_noise"], auc), values(rules["fa"], auc)
        wins = sum(x > y for x, y in zip(noisy, plain))
        walk = random_sign_walk(chip)
        (helped if wins == len(noisy) else hurt if wins == 0 else {})[preset] = \
            abs(float(walk.mean[-1]))
        rows.append([preset, symmetry_points(chip).text(), walk_text(walk),
                     fmt(values(rules["fa_noise"], first_mean("before")), 3),
                     fmt(values(rules["fa_noise"], first_mean("after")), 3),
                     f"{wins}/{len(noisy)}"])
    if not rows:
        return []
    lines = [
        "## Where random updates drive each technology's devices",
        "",
        "A noise phase's updates have random sign. On a device whose up and down pulses are "
        "unequal they do not cancel: they drive the weights towards the device's stable "
        "symmetry point, where one up and one down pulse of the nominal device cancel "
        "(`neurosim devices show`). Random-sign drift: mean ± std of 200 devices after as "
        "many random-sign pulses as the range has steps, from w = 0. First array: the mean "
        "of layer 1's normalized array weights in the FA + noise runs (mean ± std over "
        "seeds).",
        "",
        markdown_table(["preset", "symmetry point", "random-sign drift",
                        "first array before noise", "first array after noise",
                        "FA + noise > FA (seeds)"], rows),
        "",
    ]
    if helped and hurt:
        low, high = max(helped.values()), min(hurt.values())
        lines += [
            f"The noise phase lowers FA's AUC in every seed on {listed(hurt)} and raises it "
            f"in every seed on {listed(helped)}. "
            + (f"The random-sign drift separates the two: |mean| {high:.2f} or more where it "
               f"hurts, at most {low:.2f} where it helps." if high > low else
               "The random-sign drift does not separate the two groups (their |mean| "
               "overlap)."),
            "",
        ]
    return lines


def variants(presets: dict, suffix: str) -> list[tuple[str, dict, dict]]:
    """``(preset, its runs, its variant's runs)`` for every chip ``<preset><suffix>`` of the
    study whose preset ran too, both with every rule."""
    return [(name.removesuffix(suffix), presets[name.removesuffix(suffix)], rules)
            for name, rules in presets.items()
            if name.endswith(suffix) and name.removesuffix(suffix) in presets
            and all(r in rules and r in presets[name.removesuffix(suffix)] for r in RULES)]


def noise_effect(runs: dict) -> tuple[int, int, bool | None]:
    """FA + noise against FA, seed by seed, by first-epoch AUC: (seeds better, seeds, True
    when every seed is better, False when none is, else None)."""
    noisy = values(runs["fa_noise"], lambda s: s["train"]["auc_first_epoch"])
    plain = values(runs["fa"], lambda s: s["train"]["auc_first_epoch"])
    wins = sum(x > y for x, y in zip(noisy, plain))
    return wins, len(noisy), (wins == len(noisy) if wins in (0, len(noisy)) else None)


def zero_shift_section(presets: dict, chips: dict) -> list[str]:
    """Per preset that also ran zero-shifted (a chip ``<preset>_zero_shifted`` reading its
    devices against references at their symmetry points, :mod:`neurosim.reference`): the
    nominal reference and the weight range it leaves, the random-sign drift, the first
    array's mean after the noise phase and the noise phase's effect on FA, without and with
    references; then which presets zero-shifting turned from hurt to helped."""
    auc = lambda s: s["train"]["auc_first_epoch"]
    after = lambda s: s["precondition"]["after"]["array_weights"]["1"]["mean"]
    rows, effect = [], {}
    for preset, plain_runs, rules in variants(presets, "_zero_shifted"):
        shifted = f"{preset}_zero_shifted"
        points = symmetry_points(chips[preset])
        kept = symmetry_points(chips[shifted])
        cells = [preset, points.describe(points.attractor(0.0)) if not points.neutral
                 else "+0.00", f"[{kept.w_min:+.2f}, {kept.w_max:+.2f}]"]
        for chip, runs in ((chips[preset], plain_runs), (chips[shifted], rules)):
            wins, n, consistent = noise_effect(runs)
            effect.setdefault(preset, []).append(consistent)
            cells += [walk_text(random_sign_walk(chip)), fmt(values(runs["fa_noise"], after), 3),
                      fmt(values(runs["fa"], auc), 3), fmt(values(runs["fa_noise"], auc), 3),
                      f"{wins}/{n}"]
        rows.append(cells)
    if not rows:
        return []
    rescued = [p for p, (before, now) in effect.items() if before is False and now is True]
    still = [p for p, (before, now) in effect.items() if before is False and now is not True]
    lines = [
        "## Zero-shifting: a reference device at each device's symmetry point",
        "",
        "The presets whose symmetry point is not 0, run again with every forward device "
        "read against a reference device programmed exactly to its own symmetry point "
        "(`chip_set: {forward.reference: symmetry_point}`, `reference_error: 0`, Kim et al. "
        "2020): the symmetry point then reads w = 0, and the weights keep the device's range "
        "minus its reference. Every forward read also reads the reference cells (the ledger "
        "charges them). Reference and range: the nominal device's. Columns in pairs: the "
        "preset, then zero-shifted.",
        "",
        markdown_table(["preset", "reference", "weight range kept", "drift",
                        "first array after noise", "AUC FA", "AUC FA + noise",
                        "FA + noise > FA (seeds)", "drift, zero-shifted",
                        "first array after noise, zero-shifted", "AUC FA, zero-shifted",
                        "AUC FA + noise, zero-shifted", "FA + noise > FA, zero-shifted"],
                       rows),
        "",
    ]
    if rescued:
        lines += [f"Zero-shifting turns the noise phase from lowering FA's first-epoch AUC in "
                  f"every seed to raising it in every seed on {listed(rescued)}.", ""]
    if still:
        lines += [f"It does not rescue the noise phase on {listed(still)}: with references "
                  "the noise phase still fails to raise FA's AUC in every seed.", ""]
    costs = []
    for preset in effect:
        shifted = f"{preset}_zero_shifted"
        pair = lambda rule: (f"{np.mean(values(presets[preset][rule], auc)):.3f} → "
                             f"{np.mean(values(presets[shifted][rule], auc)):.3f}")
        best = max(("fa", "fa_noise"), key=lambda r: np.mean(values(presets[preset][r], auc)))
        a, b = values(presets[shifted]["fa_noise"], auc), values(presets[preset][best], auc)
        costs.append([preset, pair("bp"), pair("fa"),
                      f"{np.mean(b):.3f} ({'FA + noise' if best == 'fa_noise' else 'FA'})",
                      f"{np.mean(a):.3f}", f"{sum(x > y for x, y in zip(a, b))}/{len(a)}"])
    lines += [
        "What the references cost and what they gain, as AUC means over seeds: BP's and FA's "
        "AUC without and with references (the weights keep the range above, the device's "
        "shifted by its reference), and zero-shifted FA + noise against the better of FA and "
        "FA + noise without references.",
        "",
        markdown_table(["preset", "AUC BP → zero-shifted", "AUC FA → zero-shifted",
                        "best FA without references", "zero-shifted FA + noise",
                        "zero-shifted FA + noise > best (seeds)"], costs),
        "",
    ]
    return lines


def pair_section(presets: dict, chips: dict) -> list[str]:
    """Per preset that also ran as differential pairs (a chip ``<preset>_pair``,
    :mod:`neurosim.pair`): each rule's first-epoch AUC, the noise phase's effect on FA,
    the first array's mean after the noise phase, and what the pairs cost (pulses, pairs
    refreshed), one device per weight against a pair per weight."""
    auc = lambda s: s["train"]["auc_first_epoch"]
    after = lambda s: s["precondition"]["after"]["array_weights"]["1"]["mean"]
    pulses = lambda s: sum(s["final"]["pulses_up"]) + sum(s["final"]["pulses_down"])
    refreshed = lambda s: sum(layer["pairs_refreshed"]
                              for layer in s["final"].get("array_pairs", {}).values())
    arrays = lambda s: sum(s["ledger"]["energy_pj"]["components"][part]
                           for part in ("cell_read", "write")) / 1e6  # µJ
    mean = lambda runs, get: f"{np.mean(values(runs, get)):.3g}"
    rows, effect = [], {}
    for preset, single, rules in variants(presets, "_pair"):
        cells = [preset, *(f"{fmt(values(single[rule], auc), 3)} → "
                           f"{fmt(values(rules[rule], auc), 3)}" for rule in RULES)]
        for runs in (single, rules):
            wins, n, consistent = noise_effect(runs)
            effect.setdefault(preset, []).append(consistent)
            cells.append(f"{wins}/{n}")
        cells += [f"{fmt(values(single['fa_noise'], after), 3)} → "
                  f"{fmt(values(rules['fa_noise'], after), 3)}",
                  f"{mean(single['fa_noise'], pulses)} → {mean(rules['fa_noise'], pulses)}",
                  f"{mean(single['fa_noise'], arrays)} → {mean(rules['fa_noise'], arrays)}",
                  mean(rules["fa_noise"], refreshed)]
        rows.append(cells)
    if not rows:
        return []
    pair = chips[next(name for name in presets if name.endswith("_pair"))].forward.pair
    lines = [
        "## Differential pairs: two devices per weight, SET pulses only",
        "",
        "The same presets with every weight held by two devices, w = (G+ − G+_min) − "
        "(G− − G−_min), each moved only by potentiation (SET) pulses: an increase on G+, a "
        "decrease on G− (`chip_set: {forward.pair.mode: one_sided}`; Burr et al. 2015, "
        "aihwkit's `OneSidedUnitCell`). Every "
        f"{pair.refresh_every} programming events the pairs with a device above "
        f"{pair.refresh_threshold:g} of its range are RESET and their weight reprogrammed "
        "by SET pulses (a refresh, simulated with the device's nonlinearity and write noise). "
        "A pair has twice a device's range with the same step; every forward read reads both "
        "cells. Each cell: one device per weight → a pair (mean ± std over seeds); pulses "
        "include the refreshes' RESET and SET pulses; array energy: the ledger's cell reads "
        "and write pulses over the whole run (µJ; the run's total is dominated by its "
        "digital optimizer and memory traffic, `docs/results-energy.md`).",
        "",
        markdown_table(["preset", "AUC BP", "AUC FA", "AUC FA + noise",
                        "FA + noise > FA (seeds)", "FA + noise > FA, pairs",
                        "first array after noise", "pulses FA + noise",
                        "array energy FA + noise (µJ)", "pairs refreshed (FA + noise)"], rows),
        "",
    ]
    rescued = [p for p, (before, now) in effect.items() if before is not True and now is True]
    still = [p for p, (_, now) in effect.items() if now is not True]
    if rescued:
        lines += [f"With pairs the noise phase raises FA's first-epoch AUC in every seed on "
                  f"{listed(rescued)}, where with one device per weight it did not.", ""]
    if still:
        lines += [f"With pairs the noise phase still does not raise FA's AUC in every seed on "
                  f"{listed(still)}.", ""]
    both = [p for p in effect if f"{p}_zero_shifted" in presets]
    if both:
        auc_mean = lambda name, rule: np.mean(values(presets[name][rule], auc))
        lines += ["Pairs against zero-shifting (AUC means over seeds, BP / FA + noise): "
                  + "; ".join(f"{p}: pairs {auc_mean(p + '_pair', 'bp'):.3f} / "
                              f"{auc_mean(p + '_pair', 'fa_noise'):.3f}, zero-shifted "
                              f"{auc_mean(p + '_zero_shifted', 'bp'):.3f} / "
                              f"{auc_mean(p + '_zero_shifted', 'fa_noise'):.3f}"
                              for p in both) + ".", ""]
    return lines


def write_doc(out: Path, doc: Path, command: str, experiment) -> None:
    presets, chips, header = study_header(
        "Does noise preconditioning survive the device technology?",
        "Every preset trains its forward arrays by programming pulses (`pulsed` update, "
        "NeuroSim-style stochastic rounding, capped at 31 pulses) except `ideal`; feedback "
        "arrays and periphery are ideal in this study (`docs/results-periphery.md` studies "
        "the periphery).", command, out, EXPERIMENT, experiment)
    lines = [
        *header,
        *result_sections(presets, chips, "preset"),
        *drift_section(presets, chips),
        *zero_shift_section(presets, chips),
        *pair_section(presets, chips),
        "Read with care: the noise phase here is 40 % of the paper's, one epoch is short, and "
        "the NeuroSim presets' cycle-to-cycle noise (NeuroSim's sigma of the conductance "
        "range, added to every pulse whatever the device's state: `write_noise` in "
        "`hw_configs/*.yaml`) is large relative to one pulse (3.7 % of the range against a "
        "step of 1/128 for TaOx). Non-ideal feedback arrays are not in this study.",
        "",
    ]
    write_text(doc, "\n".join(lines))


def study_main(usage: str, script: str, experiment_path: Path, default_out: Path, doc: Path,
               write) -> int:
    """Run a study's experiment (finished runs reused) and write its document with
    ``write(out, doc, command, experiment)``, ``command`` the command line of ``script``
    (this folder), ``experiment`` the study with the ``--set`` overrides; ``usage``: the
    script's docstring."""
    parser = argparse.ArgumentParser(description=usage.split("\n")[0])
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir")
    parser.add_argument("--doc", type=Path, default=doc)
    args = parser.parse_args()
    experiment = load_experiment(experiment_path, args.overrides)
    run_experiment(experiment, experiment_path, args.out, resume=True, progress=True,
                   data_dir=args.data_dir, run_reports=False)
    command = " ".join([f".venv/bin/python docs/scripts/{script}"]  # what make results-* runs
                       + [f"--set {o}" for o in args.overrides])
    write(args.out, args.doc, command, experiment)
    print(f"wrote {args.doc}")
    return 0


def main() -> int:
    return study_main(__doc__, "results_devices.py", EXPERIMENT, REPO / "runs" / "devices", DOC,
                      write_doc)


if __name__ == "__main__":
    sys.exit(main())
