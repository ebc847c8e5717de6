"""Sweeps on a real Dask LocalCluster (2 worker processes on loopback): results equal to
direct runs, a worker killed mid-trial, a driver killed mid-sweep, a failing trial, the
folder lock; the sweep file's validation; and a ``neurosim run`` killed mid-training and
resumed to the identical result.

Trials are tiny (digits, [784, 16, 10], a few dozen steps). Crashes are real (SIGKILL);
waits are for events (a file, a process state), with generous deadlines.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from neurosim import sweep as sweep_module
from neurosim.cli import main
from neurosim.cluster import open_client
from neurosim.data.registry import get_spec
from neurosim.data.store import file_path
from neurosim.errors import CheckpointError, ConfigError, NeurosimError
from neurosim.locking import FolderLock, LockedError
from neurosim.runio import to_json, write_text
from neurosim.report import RUN_REPORT
from neurosim.runner import RUN_LOCK, run_one
from neurosim.sweep import TRACEBACK, check_saved_configs, run_sweep, run_trials
from neurosim.sweep_manifest import MANIFEST
from neurosim.sweep_plan import cell_name, load_sweep
from neurosim.train import run_spec
from test_report import write_run

pytestmark = pytest.mark.timeout(600)

DEADLINE_S = 300  # generous: a cold Numba cache compiles every kernel in each worker
EXPERIMENT = {
    "name": "tiny_sweep", "network": {"dims": [784, 16, 10]},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "precondition": {"enabled": False, "n_examples": 128, "steps": 40, "batch_size": 32,
                     "log_every": 10, "checkpoint_every": 10},
    "data": {"dataset": "digits", "train_size": 320, "test_size": 64},
    "train": {"epochs": 2, "batch_size": 32},
    "evaluation": {"train_probe_size": 128, "gradient_probe_size": 32,
                   "noise_probe_size": 128, "ood": [], "fractional_epochs": [0.5],
                   "energy_target": 0.3},
    "seeds": [0, 1],
    "conditions": {"fa": {"rule": "fa"},
                   "fa_noise": {"rule": "fa", "precondition.enabled": True}},
}
SWEEP = {"name": "tiny", "experiment": "experiment.yaml",
         "grid": {"chip": ["ideal", "rram_taox"]}}  # 2 cells x 2 conditions x 2 seeds


def write_sweep(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return path


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S, every_s: float = 0.02):
    """Poll ``condition()`` until it returns something true; fail after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out waiting for {what}")


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def results(summary: dict) -> dict:
    """A summary without its timings (the only fields that differ between equal runs)."""
    return {k: v for k, v in summary.items() if k not in ("seconds", "samples_per_second")}


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def summaries(out: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(out)): p for p in out.glob("*/*/seed*/summary.json")}


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def reference(sweep_file, tmp_path_factory) -> dict[str, Path]:
    """Every trial of the sweep run directly with run_spec: trial id -> run folder."""
    root = tmp_path_factory.mktemp("reference")
    folders = {}
    for trial in load_sweep(sweep_file).trials:
        run_dir = trial.run_dir(root)
        summary = run_spec(trial.spec, run_dir)
        (run_dir / "summary.json").write_text(to_json(summary))
        folders[trial.id] = run_dir
    return folders


def assert_like_reference(out: Path, reference: dict[str, Path]) -> None:
    assert set(summaries(out)) == set(reference)
    for trial_id, expected in reference.items():
        got = out / trial_id
        assert records(got) == records(expected), trial_id
        assert (results(json.loads((got / "summary.json").read_text()))
                == results(json.loads((expected / "summary.json").read_text()))), trial_id


@pytest.fixture(scope="module")
def client():
    """A local cluster of 2 single-threaded worker processes on loopback."""
    with open_client(workers=2) as dask_client:
        dask_client.wait_for_workers(2, timeout=DEADLINE_S)
        yield dask_client


