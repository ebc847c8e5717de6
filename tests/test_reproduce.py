"""`neurosim reproduce`: the suite on tiny settings (Fig. 2, Fig. 4, Table 1, the device
presets), the report, resuming, and bad input."""

import json
import math
import os

import matplotlib.axes
import pytest

from neurosim import stats
from neurosim.cli import main
from neurosim.data import load_dataset, store
from neurosim.errors import DataError, NeurosimError
from neurosim.reproduce import alignment, hardware, learning, regularization
from neurosim.reproduce.context import (AGREES, DIFFERS, NOT_REPRODUCED, NOT_RUN, WEAKER,
                                        Context, common_accuracy, directional_verdict)
from neurosim.reproduce.settings import tiny
from neurosim.reproduce.suite import reproduce

DATA_DIR = os.environ.get("NEUROSIM_DATA")
VERDICTS = {"agrees", "weaker", "not reproduced", "differs", "control", "not run"}


def have_mnist() -> bool:
    try:
        load_dataset("mnist", DATA_DIR, train_size=10, test_size=10)
    except DataError:
        return False
    return True


needs_mnist = pytest.mark.skipif(not have_mnist(), reason="MNIST is not in $NEUROSIM_DATA")


def context(tmp_path, seeds=(0, 1), chip="ideal") -> Context:
    return Context(out=tmp_path / "reproduce", chip=chip, seeds=seeds, settings=tiny(),
                   data_dir=DATA_DIR)


@pytest.mark.parametrize("difference, pvalue, sign, verdict", [
    (0.1, 0.01, 1, AGREES), (0.1, 0.2, 1, WEAKER), (-0.1, 0.2, 1, NOT_REPRODUCED),
    (-0.1, 0.01, 1, DIFFERS), (-0.1, 0.01, -1, AGREES), (0.1, 0.01, -1, DIFFERS)])
def test_verdicts_follow_the_sign_and_the_p_value(difference, pvalue, sign, verdict):
    test = stats.TestResult("paired t-test", 3, 1.0, pvalue, difference, 2.0, (3,))
    assert directional_verdict(test, sign) == verdict


@pytest.mark.parametrize("noise, settings, table", [
    # gaussian and uniform as docs/paper-reproduction.md shows them (the grid's uniform
    # input, ±√3, has 3 significant digits in the table)
    ({"distribution": "gaussian", "mean": 0.0, "std": 0.5}, "N(0, 0.5²)", "N(0, 0.5²)"),
    ({"distribution": "uniform", "low": -math.sqrt(3.0), "high": math.sqrt(3.0)},
     "U(-1.73205, 1.73205)", "U(-1.73, 1.73)"),
    # both were written U(low, high), from the bounds' defaults
    ({"distribution": "binary", "rate": 0.05}, "binary 0/1 at rate 0.05",
     "binary 0/1 at rate 0.05"),
    ({"distribution": "correlated", "std": 2.0, "length_scale": 3.5},
     "N(0, 2²) correlated over 3.5 px", "N(0, 2²) correlated over 3.5 px"),
], ids=lambda value: value["distribution"] if isinstance(value, dict) else "")
def test_fig1_names_every_noise_input_distribution(tmp_path, noise, settings, table):
    """Fig. 1's settings line and grid table name a run's noise input as the run reports
    do (:meth:`NoiseInputConfig.describe`), whatever its distribution."""
    from neurosim.config import ExperimentConfig
    from neurosim.report import Run
    from neurosim.schema import build, to_plain

    ctx = context(tmp_path)
    data = ctx.experiment("x", {"precondition.enabled": True, "precondition.input": noise})
    config = to_plain(build(ExperimentConfig, data, "test"))
    run = Run(tmp_path, {"config": config}, [], [])
    assert f" on {settings} inputs with " in alignment.settings_text(run, ctx)
    assert alignment.input_text(config) == table


