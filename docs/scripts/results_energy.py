"""Regenerate ``docs/results-energy.md``: what does learning cost on the chip?

Runs ``experiments/energy.yaml`` (BP, FA, DFA, FA with regenerated and with sign feedback,
and FA + noise preconditioning on MNIST for the ``ideal``, ``rram_taox`` and ``pcm_gst``
chips; 3 seeds; finished runs are reused) and tabulates, from each run's energy ledger
(``summary.json`` ``"ledger"``, see :func:`neurosim.energy.ledger_summary`): the energy,
pulses and bytes of one training epoch by phase and component; stored vs regenerated vs sign
feedback; and the energy to the target test accuracy with and without noise
preconditioning, with the verdict "does preconditioning pay for itself?" per chip.

    .venv/bin/python docs/scripts/results_energy.py [--out runs/energy] [--set k=v ...]

Every number in the document is read from the run folders.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from neurosim import stats
from neurosim.config import load_chip, load_experiment
from neurosim.energy import COMPONENTS, adc_pj, cell_read_pj, memory_pj_per_bit, write_pulse_pj
from neurosim.ledger import (COUNTER_INDEX, OPERATION_INDEX, OPERATIONS, STAGE_INDEX, Ledger,
                             bytes_moved, pulses)
from neurosim.plots import new_figure, save_png, stacked_bars
from neurosim.report import markdown_table
from neurosim.runio import write_text
from neurosim.runner import run_experiment
from results_core import fmt, load_runs, paired
from results_devices import by_preset, shown

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / "experiments" / "energy.yaml"
DOC = REPO / "docs" / "results-energy.md"
RULES = ("bp", "fa", "dfa")
FEEDBACK = {"stored": "fa", "regenerated": "fa_regenerated", "sign": "fa_sign"}
LABELS = {"bp": "BP", "fa": "FA", "fa_long": "FA (longer)", "dfa": "DFA",
          "fa_regenerated": "FA regenerated",
          "fa_sign": "FA sign", "fa_noise": "FA + noise"}
ENERGY_UNITS = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))
BYTE_UNITS = (("B", 1.0), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12))
NOT_REACHED = "not reached"


def percent_text(fraction: float) -> str:
    return f"{fraction * 100:g} %"


# ------------------------------------------------------------------------ numbers
def unit(values, units=ENERGY_UNITS) -> tuple[str, float]:
    """The largest unit in which the largest finite |value| is still >= 1."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    top = max(finite, default=1.0)
    name, scale = units[0]
    for candidate, size in units:
        if top >= size:
            name, scale = candidate, size
    return name, scale


def in_unit(values, scale: float, digits: int = 2) -> str:
    """Mean ± std over seeds of ``values / scale``."""
    return fmt(np.asarray(values, dtype=np.float64) / scale, digits)


def energy_columns(header: list[str], rows: list[list], units: dict | None = None,
                   digits: int = 2) -> tuple[list[str], list[list[str]]]:
    """Format cells that are lists of per-seed values as mean ± std with one unit per column
    (named in the header): energy units, or those of ``units[column name]`` (e.g.
    :data:`BYTE_UNITS`); other cells are kept as they are."""
    header, out = list(header), [list(row) for row in rows]
    for col in range(len(header)):
        cells = [row[col] for row in rows if isinstance(row[col], list)]
        if not cells:
            continue
        name, scale = unit([v for cell in cells for v in cell],
                           (units or {}).get(header[col], ENERGY_UNITS))
        header[col] = f"{header[col]} ({name})"
        for row in out:
            if isinstance(row[col], list):
                row[col] = in_unit(row[col], scale, digits)
    return header, out


def chip_energy(run):
    """The unit costs the run was charged (its chip.yaml)."""
    return load_chip(run.path / "chip.yaml").energy


def per_epoch(run) -> dict:
    """The train stage's energy (pJ), pulses and bytes divided by the epochs trained."""
    summary = run.summary
    epochs = summary["train"]["epochs"]
    energy = summary["ledger"]["energy_pj"]
    train = Ledger.from_json(summary["ledger"]["counts"]).counts[STAGE_INDEX["train"]]
    config = chip_energy(run)
    update, backward = OPERATION_INDEX["update"], OPERATION_INDEX["backward"]
    phases = {p: sum(energy["phases"][p].values()) / epochs for p in OPERATIONS}
    return {
        "total": sum(phases.values()),
        "phases": phases,
        "components": {c: sum(energy["phases"][p][c] for p in OPERATIONS) / epochs
                       for c in COMPONENTS},
        "backward": {c: energy["phases"]["backward"][c] / epochs for c in COMPONENTS},
        "pulses": float(pulses(train).sum()) / epochs,
        "bytes": float(bytes_moved(train).sum()) / epochs,
        "weight_transport": float(train[..., COUNTER_INDEX["bytes_weight_transport"]].sum())
        / epochs,
        "backward_random": float(train[backward, :, COUNTER_INDEX["random_numbers"]].sum())
        / epochs,
        "gradient_macs_pj": float(train[update, :, COUNTER_INDEX["digital_macs"]].sum())
        * config.digital_mac_pj / epochs,
        "steps": run.train[-1]["step"] / epochs if run.train else float("nan"),
        "eval": sum(energy["phases"]["eval"].values()),
    }