# ----------------------------------------------------------------------------- the file
def test_cell_names_are_readable_and_distinct():
    assert cell_name({}) == "base"
    assert cell_name({"chip": "rram_taox", "optimizer.lr": 0.001}) == \
        "chip=rram_taox,optimizer.lr=0.001"
    odd = [cell_name({"a": "x,b=y"}), cell_name({"a": "x", "b": "y"}),
           cell_name({"a": [1, 2]}), cell_name({"a": "/tmp/chip.yaml"})]
    assert len(set(odd)) == len(odd)
    assert odd[1] == "a=x,b=y" and odd[0] != odd[1]
    assert all(len(cell_name({"k": "v" * n})) <= 120 for n in (10, 200))


def test_sweep_expands_cells_conditions_and_seeds(tmp_path):
    plan = load_sweep(write_sweep(tmp_path, cases=[{"optimizer.lr": 0.01}, {"optimizer.lr": 0.001}],
                                  seeds=[3], baseline="fa_noise"))
    assert [c.name for c in plan.cells] == [
        "optimizer.lr=0.01,chip=ideal", "optimizer.lr=0.01,chip=rram_taox",
        "optimizer.lr=0.001,chip=ideal", "optimizer.lr=0.001,chip=rram_taox"]
    assert len(plan.trials) == 4 * 2 * 1 and plan.baseline == "fa_noise"
    trial = plan.trials[-1]
    assert trial.id == "optimizer.lr=0.001,chip=rram_taox/fa_noise/seed3"
    assert (trial.spec.chip.name, trial.spec.experiment.optimizer.lr) == ("rram_taox", 0.001)
    assert trial.spec.experiment.precondition.enabled


def test_dry_run_lists_the_trial_folders(sweep_file, tmp_path, capsys):
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "chip=ideal" / "fa" / "seed0")
    assert lines[-1].endswith("valid sweep 'tiny': 8 trials in 2 cells x 2 conditions")
    assert not any(tmp_path.iterdir())


def test_a_trial_saved_with_another_configuration_is_refused(sweep_file, tmp_path):
    plan = load_sweep(sweep_file)
    out = tmp_path / "out"
    (out / plan.trials[0].id).mkdir(parents=True)
    (out / plan.trials[0].id / "config.yaml").write_text("name: changed\n")
    with pytest.raises(CheckpointError, match="saved with a different configuration"):
        run_sweep(plan, out, scheduler="tcp://127.0.0.1:9")  # refused before connecting
    assert not (out / RUN_LOCK).exists()


def test_another_sweep_into_a_sweep_folder_is_refused(sweep_file, tmp_path):
    """A different sweep run into a sweep's folder replaced its manifest and report, its
    trials orphaned (an audit); the same sweep continues there (new cells, new seeds)."""
    out = tmp_path / "out"
    out.mkdir()
    other = {"name": "other_sweep", "sweep_file": "sweeps/other.yaml", "trials": []}
    (out / MANIFEST).write_text(json.dumps(other))
    with pytest.raises(NeurosimError, match="holds the sweep 'other_sweep'.*another --out"):
        run_sweep(load_sweep(sweep_file), out, scheduler="tcp://127.0.0.1:9")
    assert json.loads((out / MANIFEST).read_text()) == other and not (out / RUN_LOCK).exists()


def test_a_trial_killed_between_its_configuration_files_is_not_refused(sweep_file, tmp_path,
                                                                      monkeypatch):
    """A worker dies (e.g. with its killed driver) after the first of a trial's two
    configuration files is written: a re-run must continue the trial, not refuse its folder
    as saved with another configuration (the cause of a flaky killed-driver test)."""
    plan = load_sweep(sweep_file)
    out, trial = tmp_path / "out", plan.trials[0]

    class Killed(BaseException):
        pass

    written = []

    def write_then_die(path, text):
        if written:
            raise Killed
        written.append(path)
        write_text(path, text)

    monkeypatch.setattr("neurosim.runner.write_text", write_then_die)
    with pytest.raises(Killed):
        run_one(trial.spec, trial.run_dir(out), resume=True, progress=False, data_dir=None,
                run_report=False)
    monkeypatch.undo()
    assert len(written) == 1
    check_saved_configs(plan, out)  # not refused


