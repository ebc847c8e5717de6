"""Regenerate ``docs/results-core.md``: the core simulator's acceptance study on MNIST.

Runs ``experiments/paper_mnist.yaml`` (the paper's setting on the ideal chip: [784,100,10],
ReLU, Adam lr 1e-4, batch 64; conditions BP, FA, FA + fixed-set noise, FA + fresh-stream
noise, BP + fixed-set noise; 3 seeds with paired initializations) and writes the document
with its tables and figures. Finished runs are reused (``--resume`` semantics), so an
interrupted regeneration continues where it stopped.

    .venv/bin/python docs/scripts/results_core.py [--out runs/paper_mnist] [--set k=v ...]

Every number in the document is read from the run folders; every claim is a comparison
computed here, printed with the numbers it rests on.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from neurosim import stats
from neurosim.config import load_experiment
from neurosim.plots import color, new_figure, save_png
from neurosim.report import load_run, markdown_table
from neurosim.runio import write_text
from neurosim.runner import run_experiment

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / "experiments" / "paper_mnist.yaml"
DOC = REPO / "docs" / "results-core.md"
ALIGNMENT_TARGET_DEG = 40.0
READOUT_TOLERANCE = 0.02


def last_layer(mapping: dict) -> float:
    return mapping[max(mapping, key=int)]


def fmt(values, digits=1, unit="") -> str:
    mean, std = stats.mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"


def load_runs(out: Path) -> dict[str, dict[int, object]]:
    runs: dict[str, dict[int, object]] = {}
    for summary in sorted(out.glob("*/seed*/summary.json")):
        run = load_run(summary.parent)
        runs.setdefault(run.summary["condition"], {})[run.summary["seed"]] = run
    return runs


def alignment_section(runs, figures) -> tuple[str, bool]:
    rows, fixed_ok = [], True
    for condition in ("fa_noise", "fa_noise_fresh", "bp_noise"):
        for seed, run in sorted(runs.get(condition, {}).items()):
            pre = run.summary["precondition"]
            before, after = last_layer(pre["before"]["alignment_deg"]), last_layer(pre["after"]["alignment_deg"])
            if condition == "fa_noise":
                fixed_ok &= after < ALIGNMENT_TARGET_DEG
            rows.append([condition, str(seed), pre["regime"], str(pre["steps"]), f"{before:.1f}°",
                         f"{after:.1f}°",
                         f"{pre['after']['neuron_alignment_mean_deg'][max(pre['after']['neuron_alignment_mean_deg'], key=int)]:.1f}°"])
    fixed_after = [last_layer(r.summary["precondition"]["after"]["alignment_deg"])
                   for r in runs.get("fa_noise", {}).values()]
    fresh_after = [last_layer(r.summary["precondition"]["after"]["alignment_deg"])
                   for r in runs.get("fa_noise_fresh", {}).values()]
    verdict = (f"**Fixed noise set: the last layer's angle falls below {ALIGNMENT_TARGET_DEG:.0f}° in "
               f"{sum(a < ALIGNMENT_TARGET_DEG for a in fixed_after)} of {len(fixed_after)} seeds** "
               f"(after: {fmt(fixed_after)}°). Fresh stream, same steps: {fmt(fresh_after)}°.")
    text = "\n".join([
        "## 1. Noise preconditioning aligns the forward weights with the feedback",
        "",
        "Angle between the last layer's forward weights `W_2` and its feedback array `B_2^T` "
        "(DESIGN §5), before and after the noise phase, and the mean per-neuron angle after it. "
        "`bp_noise` is a control: BP gets the same noise but never uses `B`.",
        "",
        markdown_table(["condition", "seed", "regime", "steps", "θ before", "θ after",
                        "per-neuron θ after"], rows),
        "",
        verdict,
        "",
        f"![alignment during the noise phase]({figures['noise_alignment']})",
        "",
    ])
    return text, fixed_ok


def auc_section(runs) -> tuple[str, bool]:
    conditions = [c for c in ("bp", "fa", "fa_noise", "fa_noise_fresh", "bp_noise") if c in runs]
    seeds = sorted(set.intersection(*(set(runs[c]) for c in conditions)))
    rows = []
    for seed in seeds:
        rows.append([str(seed)] + [f"{runs[c][seed].summary['train']['auc_first_epoch']:.4f}"
                                   for c in conditions])
    per_condition = {c: [runs[c][s].summary["train"]["auc_first_epoch"] for s in seeds]
                     for c in conditions}
    rows.append(["mean ± std"] + [fmt(per_condition[c], 4) for c in conditions])
    wins = [runs["fa_noise"][s].summary["train"]["auc_first_epoch"]
            > runs["fa"][s].summary["train"]["auc_first_epoch"] for s in seeds]
    test = stats.paired_ttest(per_condition["fa_noise"], per_condition["fa"])
    final = {c: [runs[c][s].summary["train"]["test_accuracy"] for s in seeds] for c in conditions}
    whole = {c: [runs[c][s].summary["train"]["auc"] for s in seeds] for c in conditions}
    gap = {c: [runs[c][s].summary["train"]["generalization_gap"] for s in seeds] for c in conditions}
    align = {c: [last_layer(runs[c][s].summary["train"]["alignment_deg"]) for s in seeds]
             for c in conditions}
    summary_rows = [[c, fmt(np.array(final[c]) * 100, 2, " %"), fmt(whole[c], 4),
                     fmt(per_condition[c], 4), fmt(align[c], 1, "°"), fmt(gap[c], 4)]
                    for c in conditions]
    ok = all(wins)
    text = "\n".join([
        "## 2. Preconditioned FA learns faster",
        "",
        "First-epoch test-accuracy AUC (trapezoid area under test accuracy vs epoch over "
        "[0, 1], evaluated at epochs 0, 0.02, 0.05, 0.1, 0.2, 0.5, 1; 1.0 = 100 % from the "
        "start). Conditions with the same seed start from the same weights and feedback "
        "matrices.",
        "",
        markdown_table(["seed"] + conditions, rows),
        "",
        f"**FA + noise beats FA on first-epoch AUC in {sum(wins)} of {len(wins)} seeds**; "
        f"{test} (FA + noise − FA, mean difference {test.mean_difference:+.4f}).",
        "",
        "After the whole schedule:",
        "",
        markdown_table(["condition", "final test accuracy", "AUC (all epochs)",
                        "first-epoch AUC", "θ last layer after training",
                        "generalization gap (nats)"], summary_rows),
        "",
    ])
    return text, ok


def readout_section(runs) -> tuple[str, bool]:
    rows, ok = [], True
    for condition in ("fa_noise_fresh", "fa_noise"):
        for seed, run in sorted(runs.get(condition, {}).items()):
            after = run.summary["precondition"]["after"]
            probs = after["readout_probability"]
            deviation = after["readout_max_deviation"]
            if condition == "fa_noise_fresh":
                ok &= deviation <= READOUT_TOLERANCE
            rows.append([condition, str(seed), " ".join(f"{p:.3f}" for p in probs),
                         f"{deviation:.4f}"])
    text = "\n".join([
        "## 3. Readout stays at chance on noise",
        "",
        "Mean softmax output per class on a separate noise probe (10,000 fresh noise "
        "examples) after the noise phase; chance is 0.100. The fixed-set regime is shown "
        "beside the fresh stream: a fixed set can be memorized, a stream cannot.",
        "",
        markdown_table(["condition", "seed", "readout probability, classes 0–9",
                        "max |p − 1/C|"], rows),
        "",
        f"**Fresh stream: every class within ±{READOUT_TOLERANCE} of chance in every seed: "
        f"{'yes' if ok else 'no'}.**",
        "",
    ])
    return text, ok


def paired(runs, a: str, b: str, value) -> tuple[list[float], list[float], object]:
    """Values of conditions ``a`` and ``b`` on their common seeds and the paired t-test."""
    seeds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
    xs = [value(runs[a][s].summary) for s in seeds]
    ys = [value(runs[b][s].summary) for s in seeds]
    return xs, ys, stats.paired_ttest(xs, ys)


def controls_section(runs) -> str:
    """The controls the paper lacks: BP given the same noise; fresh stream vs fixed set."""
    first_auc = lambda s: s["train"]["auc_first_epoch"]
    final = lambda s: s["train"]["test_accuracy"]
    angle = lambda s: last_layer(s["precondition"]["after"]["alignment_deg"])
    lines = ["## 4. Controls the paper lacks", ""]
    if "bp_noise" in runs and "bp" in runs:
        xs, ys, test = paired(runs, "bp_noise", "bp", first_auc)
        fx, fy, ftest = paired(runs, "bp_noise", "bp", final)
        lines += [f"- **BP given the same noise phase**: first-epoch AUC {fmt(xs, 4)} vs "
                  f"{fmt(ys, 4)} without ({test}); final accuracy {fmt(np.array(fx) * 100, 2)} % "
                  f"vs {fmt(np.array(fy) * 100, 2)} % ({ftest}). BP's angle to the unused `B` "
                  "stays near 90°, so whatever BP gains from noise is not alignment."]
    if "fa_noise" in runs and "fa_noise_fresh" in runs:
        xs, ys, test = paired(runs, "fa_noise", "fa_noise_fresh", angle)
        ax, ay, atest = paired(runs, "fa_noise", "fa_noise_fresh", first_auc)
        lines += [f"- **Fixed noise set vs fresh stream** (same steps, batch and optimizer): "
                  f"last-layer angle after the noise phase {fmt(xs)}° vs {fmt(ys)}° ({test}); "
                  f"first-epoch AUC {fmt(ax, 4)} vs {fmt(ay, 4)} ({atest}). With Adam at lr "
                  "1e-4 the fresh stream aligns far more slowly than a reused set."]
    return "\n".join(lines + [""])


def ood_section(runs) -> str:
    """OOD accuracy after training, mean ± std over seeds, per condition."""
    conditions = [c for c in ("bp", "fa", "fa_noise", "fa_noise_fresh", "bp_noise") if c in runs]
    names = []
    for condition in conditions:
        for run in runs[condition].values():
            for name, value in (run.summary["final"] or {}).get("ood", {}).items():
                if isinstance(value, float) and name not in names:
                    names.append(name)
    rows = []
    for condition in conditions:
        row = [condition]
        for name in names:
            values = [r.summary["final"]["ood"].get(name) for r in runs[condition].values()]
            values = [v * 100 for v in values if isinstance(v, float)]
            row.append(fmt(values, 1) if values else "—")
        rows.append(row)
    return "\n".join(["## 5. Out-of-distribution accuracy after training (%)", "",
                      "Test set translated (right and down), rotated, scaled; USPS resized into "
                      "the MNIST frame. Equal epochs, not matched accuracy.", "",
                      markdown_table(["condition"] + names, rows), ""])


def noise_alignment_figure(runs, path: Path) -> Path:
    fig, axes = new_figure()
    ax = axes[0, 0]
    for index, condition in enumerate(c for c in ("fa_noise", "fa_noise_fresh", "bp_noise") if c in runs):
        for seed, run in sorted(runs[condition].items()):
            records = run.noise
            ax.plot([r["step"] for r in records], [last_layer(r["alignment_deg"]) for r in records],
                    color=color(index), alpha=0.8, label=condition if seed == min(runs[condition]) else None)
    ax.axhline(90, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel("noise step")
    ax.set_ylabel("alignment angle θ(W_2, B_2ᵀ) (degrees)")
    ax.set_title("Last-layer alignment during the noise phase (3 seeds each)")
    ax.legend()
    return save_png(fig, path)


def copy_figures(out: Path, doc: Path) -> dict[str, str]:
    """Copy the comparison figures next to the document; name -> path relative to it."""
    folder = doc.parent / "figures" / doc.stem
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for name in ("compare_test_accuracy", "compare_alignment", "compare_generalization_gap"):
        source = out / "figures" / f"{name}.png"
        if source.exists():
            shutil.copyfile(source, folder / f"{name}.png")
            names[name] = f"figures/{doc.stem}/{name}.png"
    return names


def write_doc(out: Path, doc: Path, command: str) -> bool:
    runs = load_runs(out)
    figures = copy_figures(out, doc)
    noise_alignment_figure(runs, doc.parent / "figures" / doc.stem / "noise_alignment.png")
    figures["noise_alignment"] = f"figures/{doc.stem}/noise_alignment.png"
    first = next(iter(next(iter(runs.values())).values())).summary
    config = first["config"]
    align_text, align_ok = alignment_section(runs, figures)
    auc_text, auc_ok = auc_section(runs)
    readout_text, readout_ok = readout_section(runs)
    seconds = sum(r.summary["seconds"].get(k, 0.0) for c in runs.values() for r in c.values()
                  for k in ("precondition", "train", "evaluation"))
    checks = [("θ(W_2, B_2ᵀ) after fixed-set preconditioning < 40° in every seed", align_ok),
              ("FA + noise first-epoch AUC > FA in every seed", auc_ok),
              ("fresh-stream readout within ±0.02 of chance, every class and seed", readout_ok)]
    lines = [
        f"# Core simulator results: noise preconditioning on an ideal chip "
        f"({config['data']['dataset']})",
        "",
        f"Generated by `{command}` from the runs in "
        f"`{out.relative_to(REPO) if out.is_relative_to(REPO) else out}` "
        f"({time.strftime('%Y-%m-%d')}); regenerate with `make results-core`. "
        f"Setting (`experiments/paper_mnist.yaml`): dims {config['network']['dims']}, "
        f"{config['network']['activation']}, {config['optimizer']['name']} lr "
        f"{config['optimizer']['lr']:g}, batch {config['train']['batch_size']}, "
        f"{config['train']['epochs']} epochs on {config['data']['dataset']}; noise phase "
        f"{config['precondition']['steps']} steps of batch {config['precondition']['batch_size']} on "
        f"N({config['precondition']['input']['mean']:g}, {config['precondition']['input']['std']:g}²) "
        f"inputs with uniform labels (fixed set: {config['precondition']['n_examples']} examples); "
        f"ideal chip, `{first['backend']}` backend, float32. "
        f"Time measured inside the {sum(len(c) for c in runs.values())} runs (training "
        f"steps + evaluation, 2-core machine): {seconds / 60:.1f} min in total.",
        "",
        "| acceptance check | holds |", "|---|---|",
        *[f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in checks],
        "",
        align_text, auc_text,
        "### Curves",
        "",
        *[f"![{name}]({figures[name]})\n" for name in ("compare_test_accuracy", "compare_alignment",
                                                      "compare_generalization_gap") if name in figures],
        readout_text,
        controls_section(runs),
        ood_section(runs),
        "Regenerating writes the full comparison (every paired t-test, per-run reports with "
        f"all figures) to `{out.name}/report.md` under the output folder.",
        "",
    ]
    write_text(doc, "\n".join(lines))
    return all(ok for _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "paper_mnist")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir")
    parser.add_argument("--doc", type=Path, default=DOC, help="document to write")
    args = parser.parse_args()
    experiment = load_experiment(EXPERIMENT, args.overrides)
    run_experiment(experiment, EXPERIMENT, args.out, resume=True, progress=True,
                   data_dir=args.data_dir)
    command = " ".join(["python docs/scripts/results_core.py"] + [f"--set {o}" for o in args.overrides])
    ok = write_doc(args.out, args.doc, command)
    print(f"wrote {args.doc} (acceptance checks {'hold' if ok else 'do NOT all hold'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
