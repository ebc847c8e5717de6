"""Whole runs: determinism, backend agreement, resume, and what noise preconditioning does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, backend_under_test, interrupted_then_resumed

import neurosim
from neurosim.config import ExperimentConfig, NoiseInputConfig, expand_runs
from neurosim.data import store
from neurosim.report import write_run_report
from neurosim.errors import CheckpointError
from neurosim.runio import (CHECKPOINT, METRICS, SUMMARY, load_checkpoint, save_checkpoint,
                            write_json)
from neurosim.schema import build
from neurosim.summary import summarize
from neurosim.train import Trainer, evaluation_steps, run_spec

TINY = {
    "name": "tiny", "network": {"dims": [784, 24, 10]},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "precondition": {"enabled": True, "regime": "fixed_set", "n_examples": 256, "steps": 60,
                     "batch_size": 32, "log_every": 20, "checkpoint_every": 20},
    "data": {"dataset": "digits", "train_size": 320, "test_size": 100},
    "train": {"epochs": 2, "batch_size": 32},
    "evaluation": {"train_probe_size": 200, "gradient_probe_size": 64, "noise_probe_size": 500,
                   "ood": ["translate"], "ood_shifts_px": [2.0]},
}


def spec_for(**overrides):
    data = json.loads(json.dumps(TINY))
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return expand_runs(build(ExperimentConfig, data, "test"))[0]


def metric_records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def flatten(records, keys=("batch_loss", "probe_loss", "test_accuracy", "test_loss",
                           "train_loss")):
    out = []
    for record in records:
        out.extend(record[k] for k in keys if record.get(k) is not None)
        out.extend(record["alignment_deg"].values())
    return np.array(out, dtype=float)


def test_evaluation_steps_include_fractional_points():
    assert evaluation_steps(100, 2, (0.02, 0.05, 0.5)) == [0, 2, 5, 50, 100, 200]
    assert evaluation_steps(10, 1, (0.02,)) == [0, 10]  # 0.2 steps rounds to 0
    assert evaluation_steps(10, 0, (0.5,)) == [0]
    assert evaluation_steps(100, 2, (0.02,), per_epoch=4) == [0, 2, 25, 50, 75, 100, 125, 150,
                                                              175, 200]


def test_evaluation_every_kth_epoch_keeps_the_last_the_fractional_points_and_epoch_1():
    # epoch 1's end is always measured: the first-epoch AUC ends there (never interpolated)
    assert evaluation_steps(10, 7, (0.5,), every_epochs=3) == [0, 5, 10, 30, 60, 70]
    assert evaluation_steps(10, 4, (), per_epoch=2, every_epochs=2) == [0, 10, 15, 20, 35, 40]
    assert evaluation_steps(10, 5, (), every_epochs=1) == evaluation_steps(10, 5, ())


def test_a_diverged_run_finishes_and_says_where_it_diverged(tmp_path):
    """Noise inputs of std 1e37 overflow the chip's outputs in the noise phase: the run
    still finishes (its metrics null, not a traceback and not an accuracy counted from
    nan outputs), the next condition still runs, and the report names the diverged run."""
    from neurosim.runner import run_experiment
    data = json.loads(json.dumps(TINY))
    data["precondition"]["input"] = {"std": 1.0e37}
    data["optimizer"] = {"name": "sgd", "lr": 1e-3}  # (Adam normalizes the huge gradients)
    data["conditions"] = {"overflow": {}, "clean": {"precondition.enabled": False}}
    data["evaluation"]["ood"] = []
    data["train"]["epochs"] = 1
    data["seeds"] = [0]
    run_experiment(build(ExperimentConfig, data, "test"), None, tmp_path / "out",
                   run_reports=False)
    bad = json.loads((tmp_path / "out" / "overflow" / "seed0" / SUMMARY).read_text())
    good = json.loads((tmp_path / "out" / "clean" / "seed0" / SUMMARY).read_text())
    assert bad["precondition"]["diverged_at_step"] == 20  # the first logging point
    assert bad["train"]["diverged_at_epoch"] == 0.0
    for value in (bad["train"]["test_accuracy"], bad["train"]["auc"],
                  bad["final"]["readout_max_deviation"], bad["precondition"]["after"]
                  ["readout_max_deviation"]):
        assert value is None
    noise = [r for r in metric_records(tmp_path / "out" / "overflow" / "seed0")
             if r["phase"] == "precondition" and r["step"] >= 20]
    assert noise and all(r["probe_accuracy"] is None for r in noise)
    assert good["train"]["diverged_at_epoch"] is None and good["train"]["auc"] > 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Diverged" in report and "overflow seed 0 (noise phase, step 20" in report
    assert "Data: digits: " in report  # the datasets' notes, once
    assert "Out-of-distribution" not in report  # ood: [] leaves only the test set's column


def test_same_seed_same_backend_gives_identical_runs(tmp_path):
    spec = spec_for()
    first = run_spec(spec, tmp_path / "a")
    second = run_spec(spec, tmp_path / "b")
    assert metric_records(tmp_path / "a") == metric_records(tmp_path / "b")
    assert first["train"]["test_accuracy"] == second["train"]["test_accuracy"]


def test_different_seeds_differ(tmp_path):
    run_spec(spec_for(seed=0), tmp_path / "a")
    run_spec(spec_for(seed=1), tmp_path / "b")
    assert not np.array_equal(flatten(metric_records(tmp_path / "a")),
                              flatten(metric_records(tmp_path / "b")))


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sdfa", "drtp"])
def test_numba_run_gives_the_reference_curves(tmp_path, rule):
    """A whole short run (noise phase + data) on numba reproduces the numpy reference."""
    fast = spec_for(rule=rule, simulation__backend="numba", simulation__dtype="float64")
    reference = spec_for(rule=rule, simulation__backend="numpy", simulation__dtype="float64")
    run_spec(fast, tmp_path / "numba")
    run_spec(reference, tmp_path / "numpy")
    a, b = metric_records(tmp_path / "numba"), metric_records(tmp_path / "numpy")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    np.testing.assert_allclose(flatten(a), flatten(b), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["torch", pytest.param("torch-cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sdfa", "drtp"])
def test_torch_run_gives_the_numba_curves(tmp_path, rule, name):
    """A whole short run (noise phase + data) on torch, on the CPU or a GPU, reproduces the
    numba run."""
    device = backend_under_test(name).device
    run_spec(spec_for(rule=rule, simulation__backend="torch", simulation__device=device,
                      simulation__dtype="float64"), tmp_path / "torch")
    run_spec(spec_for(rule=rule, simulation__backend="numba", simulation__dtype="float64"),
             tmp_path / "numba")
    a, b = metric_records(tmp_path / "torch"), metric_records(tmp_path / "numba")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    np.testing.assert_allclose(flatten(a), flatten(b), rtol=1e-7, atol=1e-9)


def test_float32_numba_run_tracks_the_reference(tmp_path):
    run_spec(spec_for(simulation__backend="numba"), tmp_path / "numba")
    run_spec(spec_for(simulation__backend="numpy"), tmp_path / "numpy")
    a = metric_records(tmp_path / "numba")
    b = metric_records(tmp_path / "numpy")
    np.testing.assert_allclose(flatten(a), flatten(b), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("stop_after, points_per_epoch", [
    (45, 1), (75, 1),  # inside the noise phase; inside epoch 2
    (60, 1), (62, 1), (70, 1),  # the noise phase's end; after a fractional point; epoch 1's end
    (64, 3), (77, 3)])  # 10 steps an epoch: points at 1, 2, 5 (fractional), 3, 7, 10, 13, ...
def test_resume_after_interruption_gives_identical_results(tmp_path, monkeypatch, stop_after,
                                                           points_per_epoch):
    spec = spec_for(train__checkpoint_every=1, evaluation__points_per_epoch=points_per_epoch)
    reference = run_spec(spec, tmp_path / "whole")
    resumed = interrupted_then_resumed(monkeypatch, spec, tmp_path / "cut", stop_after)
    assert metric_records(tmp_path / "cut") == metric_records(tmp_path / "whole")
    for key in ("train", "final", "precondition"):
        assert resumed[key] == reference[key]


@pytest.mark.parametrize("every, checkpoint_every, expected", [
    (2, 3, [4]),  # rounded up to 4: epoch 3 is not evaluated (there was no checkpoint)
    (3, 2, [3]),  # rounded up to 3 (it was 6, past the run's 5 epochs)
    (1, 2, [2, 4]),
    (2, 2, [2, 4])])
def test_data_checkpoints_come_every_checkpoint_every_epochs_rounded_to_evaluations(
        tmp_path, monkeypatch, every, checkpoint_every, expected):
    """Checkpoints are taken at evaluation points, so ``train.checkpoint_every`` is rounded
    up to a multiple of ``evaluation.every_epochs`` (as the noise phase's is to one of
    ``log_every``). They came only where an evaluated epoch was also a multiple of
    ``checkpoint_every``: every_epochs 2 and checkpoint_every 3 never checkpointed a
    5-epoch data phase."""
    taken = []
    original = Trainer._checkpoint

    def recorded(self):
        if self.position.phase == "train" and self.position.step:
            taken.append(self.position.step // self._steps_per_epoch())
        original(self)

    monkeypatch.setattr(Trainer, "_checkpoint", recorded)
    run_spec(spec_for(precondition__enabled=False, data__train_size=64, train__epochs=5,
                      train__checkpoint_every=checkpoint_every,
                      evaluation__every_epochs=every), tmp_path / "run")
    assert taken == expected


def test_the_records_a_checkpoint_counts_are_on_disk_before_it(tmp_path, monkeypatch):
    """A checkpoint is synced to disk; the metric records it counts must be too, before it
    (else a power cut can keep the checkpoint and lose the records: resume refuses)."""
    real_fsync, real_replace = os.fsync, os.replace
    log = tmp_path / "run" / METRICS
    synced, checkpoints = [], []

    def fsync(fd):
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == str(log):
            synced.append(log.stat().st_size)

    def replace(source, target):
        if Path(target).name == CHECKPOINT:
            checkpoints.append(log.stat().st_size)
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run_spec(spec_for(train__checkpoint_every=1), tmp_path / "run")
    assert len(checkpoints) > 5 and checkpoints[-1] > 0
    assert set(checkpoints) - {0} <= set(synced)


def test_a_missing_dataset_is_refused_before_the_noise_phase_trains(tmp_path, monkeypatch):
    """The dataset was loaded when the data phase first needed it: without its files a run
    trained its whole noise phase (minutes at full size) before failing."""
    monkeypatch.setattr(store, "download", lambda url, destination: (_ for _ in ()).throw(
        OSError("offline")))
    def trained(*args, **kwargs):
        raise AssertionError("the noise phase trained before the dataset was loaded")

    monkeypatch.setattr(Trainer, "steps", trained)
    with pytest.raises(store.MissingDataError, match="usps"):
        Trainer(spec_for(data__dataset="usps"), tmp_path / "run",
                data_dir=str(tmp_path / "empty")).run()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_checkpoint_is_a_checkpoint_error(tmp_path, damage):
    """An empty or truncated checkpoint (a copy cut short) raised EOFError or BadZipFile,
    a traceback from ``--resume``: it is the one-line CheckpointError naming the file."""
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"w": np.arange(1000.0)}, {"step": 1})
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{path}: cannot read checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("noise", [
    {"distribution": "gaussian"},
    {"distribution": "uniform", "low": -1.0, "high": 1.0},
    {"distribution": "binary", "rate": 0.1},
    {"distribution": "correlated", "length_scale": 2.0}], ids=lambda noise: noise["distribution"])
def test_fixed_set_preconditioning_aligns_the_last_layer(tmp_path, noise):
    """The paper's Fig. 1 effect, small: FA on a fixed set of noise turns W_2 toward B_2^T,
    whichever the noise; the run's report names the noise."""
    summary = run_spec(spec_for(precondition__steps=200, train__epochs=0,
                                precondition__input=noise), tmp_path / "run")
    before = summary["precondition"]["before"]["alignment_deg"]["2"]
    after = summary["precondition"]["after"]["alignment_deg"]["2"]
    assert 80 < before < 100
    assert after < before - 30
    write_json(tmp_path / "run" / SUMMARY, summary)
    write_run_report(tmp_path / "run")
    described = build(NoiseInputConfig, noise, "test").describe()
    assert f"{described} inputs, a set of 256" in (tmp_path / "run" / "report.md").read_text()