@pytest.mark.parametrize("changes, field, allowed", [
    ({"gird": {"chip": ["ideal"]}}, "gird", "unknown field; allowed fields: name, experiment"),
    ({"grid": {"chip": "ideal"}}, "grid.chip", "must be a non-empty list"),
    ({"grid": {"seeds": [[0]]}}, "grid.seeds", "set seeds with the sweep's own field"),
    # a sweep names its conditions in its own field, never through a dotted key (which
    # would add a condition where a name is misspelt, as --set did)
    ({"overrides": {"conditions.fa_nosie.rule": "bp"}}, "overrides.conditions.fa_nosie.rule",
     "set conditions with the sweep's own field"),
    ({"cases": [{"conditions.fa.rule": "bp"}]}, "cases[0].conditions.fa.rule",
     "set conditions with the sweep's own field"),
    ({"grid": {"chip": ["no_such_chip"]}}, "grid.chip[0]", "must be a preset"),
    ({"grid": {"optimizer.lr": [0.1, -1.0]}}, "grid.optimizer.lr[1]", "must be > 0.0"),
    ({"overrides": {"optimizer.lr": -1.0}}, "overrides.optimizer.lr", "must be > 0.0"),
    ({"baseline": "bp"}, "baseline", "must be one of the conditions: fa, fa_noise"),
    ({"experiment": "missing.yaml"}, "experiment", "does not exist"),
    # a repeated grid value was blamed on a cases[0] the file did not have, and 0.001 and
    # 1e-3 (text to PyYAML) made two cells training the same rate (audit)
    ({"grid": {"chip": ["ideal", "ideal"]}}, "grid.chip", "repeats the value 'ideal'"),
    ({"name": "../../escape"}, "name", "the sweep's name names a results folder"),
    ({"conditions": {}}, "conditions", "at least one condition"),
    # errors in the sweep file's own conditions were attributed to the base experiment
    ({"conditions": {"fa": {"rulez": "fa"}}}, "conditions.fa.rulez", "unknown field"),
    ({"conditions": {"bad/name": {}}}, "conditions", "a condition's name"),
    ({"grid": {"optimizer.lr": [0.001, "1e-3"]}}, "grid.optimizer.lr",
     "repeats the value 0.001"),
    ({"cases": [{"optimizer.lr": 0.001}, {"optimizer.lr": "1e-3"}]}, "cases[1]",
     "repeats the cell optimizer.lr=0.001"),
    # the sweep file's repeated seeds were blamed on the base experiment, which has none
    ({"seeds": [1, 1]}, "seeds", "must be distinct"),
])
def test_bad_sweep_files_are_refused_with_file_field_and_allowed_values(tmp_path, changes,
                                                                        field, allowed):
    path = write_sweep(tmp_path, **changes)
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    assert error.value.source.startswith(str(path))
    assert error.value.path == field and allowed in error.value.allowed


# ------------------------------------------------------------------------- on a cluster
def test_sweep_runs_every_trial_as_run_spec_does(client, sweep_file, reference, tmp_path,
                                                 monkeypatch):
    out = tmp_path / "out"
    outcome = run_sweep(load_sweep(sweep_file), out, scheduler=client.scheduler.address)
    assert outcome.counts == {"done": 8, "failed": 0, "pending": 0}
    assert_like_reference(out, reference)
    saved = manifest(out)
    assert saved["finished"] and {t["status"] for t in saved["trials"]} == {"done"}
    assert len({t["worker"] for t in saved["trials"]}) == 2  # both workers took trials
    report = (out / "report.md").read_text()
    assert "| chip=rram_taox | fa_noise |" in report and "paired t-test, n=2" in report
    for name in ("sweep_trials.csv", "sweep_summary.csv", "sweep_tests.csv",
                 "figures/sweep_test_accuracy.png", "chip=ideal/report.md"):
        assert (out / name).is_file(), name
    assert len((out / "sweep_trials.csv").read_text().splitlines()) == 1 + 8
    # run again: nothing to compute, no cluster; the manifest still names the one that did
    again = run_sweep(load_sweep(sweep_file), out)
    assert again.counts == outcome.counts and again.reused == 8
    kept = manifest(out)
    assert kept["scheduler"] == saved["scheduler"] == client.scheduler.address
    assert kept["workers"] == saved["workers"] == 2
    # again with run reports: the trials done without theirs get them (a trial found done is
    # never run again), nothing is computed; a third time has none to write
    asked = []

    def write_run_reports(run_dirs, processes):
        asked.extend(run_dirs)
        for run_dir in run_dirs:
            (run_dir / RUN_REPORT).write_text("a report")

    monkeypatch.setattr(sweep_module, "write_run_reports", write_run_reports)
    for expected in (sorted(out / trial for trial in reference), []):
        asked.clear()
        assert run_sweep(load_sweep(sweep_file), out, run_reports=True).reused == 8
        assert sorted(asked) == expected