def epoch_increments(run, key: str) -> list[float]:
    """``key`` (a cumulative train-stage total of the metric records: ``energy_pj``,
    ``pulses``, ``bytes``) spent in each epoch, from the records at the epoch ends."""
    at = {round(r["epoch"], 9): r[key] for r in run.train}
    ends = range(1, run.summary["train"]["epochs"] + 1)
    if not all(float(e) in at for e in ends):
        return []
    totals = [at.get(0.0, 0.0)] + [at[float(e)] for e in ends]
    return [b - a for a, b in zip(totals, totals[1:])]


def bracket(run) -> tuple[float, float]:
    """Energy (pJ) between which the run first reached the target: the evaluation point
    before the first one at or above the target and that one (preconditioning included).
    Not reached: (everything the run spent on learning, inf). Checks that the upper end is
    the ledger's ``to_target`` energy."""
    to_target = run.summary["ledger"]["to_target"]
    pre = to_target["precondition"]["energy_pj"]
    records = sorted(run.train, key=lambda r: r["step"])
    for index, record in enumerate(records):
        if record["test_accuracy"] >= to_target["target"]:
            hi = pre + record["energy_pj"]
            if not math.isclose(hi, to_target["energy_pj"], rel_tol=1e-9, abs_tol=1e-6):
                raise ValueError(f"{run.path}: to_target energy {to_target['energy_pj']} pJ is "
                                 f"not the metric record's {hi} pJ")
            return pre + records[max(index - 1, 0)]["energy_pj"], hi
    return pre + (records[-1]["energy_pj"] if records else 0.0), math.inf


def seeds_of(runs: dict) -> list:
    return [run for _, run in sorted(runs.items())]


def to_target_cell(runs: list, key: str, scale: float, digits: int = 2) -> str:
    """Mean ± std over seeds when every seed reached the target, else the seeds one by one."""
    values = [run.summary["ledger"]["to_target"][key] for run in runs]
    if all(v is not None for v in values):
        return in_unit(values, scale, digits)
    return ", ".join(NOT_REACHED if v is None else f"{v / scale:.{digits}f}" for v in values)


def reached(runs: list) -> str:
    return f"{sum(bool(r.summary['ledger']['to_target']['reached']) for r in runs)}/{len(runs)}"


def epoch_reached(runs: list) -> str:
    epochs = [r.summary["ledger"]["to_target"]["epoch"] for r in runs]
    return ", ".join("—" if e is None else f"{e:.2f}" for e in epochs)


# ------------------------------------------------------------------------ sections
def assumptions_section(presets: dict, target: float, points_per_epoch: int) -> str:
    chips = {}
    for preset, rules in presets.items():
        run = next(iter(next(iter(rules.values())).values()))
        chips[preset] = chip_energy(run)
    configs = list(chips.values())
    same = all(c == configs[0] for c in configs)
    shown_chips = {"every chip": configs[0]} if same else chips
    rows = []
    for name, c in shown_chips.items():
        rows.append([name, f"{cell_read_pj(c):.4g}", f"{write_pulse_pj(c):.4g}",
                     f"{adc_pj(c, c.adc_bits_default):.3g} ({c.adc_bits_default} b)",
                     f"{c.dac_pj_per_bit * c.dac_bits_default:.3g} ({c.dac_bits_default} b)",
                     f"{c.shift_add_pj:.3g}", f"{memory_pj_per_bit(c):.3g} ({c.memory})",
                     f"{c.rng_pj_per_number:.3g}", f"{c.digital_mac_pj:.3g}",
                     f"{c.digital_op_pj:.3g}"])
    return "\n".join([
        "## Energy model and its assumptions",
        "",
        "Energy = counts × unit costs (`neurosim/energy.py`). The counts are gathered by the "
        "simulator as it runs (`neurosim/accounting.py`): one training step's reads, digital "
        "products and traffic follow from the tile geometry (256 × 256 tiles) and are tallied "
        "per step; programming pulses are those the update kernels applied. Unit costs come "
        "from the chip YAML's `energy:` block (the cited defaults of `hw_configs/ideal.yaml`; "
        + ("all three chips use the same values" if same else "they differ per chip")
        + "), in pJ:",
        "",
        markdown_table(["chip", "cell read V_r²G t_r", "write pulse V_w²G t_w",
                        "ADC conversion", "DAC conversion", "shift-add", "memory per bit",
                        "random number", "digital MAC (fp32)", "digital op"], rows),
        "What a training step is charged:",
        "",
        "- **forward**: every layer's array read: one cell read per MAC, one DAC conversion "
        "per input per column tile, one ADC conversion per output per row tile, shift-adds "
        "merging row tiles, activations moved between buffer and array;",
        "- **backward**: BP reads the forward array transposed **and** moves the forward "
        "weights to the backward circuit (weight-transport bytes, once per step, shared by "
        "the batch); FA and DFA read their stored feedback arrays (sign arrays are charged "
        "exactly like stored ones); regenerated feedback is a digital product (fp32 MACs) "
        "plus one PRNG draw per entry of B per step; `f'(a)` is one digital op per hidden "
        "unit;",
        "- **update**: the weight gradient `δ hᵀ` is formed digitally (batch × n_in × n_out "
        "fp32 MACs), Adam runs in digital logic (12 ops and two state tensors per "
        "parameter), pulsed chips draw one uniform per weight for the stochastic rounding "
        "(cycle-to-cycle and read noise are physical: the chip draws nothing for them), "
        "and every pulse costs a write pulse. The `ideal` chip updates its weights exactly (`update.mode: ideal`): it "
        "programs no pulses and is charged **no write energy**;",
        "- **precondition**: the noise phase's steps are charged like training steps, plus "
        "the PRNG draws of the fixed noise set;",
        "- **eval**: the inference passes made to measure accuracy (test set, probes). "
        "Analyses only a simulator makes (the true-BP-gradient angle, representation "
        "ranks) are not chip operations and are not booked. Eval is reported but is not "
        "part of the cost of learning and not part of the energy to target.",
        "",
        "Not counted: programming the arrays' initial weights and the feedback arrays; bias "
        "additions, activations, softmax and the output error of the forward pass; read "
        "verification and write-verify loops; bit-serial re-reads (a b-bit conversion is "
        "charged once, as b one-bit drives for the DAC); control, clocking, leakage and "
        "interconnect beyond the buffer bits. Converters of ideal peripheries are charged at "
        "8 bits. Every cell read and pulse is charged at one average conductance G (10 µS), "
        "so energy does not depend on the weights. Memory traffic goes to the on-chip "
        "buffer (`memory: buffer`), not DRAM.",
        "",
        f"Energy to target: preconditioning energy plus data-training energy until test "
        f"accuracy first reaches {percent_text(target)} (`evaluation.energy_target`), read at the "
        f"evaluation points (epoch 0, the fractional points within epoch 1, then "
        f"{points_per_epoch} evenly spaced points per epoch), so it is "
        f"resolved to 1/{points_per_epoch} epoch after epoch 1. Where "
        f"a run crosses the "
        f"target between two evaluation points, the true crossing lies between their "
        f"energies; the verdicts below use that bracket.",
        "",
    ])


