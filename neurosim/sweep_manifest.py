"""A sweep folder's manifest, ``sweep.json``: every trial of the sweep and what became of it.

Written atomically (:func:`neurosim.runio.write_json`) when a sweep starts, after every
trial that ends and when it stops, so that it always describes the folder::

    {"name", "sweep_file", "experiment_file", "started", "updated", "finished",
     "scheduler", "workers", "conditions", "baseline",
     "cells": [{"name", "overrides"}],
     "counts": {"done", "failed", "pending"},
     "trials": [{"id", "cell", "condition", "seed", "path", "status", "reused",
                 "seconds", "worker", "chips", "error": {"type", "message", "traceback"}}]}

``scheduler`` and ``workers`` describe the cluster of the last run that had trials to
compute. ``status`` is ``done`` (its ``summary.json`` exists), ``failed`` (``error`` says why;
``traceback`` is a file in the trial's folder) or ``pending`` (not finished: never started,
running, or interrupted; a re-run continues it). ``reused`` marks a trial found finished
when the sweep started, which is never recomputed (its ``seconds`` and ``worker`` are
those of the run that computed it). ``seconds`` is the wall time of the trial's task and
``chips`` the number of trials that task computed at once (1, or a population's size with
the sweep's ``population``: its trials share those seconds). ``path`` is relative to the
sweep folder.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from neurosim.errors import NeurosimError
from neurosim.report import read_json_file
from neurosim.runio import SUMMARY, write_json
from neurosim.sweep_plan import SweepPlan, Trial

MANIFEST = "sweep.json"
STATUSES = ("done", "failed", "pending")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """The manifest of a sweep being run into ``out``."""

    def __init__(self, plan: SweepPlan, out: Path):
        self.out = Path(out)
        previous = _previous_manifest(self.out)
        if previous and previous.get("name") != plan.config.name:
            raise NeurosimError(
                f"{self.out}: holds the sweep '{previous.get('name')}' "
                f"({previous.get('sweep_file')}); the sweep '{plan.config.name}' would "
                "replace its manifest and report: give it another --out")
        self.header = {
            "name": plan.config.name, "sweep_file": str(plan.source),
            "experiment_file": str(plan.experiment_path), "started": _now(),
            "updated": None, "finished": None,
            # the last cluster that computed trials, until this run starts one
            "scheduler": previous.get("scheduler"), "workers": previous.get("workers"),
            "conditions": list(plan.conditions), "baseline": plan.baseline,
            "cells": [{"name": c.name, "overrides": c.overrides} for c in plan.cells]}
        before = {t["id"]: t for t in previous.get("trials", [])}
        self.trials = {}
        for trial in plan.trials:
            done = (trial.run_dir(self.out) / SUMMARY).is_file()
            earlier = before.get(trial.id, {}) if done else {}
            self.trials[trial.id] = {
                "id": trial.id, "cell": trial.cell.name, "condition": trial.spec.condition,
                "seed": trial.spec.seed, "path": trial.id,
                "status": "done" if done else "pending", "reused": done,
                "seconds": earlier.get("seconds"), "worker": earlier.get("worker"),
                "chips": earlier.get("chips"),
                "error": None}

    def pending(self, plan: SweepPlan) -> list[Trial]:
        """The trials of ``plan`` that are not done, in plan order."""
        return [t for t in plan.trials if self.trials[t.id]["status"] != "done"]

    def record(self, trial_id: str, **fields) -> None:
        """Update one trial's entry and write the manifest."""
        self.trials[trial_id].update(fields)
        self.write()

    def counts(self) -> dict:
        statuses = [t["status"] for t in self.trials.values()]
        return {status: statuses.count(status) for status in STATUSES}

    def failures(self) -> list[dict]:
        return [t for t in self.trials.values() if t["status"] == "failed"]

    def write(self, finished: bool = False) -> None:
        self.header["updated"] = _now()
        if finished:
            self.header["finished"] = self.header["updated"]
        write_json(self.out / MANIFEST, {**self.header, "counts": self.counts(),
                                         "trials": list(self.trials.values())})


def _previous_manifest(folder: Path) -> dict:
    """The folder's manifest from an earlier run (empty if there is none)."""
    try:
        return read_manifest(folder)
    except NeurosimError:
        return {}


def read_manifest(folder: Path) -> dict:
    """The manifest of the sweep folder ``folder``."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise NeurosimError(f"{folder}: not a sweep folder (no {MANIFEST}; run neurosim "
                            f"sweep first)")
    return read_json_file(path)
