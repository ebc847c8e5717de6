"""Running a sweep: every trial a Dask task, crash-safe and resumable.

``run_sweep(plan, out, ...)``, under a lock on ``out`` (:mod:`neurosim.locking`):

1. refuses trial folders saved with another configuration (as ``neurosim run --resume``);
2. writes the manifest (:mod:`neurosim.sweep_manifest`); a trial whose ``summary.json``
   exists is done and is never recomputed;
3. submits every other trial as one task (``Client.submit``, a unique key per submission)
   running :func:`run_trial` on a worker: the trial's run folder is made by the same code
   as ``neurosim run`` (:func:`neurosim.runner.run_one`, ``resume=True``), so a trial that
   was interrupted continues from its last checkpoint (atomic files, :mod:`neurosim.runio`);
4. as trials end, records them in the manifest; a progress bar shows done, failed and
   running trials;
5. writes the sweep report (:mod:`neurosim.sweep_report`).

A trial that raises is recorded as failed with its error (type, message, and the traceback
in ``<trial>/traceback.txt``) and the sweep goes on. A worker process that dies is replaced
by its nanny and the scheduler reruns its trials elsewhere (up to Dask's
``distributed.scheduler.allowed-failures`` deaths per trial, then the trial fails with
``KilledWorker``). The run folders must be on a filesystem that every worker sees.
"""

from __future__ import annotations

import os
import queue
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from neurosim.cluster import open_client
from neurosim.errors import CheckpointError
from neurosim.locking import FolderLock
from neurosim.runner import _same_configuration, run_one
from neurosim.runio import SUMMARY, write_text
from neurosim.sweep_manifest import Manifest
from neurosim.sweep_plan import SweepPlan, Trial
from neurosim.sweep_report import write_sweep_report

LOCK = "sweep.lock"
TRACEBACK = "traceback.txt"
POLL_S = 1.0  # seconds between refreshes of the running count


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep did: trial counts by status, reused trials, failures, the report."""

    counts: dict
    reused: int
    failures: list[dict]
    report: Path


def run_trial(spec, run_dir: str, data_dir: str | None, run_report: bool) -> dict:
    """Run one trial into ``run_dir`` (on a worker); returns its manifest fields.

    A trial already finished is left as it is; an error is caught and returned (with its
    traceback written into the trial folder), so that Dask retries only worker deaths."""
    run_dir = Path(run_dir)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if (run_dir / SUMMARY).is_file():
        return {"status": "done", "worker": worker, "error": None}
    start = time.perf_counter()
    try:
        run_one(spec, run_dir, resume=True, progress=False, data_dir=data_dir,
                run_report=run_report)
    except Exception as error:  # recorded in the manifest; the sweep goes on
        write_text(run_dir / TRACEBACK, traceback.format_exc())
        return {"status": "failed", "worker": worker, "seconds": time.perf_counter() - start,
                "error": {"type": type(error).__name__, "message": str(error),
                          "traceback": TRACEBACK}}
    (run_dir / TRACEBACK).unlink(missing_ok=True)
    return {"status": "done", "worker": worker, "seconds": time.perf_counter() - start,
            "error": None}


def check_saved_configs(plan: SweepPlan, out: Path) -> None:
    """Refuse to continue trials whose folders hold another configuration."""
    for trial in plan.trials:
        run_dir = trial.run_dir(out)
        saved = (run_dir / "config.yaml").is_file()
        if saved and not _same_configuration(run_dir, trial.spec):
            raise CheckpointError(f"{run_dir}: this trial was saved with a different "
                                  f"configuration than {plan.source} gives it now; use a new "
                                  f"--out folder")


def _task_failure(future, trial: Trial, out: Path) -> dict:
    """Manifest fields of a task that Dask reports as erred or cancelled (e.g. KilledWorker)."""
    if future.status == "cancelled":
        return {"status": "failed", "error": {"type": "CancelledError",
                                              "message": "the scheduler cancelled the trial",
                                              "traceback": None}}
    error = future.exception()
    text = "".join(traceback.format_exception(type(error), error, future.traceback()))
    write_text(trial.run_dir(out) / TRACEBACK, text)
    return {"status": "failed", "error": {"type": type(error).__name__, "message": str(error),
                                          "traceback": TRACEBACK}}


def _running(client, pending: dict) -> int:
    """Trials executing now: those of ``pending`` on a worker, at most one per thread."""
    on_workers = sum(key in pending for keys in client.processing().values() for key in keys)
    return min(on_workers, sum(client.nthreads().values()))


def _execute(client, trials: list[Trial], manifest: Manifest, out: Path, data_dir: str | None,
             run_reports: bool, progress: bool) -> None:
    ended: queue.Queue = queue.Queue()
    pending = {}
    for trial in trials:
        future = client.submit(run_trial, trial.spec, str(trial.run_dir(out)), data_dir,
                               run_reports, key=f"neurosim-trial-{uuid.uuid4().hex}:{trial.id}")
        pending[future.key] = trial
        future.add_done_callback(ended.put)
    counts, running, asked = manifest.counts(), 0, 0.0
    with tqdm(total=len(manifest.trials), initial=counts["done"], unit="trial",
              desc=manifest.header["name"], disable=None if progress else True) as bar:
        while pending:
            if not bar.disable and time.monotonic() - asked >= POLL_S:
                running, asked = _running(client, pending), time.monotonic()
            bar.set_postfix(done=counts["done"], failed=counts["failed"],
                            running=min(running, len(pending)))
            try:
                future = ended.get(timeout=POLL_S)
            except queue.Empty:
                continue
            trial = pending.pop(future.key)
            fields = (future.result() if future.status == "finished"
                      else _task_failure(future, trial, out))
            future.release()
            manifest.record(trial.id, **fields)
            counts = manifest.counts()
            bar.update(int(fields["status"] == "done"))
            if progress and (bar.disable or fields["status"] == "failed"):
                error = fields.get("error")
                why = f" ({error['type']}: {error['message']})" if error else ""
                bar.write(f"[{counts['done'] + counts['failed']}/{len(manifest.trials)}] "
                          f"{trial.id}: {fields['status']}{why}")
        bar.set_postfix(done=counts["done"], failed=counts["failed"], running=0)


def run_sweep(plan: SweepPlan, out: Path, scheduler: str | None = None,
              workers: int | None = None, data_dir: str | None = None,
              run_reports: bool = False, progress: bool = False) -> SweepOutcome:
    """Run (or continue) every trial of ``plan`` into ``out``; see the module docstring."""
    out = Path(out)
    with FolderLock(out / LOCK, what="another sweep"):
        check_saved_configs(plan, out)
        manifest = Manifest(plan, out)
        manifest.write()
        reused = sum(t["reused"] for t in manifest.trials.values())
        try:
            todo = manifest.pending(plan)
            if todo:
                with open_client(scheduler, workers) as client:
                    manifest.header.update(scheduler=client.scheduler.address,
                                           workers=len(client.nthreads()))
                    _execute(client, todo, manifest, out, data_dir, run_reports, progress)
        finally:
            manifest.write(finished=not manifest.counts()["pending"])
        report = write_sweep_report(out)
    return SweepOutcome(manifest.counts(), reused, manifest.failures(), report)
