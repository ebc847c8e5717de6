"""Tests of neurosim.report on small hand-written run folders (known records and summaries).

The builders ``write_run`` / ``train_records`` / ``noise_records`` are reused by
tests/test_compare.py.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from neurosim.errors import NeurosimError
from neurosim.report import flatten, load_run, write_run_report, write_run_reports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIMS = [8, 6, 3]
EPOCHS = (0.0, 0.02, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- builders
def train_records(seed: int = 0, epochs=EPOCHS) -> list[dict]:
    """Data-phase records with simple known numbers (batch fields null at step 0)."""
    records = []
    for i, epoch in enumerate(epochs):
        acc = min(1.0, 0.1 + 0.4 * epoch + 0.01 * seed)
        records.append({
            "phase": "train", "step": 10 * i, "epoch": epoch,
            "batch_loss": None if i == 0 else 2.0 - 0.5 * epoch,
            "batch_accuracy": None if i == 0 else acc,
            "test_loss": 2.3 - 0.6 * epoch, "test_accuracy": acc,
            "train_loss": 2.2 - 0.7 * epoch, "train_accuracy": min(1.0, acc + 0.05),
            "generalization_gap": 0.1 + 0.1 * epoch, "error_gap": 0.05,
            "alignment_deg": {"2": 80.0 - 5 * epoch - seed},
            "neuron_alignment_mean_deg": {"2": 78.0 - 5 * epoch},
            "neuron_alignment_std_deg": {"2": 10.0 + seed},
            "update_vs_bp_deg": {"1": 60.0 - epoch, "2": 0.0},
            "effective_rank": {"1": 5.5 - 0.1 * epoch, "2": 2.9},
        })
    return records


def noise_records(seed: int = 0, steps=(0, 10, 20)) -> list[dict]:
    records = []
    for i, step in enumerate(steps):
        records.append({
            "phase": "precondition", "step": step,
            "batch_loss": None if i == 0 else 1.1, "batch_accuracy": None if i == 0 else 0.34,
            "probe_loss": 1.2 - 0.01 * i, "probe_accuracy": 0.33,
            "alignment_deg": {"2": 90.0 - 20 * i - seed},
            "neuron_alignment_mean_deg": {"2": 89.0 - 20 * i},
            "neuron_alignment_std_deg": {"2": 15.0 - i},
            "update_vs_bp_deg": {"1": 85.0 - 10 * i, "2": 0.0},
            "effective_rank": {"1": 5.8 - 0.1 * i, "2": 2.95},
        })
    return records


def _snapshot(alignment: float, probs: list[float], angles: list[float]) -> dict:
    return {"alignment_deg": {"2": alignment}, "neuron_alignment_mean_deg": {"2": alignment - 1},
            "neuron_alignment_std_deg": {"2": 9.0}, "readout_probability": probs,
            "readout_max_deviation": max(abs(p - 1 / 3) for p in probs),
            "neuron_angles": {"2": angles}}


def make_summary(condition: str, seed: int, *, noise: bool = True, epochs: int = 2,
                 test_accuracy: float | None = 0.85, auc: float | None = 0.7,
                 auc_first_epoch: float | None = 0.5, ood: dict | None = None,
                 final: bool = True) -> dict:
    summary = {
        "name": "synthetic", "condition": condition, "seed": seed,
        "rule": "fa", "chip": "ideal", "backend": "numpy", "dims": DIMS, "dataset": "toy",
        "precondition": {"enabled": noise},
        "train": {"epochs": epochs},
        "seconds": {"precondition": 1.5, "train": 2.5, "evaluation": 0.5},
        "samples_per_second": {"train": 1000.0},
        "final": None,
    }
    if noise:
        summary["precondition"].update({
            "regime": "fixed_set", "steps": 20,
            "before": _snapshot(90.0 - seed, [0.3, 0.4, 0.3], [80.0, 95.0, 100.0, 85.0, 90.0, 70.0]),
            "after": _snapshot(40.0 - seed, [0.32, 0.33, 0.35], [30.0, 35.0, 45.0, 40.0, 50.0, 38.0]),
            "final_probe_loss": 1.18})
    if epochs:
        summary["train"].update({
            "auc": auc, "auc_first_epoch": auc_first_epoch, "test_accuracy": test_accuracy,
            "test_loss": 1.1, "train_accuracy": 0.9, "train_loss": 1.0,
            "generalization_gap": 0.1 + 0.01 * seed, "error_gap": 0.05,
            "alignment_deg": {"2": 30.0 + seed}, "neuron_alignment_mean_deg": {"2": 29.0},
            "update_vs_bp_deg": {"1": 50.0, "2": 0.0}, "effective_rank": {"1": 5.3, "2": 2.9},
            "initial_alignment_deg": {"2": (40.0 if noise else 90.0) - seed}})
    if final:
        summary["final"] = {
            "readout_probability": [0.2, 0.5, 0.3], "readout_max_deviation": 0.5 - 1 / 3,
            "test_readout_probability": [0.3, 0.3, 0.4], "gram_effective_rank": {"1": 2.5},
            "neuron_angles": {"2": [20.0, 25.0, 30.0, 35.0, 40.0, 45.0]},
            "ood": ood if ood is not None else {"in_distribution": test_accuracy,
                                                "rotate_15deg": 0.5 + 0.01 * seed,
                                                "usps": "skipped: usps not downloaded"}}
    return summary


def write_run(root: Path, condition: str, seed: int, *, noise: bool = True,
              records: list[dict] | None = None, **summary_kw) -> Path:
    """A run folder ``root/<condition>/seed<k>`` with metrics.jsonl and summary.json."""
    run_dir = Path(root) / condition / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if records is None:
        records = (noise_records(seed) if noise else []) + train_records(seed)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "summary.json").write_text(json.dumps(make_summary(condition, seed, noise=noise,
                                                                  **summary_kw)))
    return run_dir


def assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE, path


def assert_figures_referenced(folder: Path, report: Path) -> list[str]:
    """Every figure under ``folder/figures`` is a PNG and is embedded in ``report``; every
    embedded image exists. Returns the figure names."""
    text = report.read_text()
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for link in embedded:
        assert not Path(link).is_absolute() and (folder / link).is_file(), link
    names = sorted(p.name for p in (folder / "figures").glob("*.png"))
    for name in names:
        assert_png(folder / "figures" / name)
        assert f"figures/{name}" in embedded, name
    return names


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def assert_rows_equal_records(path: Path, records: list[dict]) -> None:
    columns, rows = read_csv(path)
    expected = [flatten({k: v for k, v in r.items() if k != "phase"}) for r in records]
    assert columns == list(expected[0])
    assert len(rows) == len(records)
    for row, record in zip(rows, expected):
        for key in columns:
            value = record.get(key)
            assert (row[key] == "") if value is None else (float(row[key]) == value), key


# ----------------------------------------------------------------------------- tests
def test_flatten_nested_layers():
    assert flatten({"step": 3, "alignment_deg": {"1": 10.0, "2": None}}) == {
        "step": 3, "alignment_deg_1": 10.0, "alignment_deg_2": None}


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory) -> Path:
    """A full run with a noise phase (seed 1), reported once for the tests below."""
    run_dir = write_run(tmp_path_factory.mktemp("runs"), "fa_noise", 1, test_accuracy=0.8512,
                        auc=0.7123, auc_first_epoch=0.4567)
    assert write_run_report(run_dir) == run_dir / "report.md"
    return run_dir


def test_curves_csv_equal_records(noise_run):
    columns, _ = read_csv(noise_run / "curves_train.csv")
    assert columns[:4] == ["step", "epoch", "batch_loss", "batch_accuracy"]
    assert "alignment_deg_2" in columns and "effective_rank_1" in columns and "phase" not in columns
    assert_rows_equal_records(noise_run / "curves_train.csv", train_records(1))
    assert_rows_equal_records(noise_run / "curves_precondition.csv", noise_records(1))


def test_figures_are_pngs_and_embedded(noise_run):
    names = assert_figures_referenced(noise_run, noise_run / "report.md")
    assert names == sorted(["accuracy.png", "loss.png", "alignment.png", "neuron_angles.png",
                            "effective_rank.png", "readout_probability.png"])


def test_headline_numbers_in_report(noise_run):
    text = (noise_run / "report.md").read_text()
    assert "| final test accuracy | 85.12 % |" in text
    assert "| 0.7123 |" in text and "| 0.4567 |" in text
    # alignment of layer 2: before noise 89.0, after noise 39.0, after training 31.0
    assert re.search(r"\| 2 \| 89\.0° .*\| 39\.0° .*\| 31\.0° ", text)
    assert "| usps | skipped: usps not downloaded |" in text and "| rotate_15deg | 51.00 % |" in text
    assert "gram effective rank of hidden layer 1 | 2.50" in text
    assert "| time: train | 2.5 s |" in text


def test_reports_written_in_worker_processes_are_the_reports_written_one_by_one(tmp_path):
    """A population's reports, three in two worker processes, are byte for byte the files
    written one after another in this process (report, CSV curves, every figure)."""
    folders = {way: [write_run(tmp_path / way, "fa_noise", seed, test_accuracy=0.8 + seed / 100)
                     for seed in range(3)] for way in ("serial", "processes")}
    assert write_run_reports(folders["serial"]) == [d / "report.md" for d in folders["serial"]]
    assert (write_run_reports(folders["processes"], processes=2)
            == [d / "report.md" for d in folders["processes"]])
    for serial, parallel in zip(folders["serial"], folders["processes"]):
        written = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
        assert written == sorted(p.relative_to(parallel) for p in parallel.rglob("*")
                                 if p.is_file())
        assert len([p for p in written if p.suffix == ".png"]) == 6
        for name in written:
            assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name


def test_a_report_that_fails_in_a_worker_process_is_the_same_user_error(tmp_path):
    folders = [write_run(tmp_path, "fa", seed, noise=False) for seed in range(2)]
    (folders[1] / "summary.json").unlink()
    with pytest.raises(NeurosimError, match="summary.json: cannot read"):
        write_run_reports(folders, processes=2)


def test_report_workers_end_when_the_command_that_started_them_is_killed():
    """A command killed with SIGKILL while writing its reports left its report worker
    processes waiting for work forever (150 MB each): they end once their parent is gone."""
    code = ("import os, signal\n"
            "from neurosim.report import report_pool\n"
            "pool = report_pool(1)\n"
            "print(pool.submit(os.getpid).result(), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = psutil.Process(int(parent.stdout.readline()))
    parent.wait(timeout=60)
    deadline = time.monotonic() + 10
    while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            worker.kill()
            pytest.fail("the report worker outlived its parent by 10 s")
        time.sleep(0.2)


def test_run_without_noise_phase(tmp_path):
    run_dir = write_run(tmp_path, "fa", 0, noise=False)
    report = write_run_report(run_dir)
    assert not (run_dir / "curves_precondition.csv").exists()
    assert_rows_equal_records(run_dir / "curves_train.csv", train_records(0))
    names = assert_figures_referenced(run_dir, report)
    assert "alignment.png" in names and "neuron_angles.png" in names
    assert "noise preconditioning" in report.read_text()  # "no noise preconditioning"


def test_alignment_is_described_for_the_rule_that_made_it(tmp_path):
    # FA's θ_2 compares W_2 with B_2ᵀ; DFA's key "1" is hidden layer 1 against its path
    # W_L⋯W_2 to the output (evaluation.feedback_targets), not "W_1 vs B_1ᵀ"
    from neurosim.report import compared_matrices
    fa = write_run_report(write_run(tmp_path, "fa", 0)).read_text()
    assert "θ_l is the angle between W_l and B_lᵀ" in fa and "DFA" not in fa
    run_dir = write_run(tmp_path, "dfa", 0)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "rule": "dfa"}))
    dfa = write_run_report(run_dir).read_text()
    assert "DFA: layer l is hidden layer l" in dfa and "W_L⋯W_{l+1}" in dfa
    assert compared_matrices("fa", "2") == "W_2 vs B_2ᵀ"
    assert compared_matrices("dfa", "1") == "W_L⋯W_2 vs B_1ᵀ"
    assert compared_matrices("drtp", "1") == "W_L⋯W_2 vs −B_1ᵀ"  # measured against -B
    (run_dir / "summary.json").write_text(json.dumps({**summary, "rule": "drtp"}))
    drtp = write_run_report(run_dir).read_text()
    assert "DRTP: layer l is hidden layer l; θ_l is the angle between −B_lᵀ" in drtp
    assert "(its feedback from the output: the one-hot target)" in drtp


def test_zero_epoch_run_without_final(tmp_path):
    records = noise_records(0) + train_records(0, epochs=(0.0,))
    run_dir = write_run(tmp_path, "fa_noise", 0, records=records, epochs=0, final=False)
    report = write_run_report(run_dir)
    assert_figures_referenced(run_dir, report)
    assert "| final test accuracy | — |" in report.read_text()


def test_bad_metric_line_is_a_user_error(tmp_path):
    run_dir = write_run(tmp_path, "fa", 0, noise=False)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(NeurosimError, match=r"metrics.jsonl:6: not valid JSON"):
        load_run(run_dir)
    (run_dir / "summary.json").unlink()
    with pytest.raises(NeurosimError, match="summary.json: cannot read"):
        write_run_report(run_dir)


def test_report_shows_the_energy_ledger_of_a_real_run(tmp_path):
    from test_train import spec_for

    from neurosim.energy import energy_text
    from neurosim.runio import SUMMARY, write_json
    from neurosim.schema import to_plain
    from neurosim.train import run_spec

    spec = spec_for(train__epochs=1)
    summary = run_spec(spec, tmp_path)
    write_json(tmp_path / SUMMARY, summary)
    (tmp_path / "chip.yaml").write_text(yaml.safe_dump(to_plain(spec.chip)))  # as the runner
    text = write_run_report(tmp_path).read_text()
    assert "## Energy and memory traffic (ledger)" in text
    # the tiny chip reads with ideal converters: the report says what it charges instead
    assert "Converters are charged as 8-bit ADC and 8-bit DAC conversions" in text
    assert "`forward.periphery.adc_bits`" in text and "not a simulated one" in text
    assert f"**{energy_text(summary['ledger']['energy_pj']['total'])}**" in text
    for phase in ("precondition", "forward", "backward", "update", "eval"):
        assert f"| {phase} |" in text
    assert "figures/energy.png" in text
    assert_png(tmp_path / "figures" / "energy.png")
    # the unit costs it priced with: the defaults here (TaOx's 1.28 pJ pulse, both ways)
    assert "A cell read costs 0.025 pJ, a write pulse 1.28 pJ up and 1.28 pJ down." in text
    # how the data were made is recorded and said (a test-split fallback is said this way)
    from neurosim.data import load_dataset
    notes = list(load_dataset("digits").notes)
    assert notes and summary["data_notes"] == notes
    assert f"Data: {notes[0]}." in text


def test_the_report_names_only_the_converters_the_ledger_charged():
    """No update converts anything: its default resolution is not named (a chip of 9-bit
    ADCs and 7-bit DACs was described as "8/9-bit ADC and 7/8-bit DAC"), and a feedback
    array that BP or regenerated feedback never reads is not listed as ideal."""
    from neurosim.energy import EnergyConfig, energy_breakdown
    from neurosim.ledger import COUNTER_INDEX, OPERATION_INDEX, Ledger
    from neurosim.report import converter_text

    ledger = Ledger(2)
    for operation in ("forward", "backward"):
        for kind in ("adc", "dac"):
            ledger.counts[:, OPERATION_INDEX[operation], :, COUNTER_INDEX[f"{kind}_conversions"]] = 5
    ledger.counts[:, OPERATION_INDEX["backward"], 1, COUNTER_INDEX["adc_conversions"]] = 0
    energy = json.loads(json.dumps(energy_breakdown(ledger.counts, EnergyConfig(), adc_bits=9,
                                                    dac_bits=7)))
    assert energy["adc_bits"] == {"forward": [9, 9], "backward": [9, None],
                                  "update": [None, None]}
    chip = {"forward": {"periphery": {"adc_bits": 9, "dac_bits": 7}},
            "feedback": {"kind": "stored", "periphery": {"adc_bits": None, "dac_bits": 7}}}
    text = converter_text(energy, chip, "fa")
    assert "charged as 9-bit ADC and 7-bit DAC conversions" in text
    assert "`feedback.periphery.adc_bits` is null" in text
    assert "feedback" not in converter_text(energy, chip, "bp")
    regenerated = {**chip, "feedback": {**chip["feedback"], "kind": "regenerated"}}
    assert "feedback" not in converter_text(energy, regenerated, "fa")


def test_report_names_the_chips_own_write_pulses(tmp_path):
    """A chip with its own LTP/LTD pulses (the Ag:a-Si preset's energy block) is reported
    with them, as the ledger priced them."""
    from neurosim.config import HW_CONFIG_DIR, load_chip
    from neurosim.report import unit_cost_text
    from neurosim.schema import to_plain

    chip = to_plain(load_chip(HW_CONFIG_DIR / "rram_agsi.yaml"))
    assert unit_cost_text(chip) == ("A cell read costs 4.81e-05 pJ, a write pulse 118 pJ up "
                                    "and 90.5 pJ down. ")
    chip["energy"]["write_voltage_v"] = "high"  # an edited chip.yaml: no costs, no crash
    assert unit_cost_text(chip) == ""