@pytest.fixture
def no_report(monkeypatch):
    """Skip the sweep report where a test does not look at it (seconds of figures)."""
    monkeypatch.setattr("neurosim.sweep.write_sweep_report", lambda out: out / "report.md")


def test_a_killed_worker_is_replaced_and_its_trial_rerun(client, sweep_file, reference,
                                                         tmp_path, no_report):
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(run_sweep, load_sweep(sweep_file), out,
                            scheduler=client.scheduler.address)

        def stopped_worker_with_unfinished_trial():
            """Freeze a worker that is running a trial; the trials it was running."""
            for address, keys in client.processing().items():
                trials = [k.split(":", 1)[1] for k in keys if k.startswith("neurosim-trial")]
                if not trials or address not in pids:
                    continue
                os.kill(pids[address], signal.SIGSTOP)  # now nothing on it can finish
                unfinished = [t for t in trials if not (out / t / "summary.json").exists()
                              and (out / t / "metrics.jsonl").exists()]
                if unfinished:
                    return pids[address], unfinished
                os.kill(pids[address], signal.SIGCONT)
            return None

        pid, interrupted = wait_for(stopped_worker_with_unfinished_trial,
                                    "a worker running a trial")
        os.kill(pid, signal.SIGKILL)
        outcome = sweep.result(timeout=DEADLINE_S)
    assert outcome.counts == {"done": 8, "failed": 0, "pending": 0}
    assert_like_reference(out, reference)
    workers = {t["id"]: t["worker"] for t in manifest(out)["trials"]}
    for trial_id in interrupted:
        assert workers[trial_id] != f"{socket.gethostname()}:{pid}", trial_id
    client.wait_for_workers(2, timeout=DEADLINE_S)  # the nanny started a new worker
    assert pid not in client.run(os.getpid).values()


def test_population_sweep_runs_every_trial_as_run_spec_does(client, sweep_file, reference,
                                                           tmp_path, no_report):
    """Trials that share the hardware (one chip's cell: 2 conditions x 2 seeds) simulated as
    populations of at most 3 chips: a task of 3 trials and one of 1 per chip."""
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--quiet", "--scheduler",
                 client.scheduler.address, "--population-chips", "3"]) == 0
    assert_like_reference(out, reference)
    trials = manifest(out)["trials"]
    assert sorted(t["chips"] for t in trials) == [1, 1, 3, 3, 3, 3, 3, 3]
    for chips in (1, 3):  # the trials of one task share its worker and seconds
        tasks = {(t["worker"], t["seconds"]) for t in trials if t["chips"] == chips}
        assert len(tasks) == 2


def test_two_tasks_of_one_trial_compute_it_once(client, sweep_file, reference, tmp_path):
    """As when a driver killed mid-sweep is started again while its workers still compute
    their trials: both drivers' tasks of a trial start at once on the two workers. One
    computes it; the other waits for the trial's lock and finds it done."""
    trial = load_sweep(sweep_file).trials[0]
    run_dir = trial.run_dir(tmp_path / "out")
    tasks = [client.submit(run_trials, [trial.spec], [str(run_dir)], None, False, False,
                           key=f"twice-{k}", workers=[address], allow_other_workers=False)
             for k, address in enumerate(client.nthreads())]
    fields = [task.result(timeout=DEADLINE_S)[0] for task in tasks]
    assert [f["status"] for f in fields] == ["done", "done"]
    assert sorted("seconds" in f for f in fields) == [False, True]  # computed once
    assert records(run_dir) == records(reference[trial.id])


