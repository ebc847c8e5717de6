"""``neurosim run`` end to end: outputs, resume, and bad data reported as one line."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, data_dir

from neurosim.cli import main
from neurosim.locking import FolderLock
from neurosim.runner import RUN_LOCK
from neurosim.data import store

TINY = {
    "name": "tiny_cli", "network": {"dims": [784, 16, 10]},
    "optimizer": {"lr": 3e-3},
    "precondition": {"steps": 20, "n_examples": 128, "batch_size": 32, "log_every": 10},
    "data": {"dataset": "digits", "train_size": 256, "test_size": 64},
    "train": {"epochs": 1, "batch_size": 32},
    "evaluation": {"train_probe_size": 128, "noise_probe_size": 256, "ood": ["rotate"],
                   "ood_rotations_deg": [20.0]},
    "seeds": [0],
    "conditions": {"fa": {"rule": "fa"}, "fa_noise": {"rule": "fa", "precondition.enabled": True}},
}


@pytest.fixture
def offline(monkeypatch):
    def refuse(url, destination):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(store, "download", refuse)


def write_experiment(tmp_path, **changes):
    data = json.loads(json.dumps(TINY))
    for section, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(section, {}).update(value)
        else:
            data[section] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_writes_every_output_and_resume_reuses_finished_runs(tmp_path, capsys):
    experiment, out = write_experiment(tmp_path), tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.md'}"
    for name in ("experiment.yaml", "report.md", "comparison.csv", "comparison.json"):
        assert (out / name).is_file(), name
    for condition in ("fa", "fa_noise"):
        run_dir = out / condition / "seed0"
        for name in ("config.yaml", "chip.yaml", "metrics.jsonl", "summary.json",
                     "checkpoint.npz", "curves_train.csv", "report.md"):
            assert (run_dir / name).is_file(), f"{condition}: {name}"
        figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
        assert "accuracy.png" in figures and "alignment.png" in figures
        report = (run_dir / "report.md").read_text()
        assert all(f"figures/{name}" in report for name in figures)
    assert (out / "fa_noise" / "seed0" / "curves_precondition.csv").is_file()
    summary = json.loads((out / "fa_noise" / "seed0" / "summary.json").read_text())
    assert summary["precondition"]["enabled"] and summary["train"]["auc_first_epoch"] is not None

    # A second plain run refuses to overwrite; --resume keeps finished runs identical.
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    before = (out / "fa" / "seed0" / "metrics.jsonl").read_text()
    # a command killed mid-write left its temporary (checkpoint-sized); --resume removes it
    leftover = out / "fa" / "seed0" / ".checkpoint.npz.a1B_c9x2.tmp"
    leftover.write_bytes(b"half a checkpoint")
    mine = out / "fa" / "seed0" / ".notes.tmp"  # not a name neurosim writes: kept
    mine.write_text("a user's file")
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--resume"]) == 0
    assert (out / "fa" / "seed0" / "metrics.jsonl").read_text() == before
    assert not leftover.exists() and mine.read_text() == "a user's file"


def test_resume_with_a_changed_config_is_refused(tmp_path, capsys):
    experiment, out = write_experiment(tmp_path, seeds=[0], conditions={"fa": {}}), tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    saved = (out / "experiment.yaml").read_text()
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--resume",
                 "--set", "optimizer.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err
    lr = json.loads(json.dumps(TINY))["optimizer"]["lr"]
    assert f"config.yaml: optimizer.lr {lr!r} -> 0.1" in err  # which field, saved -> now
    assert (out / "experiment.yaml").read_text() == saved  # the refused resume wrote nothing


def test_resume_accepts_a_saved_config_without_a_newer_defaulted_field(tmp_path, capsys):
    """A run saved before a field existed resumes (the field takes its default); a changed
    chip is a different configuration."""
    import yaml

    experiment, out = write_experiment(tmp_path, seeds=[0], conditions={"fa": {}}), tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    saved = out / "fa" / "seed0" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    del config["simulation"]["deterministic"]  # as written before the field existed
    saved.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--resume"]) == 0
    chip = out / "fa" / "seed0" / "chip.yaml"
    chip.write_text(chip.read_text().replace("kind: stored", "kind: sign"))
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--resume"]) == 2
    assert "chip.yaml: feedback.kind 'sign' -> 'stored'" in capsys.readouterr().err


def test_train_size_larger_than_the_dataset_is_refused(tmp_path, capsys):
    experiment = write_experiment(tmp_path, data={"train_size": 10**7})
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "data.train_size" in err and "10000000" in err


def fa_run_with_ood(tmp_path, name: str, warning: str) -> dict:
    """The summary of one FA run of TINY evaluating the OOD dataset ``name``, which must
    warn ``warning`` (a regular expression)."""
    experiment = write_experiment(tmp_path, evaluation={**TINY["evaluation"], "ood": [name]},
                                  conditions={"fa": {"rule": "fa"}})
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=warning):
        assert main(["run", str(experiment), "--out", str(out), "--quiet",
                     "--no-run-reports"]) == 0
    return json.loads((out / "fa" / "seed0" / "summary.json").read_text())


def test_an_ood_dataset_that_cannot_be_loaded_is_said_at_once(tmp_path, monkeypatch, offline):
    """The run completes (the OOD set is an extra), its summary records the skip, and the
    user hears of it while the run ends, not only from the summary file."""
    monkeypatch.setenv("NEUROSIM_DATA", str(tmp_path / "empty"))
    summary = fa_run_with_ood(tmp_path, "usps", "evaluation.ood: usps skipped: usps: 1 file")
    assert summary["final"]["ood"]["usps"].startswith("skipped: usps")


def test_an_ood_datasets_notes_are_recorded_with_the_runs(tmp_path, monkeypatch, offline):
    """KMNIST without its training files is an 8,000 / 2,000 cut of its test split, so its
    OOD set is 2,000 images: the run's data_notes say so, as they do when it is the
    training set (before, only a warning said it, once per process)."""
    from neurosim.data.registry import get_spec

    kmnist = get_spec("kmnist")
    data = tmp_path / "data"
    (data / kmnist.dirname).mkdir(parents=True)
    for file in kmnist.test:  # the test split only, as the shared datasets hold it
        source = store.resolve_data_dir(None) / kmnist.dirname / file.filename
        if not source.is_file():
            pytest.skip(f"{source} not found (set NEUROSIM_DATA to the datasets directory)")
        shutil.copy(source, data / kmnist.dirname / file.filename)
    monkeypatch.setenv("NEUROSIM_DATA", str(data))
    summary = fa_run_with_ood(tmp_path, "kmnist", "kmnist: official training files missing")
    assert isinstance(summary["final"]["ood"]["kmnist"], float)
    [note] = [n for n in summary["data_notes"] if n.startswith("OOD set")]
    assert note.startswith("OOD set kmnist: official training files missing")
    assert "first 8000 / last 2000 images of the official test split" in note


def test_missing_dataset_offline_says_where_to_put_it(tmp_path, capsys, monkeypatch, offline):
    monkeypatch.setenv("NEUROSIM_DATA", str(tmp_path / "empty"))
    experiment = write_experiment(tmp_path, data={"dataset": "usps", "train_size": None,
                                                  "test_size": None})
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "NEUROSIM_DATA" in err and str(tmp_path / "empty" / "usps") in err
    assert not (tmp_path / "out").exists()  # refused before: the next try needs no --resume


@pytest.mark.skipif(data_dir() is None, reason="no MNIST copy (set NEUROSIM_DATA)")
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_dataset_file_is_a_one_line_error(tmp_path, capsys, monkeypatch, offline, damage):
    mnist = tmp_path / "data" / "mnist"
    shutil.copytree(data_dir() / "mnist", mnist)
    labels = mnist / "t10k-labels-idx1-ubyte.gz"
    raw = labels.read_bytes()
    if damage == "truncated":
        labels.write_bytes(raw[: len(raw) // 2])
    else:
        content = bytearray(gzip.decompress(raw))
        content[100] = (content[100] + 1) % 10
        labels.write_bytes(gzip.compress(bytes(content)))
    monkeypatch.setenv("NEUROSIM_DATA", str(tmp_path / "data"))
    experiment = write_experiment(tmp_path, data={"dataset": "mnist", "train_size": 256,
                                                  "test_size": 64})
    assert main(["run", str(experiment), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(labels) in err


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_report_processes_must_be_a_positive_integer(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tmp_path / "any.yaml"), "--report-processes", value])
    assert exit_info.value.code == 2
    assert "--report-processes" in capsys.readouterr().err


def test_overwrite_deletes_only_neurosim_output(tmp_path, capsys):
    """--overwrite replaces a folder neurosim wrote, never another one; --resume with
    --overwrite, and an output path that is a file, are one-line errors."""
    experiment = write_experiment(tmp_path, conditions={"fa": {}}, precondition={"steps": 0})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (precious / "report.md").write_text("a name neurosim uses too")
    assert main(["run", str(experiment), "--out", str(precious), "--overwrite", "--quiet"]) == 2
    assert "not a folder neurosim wrote" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(experiment), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert main(["run", str(experiment), "--out", str(out), "--overwrite", "--resume"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["run", str(experiment), "--out", str(tmp_path / "precious" / "thesis.tex")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path, capsys):
    """Two commands into one --out interleaved their records in metrics.jsonl (an audit:
    "resume after a crash" while the first was still running); the folder is locked."""
    experiment = write_experiment(tmp_path, conditions={"fa": {}}, precondition={"steps": 0})
    out = tmp_path / "out"
    with FolderLock(out / RUN_LOCK, what="neurosim run"):  # this process, alive: another
        assert main(["run", str(experiment), "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "locked by neurosim run (pid" in err
    assert not list((out).glob("*/seed*"))  # nothing was written
    # a lock left by a killed command is stale: taken over; the finished folder keeps none
    (out / RUN_LOCK).write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname(),
                                            "started": 0.0, "token": "gone"}))
    assert main(["run", str(experiment), "--out", str(out), "--resume", "--quiet"]) == 0
    assert not (out / RUN_LOCK).exists() and (out / "fa" / "seed0" / "summary.json").is_file()


def test_overwrite_never_deletes_a_folder_another_command_is_writing(tmp_path, capsys,
                                                                      monkeypatch):
    """``neurosim run --overwrite`` deleted the folder of a running sweep (which locked
    ``sweep.lock``, a name of its own), and ``reproduce --overwrite`` deleted a folder
    without any lock: every command writing a folder holds its ``run.lock``."""
    from neurosim.commands import reproduce

    monkeypatch.setattr(reproduce, "reproduce", lambda *args: pytest.fail("reproduce ran"))
    experiment = write_experiment(tmp_path, conditions={"fa": {}}, precondition={"steps": 0})
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet", "--no-run-reports"]) == 0
    with FolderLock(out / RUN_LOCK, what="neurosim sweep"):
        for command in (["run", str(experiment)], ["reproduce", "fig1"]):
            assert main([*command, "--out", str(out), "--overwrite", "--quiet"]) == 2
            (err,) = capsys.readouterr().err.strip().splitlines()
            assert f"{out}: locked by neurosim sweep (pid" in err
    assert (out / "fa" / "seed0" / "summary.json").is_file()


def test_a_condition_section_mapping_sets_only_its_fields(tmp_path):
    """conditions: {x: {train: {epochs: 2}}} changes train.epochs and keeps the file's
    train.batch_size, as train.epochs: 2 would (it used to reset the section)."""
    from neurosim.config import expand_runs, load_experiment

    def condition_x(overrides=()):
        runs = expand_runs(load_experiment(experiment, list(overrides)), experiment)
        return next(run.experiment.train for run in runs if run.condition == "x")

    experiment = write_experiment(tmp_path, conditions={"x": {"train": {"epochs": 2}}})
    assert (condition_x().epochs, condition_x().batch_size) == (2, 32)
    train = condition_x(["conditions.x.train.epochs=3"])
    assert (train.epochs, train.batch_size) == (3, 32)


def test_population_option_replaces_a_files_population_seeds(tmp_path):
    from neurosim.config import load_experiment
    from neurosim.commands.run import population_overrides

    experiment = write_experiment(tmp_path, seeds=None, population={"seeds": [4, 5]})
    loaded = load_experiment(experiment, population_overrides(2))
    assert loaded.population.all_seeds == (0, 1)


def test_result_files_are_readable_as_open_would_make_them(tmp_path):
    """Results are written through temporary files (atomic renames) that get the mode a
    plain open() would give (0666 less the umask), not mkstemp's owner-only 0600."""
    import os
    import stat

    from neurosim.runio import FILE_MODE, write_text

    mask = os.umask(0o022)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    write_text(tmp_path / "report.md", "x")
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == FILE_MODE