def test_the_summary_and_report_say_where_the_array_weights_sit(tmp_path):
    """Before and after the noise phase and after training: each forward array's mean and
    std of its normalized weights, as the chip holds them; the report tabulates them."""
    trainer = Trainer(spec_for(precondition__steps=60, train__epochs=1), tmp_path / "run")
    summary = trainer.run()
    for index in range(trainer.chip.n_layers):
        w = trainer.chip.weights(index).astype(np.float64)
        assert summary["final"]["array_weights"][str(index + 1)] == {
            "mean": float(w.mean()), "std": float(w.std())}
    before, after = (summary["precondition"][when]["array_weights"] for when in ("before",
                                                                                 "after"))
    assert sorted(before) == sorted(after) == ["1", "2"]
    assert after["2"]["std"] > before["2"]["std"]  # the noise phase moved the weights
    write_json(tmp_path / "run" / SUMMARY, summary)
    write_run_report(tmp_path / "run")
    text = (tmp_path / "run" / "report.md").read_text()
    assert "| layer | before noise | after noise | after training |" in text
    stats = summary["final"]["array_weights"]["2"]
    assert (f"± {after['2']['std']:.3f} | {round(stats['mean'], 3) + 0.0:+.3f} ± "
            f"{stats['std']:.3f} |") in text