def ledger_section(presets: dict, figure: str) -> tuple[str, dict]:
    rows, component_rows, findings = [], [], {}
    for preset, rules in presets.items():
        for rule in RULES:
            if rule not in rules:
                continue
            runs = seeds_of(rules[rule])
            epochs = [per_epoch(r) for r in runs]
            findings[(preset, rule)] = epochs
            rows.append([preset, LABELS[rule], [e["total"] for e in epochs]]
                        + [[e["phases"][p] for e in epochs] for p in OPERATIONS]
                        + [f"{np.mean([e['pulses'] for e in epochs]):.3g}",
                           [e["bytes"] for e in epochs], [e["weight_transport"] for e in epochs],
                           fmt([r.summary["train"]["test_accuracy"] * 100 for r in runs], 2)])
            component_rows.append([preset, LABELS[rule]]
                                  + [[e["components"][c] for e in epochs] for c in COMPONENTS])
    header, rows = energy_columns(
        ["chip", "rule", "total", "forward", "backward", "update", "pulses", "bytes",
         "weight-transport bytes", "final test accuracy (%)"], rows,
        {"bytes": BYTE_UNITS, "weight-transport bytes": BYTE_UNITS})
    comp_header, component_rows = energy_columns(["chip", "rule"] + list(COMPONENTS),
                                                 component_rows)
    pulse_rows, epochs_trained = [], 0
    for (preset, rule), _ in findings.items():
        runs = seeds_of(presets[preset][rule])
        per_seed = [epoch_increments(r, "pulses") for r in runs]
        if not all(per_seed) or not any(any(p) for p in per_seed):
            continue
        epochs_trained = max(epochs_trained, len(per_seed[0]))
        pulse_rows.append([preset, LABELS[rule]]
                          + [f"{np.mean([p[e] for p in per_seed]):.3g}"
                             for e in range(len(per_seed[0]))])
    lines = [
        "## 1. The ledger of one training epoch: BP vs FA vs DFA",
        "",
        "Train-stage energy (the `forward`, `backward` and `update` phases; no "
        "preconditioning, no evaluation reads) divided by the epochs trained; mean ± std over "
        "seeds. Pulses: programming pulses per epoch; bytes: all traffic between buffer and "
        "arrays or digital logic per epoch; weight transport: the part of it that moves "
        "forward weights for BP's backward pass.",
        "",
        markdown_table(header, rows),
        "By component (same runs, per epoch):",
        "",
        markdown_table(comp_header, component_rows),
        f"![energy per epoch by component]({figure})",
        "",
    ]
    if pulse_rows:
        lines += ["Programming pulses in each epoch (mean over seeds; the chips that program "
                  "pulses):", "",
                  markdown_table(["chip", "rule"] + [f"epoch {e + 1}"
                                                     for e in range(epochs_trained)],
                                 pulse_rows)]
    return "\n".join(lines), findings


def ledger_findings(presets: dict, findings: dict) -> str:
    lines = []
    for preset in presets:
        if (preset, "fa") not in findings:
            continue
        fa = findings[(preset, "fa")]
        total = np.mean([e["total"] for e in fa])
        digital = np.mean([e["components"]["digital"] for e in fa])
        gradient = np.mean([e["gradient_macs_pj"] for e in fa])
        write = np.mean([e["components"]["write"] for e in fa])
        backward = np.mean([e["phases"]["backward"] for e in fa])
        text = (f"- **{preset}**: digital logic is {digital / total:.1%} of FA's energy per "
                f"epoch, the fp32 weight gradient alone {gradient / total:.1%}; the backward "
                f"phase is {backward / total:.2%}; writes are {write / total:.3%}")
        if (preset, "bp") in findings:
            bp = findings[(preset, "bp")]
            bp_total = np.mean([e["total"] for e in bp])
            wt = np.mean([e["weight_transport"] for e in bp])
            by = np.mean([e["bytes"] for e in bp])
            text += (f". BP costs {bp_total / total - 1:+.2%} vs FA per epoch; its "
                     f"weight transport is {wt / 1e6:.2f} MB per epoch, {wt / by:.3%} of its "
                     "traffic")
        if (preset, "dfa") in findings:
            dfa_total = np.mean([e["total"] for e in findings[(preset, "dfa")]])
            text += f"; DFA costs {dfa_total / total - 1:+.2%} vs FA"
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