@pytest.mark.parametrize("population", [None, 8])
def test_a_failing_trial_is_reported_and_the_others_complete(client, tmp_path, capsys,
                                                             population):
    """Alone, or in a population with the trials that complete (one task of 8 chips). The
    failure comes at run time, on the worker: a data folder whose USPS files are corrupt
    (refused, never fetched again), which no validation of the sweep file can see."""
    data = tmp_path / "data"
    usps = get_spec("usps")
    for file in usps.train + usps.test:
        corrupt = file_path(usps, file, data)
        corrupt.parent.mkdir(parents=True, exist_ok=True)
        corrupt.write_bytes(b"not the USPS data")
    path = write_sweep(tmp_path, grid={"data.dataset": ["digits", "usps"]},
                       population=population and {"max_chips": population})
    out = tmp_path / "out"
    status = main(["sweep", str(path), "--out", str(out), "--quiet", "--data-dir", str(data),
                   "--scheduler", client.scheduler.address])
    printed = capsys.readouterr().out
    assert status == 1
    assert "8 trials: 4 done (0 already done before), 4 failed, 0 unfinished" in printed
    assert f"4 x DataError: {data / usps.dirname}" in printed
    saved = manifest(out)
    assert saved["counts"] == {"done": 4, "failed": 4, "pending": 0}
    for trial in saved["trials"]:
        failed = trial["cell"] == "data.dataset=usps"
        assert trial["status"] == ("failed" if failed else "done")
        assert trial["chips"] == (population or 1)
        if failed:
            assert trial["error"]["type"] == "DataError"
            assert "Traceback" in (out / trial["path"] / TRACEBACK).read_text()
    report = (out / "report.md").read_text()
    assert "## Failed trials (4)" in report and "data.dataset=usps/fa/seed0" in report


# ------------------------------------------------------------------- the driver crashes
def test_a_killed_driver_is_continued_without_recomputing_finished_trials(sweep_file,
                                                                          reference,
                                                                          tmp_path,
                                                                          no_report):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "neurosim.cli", "sweep", str(sweep_file), "--out",
               str(out), "--workers", "2", "--quiet"]
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(summaries(out)) >= 2 or driver.poll() is not None,
                 "two finished trials", every_s=0.01)
        assert driver.poll() is None, "the sweep ended before it could be killed"
        workers = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, "the worker processes outlived their driver"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever is left of that session
        except ProcessLookupError:
            pass
    finished = {k: p.stat().st_mtime_ns for k, p in summaries(out).items()}
    assert 2 <= len(finished) < 8
    assert (out / RUN_LOCK).exists()  # left behind by the killed driver: stale
    leftover = next(iter(summaries(out).values())).with_name(".checkpoint.npz.k1Lled_w.tmp")
    leftover.write_bytes(b"a checkpoint cut short")  # as a worker killed mid-write leaves

    assert main(["sweep", str(sweep_file), "--out", str(out), "--workers", "2",
                 "--quiet"]) == 0
    assert not leftover.exists()
    assert_like_reference(out, reference)
    now = {k: p.stat().st_mtime_ns for k, p in summaries(out).items()}
    assert {k: now[k] for k in finished} == finished  # finished trials were not recomputed
    reused = {t["id"] for t in manifest(out)["trials"] if t["reused"]}
    assert reused == set(finished)
    assert not (out / RUN_LOCK).exists()