def test_bp_does_not_align_with_unused_feedback(tmp_path):
    summary = run_spec(spec_for(rule="bp", precondition__steps=200, train__epochs=0),
                       tmp_path / "run")
    assert summary["precondition"]["after"]["alignment_deg"]["2"] > 70


def test_summary_counts_the_samples_trained_and_names_the_code_that_ran(tmp_path):
    """Throughput counts short batches as they were: a fixed noise set of 100 in batches
    of 32 is 32, 32, 32, 4 a pass, so 10 steps are 100 + 100 + 64 = 264 samples; 2 epochs
    of 100 training images are 200. The summary and the report name neurosim's version,
    revision and libraries."""
    summary = run_spec(spec_for(precondition__n_examples=100, precondition__steps=10,
                                data__train_size=100), tmp_path)
    speed, seconds = summary["samples_per_second"], summary["seconds"]
    assert speed["precondition"] * seconds["precondition"] == pytest.approx(264, rel=1e-12)
    assert speed["train"] * seconds["train"] == pytest.approx(200, rel=1e-12)
    environment = summary["environment"]
    assert (environment["neurosim"], environment["numpy"]) == (neurosim.__version__,
                                                                np.__version__)
    if (REPO / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        assert environment["revision"] in (head, head + "+dirty")
    write_json(tmp_path / SUMMARY, summary)
    report = write_run_report(tmp_path).read_text()
    assert f"Made by neurosim {neurosim.__version__}" in report
    assert "optimizer adam (lr 0.003)" in report and "2 epochs of batch 32" in report


def test_a_copy_without_git_history_names_the_revision_it_is_given(tmp_path, monkeypatch):
    """A working tree copied without .git (the lent GPU machine) recorded no revision, so
    its benchmark files could not say which code they measured."""
    from neurosim import provenance

    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)  # no git checkout there
    monkeypatch.setenv(provenance.REVISION_VARIABLE, "4e4f008")
    provenance.source_revision.cache_clear()
    try:
        assert provenance.source_revision() == "4e4f008 (as given)"
        monkeypatch.delenv(provenance.REVISION_VARIABLE)
        provenance.source_revision.cache_clear()
        assert provenance.source_revision() is None
    finally:
        provenance.source_revision.cache_clear()