def feedback_section(presets: dict, target: float, figure: str) -> str:
    rows, notes = [], []
    for preset, rules in presets.items():
        stored = None
        for kind, condition in FEEDBACK.items():
            if condition not in rules:
                continue
            runs = seeds_of(rules[condition])
            epochs = [per_epoch(r) for r in runs]
            backward = [e["phases"]["backward"] for e in epochs]
            analog = [sum(e["backward"][c] for c in ("cell_read", "adc", "dac", "shift_add"))
                      for e in epochs]
            digital = [e["backward"]["digital"] + e["backward"]["rng"] for e in epochs]
            rows.append([preset, kind, backward, analog, digital,
                         [e["backward"]["memory"] for e in epochs],
                         [e["total"] for e in epochs],
                         f"{np.mean([e['backward_random'] for e in epochs]):.3g}",
                         fmt([r.summary["train"]["test_accuracy"] * 100 for r in runs], 2),
                         reached(runs), epoch_reached(runs)])
            if kind == "stored":
                stored = (np.mean(backward), np.mean([e["total"] for e in epochs]))
            elif stored is not None:
                notes.append(f"{preset} {kind}: backward ×{np.mean(backward) / stored[0]:.3g}, "
                             f"total {np.mean([e['total'] for e in epochs]) / stored[1] - 1:+.2%}")
    header, rows = energy_columns(
        ["chip", "feedback", "backward phase", "array reads + converters", "digital + RNG",
         "memory", "total"], rows)
    header += ["PRNG draws (backward)", "final test accuracy (%)",
               f"reached {percent_text(target)}",
               "epoch reached"]
    return "\n".join([
        "## 2. Stored vs regenerated vs sign feedback (FA)",
        "",
        "Per training epoch, mean ± std over seeds. Backward phase split into the feedback "
        "array read (cells, DAC, ADC, shift-adds), digital work (regenerated product or "
        "`f'(a)`, plus PRNG draws) and memory traffic; total = all train-stage phases.",
        "",
        markdown_table(header, rows),
        "Relative to stored feedback: " + ("; ".join(notes) if notes else "—") + ".",
        "",
        f"![backward phase by component]({figure})",
        "",
    ])


OUTCOMES = ("pays", "does not pay", "FA did not reach the target", "neither reached the target",
            "brackets overlap")


def outcome(plain: tuple[float, float], noisy: tuple[float, float]) -> str:
    """Compare two energy brackets (FA, FA + noise) of one seed: see :data:`OUTCOMES`."""
    (a_lo, a_hi), (b_lo, b_hi) = plain, noisy
    if b_hi < a_lo:
        return "pays"
    if b_lo > a_hi:
        return "does not pay"
    if math.isinf(a_hi) and math.isinf(b_hi):
        return "neither reached the target"
    if math.isinf(a_hi):
        return "FA did not reach the target"
    return "brackets overlap"


def noise_verdict(outcomes: list[str]) -> str:
    """Yes (pays in every seed), no (does not pay in any), or the count of each outcome."""
    n = len(outcomes)
    if n and outcomes.count("pays") == n:
        return "**yes**: it pays for itself in every seed"
    if n and outcomes.count("does not pay") == n:
        return "**no**: it costs more energy than it saves in every seed"
    counts = ", ".join(f"{name}: {outcomes.count(name)}" for name in OUTCOMES
                       if outcomes.count(name))
    return f"not decided by these runs ({counts}; of {n} seeds)"


def difference_text(noisy: list, plain: list) -> str:
    """FA + noise − FA energy to target, paired by seed, with the paired t-test."""
    if not all(r.summary["ledger"]["to_target"]["reached"] for r in noisy + plain):
        return "— (not every seed reached the target)"
    x = [r.summary["ledger"]["to_target"]["energy_pj"] for r in noisy]
    y = [r.summary["ledger"]["to_target"]["energy_pj"] for r in plain]
    test = stats.paired_ttest(x, y)
    if math.isnan(test.pvalue) and len(set(np.subtract(x, y))) == 1:
        return f"{test.mean_difference / 1e9:+.2f} mJ in every seed (no variance: no t-test)"
    return f"{test.mean_difference / 1e9:+.2f} mJ ({test})"


def noise_comparison(presets: dict) -> dict:
    """Per chip: the FA runs (``fa_long`` when the experiment continues FA further) and the
    FA + noise runs on common seeds, with each seed's brackets and outcome."""
    out = {}
    for preset, rules in presets.items():
        fa = rules.get("fa_long") or rules.get("fa")
        if not fa or "fa_noise" not in rules:
            continue
        seeds = sorted(set(fa) & set(rules["fa_noise"]))
        plain = [fa[s] for s in seeds]
        noisy = [rules["fa_noise"][s] for s in seeds]
        brackets = [(bracket(a), bracket(b)) for a, b in zip(plain, noisy)]
        out[preset] = {"seeds": seeds, "plain": plain, "noisy": noisy, "brackets": brackets,
                       "outcomes": [outcome(a, b) for a, b in brackets],
                       "long": "fa_long" in rules}
    return out


