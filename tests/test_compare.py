"""Tests of neurosim.compare and ``neurosim compare`` on hand-written run folders."""

from __future__ import annotations

import json
import math
import os
import socket

import numpy as np
import psutil
import pytest
import yaml
from scipy import stats as sps

from neurosim.cli import main as cli_main
from neurosim.compare import write_comparison
from neurosim.config import HW_CONFIG_DIR, ExperimentConfig, read_yaml
from neurosim.errors import NeurosimError
from neurosim.locking import FolderLock
from neurosim.runner import RUN_LOCK
from neurosim.schema import build, to_plain
from test_report import assert_figures_referenced, read_csv, train_records, write_run

# condition -> seed -> (final test accuracy, AUC, first-epoch AUC); fa_noise has an extra seed
KNOWN = {
    "fa": {0: (0.80, 0.50, 0.20), 1: (0.82, 0.55, 0.25), 2: (0.79, 0.52, 0.22)},
    "fa_noise": {0: (0.85, 0.70, 0.60), 1: (0.86, 0.71, 0.58), 2: (0.84, 0.69, 0.61),
                 3: (0.90, 0.75, 0.65)},
    "bp": {0: (0.88, 0.72, 0.55)},
}
NOISE = {"fa": False, "fa_noise": True, "bp": False}
METRIC_INDEX = {"test_accuracy": 0, "auc": 1, "auc_first_epoch": 2}


def build_experiment(root):
    run_dirs = []
    for condition, seeds in KNOWN.items():
        for seed, (acc, auc, first) in seeds.items():
            run_dirs.append(write_run(root, condition, seed, noise=NOISE[condition],
                                      test_accuracy=acc, auc=auc, auc_first_epoch=first))
    return run_dirs


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """The KNOWN experiment compared once into its own folder."""
    root = tmp_path_factory.mktemp("exp")
    run_dirs = build_experiment(root)
    report = write_comparison(run_dirs, root, title="Synthetic comparison")
    assert report == root / "report.md"
    return root


def _float(cell: str) -> float:
    return float(cell) if cell else math.nan


def test_comparison_csv_one_row_per_run(experiment):
    columns, rows = read_csv(experiment / "comparison.csv")
    assert columns[:5] == ["condition", "seed", "run", "rule", "precondition"]
    expected = [(c, s, v) for c, seeds in KNOWN.items() for s, v in seeds.items()]
    assert [(r["condition"], int(r["seed"])) for r in rows] == [(c, s) for c, s, _ in expected]
    for row, (condition, seed, (acc, auc, first)) in zip(rows, expected):
        assert row["run"] == f"{condition}/seed{seed}"
        assert (_float(row["test_accuracy"]), _float(row["auc"]), _float(row["auc_first_epoch"])) \
            == (acc, auc, first)
        assert _float(row["alignment_after_training_deg"]) == 30.0 + seed
        assert _float(row["generalization_gap"]) == 0.1 + 0.01 * seed
        assert _float(row["ood_rotate_15deg"]) == 0.5 + 0.01 * seed
        assert row["ood_usps"] == ""  # skipped: a string, not a number
        if NOISE[condition]:
            assert _float(row["alignment_after_precondition_deg"]) == 40.0 - seed
        else:
            assert row["alignment_after_precondition_deg"] == ""