def test_local_workers_run_numba_and_blas_on_one_thread_under_the_neurosim_command(tmp_path):
    """A spawned worker re-imports its parent's main module first; the ``neurosim`` command
    imports Numba there, which read its thread count before Dask's ``env=`` applied (an
    audit found 2-thread Numba in every worker: populations 4x slower, cores oversubscribed).
    A main module that imports the command, as the console script does, reproduces it.
    The driver's own Numba keeps its thread count and can compile while the cluster runs
    and after it: the limits once sat in the driver's environment, and a Numba that had
    started its threads there raised at its next compilation."""
    script = tmp_path / "command.py"
    script.write_text(
        "from neurosim.cli import main  # what the neurosim console script imports first\n"
        "if __name__ == '__main__':\n"
        "    import json, os\n"
        "    import numba, numpy\n"
        "    from neurosim.cluster import open_client\n"
        "    def threads():\n"
        "        from threadpoolctl import threadpool_info\n"
        "        return [numba.config.NUMBA_NUM_THREADS, numba.get_num_threads(),\n"
        "                max([p['num_threads'] for p in threadpool_info()] or [1])]\n"
        "    def compiled_here(n):\n"
        "        total = numba.njit(parallel=True)(lambda a: a.sum())  # a new compilation\n"
        "        return float(total(numpy.ones(n)))\n"
        "    with open_client(workers=1) as client:\n"
        "        print(json.dumps(list(client.run(threads).values())))\n"
        "        compiled_here(10)  # starts the driver's Numba threads\n"
        "    compiled_here(20)\n"
        "    print(json.dumps([numba.config.NUMBA_NUM_THREADS, numba.get_num_threads(),\n"
        "                      numba.config.NUMBA_DEFAULT_NUM_THREADS]))\n"
        "    print(json.dumps(os.environ.get('NUMBA_NUM_THREADS')))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS",
                                                             "OMP_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout.splitlines()
    assert json.loads(out[-3]) == [[1, 1, 1]]
    driver = json.loads(out[-2])
    assert driver[0] == driver[1] == driver[2]  # the driver's default thread count
    assert json.loads(out[-1]) is None  # the driver's environment was not changed


@pytest.mark.parametrize("answer", [b"HTTP/1.0 426 Upgrade Required\r\n\r\n", None],
                         ids=["http", "silent"])
def test_a_scheduler_address_where_no_dask_scheduler_listens_is_one_line(monkeypatch, answer):
    """An HTTP server there made Dask read a frame length of exbibytes (a MemoryError
    traceback); a silent one hung the command past its connect timeout (an audit)."""
    import threading

    from neurosim import cluster
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2)
    server = socket.create_server(("127.0.0.1", 0))
    connections = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connections.append(connection)
            if answer is not None:
                connection.sendall(answer)
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    try:
        with pytest.raises(cluster.NeurosimError) as error:
            with open_client(address):
                pass
    finally:
        server.close()
        for connection in connections:
            connection.close()
    assert time.monotonic() - start < 2 + 5 + 5
    message = str(error.value)
    assert "\n" not in message and f"cannot connect to the Dask scheduler at {address}" in message


# ----------------------------------------------------------------------------- the lock
def test_a_sweep_on_a_folder_another_command_is_writing_fails_fast(sweep_file, tmp_path,
                                                                    capsys):
    """A second sweep, or a sweep into a folder that ``neurosim run`` is writing (the sweep
    locked ``sweep.lock``, a name of its own, and the two wrote the same folder)."""
    out = tmp_path / "out"
    with FolderLock(out / RUN_LOCK, what="neurosim run"):
        start = time.monotonic()
        assert main(["sweep", str(sweep_file), "--out", str(out)]) == 2
        assert time.monotonic() - start < 10
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith(f"error: {out}: locked by neurosim run (pid {os.getpid()} on "
                            f"{socket.gethostname()}")
    assert f"delete {out / RUN_LOCK} if it is no longer running" in error
    assert not (out / MANIFEST).exists()


def write_finished_sweep(out: Path, cells=("ideal",), conditions=("fa", "fa_noise"),
                         seeds=(0, 1), **summary_kw) -> Path:
    """A sweep folder as a finished sweep leaves it, by hand: ``sweep.json`` and each
    trial's run folder (:func:`test_report.write_run`: summary.json, metrics.jsonl)."""
    trials = []
    for cell in cells:
        for condition in conditions:
            for seed in seeds:
                write_run(out / cell, condition, seed, noise=condition != "fa", **summary_kw)
                path = f"{cell}/{condition}/seed{seed}"
                trials.append({"id": path, "cell": cell, "condition": condition, "seed": seed,
                               "path": path, "status": "done", "reused": False,
                               "seconds": 1.0, "worker": "w", "chips": 1, "error": None})
    write_text(out / MANIFEST, to_json({
        "name": "tiny", "sweep_file": "sweep.yaml", "experiment_file": "experiment.yaml",
        "started": None, "updated": None, "finished": None, "scheduler": None,
        "workers": None, "conditions": list(conditions), "baseline": conditions[0],
        "cells": [{"name": cell, "overrides": {"chip": cell}} for cell in cells],
        "counts": {"done": len(trials), "failed": 0, "pending": 0}, "trials": trials}))
    return out