def check_long_runs(presets: dict) -> None:
    """``fa_long`` continues ``fa`` (same seed, more epochs): their shared records must agree."""
    for preset, rules in presets.items():
        for seed in set(rules.get("fa_long", {})) & set(rules.get("fa", {})):
            short, long = rules["fa"][seed].train, rules["fa_long"][seed].train
            common = {r["step"]: r["test_accuracy"] for r in long}
            for record in short:
                if common.get(record["step"]) != record["test_accuracy"]:
                    raise ValueError(f"{preset} seed {seed}: fa_long does not continue fa "
                                     f"(step {record['step']})")


def target_section(presets: dict, target: float, figure: str) -> tuple[str, dict]:
    rows, cost_rows, bracket_rows = [], [], []
    for preset, rules in presets.items():
        for condition in ("bp", "fa", "fa_long", "dfa", "fa_regenerated", "fa_sign",
                          "fa_noise"):
            if condition not in rules:
                continue
            runs = seeds_of(rules[condition])
            rows.append([preset, LABELS[condition], str(runs[0].summary["train"]["epochs"]),
                         reached(runs), epoch_reached(runs),
                         to_target_cell(runs, "energy_pj", 1e9, 2),
                         to_target_cell(runs, "pulses", 1e6, 3),
                         to_target_cell(runs, "bytes", 1e9, 2)])
    comparison = noise_comparison(presets)
    for preset, c in comparison.items():
        plain, noisy = c["plain"], c["noisy"]
        pre = [r.summary["ledger"]["to_target"]["precondition"]["energy_pj"] for r in noisy]
        pre_epochs = [p / per_epoch(r)["total"] for p, r in zip(pre, noisy)]
        for seed, a, b, (a_br, b_br), result in zip(c["seeds"], plain, noisy, c["brackets"],
                                                    c["outcomes"]):
            show = lambda lo, hi: (f"{lo / 1e9:.2f}–{hi / 1e9:.2f}" if math.isfinite(hi)
                                   else f"> {lo / 1e9:.2f} ({NOT_REACHED})")
            break_even = b_br[0] / per_epoch(a)["total"]
            bracket_rows.append([preset, str(seed), show(*a_br), show(*b_br),
                                 f"{break_even:.2f}", result])
        train_part = [(r.summary["ledger"]["to_target"]["energy_pj"] - p)
                      if r.summary["ledger"]["to_target"]["reached"] else None
                      for r, p in zip(noisy, pre)]
        cost_rows.append([preset + (f" (FA run for {plain[0].summary['train']['epochs']} "
                                    "epochs)" if c["long"] else ""),
                          to_target_cell(plain, "energy_pj", 1e9),
                          in_unit(pre, 1e9), fmt(pre_epochs, 2),
                          (in_unit(train_part, 1e9) if None not in train_part else
                           ", ".join(NOT_REACHED if v is None else f"{v / 1e9:.2f}"
                                     for v in train_part)),
                          to_target_cell(noisy, "energy_pj", 1e9), difference_text(noisy, plain)])
    lines = [
        f"## 3. Energy to {percent_text(target)} test accuracy, with and without noise "
        "preconditioning",
        "",
        f"Energy, pulses and bytes from the start (preconditioning included) until test "
        f"accuracy first reaches {percent_text(target)}, at the first evaluation point at or "
        "above it (the ledger's `to_target`); mean ± std over seeds when every seed reached "
        "it, otherwise seed by seed. `FA (longer)` is FA continued on the same seeds for more "
        "epochs (its first epochs are the `FA` runs, checked record by record).",
        "",
        markdown_table(["chip", "condition", "epochs run", "seeds reaching",
                        "epoch reached (per seed)", "energy (mJ)", "pulses (millions)",
                        "bytes (GB)"], rows),
        "### Does preconditioning pay for itself?",
        "",
        "FA vs FA + noise, paired by seed (same initial weights, feedback and device draws); "
        "FA is the longer FA run where there is one. The preconditioning cost is shown on "
        "its own, also in epochs of FA + noise's own training energy; the difference is "
        "FA + noise − FA with a paired t-test.",
        "",
        markdown_table(["chip", "FA: energy to target (mJ)", "FA + noise: preconditioning (mJ)",
                        "preconditioning in training epochs", "FA + noise: data training to "
                        "target (mJ)", "FA + noise: total to target (mJ)",
                        "difference, paired t-test"], cost_rows),
        "Seed by seed, the bracket (mJ) in which each run first crossed the target "
        "(evaluation point before and at the crossing; a run that never crossed it spent "
        "more than its whole schedule). Preconditioning *pays* when FA + noise's upper end "
        "is below FA's lower end and *does not pay* when its lower end is above FA's upper "
        "end. Break-even: the training epochs FA would have to need for preconditioning to "
        "pay at all (FA + noise's lower end over FA's energy per epoch).",
        "",
        markdown_table(["chip", "seed", "FA", "FA + noise", "break-even (FA epochs)",
                        "outcome"], bracket_rows),
        "**Verdict per chip**:",
        "",
        *[f"- **{preset}**: {noise_verdict(c['outcomes'])}."
          for preset, c in comparison.items()],
        "",
        "This is the verdict on this noise phase, at the training learning rate; "
        "`docs/results-noise-length.md` measures shorter ones and faster ones.",
        "",
        f"![energy to target]({figure})",
        "",
    ]
    return "\n".join(lines), comparison


