"""Regenerate ``docs/results-rules.md``: does noise preconditioning help every local rule?

Runs ``experiments/rules.yaml`` (FA, DFA, sign DFA and DRTP, each without and with a noise
phase, and BP for scale; on the ideal chip and on TaOx RRAM, and on the ideal chip with two
hidden layers; 3 seeds; finished runs are reused) and tabulates per section and rule the
first-epoch test-accuracy AUC with and without
noise (paired t-tests, Holm-adjusted over the rules), the final accuracy, the alignment of
the last layer with the feedback after the noise phase and after training, and the energy to
an accuracy both reach (noise phase included).

    .venv/bin/python docs/scripts/results_rules.py [--out runs/rules] [--set k=v ...]
"""

from __future__ import annotations

import math
import sys

from neurosim import stats
from neurosim.compare import energy_unit
from neurosim.energy import bytes_text
from neurosim.report import feedback_symbol, markdown_table
from neurosim.reproduce.hardware import LEARNED, common_level, energy_to_level, to_target
from neurosim.rules import RULES
from neurosim.runio import write_text
from results_core import fmt, last_layer, paired
from results_devices import REPO, study_header, study_main, values, verdict

EXPERIMENT = REPO / "experiments" / "rules.yaml"
DOC = REPO / "docs" / "results-rules.md"
REFERENCE = "bp"  # weight transport, for scale
NOISE = "_noise"  # suffix of a rule's preconditioned condition
PAPER_NOISE_STEPS = 10_000  # the paper's noise phase (its appendix)


def local_rules(variants) -> list[str]:
    """The rules run both without and with a noise phase, in the experiment's order."""
    return [v for v in variants if v in RULES and v != REFERENCE and v + NOISE in variants]


def compared_feedback(rule: str, n_layers: int) -> str:
    """The feedback matrix the last layer's ``W_L`` is compared with under ``rule``: FA's
    ``B_L``; a direct rule's array of the last hidden layer, whose path to the output is
    ``W_L`` (negated for DRTP)."""
    if RULES[rule].direct:
        return f"{feedback_symbol(rule)}_{n_layers - 1}ᵀ"
    return f"B_{n_layers}ᵀ"


def energy_spread(values: list[float]) -> str:
    """Mean ± std over seeds of energies in pJ, both in the mean's unit, to 0.1 of it."""
    mean, std = stats.mean_std(values)
    unit, scale = energy_unit([mean])
    return f"{mean / scale:.1f} ± {std / scale:.1f} {unit}"


def energy_row(name: str, without: dict, noisy: dict) -> list[str]:
    """The energy one rule spends until the test accuracy first reaches the common level L
    of its runs with and without noise (the highest every one of them reaches), noise phase
    included: per condition, the noise phase's share, and the seeds where noise spends less."""
    level = common_level([*without.values(), *noisy.values()])
    if not level >= LEARNED:
        why = (f"a run never exceeds {100 * LEARNED:.0f} %" if math.isfinite(level)
               else "a run diverged before its first evaluation")
        return [name, "—", f"no comparison: {why}", "", "", ""]
    a = [energy_to_level(run, level) for _, run in sorted(without.items())]
    b = [energy_to_level(run, level) for _, run in sorted(noisy.items())]
    phase = [to_target(run)["precondition"]["energy_pj"] for _, run in sorted(noisy.items())]
    return [name, f"{100 * level:.1f} %", energy_spread(a), energy_spread(b), energy_spread(phase),
            f"{sum(y < x for x, y in zip(a, b))}/{len(a)}"]


def buffer_line(conditions: dict, rules: list[str]) -> str:
    """The activation buffer a training step needs under each rule (the runs' ledgers,
    :func:`neurosim.accounting.activation_buffer`), rules with the same one together."""
    sizes: dict[int, list[str]] = {}
    batch = 0
    for rule in rules:
        buffer = next(iter(conditions[rule].values())).summary["ledger"]["activation_buffer"]
        sizes.setdefault(buffer["bytes"], []).append(rule.upper())
        batch = buffer["batch"]
    return ("Activation buffer a training step needs (the forward values its updates use, "
            f"batch {batch}, the chip's digital words): "
            + "; ".join(f"{', '.join(names)} {bytes_text(size)}" for size, names in sizes.items())
            + ". An update-locked rule holds every layer's input until the output error "
            "exists; DRTP one hidden layer's input and output at a time.")