def test_a_chip_file_that_sets_only_chip_fields_outside_the_arrays_is_a_chip(tmp_path, capsys):
    """A chip file is recognized by any chip-only field (here only ``energy``), not only by
    forward/feedback/tiles: it was validated as an experiment ('unknown field energy')."""
    path = tmp_path / "costs.yaml"
    path.write_text("name: costs\nenergy:\n  read_voltage_v: 0.4\n")
    assert main(["config", "validate", str(path)]) == 0
    assert "valid chip 'costs'" in capsys.readouterr().out
    path.write_text("name: costs\nenergy:\n  read_voltage_v: -1\n")
    assert main(["config", "validate", str(path)]) == 2
    assert "energy.read_voltage_v" in capsys.readouterr().err


def test_config_show_and_fields_take_sweep_files(capsys):
    """A sweep file was parsed as an experiment by ``config show`` ('baseline: unknown
    field'), and ``config fields`` listed no sweep fields."""
    sweep = REPO / "experiments" / "sweep_preconditioning.yaml"
    assert main(["config", "show", str(sweep)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["name"] == "sweep_preconditioning" and shown["baseline"] == "fa"
    assert main(["config", "fields", "sweep"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"experiment", "grid", "cases", "baseline", "overrides"} <= set(listed)
    assert main(["config", "show", str(sweep), "--set", "train.epochs=1"]) == 2
    assert "a sweep takes no --set" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_quietly():
    """``neurosim config fields experiment | head -1``: the reader stops early; the command
    ends with the shell's SIGPIPE status and no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "neurosim", "config", "fields",
                                "experiment"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the command writes anything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_running_out_of_memory_is_one_line_naming_what_to_reduce(tmp_path, capsys, monkeypatch):
    """numpy's MemoryError (sizes the config chose, too large for the machine) was a
    traceback: it is one line with numpy's message and what to reduce, exit status 2."""
    import numpy as np

    from neurosim.commands import config

    def allocate(*args, **kwargs):
        return np.empty(2**62, dtype=np.uint8)  # more than any address space: always fails

    monkeypatch.setattr(config, "load_experiment", allocate)
    assert main(["config", "validate", str(write_experiment(tmp_path))]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: out of memory: Unable to allocate 4.00 EiB"), err
    assert err.endswith("; reduce network.dims, the batch sizes, precondition.n_examples, the "
                        "evaluation probe sizes or population.max_chips")


def test_running_out_of_gpu_memory_is_one_line_naming_what_to_reduce(tmp_path, capsys,
                                                                     monkeypatch):
    """torch's OutOfMemoryError (a RuntimeError, so not caught as a MemoryError) was a
    traceback of the CUDA allocator's several-line message."""
    torch = pytest.importorskip("torch")
    from neurosim.commands import config

    def allocate(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\n"
                                     "If reserved but unallocated memory is large ...")

    monkeypatch.setattr(config, "load_experiment", allocate)
    assert main(["config", "validate", str(write_experiment(tmp_path))]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == ("error: out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB.; "
                   "reduce network.dims, the batch sizes, precondition.n_examples, the "
                   "evaluation probe sizes or population.max_chips")

    def fail(*args, **kwargs):
        raise RuntimeError("another error")  # not an out-of-memory error: still raised

    monkeypatch.setattr(config, "load_experiment", fail)
    with pytest.raises(RuntimeError, match="another error"):
        main(["config", "validate", str(write_experiment(tmp_path))])


@pytest.mark.parametrize("stray, line", [
    ({"tiles": {"rows": 3}}, "tiles = {'rows': 3}: unknown field; allowed fields: name, chip,"),
    ({"experiment": "foo.yaml"}, "experiment = 'foo.yaml': unknown field; allowed fields: name,"),
])
def test_a_stray_field_of_another_kind_is_named_as_run_names_it(tmp_path, capsys, stray, line):
    """An experiment with a stray chip key (tiles) was validated as a chip, one with a
    stray sweep key (experiment) as a sweep, and the error blamed data or chip: the kind is
    the one most keys belong to, the stray key is the error, and the kind assumed is said."""
    path = write_experiment(tmp_path, **stray)
    for command in (["config", "validate"], ["config", "show"]):
        assert main([*command, str(path)]) == 2
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err.startswith(f"error: {path}: {line}"), err
        assert err.endswith(f"(read as an experiment file, the kind most of its keys belong "
                            f"to; {next(iter(stray))} is a {'chip' if 'tiles' in stray else 'sweep'}"
                            "'s field)"), err
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert f"error: {path}: {line}" in capsys.readouterr().err


def test_a_file_of_another_kind_is_named_with_the_command_it_needs(tmp_path, capsys):
    """A sweep file given to neurosim run was refused for its first sweep key (baseline:
    unknown field), an experiment given to neurosim sweep for its chip, with nothing
    saying the file was of the wrong kind: the line now says which kind it is and how it is
    used."""
    sweep, experiment = (REPO / "experiments" / name for name in ("sweep_preconditioning.yaml",
                                                                  "quickstart.yaml"))
    chip = REPO / "hw_configs" / "ideal.yaml"
    for command, path, field, use in (
            ("run", sweep, "baseline = 'fa'", "a sweep file, by its keys: run it with neurosim sweep"),
            ("run", chip, "description = ", "a chip file, by its keys: name it in an experiment's "
                                            "chip field"),
            ("sweep", experiment, "chip = 'ideal'", "an experiment file, by its keys: run it with "
                                                    "neurosim run")):
        assert main([command, str(path), "--out", str(tmp_path / "out")]) == 2
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err.startswith(f"error: {path}: {field}"), err
        assert err.endswith(f": unknown field; allowed fields: {ALLOWED[command]} ({path} is {use})"), err
    assert not (tmp_path / "out").exists()


ALLOWED = {"run": "name, chip, chip_set, network, rule, optimizer, precondition, data, train, evaluation, "
                  "seed, seeds, population, simulation, conditions",
           "sweep": "name, experiment, overrides, conditions, grid, cases, seeds, baseline, population"}


def test_a_file_that_cannot_be_fetched_says_how_to_choose_the_data_directory(tmp_path, capsys,
                                                                            offline):
    """The hint told the user to set NEUROSIM_DATA, which --data-dir overrides: with
    --data-dir given, following it changed nothing."""
    assert main(["data", "fetch", "usps", "--data-dir", str(tmp_path)]) == 1
    (err,) = capsys.readouterr().err.strip().splitlines()
    target = tmp_path / "usps" / "zip.train.gz"
    assert (f"save it as {target}, or choose a data directory (--data-dir, else $NEUROSIM_DATA) "
            "that holds usps/zip.train.gz |") in err, err


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """A full or read-only disk, or an --out below a file, ended in an OSError traceback
    (from the lock, a result file or the metric log): one line naming the path and the
    system's reason, exit status 2, and no lock left behind."""
    import errno

    from neurosim import runio

    experiment = write_experiment(tmp_path, conditions={"fa": {}}, precondition={"steps": 0})
    (tmp_path / "afile").write_text("")
    assert main(["run", str(experiment), "--out", str(tmp_path / "afile" / "out")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == f"error: {tmp_path / 'afile' / 'out' / RUN_LOCK}: cannot write (Not a directory)"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runio, "new_temporary", full)
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == f"error: {out / 'experiment.yaml'}: cannot write (No space left on device)"
    assert not (out / RUN_LOCK).exists()
    monkeypatch.undo()
    monkeypatch.setattr(runio, "open", full, raising=False)  # the metric log's appends
    assert main(["run", str(experiment), "--out", str(out), "--resume", "--quiet"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == (f"error: {out / 'fa' / 'seed0' / 'metrics.jsonl'}: cannot write "
                   "(No space left on device)")


def test_ctrl_c_while_the_commands_load_is_one_line():
    """Loading the commands takes seconds (numpy, scipy, numba, matplotlib); Ctrl-C then was
    a KeyboardInterrupt traceback from the import: they load inside main's handling."""
    code = ("import signal, sys, neurosim.cli\n"
            "assert 'neurosim.commands' not in sys.modules\n"
            "neurosim.cli.build_parser = lambda: signal.raise_signal(signal.SIGINT)\n"
            "sys.exit(neurosim.cli.main(['--help']))")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (process.returncode, process.stderr) == (130, "interrupted\n"), process.stderr