# ------------------------------------------------------------------------ figures
def legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def component_figure(presets: dict, findings: dict, path: Path) -> Path:
    """Energy per epoch by component, one panel per chip; the second row leaves out the
    digital-logic component so that the array, converter and memory terms are visible."""
    fig, axes = new_figure(2, len(presets), width=4.2 * len(presets) + 1.5, height=7.0,
                           sharey="row")
    tops = ([], [])
    for column, preset in enumerate(presets):
        conditions = [c for c in ("bp", "fa", "dfa", "fa_regenerated", "fa_sign")
                      if c in presets[preset]]
        epochs = {c: findings.get((preset, c)) or [per_epoch(r) for r in
                                                    seeds_of(presets[preset][c])]
                  for c in conditions}
        stacks = {component: [np.mean([e["components"][component] for e in epochs[c]])
                              for c in conditions] for component in COMPONENTS}
        labels = [LABELS[c].replace(" ", "\n") for c in conditions]
        tops[0].extend(stacked_bars(axes[0, column], labels, stacks, 1e-9))
        tops[1].extend(stacked_bars(
            axes[1, column], labels,
            {k: (v if k != "digital" else [0.0] * len(v)) for k, v in stacks.items()}, 1e-6))
        axes[0, column].set_title(preset)
        axes[1, column].set_title(f"{preset}: without digital logic", fontsize=9)
    for row in range(2):
        if tops[row] and max(tops[row]) > 0:
            axes[row, 0].set_ylim(0, 1.06 * max(tops[row]))
    axes[0, 0].set_ylabel("energy per training epoch (mJ)")
    axes[1, 0].set_ylabel("energy per training epoch (µJ)")
    if axes[0, -1].get_legend_handles_labels()[0]:
        axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save_png(fig, path)


def backward_figure(presets: dict, path: Path) -> Path:
    labels, stacks = [], {c: [] for c in COMPONENTS}
    for preset, rules in presets.items():
        for kind, condition in FEEDBACK.items():
            if condition not in rules:
                continue
            epochs = [per_epoch(r) for r in seeds_of(rules[condition])]
            labels.append(f"{preset}\n{kind}")
            for component in COMPONENTS:
                stacks[component].append(np.mean([e["backward"][component] for e in epochs]))
    fig, axes = new_figure(width=max(6.0, 1.0 * len(labels)), height=4.4)
    stacked_bars(axes[0, 0], labels, stacks, 1e-6)
    axes[0, 0].set_ylabel("backward-phase energy per epoch (µJ)")
    axes[0, 0].set_title("FA feedback: stored array vs regenerated vs sign array")
    axes[0, 0].tick_params(axis="x", labelsize=7)
    legend(axes[0, 0])
    return save_png(fig, path)


def target_figure(comparison: dict, target: float, path: Path) -> Path:
    labels, pre, train, missing = [], [], [], []
    for preset, c in comparison.items():
        for name, runs in (("FA", c["plain"]), ("FA + noise", c["noisy"])):
            hits = [r.summary["ledger"]["to_target"] for r in runs]
            hits = [h for h in hits if h["reached"]]
            labels.append(f"{preset}\n{name}")
            missing.append(len(runs) - len(hits))
            p = [h["precondition"]["energy_pj"] for h in hits]
            pre.append(np.mean(p) if hits else 0.0)
            train.append(np.mean([h["energy_pj"] for h in hits]) - pre[-1] if hits else 0.0)
    fig, axes = new_figure(width=max(6.0, 1.1 * len(labels)), height=4.4)
    ax = axes[0, 0]
    tops = stacked_bars(ax, labels, {"noise preconditioning": pre,
                                     "data training to target": train}, 1e-9)
    for x, (top, miss) in enumerate(zip(tops, missing)):
        if miss:
            ax.text(x, top, f"{miss} seed(s)\n{NOT_REACHED}", ha="center", va="bottom",
                    fontsize=7)
    ax.set_ylabel(f"energy to {percent_text(target)} test accuracy (mJ)")
    ax.set_title("Energy to target: mean over the seeds that reached it")
    ax.tick_params(axis="x", labelsize=7)
    legend(ax)
    return save_png(fig, path)


# ------------------------------------------------------------------------ document
def mean_of(findings: dict, key: tuple, get) -> float:
    return float(np.mean([get(e) for e in findings[key]]))


def target_mean(runs: dict) -> float | None:
    """Mean energy to target (pJ) when every seed reached it, else None."""
    hits = [r.summary["ledger"]["to_target"]["energy_pj"] for r in runs.values()]
    return float(np.mean(hits)) if hits and None not in hits else None