def chip_section(chip: str, description: str, conditions: dict, rules: list[str]) -> list[str]:
    """One section's three tables (AUC; accuracy and alignment; energy) and the verdict on
    each rule
    (``chip``: the section's name, the part of its conditions' names before the last "-")."""
    auc = lambda s: s["train"]["auc_first_epoch"]
    final = lambda s: s["train"]["test_accuracy"] * 100
    after_noise = lambda s: last_layer(s["precondition"]["after"]["alignment_deg"])
    after_train = lambda s: last_layer(s["train"]["alignment_deg"])
    reference = ([[REFERENCE.upper(), fmt(values(conditions[REFERENCE], auc), 3), "", "", ""]]
                 if REFERENCE in conditions else [])
    reference_acc = ([[REFERENCE.upper(), fmt(values(conditions[REFERENCE], final), 1), "", "",
                       "", ""]] if REFERENCE in conditions else [])
    dims = next(iter(conditions[rules[0]].values())).summary["config"]["network"]["dims"]
    n_layers = len(dims) - 1
    rows, detail, energy, verdicts, tests = [], [], [], [], []
    for rule in rules:
        noisy = rule + NOISE
        a, b, test = paired(conditions, noisy, rule, auc)
        wins = sum(x > y for x, y in zip(a, b))
        name = rule.upper()
        rows.append([name, fmt(values(conditions[rule], auc), 3),
                     fmt(values(conditions[noisy], auc), 3), f"{wins}/{len(a)}", str(test)])
        detail.append([name, fmt(values(conditions[rule], final), 1),
                       fmt(values(conditions[noisy], final), 1),
                       fmt(values(conditions[noisy], after_noise), 1),
                       fmt(values(conditions[rule], after_train), 1),
                       fmt(values(conditions[noisy], after_train), 1)])
        energy.append(energy_row(name, conditions[rule], conditions[noisy]))
        verdicts.append(f"- **{name}** ({RULES[rule].description}): noise preconditioning "
                        f"{verdict(wins, len(a), name)}")
        tests.append(test.pvalue)
    return [
        f"## {chip}",
        "",
        f"{description}; network {dims}. First-epoch AUC: of test accuracy over epoch [0, 1]; "
        "mean ± std over seeds; the paired t-test compares the rule with and without the noise "
        "phase seed by seed.",
        "",
        markdown_table(["rule", "first-epoch AUC", "with noise", "with noise > without (seeds)",
                        "paired t-test (with − without)"], reference + rows),
        "",
        "Final test accuracy (%) after the epoch; θ: angle (degrees) between the last "
        f"layer's forward weights W_{n_layers} and the feedback that stands in for them: "
        + "; ".join(f"{rule.upper()} {compared_feedback(rule, n_layers)}" for rule in rules)
        + ".",
        "",
        markdown_table(["rule", "acc", "acc with noise", "θ after noise",
                        "θ after training", "θ with noise after training"],
                       reference_acc + detail),
        "",
        "Energy (the chip's ledger, `hw_configs` unit costs) until the test accuracy first "
        "reaches L, the highest accuracy every run of the rule reaches with and without noise; "
        "with noise it includes the noise phase, whose energy is shown on its own; mean ± std "
        "over seeds.",
        "",
        markdown_table(["rule", "common level L", "energy to L", "energy to L with noise",
                        "of which the noise phase", "less with noise (seeds)"], energy),
        "",
        buffer_line(conditions, [REFERENCE, *rules] if REFERENCE in conditions else rules),
        "",
        *[f"{line}; Holm-adjusted p = {p:.3g} over the {len(rules)} rules."
          for line, p in zip(verdicts, stats.holm_adjusted(tests))],
        "",
    ]


def write_doc(out, doc, command: str, experiment) -> None:
    pre = experiment.precondition
    n_classes = experiment.network.dims[-1]
    chips_runs, chips, header = study_header(
        "Does noise preconditioning help every local rule?",
        "Each rule runs without and with the same noise phase; runs with one seed share "
        "their initial forward weights, device draws and noise set. DFA projects the output "
        "error to the hidden layer, sign DFA only its sign, DRTP the one-hot target (Frenkel, "
        "Lefebvre & Bol 2021): under DRTP no error reaches the hidden layer at all.",
        command, out, EXPERIMENT, experiment,
        setting=(f"{list(experiment.network.dims)} (where a section names no other network), "
                 f"{experiment.optimizer.name} lr "
                 f"{experiment.optimizer.lr:g}, batch {experiment.train.batch_size}, "
                 f"{experiment.train.epochs} epoch of {experiment.data.dataset}; the noise "
                 f"phase runs {pre.steps} steps on a fixed set of {pre.n_examples} "
                 f"{pre.input.describe()} examples with uniform random labels, under the "
                 f"rule being trained (the paper runs {PAPER_NOISE_STEPS:,} steps)."))
    variants = list(dict.fromkeys(c.rsplit("-", 1)[1] for c in experiment.conditions))
    rules = local_rules(variants)
    lines = list(header)
    n_seeds = 0
    for chip, conditions in chips_runs.items():
        if all(rule in conditions and rule + NOISE in conditions for rule in rules):
            lines += chip_section(chip, chips[chip].description, conditions, rules)
            n_seeds = len(conditions[rules[0]])
    lines += [
        f"Read with care: {n_seeds} seeds, {experiment.train.epochs} epoch, a noise phase "
        f"{100 * pre.steps / PAPER_NOISE_STEPS:.0f} % of the paper's. With one hidden layer FA "
        "and DFA differ only in the draw and scale of one matrix. The noise phase trains "
        "each rule with its own learning signal: under DRTP the hidden layer learns to "
        "project the random labels, not to reduce an error. SDFA's sign(e) is +1 on every "
        "wrong class however sure the chip is, so its signal B sign(e) = B 1 − 2 B y carries "
        "a term B 1 that does not shrink as the chip learns, its entries "
        f"√{n_classes}/2 = {math.sqrt(n_classes) / 2:.2g} times as large as the target "
        "term's (B's entries independent).",
        "",
    ]
    write_text(doc, "\n".join(lines))


def main() -> int:
    return study_main(__doc__, "results_rules.py", EXPERIMENT, REPO / "runs" / "rules", DOC,
                      write_doc)


if __name__ == "__main__":
    sys.exit(main())