def test_summary_gives_the_neurons_angle_mean_with_its_std():
    """DESIGN §5 reports the per-neuron angles as mean ± std over neurons: the summary's
    train section gives both, from the last record (it gave the mean alone)."""
    first = {"phase": "train", "step": 0, "epoch": 0.0, "test_accuracy": 0.1,
             "test_loss": 2.3, "alignment_deg": {"2": 90.0},
             "neuron_alignment_mean_deg": {"2": 89.0}, "neuron_alignment_std_deg": {"2": 15.0}}
    last = {**first, "step": 10, "epoch": 1.0, "neuron_alignment_mean_deg": {"2": 70.0},
            "neuron_alignment_std_deg": {"2": 11.0}}
    train = summarize(spec_for(), [first, last], {}, {}, "numpy")["train"]
    assert train["neuron_alignment_mean_deg"] == {"2": 70.0}
    assert train["neuron_alignment_std_deg"] == {"2": 11.0}


def test_weights_stay_within_array_bounds(tmp_path):
    spec = spec_for(optimizer__lr=0.5, precondition__steps=40)
    trainer = Trainer(spec, tmp_path / "run")
    trainer.run()
    for layer in range(trainer.chip.n_layers):
        w = trainer.chip.weights(layer)
        assert w.min() >= trainer.chip.bounds[layer, 0]
        assert w.max() <= trainer.chip.bounds[layer, 1]
