"""A run's ``summary.json``: the headline numbers derived from its metric log, the
throughput of its training phases and what produced it (:mod:`neurosim.provenance`).

Test-accuracy AUC is the trapezoid area under test accuracy vs epoch divided by the epoch
span (1.0 means 100 % from the start), over the whole run and over the first epoch
(evaluated at the fractional epochs early on).

``train.initial_alignment_deg`` is the alignment when data training starts, so after the
noise phase in a preconditioned run (the angle before it is ``precondition.before``).
A run whose chip's outputs stop being finite numbers (diverged) records where:
``precondition.diverged_at_step`` and ``train.diverged_at_epoch`` (``null`` otherwise); its
metrics from there on are ``null``. ``data_notes`` are the dataset's notes
(:attr:`neurosim.data.loaders.Dataset.notes`: how its images were made, and where a split
is not the official one).
"""

from __future__ import annotations

import math

from neurosim.config import RunSpec
from neurosim.metrics import test_accuracy_auc
from neurosim.provenance import environment
from neurosim.schema import to_plain


def _auc(records: list[dict], end: float | None) -> float | None:
    epochs = [r["epoch"] for r in records]
    accuracy = [float("nan") if r["test_accuracy"] is None else r["test_accuracy"]
                for r in records]  # null in a reloaded log: a diverged chip's
    if len(epochs) < 2 or (end is not None and epochs[-1] < end):
        return None
    return test_accuracy_auc(epochs, accuracy, 0.0, end)


def diverged_at(records: list[dict], loss: str, position: str) -> float | None:
    """``position`` (``step`` or ``epoch``) of the first record whose ``loss`` is not a
    finite number (a chip whose outputs overflowed: its later metrics are blank), or
    ``None`` if every record has one."""
    for record in records:
        value = record.get(loss)
        if value is None or not math.isfinite(value):
            return record[position]
    return None


def _last(records: list[dict], keys: tuple[str, ...]) -> dict:
    return {key: records[-1].get(key) for key in keys} if records else {}


def trained_samples(ledger: dict | None, phase: str, dims: list[int]) -> int:
    """The samples the training steps of ``phase`` (``precondition`` or ``train``) went
    through, short batches counted as they were: the ledger's multiply-accumulates of the
    first layer's forward reads in that phase, ``n_0 * n_1`` per sample, but for those of
    iterative bound management's re-reads."""
    if not isinstance(ledger, dict):
        return 0
    macs = ledger["counts"][phase]["forward"][0]["macs"]
    if "rereads" in ledger:
        macs -= ledger["rereads"][phase]["forward"][0]["cells_read"]
    return macs // (dims[0] * dims[1])


def samples_per_second(results: dict, seconds: dict, dims: list[int]) -> dict:
    """Training throughput of each phase: the samples its steps went through
    (:func:`trained_samples`) per second of step time."""
    out = {}
    for phase in ("precondition", "train"):
        samples = trained_samples(results.get("ledger"), phase, dims)
        if samples and seconds.get(phase):
            out[phase] = samples / seconds[phase]
    return out


def summarize(spec: RunSpec, records: list[dict], results: dict, seconds: dict,
              backend: str) -> dict:
    experiment = spec.experiment
    noise = [r for r in records if r["phase"] == "precondition"]
    train = [r for r in records if r["phase"] == "train"]
    summary = {
        "name": experiment.name, "condition": spec.condition, "seed": spec.seed,
        "rule": experiment.rule, "chip": spec.chip.name, "backend": backend,
        "device": experiment.simulation.device,
        "dims": list(experiment.network.dims), "dataset": experiment.data.dataset,
        "precondition": {"enabled": experiment.precondition.enabled},
        "train": {"epochs": experiment.train.epochs},
        "seconds": dict(seconds),
        "samples_per_second": samples_per_second(results, seconds,
                                                 list(experiment.network.dims)),
        "environment": environment(),
    }
    if experiment.precondition.enabled:
        summary["precondition"].update({
            "regime": experiment.precondition.regime,
            "steps": experiment.precondition.steps,
            "before": results.get("precondition_before"),
            "after": results.get("precondition_after"),
            "final_probe_loss": noise[-1]["probe_loss"] if noise else None,
            "diverged_at_step": diverged_at(noise, "probe_loss", "step"),
        })
    if train:
        summary["train"].update({
            "auc": _auc(train, None),
            "auc_first_epoch": _auc(train, 1.0),
            **_last(train, ("test_accuracy", "test_loss", "train_accuracy", "train_loss",
                            "generalization_gap", "error_gap", "alignment_deg",
                            "neuron_alignment_mean_deg", "neuron_alignment_std_deg",
                            "update_vs_bp_deg",
                            "effective_rank")),
            "initial_alignment_deg": train[0]["alignment_deg"],
            "diverged_at_epoch": diverged_at(train, "test_loss", "epoch"),
        })
    summary["data_notes"] = results.get("data_notes", [])
    summary["final"] = results.get("final")
    summary["ledger"] = results.get("ledger")
    summary["config"] = to_plain(experiment)
    return summary
