"""Fig. 2 of the paper: noise-preconditioned FA learns fast.

MNIST test accuracy vs epoch for BP, FA and FA + noise, with the test-accuracy AUC (whole run
and first epoch) and paired t-tests; the alignment angle during data training; the same on a
deeper network [784, 100, 100, 10]. Controls the paper lacks: BP given the same noise phase
and the fresh-stream regime next to the fixed noise set. The MNIST study here is shared with
Fig. 4 (OOD) and Table 1 (same study name: its runs are made once).
"""

from __future__ import annotations

from neurosim.reproduce.context import (Claim, Context, Section, Study, band_figure,
                                        describe, directional_verdict, last_layer_value,
                                        mean_std_text, save_rows)
from neurosim.report import markdown_table

KEY = "fig2"
TITLE = "Fig. 2 - fast learning without weight transport"

HEADLINE = {"bp": {"rule": "bp"},
            "fa": {"rule": "fa"},
            "fa_noise": {"rule": "fa", "precondition.enabled": True}}
CONTROLS = {"bp_noise": {"rule": "bp", "precondition.enabled": True},
            "fa_noise_fresh": {"rule": "fa", "precondition.enabled": True,
                               "precondition.regime": "fresh_stream"}}
LABELS = {"bp": "BP", "fa": "FA", "fa_noise": "FA + noise", "bp_noise": "BP + noise (control)",
          "fa_noise_fresh": "FA + fresh-stream noise (control)"}
OOD_SETS = ["translate", "rotate", "scale", "usps"]


CIFAR_DIMS = [3072, 100, 10]


def cifar_study(ctx: Context, key: str = KEY) -> Study | str:
    """BP, FA and FA + noise on CIFAR-10, [3072, 100, 10] (the paper's Fig. 2 and Table 1);
    the reason it cannot run when its files are not in the data directory."""
    missing = ctx.missing_dataset("cifar10")
    if missing is not None:
        return f"CIFAR-10 ([3072,100,10]) is not run: {missing}"
    return ctx.study(key, "cifar10", HEADLINE, {"data.dataset": "cifar10",
                                                "network.dims": CIFAR_DIMS})


def mnist_study(ctx: Context, chip: str | None = None, key: str = KEY) -> Study:
    """BP, FA, FA + noise and the two controls on MNIST, [784, 100, 10], with OOD sets
    evaluated along training (for Fig. 4's matched-accuracy comparison)."""
    return ctx.study(key, "mnist", {**HEADLINE, **CONTROLS},
                     {"evaluation.ood": OOD_SETS, "evaluation.ood_during_training": True},
                     chip=chip)


def auc_first_epoch(run) -> float:
    return run.summary["train"]["auc_first_epoch"]


def auc_whole(run) -> float:
    return run.summary["train"]["auc"]


def final_accuracy(run) -> float:
    return run.summary["train"]["test_accuracy"]


def final_angle(run) -> float:
    return last_layer_value(run.summary["train"]["alignment_deg"])


def accuracy_curves(study: Study, conditions) -> dict:
    return {LABELS.get(c, c): [([r["epoch"] for r in run.train],
                                [r["test_accuracy"] for r in run.train])
                               for run in study.runs[c]] for c in conditions}


def angle_curves(study: Study, conditions) -> dict:
    return {LABELS.get(c, c): [([r["epoch"] for r in run.train],
                                [last_layer_value(r["alignment_deg"]) for r in run.train])
                               for run in study.runs[c]] for c in conditions}


def learning_table(study: Study, conditions) -> str:
    rows = [[LABELS.get(c, c), mean_std_text(study.values(c, auc_first_epoch)),
             mean_std_text(study.values(c, auc_whole)),
             mean_std_text([100 * v for v in study.values(c, final_accuracy)], 2, " %"),
             mean_std_text(study.values(c, final_angle), 1, "°")]
            for c in conditions]
    return markdown_table(["condition", "AUC, first epoch", "AUC, whole run",
                           "final test accuracy", "final last-layer angle"], rows)


def curve_rows(study: Study) -> list[dict]:
    return [{"condition": c, "seed": run.summary["seed"], "epoch": r["epoch"],
             "test_accuracy": r["test_accuracy"], "generalization_gap": r["generalization_gap"],
             "alignment_last_deg": last_layer_value(r["alignment_deg"])}
            for c, runs in study.runs.items() for run in runs for r in run.train]


def learning_claims(study: Study, network: str) -> tuple[list[Claim], list[str]]:
    """The paper's Fig. 2 claims on one study, and the test lines behind them."""
    first = study.paired("fa_noise", "fa", auc_first_epoch)
    whole = study.paired("fa_noise", "fa", auc_whole)
    to_bp = study.paired("fa_noise", "bp", auc_first_epoch)
    angle = study.paired("fa", "fa_noise", final_angle)
    claims = [
        Claim(f"{network}: FA with noise preconditioning learns faster than FA "
              "(higher test-accuracy AUC)",
              f"first-epoch AUC {mean_std_text(study.values('fa_noise', auc_first_epoch))} vs "
              f"{mean_std_text(study.values('fa', auc_first_epoch))} ({describe(first)}); "
              f"whole run {mean_std_text(study.values('fa_noise', auc_whole))} vs "
              f"{mean_std_text(study.values('fa', auc_whole))} ({describe(whole)})",
              directional_verdict(first)),
        Claim(f"{network}: FA + noise stays better aligned with B during data training",
              f"final last-layer angle FA {mean_std_text(study.values('fa', final_angle), 1)}° "
              f"vs FA + noise {mean_std_text(study.values('fa_noise', final_angle), 1)}° "
              f"({describe(angle)})", directional_verdict(angle)),
    ]
    lines = [f"- FA + noise vs FA, first-epoch AUC: {describe(first)}, mean difference "
             f"{first.mean_difference:+.4f}",
             f"- FA + noise vs FA, whole-run AUC: {describe(whole)}, mean difference "
             f"{whole.mean_difference:+.4f}",
             f"- FA + noise vs BP, first-epoch AUC: {describe(to_bp)}, mean difference "
             f"{to_bp.mean_difference:+.4f}",
             f"- FA vs FA + noise, final last-layer angle: {describe(angle)}, mean difference "
             f"{angle.mean_difference:+.2f}°"]
    return claims, lines