@needs_mnist
def test_learning_ood_table1_on_tiny_settings_write_a_report(tmp_path):
    ctx = context(tmp_path)
    report = reproduce(ctx, ["fig2", "fig4", "table1"])
    text = report.read_text()
    results = json.loads((ctx.out / "results.json").read_text())
    keys = [s["key"] for s in results["sections"]]
    assert keys[0] == "fig2" and "fig4" in keys and "table1" in keys
    for section in results["sections"]:
        for figure in section["figures"]:
            assert (ctx.out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({figure})" in text
        for claim in section["claims"]:
            assert claim["verdict"] in VERDICTS
            # every test is over the 2 seeds (or a criterion counted per seed)
            assert "n=2" in claim["ours"] or "of 2 seeds" in claim["ours"]
    # each verdict is the one its numbers give: recompute the headline from the runs
    fig2 = next(s for s in results["sections"] if s["key"] == "fig2")
    first = fig2["claims"][0]
    summaries = {c: [json.loads((ctx.out / "fig2" / "runs" / "mnist" / c / f"seed{k}" /
                                 "summary.json").read_text())["train"]["auc_first_epoch"]
                     for k in (0, 1)] for c in ("fa", "fa_noise")}
    expected = directional_verdict(stats.paired_ttest(summaries["fa_noise"], summaries["fa"]))
    assert first["verdict"] == expected
    # the CSV behind Fig. 2 has every condition x seed
    rows = (ctx.out / "fig2" / "mnist_curves.csv").read_text().splitlines()
    for condition in ("bp", "fa", "fa_noise", "bp_noise", "fa_noise_fresh"):
        assert any(row.startswith(f"{condition},1,") for row in rows)
    # OOD evaluated along training (matched-accuracy control) and after it
    ood_rows = (ctx.out / "fig4" / "ood_matched.csv").read_text().splitlines()
    assert len(ood_rows) == 3
    assert "CIFAR-10 ([3072,100,10]) is not run" in text  # said, not silently dropped


@needs_mnist
def test_a_second_reproduction_reuses_finished_runs(tmp_path):
    ctx = context(tmp_path, seeds=(0,))
    reproduce(ctx, ["table1"])
    summary = ctx.out / "table1" / "runs" / "fashion_mnist" / "fa" / "seed0" / "summary.json"
    metrics = summary.parent / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    reproduce(ctx, ["table1"])
    assert metrics.read_text().splitlines() == lines  # nothing retrained or appended


@needs_mnist
def test_a_folder_of_another_reproduction_is_refused(tmp_path):
    reproduce(context(tmp_path, seeds=(0,)), ["table1"])
    with pytest.raises(NeurosimError, match="another chip, seeds"):
        reproduce(context(tmp_path, seeds=(0, 1)), ["table1"])


@needs_mnist
def test_every_device_preset_gets_the_headline_comparison_and_energy(tmp_path):
    ctx = context(tmp_path, seeds=(0, 1))
    section = hardware.run(ctx)
    presets = hardware.presets()
    assert {"ideal", "rram_taox", "pcm_gst"} <= set(presets)
    assert len(section.claims) == len(presets)
    rows = (ctx.out / "hardware" / "hardware.csv").read_text().splitlines()
    assert len(rows) == 1 + len(presets) * 3 * 2  # header + preset x condition x seed
    header = rows[0].split(",")
    energy = header.index("precondition_energy_pj")
    condition = header.index("condition")
    for row in rows[1:]:
        cells = row.split(",")
        noise_energy = float(cells[energy])
        assert (noise_energy > 0) == (cells[condition] == "fa_noise")
    assert all(not math.isnan(float(r.split(",")[header.index("auc_first_epoch")]))
               for r in rows[1:])


# noise inputs of std 1e37 overflow the chip's outputs in its first noise interval (plain SGD:
# Adam would normalize the huge gradients): the run diverges and records null metrics
OVERFLOW = {"precondition.enabled": True, "precondition.input.std": 1.0e37,
            "optimizer.name": "sgd", "optimizer.lr": 1e-3}


def test_common_accuracy_of_a_diverged_run_is_nan_whatever_the_order():
    finite = [{"test_accuracy": 0.1}, {"test_accuracy": 0.4}]
    diverged = [{"test_accuracy": None}]
    assert common_accuracy([finite, [{"test_accuracy": 0.3}, {"test_accuracy": None}]]) == 0.3
    assert math.isnan(common_accuracy([finite, diverged]))
    assert math.isnan(common_accuracy([diverged, finite]))
    assert "diverged" in hardware.level_text(math.nan, [math.nan], [1.0])


@needs_mnist
def test_a_diverged_run_is_reported_not_a_traceback(tmp_path, monkeypatch):
    """FA + noise diverging in every seed: every section still writes its report, the
    comparisons that need it are 'not run', and a note names each diverged run."""
    monkeypatch.setitem(learning.HEADLINE, "fa_noise", {"rule": "fa", **OVERFLOW})
    monkeypatch.setitem(regularization.RULES, "fa_noise", {"rule": "fa", **OVERFLOW})
    monkeypatch.setitem(alignment.NOISE_CONDITIONS, "fa_fixed", {"rule": "fa", **OVERFLOW})
    ctx = context(tmp_path)
    text = reproduce(ctx, ["fig2", "fig4", "table1", "fig3"]).read_text()
    sections = {s["key"]: s for s in json.loads((ctx.out / "results.json").read_text())
                ["sections"]}
    verdicts = {c["paper"]: c["verdict"] for s in sections.values() for c in s["claims"]}
    assert verdicts["[784,100,10] on MNIST: FA with noise preconditioning learns faster than "
                    "FA (higher test-accuracy AUC)"] == NOT_RUN
    assert verdicts["MNIST: FA + noise ends more accurate than FA"] == NOT_RUN
    assert all(c["verdict"] == NOT_RUN for c in sections["fig4"]["claims"][:2])
    assert "fig2/runs/mnist/fa_noise seed 0 (noise phase, step 20" in text
    for key in ("fig2", "fig4", "table1", "fig3"):
        assert any("fa_noise seed 1 (noise phase" in note for note in sections[key]["notes"])
    assert any("noise/fa_fixed seed 0 (noise phase" in n for n in sections["fig3"]["notes"])


def test_preset_bars_are_the_tables_mean_and_sample_std_of_the_seeds_that_reached(
        tmp_path, monkeypatch):
    drawn = []
    bar = matplotlib.axes.Axes.bar

    def spy(self, x, height, width, **kwargs):
        drawn.append((list(height), list(kwargs["yerr"])))
        return bar(self, x, height, width, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", spy)
    hardware.bars(tmp_path / "bars.png", ["reached", "never"],
                  {"fa": [[1.0, 3.0, math.nan], [math.nan, math.nan]]}, "mJ", "energy", log=True)
    [(heights, errors)] = drawn
    assert heights[0] == 2.0 and errors[0] == pytest.approx(math.sqrt(2.0))  # ddof=1
    assert math.isnan(heights[1])  # never reached: no bar, not a bar at 0


def test_a_missing_dataset_stops_the_reproduction_before_any_training(tmp_path, monkeypatch):
    """The trainer loaded a run's data after its noise phase: without MNIST the first run
    of Fig. 1 trained its whole noise phase (minutes at full size) before failing."""
    monkeypatch.setattr(store, "download", lambda url, destination: (_ for _ in ()).throw(
        OSError("network disabled in tests")))
    ctx = Context(out=tmp_path / "reproduce", chip="ideal", seeds=(0, 1),
                  settings=tiny().replace(noise_steps=400), data_dir=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="mnist"):
        reproduce(ctx, ["fig1"])
    assert not list(ctx.out.rglob("metrics.jsonl"))  # nothing trained


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "fig9"], "FIGURE"),
    (["reproduce", "--seeds", "0"], "--seeds"),
    (["reproduce", "--seeds", "1"], "every verdict is a test over seeds"),  # no t-test of 1
    (["reproduce", "--chip", "no_such_chip"], "chip"),
])
def test_bad_reproduce_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