def test_summary_mean_std_equal_numpy(experiment):
    _, rows = read_csv(experiment / "comparison_summary.csv")
    table = {(r["condition"], r["metric"]): r for r in rows}
    for condition, seeds in KNOWN.items():
        per_metric = {m: [v[i] for v in seeds.values()] for m, i in METRIC_INDEX.items()}
        per_metric["alignment_after_training_deg"] = [30.0 + s for s in seeds]
        per_metric["generalization_gap"] = [0.1 + 0.01 * s for s in seeds]
        per_metric["ood_rotate_15deg"] = [0.5 + 0.01 * s for s in seeds]
        if NOISE[condition]:
            per_metric["alignment_after_precondition_deg"] = [40.0 - s for s in seeds]
        for metric, values in per_metric.items():
            row = table[condition, metric]
            assert int(row["n"]) == len(values)
            assert float(row["mean"]) == pytest.approx(np.mean(values), rel=1e-13)
            if len(values) > 1:
                assert float(row["std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-12,
                                                          abs=1e-15)
            else:  # a sample std of one value is undefined: an empty cell, not 0
                assert row["std"] == ""
    for condition in KNOWN:  # skipped OOD entries count for nothing
        assert table[condition, "ood_usps"]["n"] == "0" and table[condition, "ood_usps"]["mean"] == ""
    assert table["fa", "alignment_after_precondition_deg"]["n"] == "0"


def test_json_matches_csv_and_lists_skipped_ood(experiment):
    data = json.loads((experiment / "comparison.json").read_text())
    assert data["title"] == "Synthetic comparison"
    assert list(data["conditions"]) == list(KNOWN)
    noise = data["conditions"]["fa_noise"]
    assert noise["seeds"] == [0, 1, 2, 3]
    values = [v[0] for v in KNOWN["fa_noise"].values()]
    assert noise["metrics"]["test_accuracy"]["mean"] == pytest.approx(np.mean(values), rel=1e-13)
    assert noise["metrics"]["test_accuracy"]["n"] == 4
    assert len(data["runs"]) == sum(map(len, KNOWN.values()))
    assert all(r["ood_skipped"] == {"usps": "skipped: usps not downloaded"} for r in data["runs"])


def test_paired_ttests_equal_scipy(experiment):
    tests = json.loads((experiment / "comparison.json").read_text())["tests"]
    by_key = {(t["a"], t["b"], t["metric"]): t for t in tests}
    assert len(tests) == 3 * 4  # three condition pairs x four metrics (energy to target)
    for metric, i in METRIC_INDEX.items():
        test = by_key["fa", "fa_noise", metric]
        common = [0, 1, 2]  # fa_noise seed 3 has no partner
        a = [KNOWN["fa"][s][i] for s in common]
        b = [KNOWN["fa_noise"][s][i] for s in common]
        expected = sps.ttest_rel(a, b)
        assert test["seeds"] == common and test["n"] == 3
        assert test["statistic"] == pytest.approx(expected.statistic, rel=1e-10)
        assert test["pvalue"] == pytest.approx(expected.pvalue, rel=1e-10)
        assert test["mean_difference"] == pytest.approx(np.mean(np.subtract(a, b)), rel=1e-12)
        assert test["text"].startswith("paired t-test, n=3, t=")
        for pair in (("fa", "bp"), ("fa_noise", "bp")):  # one common seed
            single = by_key[(*pair, metric)]
            assert single["n"] == 1 and single["text"] == "n<2: no test"
            assert single["statistic"] is None and single["pvalue"] is None
    report = (experiment / "report.md").read_text()
    assert by_key["fa", "fa_noise", "auc"]["text"] in report and "n<2: no test" in report
    # Holm over the report's tests: here the three made ones (the others have no p)
    made = [t for t in tests if t["pvalue"] is not None]
    ranked = sorted(made, key=lambda t: t["pvalue"])
    expected, running = {}, 0.0
    for rank, t in enumerate(ranked):
        running = max(running, min(1.0, (len(made) - rank) * t["pvalue"]))
        expected[t["metric"]] = running
    for t in made:
        assert t["holm_pvalue"] == pytest.approx(expected[t["metric"]], rel=1e-12)
        assert t["holm_pvalue"] >= t["pvalue"]
    assert all(t["holm_pvalue"] is None for t in tests if t["pvalue"] is None)
    # the family the note names is the one adjusted over: 3 made tests, not the 9 rows
    assert "adjusted for the 3 tests of this report that could be made" in report


def test_paired_tests_give_the_95_percent_interval_of_the_difference(experiment):
    """The tables gave a mean difference and p but no interval: with three seeds, how
    large the gain of preconditioning may be is the interval's, not the p-value's."""
    tests = json.loads((experiment / "comparison.json").read_text())["tests"]
    test = next(t for t in tests if (t["a"], t["b"], t["metric"])
                == ("fa", "fa_noise", "test_accuracy"))
    d = np.subtract([KNOWN["fa"][s][0] for s in (0, 1, 2)],
                    [KNOWN["fa_noise"][s][0] for s in (0, 1, 2)])
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert (test["ci95_low"], test["ci95_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half), rel=1e-9)
    cell = (f"{100 * d.mean():.2f} pp [{100 * (d.mean() - half):.2f} pp, "
            f"{100 * (d.mean() + half):.2f} pp]")
    report = (experiment / "report.md").read_text()
    assert f"| fa vs fa_noise | final test accuracy | [0, 1, 2] | {cell} |" in report
    single = next(t for t in tests if (t["a"], t["b"]) == ("fa", "bp"))
    assert single["ci95_low"] is None and single["ci95_high"] is None


def test_the_ledgers_energies_are_compared(tmp_path):
    """Whether preconditioning costs less energy to reach the target was asked of the
    sweep report only: compare left the ledger out. Total energy and energy to target are
    averaged and tested; a condition that never reached the target says so."""
    total = {"fa": [2.0e9, 2.1e9, 2.2e9], "fa_noise": [9.0e9, 9.1e9, 9.3e9]}
    to_target = {"fa": [None, None, None], "fa_noise": [7.0e9, 7.5e9, 8.5e9]}
    run_dirs = []
    for condition in total:
        for seed in range(3):
            run_dir = write_run(tmp_path, condition, seed, noise=condition == "fa_noise")
            summary = json.loads((run_dir / "summary.json").read_text())
            summary["ledger"] = {"energy_pj": {"total": total[condition][seed]},
                                 "to_target": {"target": 0.8,
                                               "energy_pj": to_target[condition][seed]}}
            (run_dir / "summary.json").write_text(json.dumps(summary))
            run_dirs.append(run_dir)
    write_comparison(run_dirs, tmp_path, title="energy")
    data = json.loads((tmp_path / "comparison.json").read_text())
    noise = data["conditions"]["fa_noise"]["metrics"]
    assert noise["energy_total_pj"]["mean"] == pytest.approx(np.mean(total["fa_noise"]))
    assert noise["energy_to_target_pj"]["std"] == pytest.approx(
        np.std(to_target["fa_noise"], ddof=1))
    assert data["conditions"]["fa"]["metrics"]["energy_to_target_pj"]["n"] == 0
    report = (tmp_path / "report.md").read_text()
    assert "| fa | " in report and "not reached (0 of 3)" in report
    assert "7.667 ± 0.76 mJ (n=3 of 3)" in report and "9.133 ± 0.15 mJ (n=3)" in report
    (test,) = [t for t in data["tests"] if t["metric"] == "energy_to_target_pj"]
    assert test["n"] == 0 and test["text"] == "n<2: no test"


def test_figures_exist_and_are_embedded(experiment):
    names = assert_figures_referenced(experiment, experiment / "report.md")
    assert names == ["compare_alignment.png", "compare_generalization_gap.png",
                     "compare_test_accuracy.png"]
    report = (experiment / "report.md").read_text()
    assert report.startswith("# Synthetic comparison\n")
    assert "| fa_noise | 86.25 ± 2.63 % (n=4) |" in report  # mean ± std of KNOWN
    assert "| bp | 88.00 % (n=1) |" in report  # one run: no std, not "± 0.00"


def test_differences_of_accuracies_are_in_percentage_points(experiment):
    tests = json.loads((experiment / "comparison.json").read_text())["tests"]
    test = next(t for t in tests if (t["a"], t["b"], t["metric"]) == ("fa", "fa_noise",
                                                                       "test_accuracy"))
    report = (experiment / "report.md").read_text()
    assert f"| {100 * test['mean_difference']:.2f} pp [" in report


def test_zero_epoch_run_and_no_noise_phase(tmp_path):
    """A 0-epoch run (one record at epoch 0, no final evaluation) beside runs without noise."""
    run_dirs = [write_run(tmp_path, "fa", s, noise=False) for s in (0, 1)]
    run_dirs.append(write_run(tmp_path, "untrained", 0, noise=False, epochs=0, final=False,
                              records=train_records(0, epochs=(0.0,))))
    report = write_comparison(run_dirs, tmp_path / "out", title="edge cases")
    assert_figures_referenced(tmp_path / "out", report)
    assert (tmp_path / "out" / "figures" / "compare_alignment.png").is_file()
    summary = json.loads((tmp_path / "out" / "comparison.json").read_text())
    untrained = summary["conditions"]["untrained"]["metrics"]
    assert untrained["auc"] == {"n": 0, "mean": None, "std": None}
    assert untrained["test_accuracy"]["n"] == 0
    assert summary["tests"][0]["text"] == "n<2: no test"


def test_duplicate_condition_and_seed_is_an_error(tmp_path):
    first = write_run(tmp_path / "a", "fa", 0, noise=False)
    second = write_run(tmp_path / "b", "fa", 0, noise=False)
    with pytest.raises(NeurosimError, match="both condition 'fa' seed 0"):
        write_comparison([first, second], tmp_path / "out", title="dup")
    with pytest.raises(NeurosimError, match="no runs to compare"):
        write_comparison([], tmp_path / "out", title="none")


def test_seeds_of_one_condition_made_with_other_configurations_are_refused(tmp_path):
    """Runs of one condition from two experiments (another learning rate, more epochs) were
    averaged into one mean ± std, the table naming the first run's settings only."""
    runs = [write_run(tmp_path / name, "fa", seed, noise=False)
            for name, seed in (("a", 0), ("a", 1), ("b", 2))]
    for run, (lr, epochs) in zip(runs, ((1e-3, 2), (1e-3, 2), (0.1, 20))):
        summary = json.loads((run / "summary.json").read_text())
        summary["config"] = {"seed": summary["seed"], "optimizer": {"name": "adam", "lr": lr},
                             "train": {"epochs": epochs}}
        (run / "summary.json").write_text(json.dumps(summary))
    write_comparison(runs[:2], tmp_path / "same", title="seeds differ only in the seed")
    with pytest.raises(NeurosimError) as refused:
        write_comparison(runs, tmp_path / "out", title="mixed")
    assert str(refused.value) == (
        f"{runs[2]}: condition 'fa' was run with another configuration than {runs[0]} "
        "(optimizer.lr 0.001 -> 0.1; train.epochs 2 -> 20); its seeds cannot be averaged: "
        "compare them separately")
    assert not (tmp_path / "out" / "report.md").exists()


def test_configurations_compare_by_meaning_and_include_the_chip(tmp_path):
    """A run saved before a field existed (its summary lacks it) is the same experiment as
    one saved after with the field's default; two chips that differ are not."""
    experiment = to_plain(build(ExperimentConfig, {"name": "t"}, "test"))
    chip = read_yaml(HW_CONFIG_DIR / "ideal.yaml")
    runs = [write_run(tmp_path, "fa", seed, noise=False) for seed in range(3)]
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        summary["config"] = {**experiment, "seed": summary["seed"]}
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "chip.yaml").write_text(yaml.safe_dump(chip))
    older = json.loads((runs[2] / "summary.json").read_text())
    del older["config"]["simulation"]  # as written by a version before the field
    (runs[2] / "summary.json").write_text(json.dumps(older))
    write_comparison(runs, tmp_path / "same", title="one experiment")
    (runs[2] / "chip.yaml").write_text(yaml.safe_dump({**chip, "tiles": {"rows": 128, "cols": 256}}))
    with pytest.raises(NeurosimError, match=r"\(chip\.yaml\.tiles\.rows 256 -> 128\)"):
        write_comparison(runs, tmp_path / "mixed", title="two chips")


def test_cli_on_empty_folder_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no runs found" in err and err.count("\n") == 1
    assert cli_main(["compare", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_on_experiment_and_run_folders(tmp_path, capsys):
    root = tmp_path / "exp"
    for seed in (0, 1):
        write_run(root, "fa", seed, noise=False)
        write_run(root, "fa_noise", seed)
    assert cli_main(["compare", str(root)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {root.resolve() / 'report.md'}"
    _, rows = read_csv(root / "comparison.csv")
    assert [(r["condition"], r["seed"]) for r in rows] == [
        ("fa", "0"), ("fa", "1"), ("fa_noise", "0"), ("fa_noise", "1")]

    out = tmp_path / "picked"
    assert cli_main(["compare", str(root / "fa" / "seed0"), str(root / "fa_noise"),
                     "--out", str(out), "--title", "Two folders"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.md'}"
    assert (out / "report.md").read_text().startswith("# Two folders\n")
    _, rows = read_csv(out / "comparison.csv")
    assert [(r["condition"], r["seed"]) for r in rows] == [
        ("fa", "0"), ("fa_noise", "0"), ("fa_noise", "1")]


def test_runs_without_a_summary_are_named_not_silently_left_out(tmp_path, capsys):
    """A run of the experiment that failed or was interrupted (no summary.json) was left
    out of the comparison without a word: its condition just had a seed fewer."""
    root = tmp_path / "exp"
    for condition in ("fa", "fa_noise"):
        for seed in (0, 1, 2):
            write_run(root, condition, seed, noise=condition == "fa_noise")
    (root / "fa" / "seed2" / "summary.json").unlink()  # it crashed in training
    for folder in (root, root / "fa"):  # an experiment folder, a condition folder
        assert cli_main(["compare", str(folder), "--out", str(tmp_path / "out")]) == 0
        report = (tmp_path / "out" / "report.md").read_text()
        assert ("Unfinished (no `summary.json`: failed, interrupted or still running), left "
                "out of every number: `../exp/fa/seed2`.") in report
        saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
        assert saved["unfinished"] == ["../exp/fa/seed2"]
        assert saved["conditions"]["fa"]["seeds"] == [0, 1]
    capsys.readouterr()


def test_comparing_some_conditions_does_not_replace_the_experiments_comparison(tmp_path,
                                                                              capsys):
    """The default output folder of two conditions of an experiment is the experiment's
    folder, where its comparison of every condition lies: that is kept, the command asks
    for --out. The same runs again, or more, may replace it (a refreshed comparison)."""
    root = tmp_path / "exp"
    for condition in ("bp", "fa", "fa_noise"):
        write_run(root, condition, 0, noise=condition == "fa_noise")
    assert cli_main(["compare", str(root)]) == 0
    capsys.readouterr()
    before = (root / "comparison.json").read_text()
    assert cli_main(["compare", str(root / "fa"), str(root / "fa_noise")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {root.resolve()}: holds a comparison that also covers 1 "
                          "run(s) not given here") and "give --out" in err
    assert (root / "comparison.json").read_text() == before
    assert cli_main(["compare", str(root / "fa"), str(root / "fa_noise"),
                     "--out", str(tmp_path / "two")]) == 0
    assert cli_main(["compare", str(root)]) == 0  # the whole experiment again: refreshed


def test_a_comparison_into_a_folder_another_command_is_writing_is_refused(tmp_path, capsys):
    """``neurosim compare`` wrote into the folder of an experiment that ``neurosim run``
    was still running (which writes its own comparison there at its end) without a lock:
    it holds the folder's run.lock, and refuses a locked folder at once."""
    root = tmp_path / "exp"
    for condition in ("fa", "fa_noise"):
        write_run(root, condition, 0, noise=condition == "fa_noise")
    with FolderLock(root / RUN_LOCK, what="neurosim run"):
        assert cli_main(["compare", str(root)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: {root}: locked by neurosim run (pid")
    assert not (root / "report.md").exists() and not (root / "comparison.json").exists()
    assert cli_main(["compare", str(root)]) == 0  # once it is done
    assert (root / "report.md").is_file() and not (root / RUN_LOCK).exists()


def test_a_comparison_inside_a_folder_another_process_is_writing_is_refused(tmp_path,
                                                                            capsys):
    """``neurosim compare SWEEP/CELL`` while the sweep runs in SWEEP wrote the cell's
    comparison, which the sweep rewrites at its end: the sweep's lock one folder up was
    not looked at. A lock this process holds above is not in the way."""
    root = tmp_path / "sweep"
    cell = root / "chip=ideal"
    for condition in ("fa", "fa_noise"):
        write_run(cell, condition, 0, noise=condition == "fa_noise")
    parent = psutil.Process(os.getppid())  # a live process other than this one
    (root / RUN_LOCK).write_text(json.dumps({
        "what": "neurosim sweep", "pid": parent.pid, "host": socket.gethostname(),
        "started": parent.create_time(), "token": "t", "since": "then"}))
    assert cli_main(["compare", str(cell)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: {root} (which holds {cell}): locked by neurosim sweep")
    assert not (cell / "report.md").exists()
    (root / RUN_LOCK).unlink()
    with FolderLock(root / RUN_LOCK, what="this process"):
        assert cli_main(["compare", str(cell)]) == 0


def test_report_lists_each_skip_reason_once(experiment):
    report = (experiment / "report.md").read_text()
    skipped = report.split("Skipped:", 1)[1].split("##", 1)[0]
    lines = [line for line in skipped.splitlines() if line.startswith("- ")]
    assert len(lines) == 1  # every run skipped usps for the same reason
    assert lines[0].startswith("- usps in ") and lines[0].endswith("skipped: usps not downloaded")


def test_the_legend_says_when_runs_leave_the_mean():
    """A seed that diverged leaves the mean from where it stopped: the legend said n=3 for a
    curve that was the mean of 2 there (results audit finding 4)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurosim.plots import mean_std_curves, plot_band

    x = np.arange(4.0)
    curves = [(x, x), (x, x + 1), (x[:2], x[:2] + 2)]  # the third ends after x = 1
    grid, mean, std, n = mean_std_curves(curves)
    assert n.tolist() == [3, 3, 2, 2]
    figure, ax = plt.subplots()
    plot_band(ax, grid, mean, std, n, "fa", "C0")
    plot_band(ax, grid, mean, std, np.full(4, 2), "bp", "C1")
    assert [line.get_label() for line in ax.get_lines()] == ["fa (n=3→2)", "bp (n=2)"]
    plt.close(figure)
