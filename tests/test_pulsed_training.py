"""Training with pulsed updates on non-ideal devices: wiring, bookkeeping, resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import REPO, backend_under_test, interrupted_then_resumed
from test_train import flatten

from neurosim.config import (ChipConfig, DeviceConfig, ExperimentConfig, ForwardArrayConfig,
                             RunSpec, UpdateConfig, load_chip)
from neurosim.schema import build
from neurosim.train import Trainer, run_spec

EXPERIMENT = {
    "name": "pulsed", "network": {"dims": [784, 16, 10]}, "optimizer": {"name": "sgd", "lr": 0.05},
    "precondition": {"enabled": True, "steps": 30, "n_examples": 128, "batch_size": 32,
                     "log_every": 10, "checkpoint_every": 10},
    "data": {"dataset": "digits", "train_size": 256, "test_size": 64},
    "train": {"epochs": 1, "batch_size": 32},
    "evaluation": {"train_probe_size": 128, "noise_probe_size": 256, "ood": ["rotate"],
                   "ood_rotations_deg": [20.0]},
}


def pulsed_chip(**device) -> ChipConfig:
    ideal = load_chip(REPO / "hw_configs" / "ideal.yaml")
    forward = ForwardArrayConfig(device=DeviceConfig(**{"model": "constant_step", **device}),
                                 update=UpdateConfig(mode="pulsed", max_pulses=15))
    return dataclasses.replace(ideal, name="pulsed_test", forward=forward)


def spec(chip: ChipConfig, backend="numba", dtype="float32", device="cpu",
         **experiment) -> RunSpec:
    data = json.loads(json.dumps(EXPERIMENT))
    data.update(experiment)
    data["simulation"] = {"backend": backend, "dtype": dtype, "device": device}
    return RunSpec(build(ExperimentConfig, data, "test"), chip, "default", 0)


def test_pulsed_run_counts_pulses_and_respects_device_bounds(tmp_path):
    chip = pulsed_chip(dw_min=0.002, dw_min_ctoc=0.2, dw_min_dtod=0.2, w_max_dtod=0.1,
                       w_min_dtod=0.1)
    trainer = Trainer(spec(chip), tmp_path / "run")
    summary = trainer.run()
    assert trainer.chip.update_count == 30 + 8  # noise steps + one epoch of 256/32 batches
    assert np.all(trainer.chip.pulses > 0)
    assert summary["final"]["programming_events"] == trainer.chip.update_count
    assert summary["final"]["pulses_up"] == trainer.chip.pulses[:, 0].tolist()
    assert summary["final"]["pulses_down"] == trainer.chip.pulses[:, 1].tolist()
    for layer, state in enumerate(trainer.chip.devices):
        w = trainer.chip.weights(layer).reshape(-1)
        assert np.all(w >= state.w_min.astype(w.dtype)) and np.all(w <= state.w_max.astype(w.dtype))


def test_stuck_devices_never_move_during_training(tmp_path):
    chip = pulsed_chip(dw_min=0.005, stuck_at_initial=0.3, stuck_at_max=0.1)
    trainer = Trainer(spec(chip), tmp_path / "run")
    before = [trainer.chip.weights(l).copy() for l in range(trainer.chip.n_layers)]
    trainer.run()
    for layer, state in enumerate(trainer.chip.devices):
        stuck = state.stuck.reshape(before[layer].shape) != 0
        assert stuck.any()
        np.testing.assert_array_equal(trainer.chip.weights(layer)[stuck], before[layer][stuck])
        moved = trainer.chip.weights(layer)[~stuck] != before[layer][~stuck]
        assert moved.mean() > 0.5


def test_fine_pulses_track_the_ideal_update(tmp_path):
    """Stochastic rounding is unbiased: with a tiny step and no noise, pulsed training ends
    close to ideal training from the same start."""
    ideal = load_chip(REPO / "hw_configs" / "ideal.yaml")
    fine = dataclasses.replace(pulsed_chip(dw_min=1e-5), forward=dataclasses.replace(
        pulsed_chip(dw_min=1e-5).forward, update=UpdateConfig(mode="pulsed", max_pulses=10**6)))
    runs = {}
    for name, chip in (("ideal", ideal), ("pulsed", fine)):
        trainer = Trainer(spec(chip, dtype="float64"), tmp_path / name)
        trainer.run()
        runs[name] = trainer.chip.effective_weights()
    for a, b in zip(runs["ideal"], runs["pulsed"]):
        assert np.max(np.abs(a - b)) < 0.02 * np.max(np.abs(a))


def test_numba_and_numpy_pulsed_runs_agree(tmp_path):
    chip = pulsed_chip(dw_min=0.002, dw_min_ctoc=0.1)
    run_spec(spec(chip, backend="numba", dtype="float64"), tmp_path / "numba")
    run_spec(spec(chip, backend="numpy", dtype="float64"), tmp_path / "numpy")
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    a, b = read(tmp_path / "numba"), read(tmp_path / "numpy")
    for x, y in zip(a, b):
        assert x.get("test_accuracy") == pytest.approx(y.get("test_accuracy"), abs=0.05)
        for layer in x["alignment_deg"]:
            assert x["alignment_deg"][layer] == pytest.approx(y["alignment_deg"][layer], abs=0.5)


def test_pulsed_resume_is_identical(tmp_path, monkeypatch):
    chip = pulsed_chip(dw_min=0.002, dw_min_ctoc=0.3)
    whole = run_spec(spec(chip), tmp_path / "whole")
    resumed = interrupted_then_resumed(monkeypatch, spec(chip), tmp_path / "cut", 25)
    assert resumed["train"] == whole["train"]
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == \
        (tmp_path / "whole" / "metrics.jsonl").read_text()


def stochastic_chip(**device) -> ChipConfig:
    chip = pulsed_chip(**device)
    return dataclasses.replace(chip, forward=dataclasses.replace(
        chip.forward, update=UpdateConfig(mode="stochastic", bl=31)))


def test_stochastic_in_array_training_learns_and_counts_pulses(tmp_path):
    chip = stochastic_chip(dw_min=0.002, dw_min_ctoc=0.1)
    trainer = Trainer(spec(chip, optimizer={"name": "sgd", "lr": 0.2}), tmp_path / "run")
    summary = trainer.run()
    records = [r for r in trainer.log.records if r["phase"] == "train"]
    assert records[-1]["test_accuracy"] > records[0]["test_accuracy"] + 0.2
    assert trainer.chip.update_count == 30 + 8
    # one programming event per sample: 30 noise steps of 32, one epoch of 256 images
    assert summary["final"]["programming_events"] == 30 * 32 + 256
    assert summary["final"]["pulses_up"] == trainer.chip.pulses[:, 0].tolist()
    assert np.all(trainer.chip.pulses > 0)


def test_stochastic_runs_agree_across_backends_and_resume(tmp_path, monkeypatch):
    chip = stochastic_chip(dw_min=0.002)
    run_spec(spec(chip, backend="numpy", dtype="float64"), tmp_path / "numpy")
    whole = run_spec(spec(chip, backend="numba", dtype="float64"), tmp_path / "numba")
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(read(tmp_path / "numba"), read(tmp_path / "numpy")):
        assert x.get("test_accuracy") == pytest.approx(y.get("test_accuracy"), abs=0.05)
    resumed = interrupted_then_resumed(monkeypatch, spec(chip, dtype="float64"), tmp_path / "cut", 25)
    assert resumed["train"] == whole["train"]


@pytest.mark.parametrize("name", ["torch", pytest.param("torch-cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("mode", ["pulsed", "stochastic"])
def test_torch_device_runs_equal_numba(tmp_path, mode, name):
    """Pulsed and in-array runs on torch (CPU or GPU) send numba's pulses and reproduce its
    curves: the same draws by index, the same arithmetic. On a GPU the cycle-to-cycle
    normals are within a few ulp of the C library's (torch_math), and the products round
    otherwise: a pulse count at a rounding boundary may flip."""
    under_test = backend_under_test(name)
    chip = (pulsed_chip if mode == "pulsed" else stochastic_chip)(dw_min=0.002, dw_min_ctoc=0.1)
    short = {"precondition": {**EXPERIMENT["precondition"], "steps": 10},
             "data": {**EXPERIMENT["data"], "train_size": 64}}
    runs = {}
    for backend in ("torch", "numba"):
        device = under_test.device if backend == "torch" else "cpu"
        trainer = Trainer(spec(chip, backend=backend, dtype="float64", device=device, **short),
                          tmp_path / backend)
        trainer.run()
        runs[backend] = trainer
    pulses = runs["torch"].chip.pulses, runs["numba"].chip.pulses
    assert np.all(pulses[0] > 0)
    a, b = runs["torch"].log.records, runs["numba"].log.records
    assert [r["step"] for r in a] == [r["step"] for r in b]
    params = runs["torch"].chip.params, runs["numba"].chip.params
    if under_test.exact_libm:
        np.testing.assert_array_equal(*pulses)
        np.testing.assert_allclose(flatten(a), flatten(b), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(*params, rtol=1e-7, atol=1e-9)
    else:
        np.testing.assert_allclose(*pulses, rtol=1e-3)
        np.testing.assert_allclose(flatten(a), flatten(b), rtol=1e-4, atol=1e-6)
        assert np.linalg.norm(params[0] - params[1]) <= 1e-6 * np.linalg.norm(params[1])


def test_stochastic_chip_refuses_a_digital_optimizer(tmp_path):
    from neurosim.config import check_update_mode
    from neurosim.errors import ConfigError

    with pytest.raises(ConfigError, match="optimizer.name.*plain SGD"):
        check_update_mode(spec(stochastic_chip(), optimizer={"name": "adam"}).experiment,
                          stochastic_chip(), "test")
