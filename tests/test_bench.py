"""``neurosim bench``: a tiny config on every backend here x two chips x two population
sizes, its JSON and markdown; bad options refused in one line. CUDA rows appear only with a
GPU (otherwise the backend is listed as skipped); a backend named in --backends that cannot
run here is refused before anything is measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from neurosim.bench import BACKENDS, machine
from neurosim.cli import main

TINY = {"name": "tiny_bench", "chip": "ideal", "network": {"dims": [784, 16, 10]},
        "rule": "fa", "optimizer": {"name": "adam", "lr": 1e-3},
        "data": {"dataset": "digits"}, "train": {"epochs": 1, "batch_size": 8}}
CHIPS = ("ideal", "constant_step")
POPULATIONS = (1, 3)


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def torch_state() -> tuple[bool, bool]:
    """(torch installed, CUDA GPU visible)."""
    try:
        import torch
    except ImportError:
        return False, False
    return True, torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def result(tiny, tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench_out")
    # no --backends: every backend, those that cannot run here listed as skipped
    assert main(["bench", "--configs", str(tiny), "--chips", ",".join(CHIPS),
                 "--populations", ",".join(map(str, POPULATIONS)), "--repeats", "2",
                 "--seconds", "0.002", "--eval-batch", "32", "--out", str(out),
                 "--quiet"]) == 0
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_every_combination_has_a_row_with_positive_rates(result):
    data, _ = result
    has_torch, has_cuda = torch_state()
    available = {"numpy", "numba"} | ({"torch-cpu"} if has_torch else set()) | (
        {"torch-cuda"} if has_cuda else set())
    # GPU populations are measured with their batches on the host and on the device
    expected = {(chip, backend, size, place) for chip in CHIPS for backend in available
                for size in POPULATIONS
                for place in (("host", "device") if backend == "torch-cuda" and size > 1
                             else ("host",))}
    rows = data["rows"]
    assert {(r["chip"], r["backend"], r["population"], r["batches"]) for r in rows} == expected
    assert len(rows) == len(expected)
    for r in rows:
        assert r["config"] == "tiny_bench" and r["batch"] == 8 and r["eval_batch"] == 32
        # auto: the fused kernel on a GPU where triton is installed, never on the CPU
        assert r["fused_update"] == (None if not r["backend"].startswith("torch") else
                                     r["backend"] == "torch-cuda" and has_triton())
        for what in ("train", "infer"):
            assert r[f"{what}_samples_per_s"] > 0
            assert r[f"{what}_chip_samples_per_s"] == pytest.approx(
                r[f"{what}_samples_per_s"] * r["population"])
    skipped = {item["backend"]: item["reason"] for item in data["skipped"]}
    assert set(skipped) == set(BACKENDS) - available
    if not has_cuda:
        assert "no CUDA GPU" in skipped["torch-cuda"] or not has_torch


def test_results_describe_the_machine_and_the_settings(result):
    data, text = result
    m = data["machine"]
    for key in ("cpu", "cores", "gpu", "python", "numpy", "numba", "torch", "date"):
        assert key in m, key
    assert m["cores"] >= 1 and m["cpu"] and m["date"][:2] == "20"
    assert m["gpu"] == (machine()["gpu"])
    assert data["settings"]["populations"] == list(POPULATIONS)
    assert data["settings"]["repeats"] == 2
    table = [line for line in text.splitlines() if line.startswith("| tiny_bench |")]
    assert len(table) == len(data["rows"])
    assert m["cpu"] in text and f"numba {m['numba']}" in text


@pytest.mark.parametrize("args, option, allowed", [
    (["--backends", "cuda"], "--backends", "numpy, numba, torch-cpu, torch-cuda"),
    (["--chips", "ideal,no_such_chip"], "--chips", "constant_step"),
    (["--populations", "0,4"], "--populations", "positive integers"),
    (["--populations", "one"], "--populations", "positive integers"),
    (["--repeats", "2,3"], "--repeats", "a positive integer"),
    (["--batch", "-1"], "--batch", "a positive integer"),
    (["--seconds", "0"], "--seconds", "a positive number of seconds"),
    (["--configs", "no/such.yaml"], "--configs", "experiment YAML files"),
    (["--backends", ","], "--backends", "at least one value"),
    (["--fused-update", "auto,maybe"], "--fused-update", "auto, on, off"),
])
def test_bad_options_are_refused_in_one_line(args, option, allowed, tmp_path, capsys):
    assert main(["bench", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {option}: ")
    assert allowed in err
    assert not (tmp_path / "out").exists()


def test_each_fused_update_setting_is_measured_where_it_runs(tiny, tmp_path, monkeypatch):
    """torch once per distinct kernel choice (on the CPU, off and auto are the same
    unfused step), ``on`` listed as skipped where Triton cannot compile (no GPU), the other
    backends once."""
    pytest.importorskip("torch")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["bench", "--configs", str(tiny), "--backends", "numba,torch-cpu",
                 "--fused-update", "off,on,auto", "--chips", "ideal", "--populations", "2",
                 "--repeats", "1", "--seconds", "0.002", "--eval-batch", "16",
                 "--out", str(tmp_path), "--quiet"]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert sorted((r["backend"], r["fused_update"]) for r in data["rows"]) == [
        ("numba", None), ("torch-cpu", False)]
    assert data["settings"]["fused_updates"] == ["off", "on", "auto"]
    (skipped,) = data["skipped"]
    assert skipped["backend"] == "torch-cpu (fused update)"
    assert ("Triton compiles for CUDA devices" if has_triton() else "triton is not installed"
            ) in skipped["reason"]
    table = (tmp_path / "bench.md").read_text()
    assert "| tiny_bench | ideal | torch-cpu | no | 2 |" in table


@pytest.mark.parametrize("backends", ["torch-cuda", "numba,torch-cuda", "torch-cuda,numpy"])
def test_a_requested_backend_that_cannot_run_is_refused_before_measuring(
        tiny, tmp_path, capsys, backends):
    """--backends torch-cuda without a GPU (alone or with others) exits 2 with one line
    saying CUDA is not available and what to run instead; nothing is measured or written
    (it used to skip it and exit 0 with an empty table)."""
    has_torch, has_cuda = torch_state()
    if has_cuda:
        pytest.skip("a CUDA GPU is visible: torch-cuda runs here")
    out = tmp_path / "out"
    assert main(["bench", "--configs", str(tiny), "--backends", backends, "--chips", "ideal",
                 "--populations", "1", "--repeats", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the first "measuring ..." line
    (err,) = captured.err.splitlines()
    assert err.startswith("error: --backends: 'torch-cuda': ")
    assert ("CUDA is not available" if has_torch else "pip install 'neurosim[torch]'") in err
    assert "leave out --backends" in err and "allowed here: numpy, numba" in err
    assert not out.exists()


def test_a_requested_torch_backend_without_torch_says_how_to_install_it(
        tiny, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert main(["bench", "--configs", str(tiny), "--backends", "numba,torch-cpu",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err == ("error: --backends: 'torch-cpu': needs torch, which is not installed: "
                   "pip install 'neurosim[torch]'; allowed here: numpy, numba (leave out "
                   "--backends to measure every backend that runs here; bench.md lists what "
                   "was measured and what was skipped)")
    assert not (tmp_path / "out").exists()


def test_a_run_where_every_setting_is_skipped_is_refused_not_written(tiny, tmp_path, capsys,
                                                                        monkeypatch):
    """--backends torch-cpu --fused-update on (Triton cannot compile for the CPU) leaves
    nothing to measure: one error line, exit 2, no bench.md (it used to write an empty
    table over the results and exit 0)."""
    pytest.importorskip("torch")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "out"
    assert main(["bench", "--configs", str(tiny), "--backends", "torch-cpu",
                 "--fused-update", "on", "--chips", "ideal", "--populations", "2",
                 "--repeats", "1", "--out", str(out), "--quiet"]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("error: nothing to measure: every combination was skipped")
    assert "torch-cpu (fused update)" in err
    assert not out.exists()


def test_rows_carry_the_peak_memory_of_each_workload(result):
    """Speed and memory side by side: every row has its peak host memory (Linux) and, on
    a GPU, its peak CUDA allocations; the table shows both columns."""
    import sys

    data, text = result
    for r in data["rows"]:
        if sys.platform.startswith("linux"):
            assert r["peak_host_mib"] >= 0
        assert (r["peak_gpu_mib"] is not None) == (r["backend"] == "torch-cuda")
    assert "| peak host MiB | peak GPU MiB |" in text


def test_peak_memory_counts_what_a_workload_holds_at_its_peak():
    """A workload that builds 40 MiB of state and allocates 24 MiB more in its step
    peaks at about 64 MiB above before it; its own random batches are left out."""
    import sys

    import numpy as np

    from neurosim.bench import peak_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("the peak resident memory is read from /proc")

    class Fake:
        def __init__(self):
            self.state = np.ones(40 * 2**18, dtype=np.float32)  # 40 MiB
            self.x = np.ones(8 * 2**18, dtype=np.float32)  # 8 MiB of batches
            self.y = np.zeros(1, dtype=np.int64)
            self.eval_x = np.ones(1, dtype=np.float32)

        def train(self):
            scratch = np.ones(24 * 2**18, dtype=np.float32)  # 24 MiB, freed at once
            self.state[0] = scratch[0]

        def wait(self):
            pass

        def infer(self):
            pass

    measured = peak_memory(Fake, cuda=False)
    assert measured["peak_gpu_mib"] is None
    assert 60 <= measured["peak_host_mib"] <= 72, measured


def test_results_name_the_revision_and_the_threads_used(result):
    """The table's header names the code measured (git revision) and the threads each
    backend ran with (torch's, and the BLAS threads per backend: 1 for Numba's products)."""
    data, text = result
    m = data["machine"]
    header = text.splitlines()[2]
    assert f"(revision {m['revision'] or 'unknown'})" in header
    for r in data["rows"]:
        assert r["blas_threads"] is None or r["blas_threads"] >= 1
        assert f"{r['backend']} {r['blas_threads']}" in header
    if m["torch"] is not None:
        assert f"torch {m['torch']} ({m['torch_threads']} threads)" in header


def test_no_memory_skips_the_memory_pass(tiny, tmp_path):
    assert main(["bench", "--configs", str(tiny), "--backends", "numpy", "--chips", "ideal",
                 "--populations", "2", "--repeats", "1", "--seconds", "0.002",
                 "--eval-batch", "8", "--no-memory", "--out", str(tmp_path), "--quiet"]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    (row,) = data["rows"]
    assert row["peak_host_mib"] is None and row["peak_gpu_mib"] is None
    assert data["settings"]["memory"] is False
