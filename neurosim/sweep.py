"""Running a sweep: every trial a Dask task, crash-safe and resumable.

``run_sweep(plan, out, ...)``, under the lock on ``out`` that every command writing a folder
takes (:mod:`neurosim.locking`, :data:`neurosim.runner.RUN_LOCK`):

1. refuses trial folders saved with another configuration (as ``neurosim run --resume``);
2. writes the manifest (:mod:`neurosim.sweep_manifest`); a trial whose ``summary.json``
   exists is done and is never recomputed;
3. submits every other trial as one task (``Client.submit``, a unique key per submission)
   running :func:`run_trials` on a worker: the trial's run folder is made by the same code
   as ``neurosim run`` (:func:`neurosim.runner.run_one`, ``resume=True``), so a trial that
   was interrupted continues from its last checkpoint (atomic files, :mod:`neurosim.runio`).
   The task holds the trial's lock on the scheduler (:func:`trial_lock`), so that a trial
   submitted again while a dead driver's worker still computes it is computed once.
   With the sweep's ``population``, a task is a population of trials instead
   (:func:`population_tasks`, :func:`neurosim.runner.run_together`);
4. as trials end, records them in the manifest; a progress bar shows done, failed and
   running trials;
5. writes the sweep report (:mod:`neurosim.sweep_report`).

A trial that raises is recorded as failed with its error (type, message, and the traceback
in ``<trial>/traceback.txt``) and the sweep goes on; an error in a population fails the
trials of its task that were not finished. A worker process that dies is replaced
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from distributed import Lock
from tqdm import tqdm

from neurosim.backends import check_available
from neurosim.cluster import open_client
from neurosim.cores import available_cores
from neurosim.errors import CheckpointError
from neurosim.locking import FolderLock
from neurosim.report import RUN_REPORT, write_run_reports
from neurosim.runner import (RUN_LOCK, configuration_differences, population_members,
                             run_one, run_together)
from neurosim.runio import SUMMARY, remove_leftover_temporaries, write_text
from neurosim.schema import differences_text
from neurosim.sweep_manifest import Manifest
from neurosim.sweep_plan import SweepPlan, Trial
from neurosim.sweep_report import write_sweep_report

TRACEBACK = "traceback.txt"
POLL_S = 1.0  # seconds between refreshes of the running count


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep did: trial counts by status, reused trials, failures, the report."""

    counts: dict
    reused: int
    failures: list[dict]
    report: Path


def trial_lock(run_dir: Path) -> Lock:
    """The scheduler's lock on a trial folder, held by the task computing the trial.

    A sweep driver that dies leaves its workers computing their trials (Dask cannot stop a
    running task); a driver started again at once submits those trials anew, and two tasks
    would write one folder. The second waits for the first instead, then finds the trial
    done. The lock is a lease that its worker renews: a worker that dies loses it after
    ``distributed.scheduler.locks.lease-timeout`` (30 s), so the trial's rerun elsewhere
    is only delayed."""
    return Lock(f"neurosim-trial:{Path(run_dir).resolve()}")


def run_trials(specs: list, run_dirs: list[str], data_dir: str | None, run_report: bool,
               together: bool) -> list[dict]:
    """Run the trials ``specs`` into ``run_dirs`` (on a worker, holding each trial's
    :func:`trial_lock`): each alone (:func:`neurosim.runner.run_one`), or with
    ``together`` all of them as one population (:func:`neurosim.runner.run_together`);
    returns each trial's manifest fields.

    Trials already finished are left as they are. A trial's error is caught and returned
    (its traceback written into its folder) while the other trials go on, so that Dask
    retries only worker deaths; an error of a population's step fails its unfinished
    trials. ``seconds`` is the wall time of the trial (in a population: of the task) and
    ``chips`` the number of trials computed at once."""
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    with ExitStack() as held:
        for run_dir in sorted(run_dirs):  # one order for every task: no deadlock
            held.enter_context(trial_lock(run_dir))
        return _run_held_trials(specs, run_dirs, data_dir, run_report, together)