def test_a_sweep_report_on_a_folder_a_sweep_is_writing_is_refused(tmp_path, capsys):
    """``neurosim sweep-report`` wrote the report files of a folder whose sweep was still
    running (which writes the same files when its last trial ends) without a lock: it holds
    the folder's run.lock, and refuses a locked folder at once."""
    out = write_finished_sweep(tmp_path / "out")
    with FolderLock(out / RUN_LOCK, what="neurosim sweep"):
        assert main(["sweep-report", str(out)]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: {out}: locked by neurosim sweep (pid {os.getpid()}")
    assert not (out / "report.md").exists() and not (out / "ideal" / "report.md").exists()
    assert main(["sweep-report", str(out)]) == 0  # once it is done
    assert (out / "report.md").is_file() and not (out / RUN_LOCK).exists()
    assert main(["sweep-report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing: no such folder")
    assert not (tmp_path / "missing").exists()


def test_the_sweep_report_names_the_trials_that_diverged(tmp_path, capsys):
    """A trial whose chip diverged is ``done``; its blank metrics left the means (n=2 of 3
    seeds) and only its cell's comparison said why, not the sweep's report or CSV."""
    out = write_finished_sweep(tmp_path / "out", seeds=(0, 1, 2))
    path = out / "ideal" / "fa" / "seed2" / "summary.json"
    summary = json.loads(path.read_text())
    summary["train"].update(diverged_at_epoch=1.0, test_accuracy=None, alignment_deg={"2": None})
    path.write_text(json.dumps(summary))
    assert main(["sweep-report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert ("## Diverged trials (1)\n\nThe chip's outputs stopped being finite numbers: the "
            "run's metrics from there on are blank and left out of the means.\n\n"
            "- `ideal/fa/seed2`: data training, epoch 1\n") in report
    assert "| ideal | fa | 85.00 ± 0.00 % (n=2) |" in report
    with open(out / "sweep_trials.csv") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows["ideal/fa/seed2"]["diverged"] == "data training, epoch 1"
    assert rows["ideal/fa/seed2"]["status"] == "done" and rows["ideal/fa/seed2"]["test_accuracy"] == ""
    assert rows["ideal/fa/seed1"]["diverged"] == ""
    capsys.readouterr()


def test_the_report_of_a_killed_sweep_counts_and_names_trials_by_their_folders(tmp_path,
                                                                                capsys):
    """The report of a killed sweep took its counts from ``sweep.json`` and its numbers
    from the summaries on disk: a trial a worker finished after the driver died was
    'pending' in the header yet in the means, one whose summary is gone 'done' yet in no
    mean, and unfinished trials were never named."""
    out = write_finished_sweep(tmp_path / "out", seeds=(0, 1, 2))
    record = manifest(out)
    for trial in record["trials"]:  # as the killed driver last wrote it
        trial["status"] = "done" if trial["seed"] == 0 else "pending"
    record["counts"] = {"done": 2, "failed": 0, "pending": 4}
    write_text(out / MANIFEST, to_json(record))
    (out / "ideal" / "fa_noise" / "seed0" / "summary.json").unlink()  # 'done', yet no summary
    assert main(["sweep-report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "6 trials (5 done, 0 failed, 1 unfinished)" in report
    assert "## Unfinished trials (1)\n" in report and "- `ideal/fa_noise/seed0`\n" in report
    assert "| ideal | fa | 85.00 ± 0.00 % (n=3) |" in report
    assert "| ideal | fa_noise | 85.00 ± 0.00 % (n=2) |" in report
    with open(out / "sweep_trials.csv") as handle:
        statuses = {row["id"]: row["status"] for row in csv.DictReader(handle)}
    assert statuses == {t["id"]: "pending" if t["id"] == "ideal/fa_noise/seed0" else "done"
                        for t in record["trials"]}
    capsys.readouterr()


def test_the_sweep_report_says_when_no_trial_reached_the_target(tmp_path, capsys):
    """A condition whose trials never reached the target accuracy showed '—' for its
    energy to target, as a value that is missing, beside a preconditioned condition that
    reached it: that it was never reached is the result."""
    out = write_finished_sweep(tmp_path / "out")
    for path in out.glob("*/*/seed*/summary.json"):
        summary = json.loads(path.read_text())
        reached = path.parts[-3] == "fa_noise" and summary["seed"] == 0
        summary["ledger"] = {"energy_pj": {"total": 5e9}, "to_target": {
            "target": 0.8, "reached": reached, "energy_pj": 4e9 if reached else None}}
        path.write_text(json.dumps(summary))
    assert main(["sweep-report", str(out)]) == 0
    rows = [line for line in (out / "report.md").read_text().splitlines()
            if line.startswith("| ideal |")]
    assert rows[0].endswith("| 5 ± 0 mJ (n=2) | not reached (0 of 2) |")
    assert rows[1].endswith("| 5 ± 0 mJ (n=2) | 4 mJ (n=1 of 2) |")
    capsys.readouterr()


def test_sweep_figures_keep_their_titles_inside_the_figure(tmp_path, monkeypatch):
    """The energy-to-target figure of a small sweep (one cell, two conditions: a narrow
    figure) cut its one-line title at both ends ('to target: ... no trial reached i')."""
    from neurosim import plots, sweep_report

    drawn = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: drawn.append(fig) or path)
    entry = {"n": 3, "mean": 4.3e9, "std": 1.4e8}
    stats = {("chip=ideal", "fa"): {"energy_to_target_pj": {"n": 0, "mean": math.nan,
                                                            "std": math.nan}},
             ("chip=ideal", "fa_noise"): {"energy_to_target_pj": entry}}
    sweep_report.figure_metric(["chip=ideal"], ["fa", "fa_noise"], stats,
                               "energy_to_target_pj", tmp_path / "figure.png")
    (figure,) = drawn
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    title = figure.axes[0].title.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= figure.bbox.x1
    assert "no bar: no trial reached it" in figure.axes[0].get_title()


def test_a_stale_lock_is_taken_over_and_a_foreign_host_lock_is_not(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / RUN_LOCK
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": 0.0}))
    with FolderLock(lock) as held:
        assert json.loads(lock.read_text())["token"] == held.owner["token"]
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": 0.0}))
    with pytest.raises(LockedError, match="on elsewhere, which cannot be checked"):
        FolderLock(lock).acquire()


# --------------------------------------------------------------- a single run, SIGKILLed
RUN = {**EXPERIMENT, "name": "tiny_run", "seeds": [0],
       "precondition": {**EXPERIMENT["precondition"], "enabled": True, "steps": 600,
                        "log_every": 20, "checkpoint_every": 20},
       "train": {"epochs": 3, "batch_size": 32},
       "conditions": None}


def test_a_run_killed_mid_training_resumes_to_the_identical_result(tmp_path):
    experiment = tmp_path / "run.yaml"
    experiment.write_text(yaml.safe_dump(RUN))
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    run_dir = cut / "default" / "seed0"
    command = [sys.executable, "-m", "neurosim.cli", "run", str(experiment), "--out",
               str(cut), "--quiet", "--no-run-reports"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run_dir / "checkpoint.npz").exists() or process.poll() is not None,
                 "the first checkpoint", every_s=0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (run_dir / "checkpoint.npz").exists() and not (run_dir / "summary.json").exists()

    assert main(["run", str(experiment), "--out", str(cut), "--resume", "--quiet",
                 "--no-run-reports"]) == 0
    assert main(["run", str(experiment), "--out", str(whole), "--quiet",
                 "--no-run-reports"]) == 0
    reference = whole / "default" / "seed0"
    assert records(run_dir) == records(reference)
    resumed = json.loads((run_dir / "summary.json").read_text())
    uninterrupted = json.loads((reference / "summary.json").read_text())
    for key in ("precondition", "train", "final", "ledger"):
        assert resumed[key] == uninterrupted[key], key