def surprises(presets: dict, findings: dict, comparison: dict) -> str:
    """The headline comparisons, each computed from the runs."""
    lines = ["## What stands out", ""]
    fa_keys = [(p, "fa") for p in presets if (p, "fa") in findings]
    if fa_keys:
        share = [mean_of(findings, k, lambda e: e["gradient_macs_pj"] / e["total"])
                 for k in fa_keys]
        digital = [mean_of(findings, k, lambda e: e["components"]["digital"] / e["total"])
                   for k in fa_keys]
        lines.append(
            f"- **Learning energy is the digital weight gradient.** Digital logic is "
            f"{min(digital):.1%}–{max(digital):.1%} of FA's energy per epoch on these chips, "
            f"the fp32 outer product `δ hᵀ` alone {min(share):.1%}–{max(share):.1%} (4.6 pJ "
            "per MAC against 0.025 pJ per analog cell read plus converters shared by a whole "
            "column). Every comparison below is a small change on top of that term; a chip "
            "that formed the outer product in the array (`update.mode: stochastic`, which "
            "allows plain SGD only) would change this picture.")
    bp_keys = [p for p in presets if (p, "bp") in findings and (p, "fa") in findings]
    if bp_keys:
        extra = [mean_of(findings, (p, "bp"), lambda e: e["total"])
                 / mean_of(findings, (p, "fa"), lambda e: e["total"]) - 1 for p in bp_keys]
        wt = mean_of(findings, (bp_keys[0], "bp"), lambda e: e["weight_transport"])
        p = bp_keys[0]
        backward = [mean_of(findings, (p, r), lambda e: e["phases"]["backward"])
                    for r in ("bp", "fa")]
        traffic = wt * 8 * memory_pj_per_bit(chip_energy(seeds_of(presets[p]["bp"])[0]))
        text = (f"- **Weight transport is real traffic but negligible energy here.** BP moves "
                f"{wt / 1e6:.2f} MB of forward weights per epoch and costs "
                + (f"{extra[0]:+.3%}" if np.ptp(extra) < 5e-5 else
                   f"{min(extra):+.3%} to {max(extra):+.3%}")
                + f" more than FA per epoch: its backward phase is {backward[0] / 1e6:.2f} µJ "
                f"vs FA's {backward[1] / 1e6:.2f} µJ ({p}), and the weight-transport traffic "
                f"alone is {traffic / 1e6:.2f} µJ of that"
                + (" (the transposed read of a forward array costs what a feedback-array read "
                   "costs)." if math.isclose(backward[0] - traffic, backward[1], rel_tol=1e-6)
                   else "."))
        faster = [(p, target_mean(presets[p]["bp"]), target_mean(presets[p]["fa"]))
                  for p in bp_keys]
        faster = [(p, b, f) for p, b, f in faster if b is not None and f is not None]
        if faster:
            text += (" Because BP reaches the target sooner, its energy to target is lower: "
                     + "; ".join(f"{p} {b / 1e9:.1f} vs {f / 1e9:.1f} mJ" for p, b, f in faster)
                     + " (BP vs FA).")
        lines.append(text)
    dfa_same = [p for p in presets if (p, "dfa") in findings and (p, "fa") in findings
                and math.isclose(mean_of(findings, (p, "dfa"), lambda e: e["total"]
                                         - e["components"]["write"] - e["components"]["rng"]),
                                 mean_of(findings, (p, "fa"), lambda e: e["total"]
                                         - e["components"]["write"] - e["components"]["rng"]),
                                 rel_tol=1e-9)]
    if dfa_same:
        lines.append(f"- **DFA costs exactly what FA costs** apart from pulses (on "
                     f"{', '.join(dfa_same)}): with one hidden layer, DFA's only feedback "
                     "matrix has FA's shape and the same read.")
    for preset, rules in presets.items():
        if "fa" in rules and "fa_regenerated" in rules:
            stored = [per_epoch(r) for r in seeds_of(rules["fa"])]
            regenerated = [per_epoch(r) for r in seeds_of(rules["fa_regenerated"])]
            ratio = (np.mean([e["phases"]["backward"] for e in regenerated])
                     / np.mean([e["phases"]["backward"] for e in stored]))
            total = (np.mean([e["total"] for e in regenerated])
                     / np.mean([e["total"] for e in stored]) - 1)
            same = all(a.summary["train"]["test_accuracy"] == b.summary["train"]["test_accuracy"]
                       for a, b in zip(seeds_of(rules["fa"]), seeds_of(rules["fa_regenerated"])))
            lines.append(f"- **Regenerated feedback** ({preset}) multiplies the backward phase "
                         f"by {ratio:.2f} (a digital fp32 product and PRNG draws instead of an "
                         f"analog read) but adds only {total:+.2%} per epoch; "
                         + ("it learns exactly what stored feedback learns (the same B, no "
                            "programming error: identical final accuracy in every seed)."
                            if same else "its accuracy differs from stored feedback's."))
            break
    sign_same = [p for p in presets if "fa" in presets[p] and "fa_sign" in presets[p]
                 and math.isclose(np.mean([per_epoch(r)["phases"]["backward"]
                                           for r in seeds_of(presets[p]["fa_sign"])]),
                                  np.mean([per_epoch(r)["phases"]["backward"]
                                           for r in seeds_of(presets[p]["fa"])]), rel_tol=1e-9)]
    if sign_same:
        accuracy = []
        for p in sign_same:
            a, b, test = paired(presets[p], "fa_sign", "fa",
                                lambda s: s["train"]["test_accuracy"] * 100)
            accuracy.append(f"{p} {test.mean_difference:+.2f} points ({test})")
        lines.append(f"- **Sign feedback saves nothing in this energy model** (on "
                     f"{', '.join(sign_same)}): a one-bit array is charged the same cell reads "
                     "and 8-bit converters as a stored analog array. Final test accuracy, sign "
                     "− stored, paired by seed: " + "; ".join(accuracy) + ".")
    for preset, c in comparison.items():
        noisy = c["noisy"]
        per_noise_step = [r.summary["ledger"]["to_target"]["precondition"]["energy_pj"]
                          / r.summary["precondition"]["steps"] for r in noisy]
        per_train_step = [per_epoch(r)["total"] / per_epoch(r)["steps"] for r in noisy]
        name, scale = unit(per_noise_step + per_train_step)
        epochs = epoch_reached
        pre_epochs = np.mean([r.summary["ledger"]["to_target"]["precondition"]["energy_pj"]
                              / per_epoch(r)["total"] for r in noisy])
        lines.append(
            f"- **{preset}: preconditioning costs {pre_epochs:.2f} epochs of training "
            f"energy** (a noise step {np.mean(per_noise_step) / scale:.2f} {name}, a "
            f"data step {np.mean(per_train_step) / scale:.2f} {name}: same network, batch "
            f"and update), so it can only pay for itself by saving more steps than it takes. "
            f"FA reaches the target at epochs {epochs(c['plain'])}, FA + noise at "
            f"{epochs(noisy)} (per seed).")
    write = [mean_of(findings, k, lambda e: e["components"]["write"] / e["total"])
             for k in findings if mean_of(findings, k, lambda e: e["pulses"]) > 0]
    count = [mean_of(findings, k, lambda e: e["pulses"]) for k in findings
             if mean_of(findings, k, lambda e: e["pulses"]) > 0]
    if write:
        lines.append(f"- **Programming pulses are cheap**: {min(count):.3g}–{max(count):.3g} "
                     f"pulses per epoch cost at most {max(write):.3%} of the energy per epoch "
                     "on the chips that program pulses, so the `ideal` chip's missing write "
                     "energy (it updates exactly) hardly changes the comparison.")
    missed = []
    for preset, rules in presets.items():
        for condition, runs in rules.items():
            n = sum(not r.summary["ledger"]["to_target"]["reached"] for r in runs.values())
            if n:
                epochs = seeds_of(runs)[0].summary["train"]["epochs"]
                missed.append(f"{preset} {LABELS.get(condition, condition)} ({n} of "
                              f"{len(runs)} seeds in {epochs} epochs)")
    if missed:
        lines.append("- **Not reaching the target** within the schedule: " + "; ".join(missed)
                     + ". Those cells say so instead of an energy.")
    eval_share = [per_epoch(run)["eval"] / (per_epoch(run)["total"]
                                            * run.summary["train"]["epochs"])
                  for rules in presets.values() for runs in rules.values()
                  for run in runs.values()]
    if eval_share:
        lines.append(f"- Measurement (evaluation reads) costs {np.min(eval_share):.1%}–"
                     f"{np.max(eval_share):.1%} of a run's training energy here; it is kept "
                     "out of every number above.")
    return "\n".join(lines) + "\n"