def _run_held_trials(specs: list, run_dirs: list[Path], data_dir: str | None,
                     run_report: bool, together: bool) -> list[dict]:
    """:func:`run_trials` once its trials' locks are held."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    fields = [{"status": "done", "worker": worker, "error": None} for _ in run_dirs]
    todo = [k for k, run_dir in enumerate(run_dirs) if not (run_dir / SUMMARY).is_file()]
    chips = len(todo) if together else 1
    errors: dict[int, tuple[Exception, str]] = {}

    def failed(k: int, error: Exception) -> None:
        errors[k] = error, "".join(traceback.format_exception(error))

    seconds: dict[int, float] = {}
    if together and todo:
        start = time.perf_counter()
        try:
            run_together([specs[k] for k in todo], [run_dirs[k] for k in todo], resume=True,
                         data_dir=data_dir, on_error=lambda i, error: failed(todo[i], error))
            if run_report:
                write_run_reports([run_dirs[k] for k in todo if k not in errors], processes=1)
        except Exception as error:  # the population itself: every unfinished trial
            for k in todo:
                errors.setdefault(k, (error, traceback.format_exc()))
        seconds = dict.fromkeys(todo, time.perf_counter() - start)
    else:
        for k in todo:
            start = time.perf_counter()
            try:
                run_one(specs[k], run_dirs[k], resume=True, progress=False, data_dir=data_dir,
                        run_report=run_report)
            except Exception as error:
                failed(k, error)
            seconds[k] = time.perf_counter() - start
    for k in todo:
        fields[k].update(seconds=seconds[k], chips=chips)
        if k in errors:  # recorded in the manifest; the sweep goes on
            error, text = errors[k]
            write_text(run_dirs[k] / TRACEBACK, text)
            fields[k].update(status="failed", error={"type": type(error).__name__,
                                                     "message": str(error),
                                                     "traceback": TRACEBACK})
        else:
            (run_dirs[k] / TRACEBACK).unlink(missing_ok=True)
    return fields


def population_tasks(trials: list[Trial], max_chips: int | None) -> list[list[Trial]]:
    """The trials of each task: one each (``max_chips`` None), or the trials that share
    their hardware (:func:`neurosim.runner.population_members`, across cells and
    conditions) in parts of at most ``max_chips``, in plan order."""
    if max_chips is None:
        return [[trial] for trial in trials]
    return [[trials[i] for i in members] for members in population_members(
        [trial.spec for trial in trials], across_conditions=True, max_chips=max_chips)]


def check_saved_configs(plan: SweepPlan, out: Path) -> None:
    """Refuse to continue trials whose folders hold another configuration."""
    for trial in plan.trials:
        run_dir = trial.run_dir(out)
        saved = (run_dir / "config.yaml").is_file()
        differences = configuration_differences(run_dir, trial.spec) if saved else []
        if differences:
            raise CheckpointError(f"{run_dir}: this trial was saved with a different "
                                  f"configuration than {plan.source} gives it now "
                                  f"({differences_text(differences)}); use a new --out folder")


def _task_failure(future, task: list[Trial], out: Path) -> list[dict]:
    """Manifest fields of the trials of a task that Dask reports as erred or cancelled
    (e.g. KilledWorker)."""
    if future.status == "cancelled":
        return [{"status": "failed", "error": {"type": "CancelledError",
                                               "message": "the scheduler cancelled the trial",
                                               "traceback": None}} for _ in task]
    error = future.exception()
    text = "".join(traceback.format_exception(type(error), error, future.traceback()))
    for trial in task:
        write_text(trial.run_dir(out) / TRACEBACK, text)
    return [{"status": "failed", "error": {"type": type(error).__name__,
                                           "message": str(error), "traceback": TRACEBACK}}
            for _ in task]


def _running(client, pending: dict) -> int:
    """Trials executing now: those of the tasks of ``pending`` on a worker, at most one
    task per thread."""
    threads = client.nthreads()
    running = 0
    for address, keys in client.processing().items():
        tasks = [pending[key] for key in keys if key in pending][:threads.get(address, 1)]
        running += sum(len(task) for task in tasks)
    return running


def _execute(client, tasks: list[list[Trial]], manifest: Manifest, out: Path,
             data_dir: str | None, run_reports: bool, progress: bool) -> None:
    ended: queue.Queue = queue.Queue()
    pending = {}
    for task in tasks:
        name = task[0].id + (f"+{len(task) - 1}" if len(task) > 1 else "")
        future = client.submit(run_trials, [trial.spec for trial in task],
                               [str(trial.run_dir(out)) for trial in task], data_dir,
                               run_reports, len(task) > 1,
                               key=f"neurosim-trial-{uuid.uuid4().hex}:{name}")
        pending[future.key] = task
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
            task = pending.pop(future.key)
            outcomes = (future.result() if future.status == "finished"
                        else _task_failure(future, task, out))
            future.release()
            for trial, fields in zip(task, outcomes):
                manifest.record(trial.id, **fields)
                counts = manifest.counts()
                bar.update(int(fields["status"] == "done"))
                if progress and (bar.disable or fields["status"] == "failed"):
                    error = fields.get("error")
                    why = f" ({error['type']}: {error['message']})" if error else ""
                    bar.write(f"[{counts['done'] + counts['failed']}/{len(manifest.trials)}] "
                              f"{trial.id}: {fields['status']}{why}")
        bar.set_postfix(done=counts["done"], failed=counts["failed"], running=0)


def reports_missing(out: Path, manifest: Manifest) -> list[Path]:
    """The folders of the trials done without their run report: made by a sweep without
    ``run_reports``, or whose report failed after the trial's numbers were saved (a trial
    found done is never run again, so its report is written here)."""
    return [out / t["path"] for t in manifest.trials.values()
            if t["status"] == "done" and not (out / t["path"] / RUN_REPORT).is_file()]


def run_sweep(plan: SweepPlan, out: Path, scheduler: str | None = None,
              workers: int | None = None, data_dir: str | None = None,
              run_reports: bool = False, progress: bool = False) -> SweepOutcome:
    """Run (or continue) every trial of ``plan`` into ``out``; see the module docstring. A
    local cluster's trials need their backends here (checked before any starts); a
    scheduler's workers may have what this machine lacks (a GPU)."""
    out = Path(out)
    if scheduler is None:
        check_available((t.spec.experiment.simulation for t in plan.trials), plan.source)
    with FolderLock(out / RUN_LOCK, what="neurosim sweep"):
        if scheduler is None:  # a scheduler's workers may outlive a killed driver, writing
            remove_leftover_temporaries(out)
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
                    population = plan.config.population
                    tasks = population_tasks(todo, population and population.max_chips)
                    _execute(client, tasks, manifest, out, data_dir, run_reports, progress)
        finally:
            manifest.write(finished=not manifest.counts()["pending"])
        report = write_sweep_report(out)
        if run_reports:
            write_run_reports(reports_missing(out, manifest), processes=available_cores())
    return SweepOutcome(manifest.counts(), reused, manifest.failures(), report)