def control_claims(study: Study) -> tuple[list[Claim], list[str]]:
    bp = study.paired("bp_noise", "bp", auc_first_epoch)
    fresh = study.paired("fa_noise", "fa_noise_fresh", auc_first_epoch)
    claims = [
        Claim("(control, not in the paper) Is the gain specific to FA? BP given the same "
              "noise phase",
              f"BP + noise first-epoch AUC {mean_std_text(study.values('bp_noise', auc_first_epoch))}"
              f" vs BP {mean_std_text(study.values('bp', auc_first_epoch))} ({describe(bp)})",
              "control"),
        Claim("(control, not in the paper) fixed noise set vs fresh stream of noise",
              f"first-epoch AUC fixed {mean_std_text(study.values('fa_noise', auc_first_epoch))}"
              f" vs fresh {mean_std_text(study.values('fa_noise_fresh', auc_first_epoch))} "
              f"({describe(fresh)})", "control")]
    lines = [f"- BP + noise vs BP, first-epoch AUC: {describe(bp)}, mean difference "
             f"{bp.mean_difference:+.4f}",
             f"- fixed set vs fresh stream (FA + noise), first-epoch AUC: {describe(fresh)}, "
             f"mean difference {fresh.mean_difference:+.4f}"]
    return claims, lines


def run(ctx: Context) -> Section:
    section = Section(KEY, TITLE)
    folder = ctx.folder(KEY)
    s = ctx.settings
    study = mnist_study(ctx)
    headline, everything = list(HEADLINE), list(HEADLINE) + list(CONTROLS)
    section.figures += [
        ("MNIST test accuracy vs epoch (mean ± std over seeds; log scale below 1 epoch)",
         band_figure(folder / "test_accuracy.png", accuracy_curves(study, everything), "epoch",
                     "test accuracy (%)", "MNIST, [784,100,10]", scale=100, logx=True)),
        ("Last-layer alignment angle during data training",
         band_figure(folder / "alignment_during_training.png", angle_curves(study, everything),
                     "epoch", "angle W_2 vs B_2^T (deg)", "alignment during data training",
                     hline=90.0, logx=True))]
    section.files.append(save_rows(folder / "mnist_curves.csv", curve_rows(study)))
    claims, lines = learning_claims(study, "[784,100,10] on MNIST")
    controls, control_lines = control_claims(study)

    deep = ctx.study(KEY, "mnist_deep", HEADLINE, {"network.dims": [784, 100, 100, 10]})
    section.figures.append(
        ("[784,100,100,10]: MNIST test accuracy vs epoch",
         band_figure(folder / "test_accuracy_deep.png", accuracy_curves(deep, headline), "epoch",
                     "test accuracy (%)", "MNIST, [784,100,100,10]", scale=100, logx=True)))
    section.files.append(save_rows(folder / "mnist_deep_curves.csv", curve_rows(deep)))
    deep_claims, deep_lines = learning_claims(deep, "[784,100,100,10] on MNIST")
    section.claims = claims + deep_claims
    cifar = cifar_study(ctx)
    cifar_text = []
    if isinstance(cifar, str):
        section.notes.append(cifar)
    else:
        section.figures.append(
            ("CIFAR-10 [3072,100,10]: test accuracy vs epoch",
             band_figure(folder / "test_accuracy_cifar10.png", accuracy_curves(cifar, headline),
                         "epoch", "test accuracy (%)", "CIFAR-10, [3072,100,10]", scale=100,
                         logx=True)))
        section.files.append(save_rows(folder / "cifar10_curves.csv", curve_rows(cifar)))
        cifar_claims, cifar_lines = learning_claims(cifar, "[3072,100,10] on CIFAR-10")
        section.claims += cifar_claims
        cifar_text = ["### CIFAR-10, [3072, 100, 10]", "", learning_table(cifar, headline),
                      "Tests (paired over seeds):", "", *cifar_lines, ""]
    section.claims += controls
    seeds = len(ctx.seeds)
    section.text = "\n".join([
        f"Setting: Adam lr 1e-4 (SGD lr 0.01 on in-array chips), batch 64, {s.epochs} epochs "
        f"of MNIST ({s.train_size or 'all 60,000'} training examples, "
        f"{s.test_size or 'all 10,000'} test examples); noise phase {s.noise_steps} steps on "
        f"a fixed set of {s.noise_examples} N(0, 1) examples with uniform random labels; "
        f"{seeds} seeds, paired initializations (a seed gives every condition the same "
        f"initial weights and feedback arrays).", "",
        "### [784, 100, 10]", "", learning_table(study, everything),
        "Tests (paired over seeds):", "", *lines, *control_lines, "",
        "### [784, 100, 100, 10]", "", learning_table(deep, headline),
        "Tests (paired over seeds):", "", *deep_lines, "", *cifar_text])
    return section