def order_presets(presets: dict, experiment) -> dict:
    order = list(dict.fromkeys(name.split("-", 1)[0] for name in experiment.conditions or {}))
    return {p: presets[p] for p in sorted(presets, key=lambda p: order.index(p)
                                          if p in order else len(order))}


def write_doc(out: Path, doc: Path, command: str, experiment) -> None:
    presets = order_presets(by_preset(load_runs(out)), experiment)
    folder = doc.parent / "figures" / doc.stem
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda name: f"figures/{doc.stem}/{name}.png"
    target = experiment.evaluation.energy_target
    ledger_text, findings = ledger_section(presets, rel("energy_per_epoch"))
    component_figure(presets, findings, folder / "energy_per_epoch.png")
    backward_figure(presets, folder / "backward_feedback.png")
    check_long_runs(presets)
    target_text, comparison = target_section(presets, target, rel("energy_to_target"))
    target_figure(comparison, target, folder / "energy_to_target.png")
    n_runs = sum(len(s) for rules in presets.values() for s in rules.values())
    seconds = sum(run.summary["seconds"].get(k, 0.0) for rules in presets.values()
                  for seeds in rules.values() for run in seeds.values()
                  for k in ("precondition", "train", "evaluation"))
    pre = experiment.precondition
    lines = [
        "# What does learning cost on the chip? Energy and memory traffic of BP, FA and DFA",
        "",
        f"Generated by `{command}` from {n_runs} runs in `{shown(out)}`; regenerate with the "
        f"same command or `make results-energy` (finished runs are reused). Setting "
        f"(`experiments/energy.yaml`): {list(experiment.network.dims)}, "
        f"{experiment.optimizer.name} lr {experiment.optimizer.lr:g}, batch "
        f"{experiment.train.batch_size}, {experiment.train.epochs} epochs of "
        f"{experiment.data.dataset}, seeds {list(experiment.seeds or [experiment.seed])}; "
        f"FA + noise first runs {pre.steps} noise steps on a fixed set of {pre.n_examples} "
        f"N(0, 1) examples (the paper uses 10,000 steps)"
        + "".join(f"; FA on `{p}` is also continued to "
                  f"{seeds_of(r['fa_long'])[0].summary['train']['epochs']} epochs (`fa_long`)"
                  for p, r in presets.items() if "fa_long" in r)
        + ". Chips: "
        + ", ".join(f"`{p}`" for p in presets)
        + " (`ideal` updates exactly; the device presets program pulses, `pulsed` update, "
        "stochastic rounding, at most 31 pulses per weight and update); regenerated and sign "
        "feedback set `feedback.kind` over the preset (`chip_set`). Periphery is ideal (charged "
        f"at the default converter resolution). Time measured inside the runs: "
        f"{seconds / 60:.1f} min.",
        "",
        assumptions_section(presets, target, experiment.evaluation.points_per_epoch),
        ledger_text,
        ledger_findings(presets, findings),
        feedback_section(presets, target, rel("backward_feedback")),
        target_text,
        surprises(presets, findings, comparison),
    ]
    write_text(doc, "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "energy")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()
    experiment = load_experiment(EXPERIMENT, args.overrides)
    run_experiment(experiment, EXPERIMENT, args.out, resume=True, progress=True,
                   data_dir=args.data_dir, run_reports=False)
    command = " ".join(["python docs/scripts/results_energy.py"]
                       + [f"--set {o}" for o in args.overrides])
    write_doc(args.out, args.doc, command, experiment)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
