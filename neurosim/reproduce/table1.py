"""Table 1 of the paper: final test accuracy of BP, FA and FA + noise per dataset (MNIST,
Fashion-MNIST, and CIFAR-10 when its file is in the data directory), mean ± std over seeds,
with paired t-tests."""

from __future__ import annotations

from neurosim.report import markdown_table
from neurosim.reproduce.context import (Claim, Context, Section, describe,
                                        directional_verdict, mean_std_text, save_rows)
from neurosim.reproduce.learning import (HEADLINE, KEY as STUDY_KEY, LABELS, auc_first_epoch,
                                         cifar_study, final_accuracy, mnist_study)

KEY = "table1"
TITLE = "Table 1 - final accuracy per dataset"


def run(ctx: Context) -> Section:
    section = Section(KEY, TITLE)
    folder = ctx.folder(KEY)
    studies = {"MNIST": mnist_study(ctx, key=STUDY_KEY),
               "Fashion-MNIST": ctx.study(KEY, "fashion_mnist", HEADLINE,
                                          {"data.dataset": "fashion_mnist"})}
    cifar = cifar_study(ctx, key=STUDY_KEY)
    if isinstance(cifar, str):
        section.notes.append(cifar)
    else:
        studies["CIFAR-10"] = cifar
    rows, csv_rows, lines = [], [], []
    for dataset, study in studies.items():
        rows.append([dataset] + [mean_std_text([100 * v for v in study.values(c, final_accuracy)],
                                               2, " %") for c in HEADLINE])
        csv_rows += [{"dataset": dataset, "condition": c, "seed": run.summary["seed"],
                      "final_test_accuracy": final_accuracy(run),
                      "auc_first_epoch": auc_first_epoch(run)}
                     for c in HEADLINE for run in study.runs[c]]
        test = study.paired("fa_noise", "fa", final_accuracy)
        gap = study.paired("bp", "fa_noise", final_accuracy)
        lines += [f"- {dataset}, FA + noise vs FA: {describe(test)}, mean difference "
                  f"{100 * test.mean_difference:+.2f} points",
                  f"- {dataset}, BP vs FA + noise: {describe(gap)}, mean difference "
                  f"{100 * gap.mean_difference:+.2f} points"]
        section.claims.append(Claim(
            f"{dataset}: FA + noise ends more accurate than FA",
            f"{mean_std_text([100 * v for v in study.values('fa_noise', final_accuracy)], 2, ' %')}"
            f" vs {mean_std_text([100 * v for v in study.values('fa', final_accuracy)], 2, ' %')}"
            f" ({describe(test)})", directional_verdict(test)))
    section.files.append(save_rows(folder / "table1.csv", csv_rows))
    section.text = "\n".join([
        f"Final test accuracy after {ctx.settings.epochs} epochs, mean ± std over "
        f"{len(ctx.seeds)} seeds:", "",
        markdown_table(["dataset"] + [LABELS[c] for c in HEADLINE], rows),
        "Tests (paired over seeds):", "", *lines, ""])
    return section
