"""Populations of chips: per chip, exactly the runs made one chip at a time."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from conftest import REPO, Interrupted, backend_under_test
from test_pulsed_training import pulsed_chip, stochastic_chip

from neurosim import cohorts, evaluation
from neurosim.backends import Backend, create_backend
from neurosim.backends.numba_cpu import NumbaBackend
from neurosim.chip import Chip
from neurosim.cli import main
from neurosim.config import ExperimentConfig, expand_runs, load_chip, load_experiment
from neurosim.errors import ConfigError
from neurosim.periphery import PeripheryConfig
from neurosim.runio import load_checkpoint
from neurosim.population import Population
from neurosim.rows import Rows, gathered
from neurosim.rules import RuleCode, get_rule
from neurosim.runner import _run_config_text, population_members
from neurosim.schema import build
from neurosim.train import Trainer, run_population, run_spec

SMALL = {
    "name": "population", "network": {"dims": [784, 16, 10]},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "precondition": {"enabled": True, "regime": "fixed_set", "n_examples": 64, "steps": 4,
                     "batch_size": 16, "log_every": 2, "checkpoint_every": 2},
    "data": {"dataset": "digits", "train_size": 64, "test_size": 32},
    "train": {"epochs": 2, "batch_size": 32},
    "evaluation": {"fractional_epochs": [0.5], "train_probe_size": 32,
                   "gradient_probe_size": 16, "noise_probe_size": 32, "ood": []},
}
TIMING = ("seconds", "samples_per_second")  # wall time: the only difference allowed


def experiment_data(seeds, backend="numba", **sections) -> dict:
    return {**json.loads(json.dumps(SMALL)), **sections, "simulation": {"backend": backend},
            "population": {"seeds": list(seeds)}}


def specs_of(seeds, chip=None, **kwargs):
    specs = expand_runs(build(ExperimentConfig, experiment_data(seeds, **kwargs), "test"))
    return [dataclasses.replace(s, chip=chip or s.chip) for s in specs]


def separately(specs, root):
    dirs = [root / f"seed{s.seed}" for s in specs]
    return dirs, [run_spec(s, d) for s, d in zip(specs, dirs)]


def together(specs, root, resume=False):
    dirs = [root / f"seed{s.seed}" for s in specs]
    return dirs, run_population(specs, dirs, resume=resume)


def assert_same_runs(a_dirs, a_summaries, b_dirs, b_summaries):
    """Identical metric logs, summaries (but for timings) and final checkpoints."""
    assert len(a_dirs) == len(b_dirs)
    for a, b, sa, sb in zip(a_dirs, b_dirs, a_summaries, b_summaries):
        assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text(), a
        assert ({k: v for k, v in sa.items() if k not in TIMING}
                == {k: v for k, v in sb.items() if k not in TIMING}), a
        arrays_a, meta_a = load_checkpoint(a / "checkpoint.npz")
        arrays_b, meta_b = load_checkpoint(b / "checkpoint.npz")
        assert arrays_a.keys() == arrays_b.keys()
        assert meta_a["n_records"] == meta_b["n_records"]
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=f"{a}: {key}")


def test_stacked_batches_are_the_chips_batches_in_order():
    """A population step's batches stacked on the host: rows of one dataset (one gather),
    rows of each chip's own noise set, drawn arrays, and a mix, in the step's dtype."""
    from neurosim.rows import Rows, gathered

    generator = np.random.default_rng(0)
    dataset = generator.random((50, 3))
    noise_sets = [generator.random((20, 3)) for _ in range(3)]
    index = [generator.permutation(20)[:4] for _ in range(3)]
    cases = {"one dataset": [Rows(dataset, i) for i in index],
             "own noise sets": [Rows(s, i) for s, i in zip(noise_sets, index)],
             "drawn arrays": [s[i] for s, i in zip(noise_sets, index)],
             "mixed": [Rows(dataset, index[0]), noise_sets[1][index[1]], Rows(dataset, index[2])]}
    for case, batches in cases.items():
        stacked = NumbaBackend().stack_batches(batches, np.dtype(np.float32))
        assert stacked.dtype == np.float32 and stacked.shape == (3, 4, 3), case
        expected = np.stack([gathered(batch) for batch in batches]).astype(np.float32)
        np.testing.assert_array_equal(stacked, expected, err_msg=case)


@pytest.fixture(scope="module")
def separate_runs(tmp_path_factory):
    """64 ideal-chip runs on numba, made one at a time: the reference."""
    specs = specs_of(range(64))
    return specs, *separately(specs, tmp_path_factory.mktemp("separate"))


def test_population_of_64_chips_gives_the_separate_runs(tmp_path, separate_runs):
    specs, dirs, summaries = separate_runs
    assert_same_runs(*together(specs, tmp_path), dirs, summaries)
    assert len({s["train"]["test_accuracy"] for s in summaries}) > 1  # the chips differ


@pytest.mark.parametrize("threads", [1, 2])
def test_chips_sharing_a_thread_and_its_scratch_give_the_separate_runs(tmp_path, separate_runs,
                                                                      threads):
    """A Numba thread reuses one scratch gradient and update for every chip it steps: with
    one thread all five chips pass through the same scratch, with two one thread steps
    three. Each chip still gets exactly its separate run."""
    import numba

    specs, dirs, summaries = separate_runs
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        population = together(specs[:5], tmp_path)
    finally:
        numba.set_num_threads(previous)
    assert_same_runs(dirs[:5], summaries[:5], *population)


@pytest.mark.parametrize("mode, n_chips", [("pulsed", 64), ("stochastic", 3)])
def test_population_of_device_chips_gives_the_separate_runs(tmp_path, mode, n_chips):
    device = dict(dw_min=0.002, dw_min_ctoc=0.2, dw_min_dtod=0.3, w_min_dtod=0.1,
                  stuck_at_initial=0.1)
    chip = (pulsed_chip if mode == "pulsed" else stochastic_chip)(**device)
    specs = specs_of(range(n_chips), chip, optimizer={"name": "sgd", "lr": 0.05})
    separate = separately(specs, tmp_path / "separate")
    assert_same_runs(*together(specs, tmp_path / "together"), *separate)
    assert all(sum(s["final"]["pulses_up"]) > 0 for s in separate[1])


def read_hardware_chip(feedback_kind: str, adc_bound: str = "fixed"):
    """Noisy, quantized reads of every array; regenerated or drifting stored feedback;
    with ``adc_bound: iterative``, a range that the forward reads exceed (re-reads)."""
    chip = load_chip(REPO / "hw_configs" / "ideal.yaml")
    reads = PeripheryConfig(adc_bits=6, dac_bits=5, w_noise=0.05, out_noise=0.02,
                            adc_bound=adc_bound,
                            adc_range=0.5 if adc_bound == "iterative" else 10.0)
    feedback = dataclasses.replace(chip.feedback, kind=feedback_kind, periphery=reads,
                                   drift_nu=0.05 if feedback_kind == "stored" else 0.0)
    return dataclasses.replace(chip, name="reads", feedback=feedback, forward=dataclasses.replace(
        chip.forward, periphery=reads))


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("feedback_kind, adc_bound, rule", [("regenerated", "fixed", "fa"),
                                                            ("stored", "fixed", "dfa"),
                                                            ("stored", "iterative", "dfa"),
                                                            ("stored", "fixed", "drtp")])
def test_population_with_read_noise_and_feedback_hardware(tmp_path, monkeypatch, feedback_kind,
                                                         adc_bound, rule, backend):
    """Noisy, quantized reads: each chip its own read-noise streams, in one call of all
    chips (the chip-by-chip loop of the reference is not taken); with iterative bound
    management, each chip its own re-reads (its ledger)."""
    if backend == "torch":
        backend_under_test("torch")
    specs = specs_of(range(4), read_hardware_chip(feedback_kind, adc_bound), backend=backend,
                     rule=rule)
    separate = separately(specs, tmp_path / "separate")
    with monkeypatch.context() as patch:
        patch.setattr(Backend, "launch_population_step", None)  # the loop: not taken
        population = together(specs, tmp_path / "together")
    assert_same_runs(*population, *separate)


@pytest.mark.parametrize("mode", ["ideal", "pulsed", "stochastic"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_reference_and_torch_populations_give_the_separate_runs(tmp_path, monkeypatch, backend,
                                                                mode):
    """numpy loops over the chips; torch (on the CPU) batches the products, the optimizer
    and the ideal, pulsed or in-array update over a leading chip dimension (its loop over
    the chips is not taken): the same numbers here."""
    if backend == "torch":
        backend_under_test("torch")
        monkeypatch.setattr(Backend, "launch_population_step", None)
    device = dict(dw_min=0.002, dw_min_ctoc=0.2, dw_min_dtod=0.3, stuck_at_initial=0.1)
    chip, optimizer = {
        "ideal": (None, {"name": "adam", "lr": 3e-3}),
        "pulsed": (pulsed_chip(**device), {"name": "sgd", "lr": 0.05}),
        "stochastic": (stochastic_chip(**device), {"name": "sgd", "lr": 0.05})}[mode]
    specs = specs_of([5, 7, 9], chip, backend=backend, optimizer=optimizer)
    separate = separately(specs, tmp_path / "separate")
    assert_same_runs(*together(specs, tmp_path / "together"), *separate)
    assert mode == "ideal" or all(sum(s["final"]["pulses_up"]) > 0 for s in separate[1])


def interrupt(monkeypatch, cls, name: str, after_calls: int):
    """Make ``cls.name`` raise :class:`Interrupted` from call ``after_calls + 1`` on."""
    original = getattr(cls, name)
    calls = {"n": 0}

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] > after_calls:
            raise Interrupted
        return original(self, *args)

    monkeypatch.setattr(cls, name, failing)


def test_interrupted_population_resumes_to_the_separate_runs(tmp_path, monkeypatch,
                                                             separate_runs):
    specs, dirs, summaries = (part[:8] for part in separate_runs)
    with monkeypatch.context() as patch:
        interrupt(patch, NumbaBackend, "launch_population_step", 5)  # 4 noise steps, 1 of data
        with pytest.raises(Interrupted):
            together(specs, tmp_path)
    assert_same_runs(*together(specs, tmp_path, resume=True), dirs, summaries)


def test_population_resumes_runs_at_different_points(tmp_path, monkeypatch, separate_runs):
    """Chips restored at different checkpoints (or finished) step alone until level."""
    specs, dirs, summaries = (part[:4] for part in separate_runs)
    run_spec(specs[2], tmp_path / "seed2")  # finished
    with monkeypatch.context() as patch:
        interrupt(patch, Trainer, "step", 7)  # checkpointed after epoch 1 of the data
        with pytest.raises(Interrupted):
            run_spec(specs[1], tmp_path / "seed1")
    assert_same_runs(*together(specs, tmp_path, resume=True), dirs, summaries)


def test_cli_population_writes_a_run_folder_per_chip_and_the_mean(tmp_path, separate_runs):
    specs, dirs, summaries = separate_runs
    path = tmp_path / "exp.yaml"
    # --population replaces the file's seeds
    path.write_text(yaml.safe_dump({**experiment_data([]), "population": None, "seeds": [7]}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--population", "3", "--out", str(out), "--quiet",
                 "--no-run-reports"]) == 0
    for seed in range(3):
        run = out / "default" / f"seed{seed}"
        assert (run / "config.yaml").read_text() == _run_config_text(specs[seed])[0]
        assert (run / "metrics.jsonl").read_text() == (dirs[seed] / "metrics.jsonl").read_text()
    accuracy = json.loads((out / "comparison.json").read_text())[
        "conditions"]["default"]["metrics"]["test_accuracy"]
    assert accuracy["n"] == 3
    assert accuracy["mean"] == pytest.approx(np.mean([s["train"]["test_accuracy"]
                                                      for s in summaries[:3]]))


BAD_POPULATIONS = [
    ({"population": {"seeds": [0, 1], "size": 2}}, "population.size", "either seeds or a size"),
    ({"population": {}}, "population.size", "either seeds or a size"),
    ({"population": {"seeds": [3, 3]}}, "population.seeds", "must be distinct"),
    ({"population": {"seeds": [0, 1], "first_seed": 2}}, "population.first_seed",
     "goes with size"),
    ({"population": {"size": 0}}, "population.size", "must be >= 1"),
    ({"population": {"size": 2}, "seeds": [0, 1]}, "seeds", "drop seeds"),
    ({"population": {"size": 2}, "conditions": {"a": {"population.size": 3}}},
     "conditions.a.population.size", "a condition cannot set"),
]


@pytest.mark.parametrize("sections, field, rule", BAD_POPULATIONS)
def test_bad_population_is_refused(tmp_path, sections, field, rule):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **sections}))
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert error.value.path == field
    assert rule in error.value.allowed


def test_population_runs_are_configured_as_runs_alone():
    together_ = expand_runs(build(ExperimentConfig, experiment_data([4, 2]), "test"))
    alone = expand_runs(build(ExperimentConfig, {**experiment_data([]), "population": None,
                                                 "seeds": [4, 2]}, "test"))
    assert [s.seed for s in together_] == [4, 2]
    assert together_ == alone
    sized = build(ExperimentConfig, {"name": "t", "population": {"size": 3, "first_seed": 5}},
                  "test")
    assert [s.seed for s in expand_runs(sized)] == [5, 6, 7]


# Conditions that differ in everything but the hardware: no noise phase; noise with the
# data's batch size (its chips share the data chips' calls); a fresh stream of correlated
# noise with its own optimizer (SGD, no moments), batch size and length; binary-spike noise
# and momentum SGD throughout.
CONDITIONS = {
    "none": {"precondition.enabled": False},
    "noise": {"precondition.batch_size": 32},
    "fresh_sgd": {"precondition.regime": "fresh_stream", "precondition.steps": 6,
                  "precondition.optimizer": {"name": "sgd", "lr": 0.05},
                  "precondition.input": {"distribution": "correlated", "length_scale": 1.5}},
    "momentum": {"optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9},
                 "precondition.input": {"distribution": "binary", "rate": 0.2}},
    "adam_fast": {"precondition.enabled": False, "optimizer.lr": 0.01},
}


@pytest.mark.parametrize("backend, mode", [("numba", "ideal"), ("numba", "pulsed"),
                                           ("numpy", "ideal"), ("torch", "ideal"),
                                           ("torch", "pulsed")])
def test_population_across_conditions_gives_the_separate_runs(tmp_path, monkeypatch, backend,
                                                              mode):
    """One population of five conditions x two seeds, its chips in different phases with
    different optimizers and batch sizes: each chip's run is exactly its separate run, and
    chips of different conditions share backend calls (Adam's learning rates may differ
    within one)."""
    if backend == "torch":
        backend_under_test("torch")
    chip = pulsed_chip(dw_min=0.002, dw_min_ctoc=0.2) if mode == "pulsed" else None
    specs = specs_of([3, 8], chip, backend=backend, conditions=CONDITIONS)
    assert len(specs) == 10
    dirs = [tmp_path / "together" / s.condition / f"seed{s.seed}" for s in specs]
    backend_class = type(create_backend(specs[0].experiment.simulation))
    calls = []
    step = backend_class.launch_population_step

    def recorded(self, population, states, active, x, y):
        calls.append({specs[c].condition for c in active})
        return step(self, population, states, active, x, y)

    with monkeypatch.context() as patch:
        patch.setattr(backend_class, "launch_population_step", recorded)
        summaries = run_population(specs, dirs)
    separate_dirs = [tmp_path / "separate" / s.condition / f"seed{s.seed}" for s in specs]
    separate = [run_spec(s, d) for s, d in zip(specs, separate_dirs)]
    assert_same_runs(dirs, summaries, separate_dirs, separate)
    # data and noise batches of one optimizer, Adam at two learning rates: one call
    assert {"none", "noise", "adam_fast"} in calls
    assert not any("fresh_sgd" in call and "none" in call for call in calls)  # SGD noise
    assert len({(d / "metrics.jsonl").read_text() for d in dirs}) == len(specs)  # all differ


SCHEDULES = {  # SMALL: 64 examples in batches of 32, a noise set of 64 in batches of 16
    "short_last_batches": {"data.train_size": 70, "precondition.n_examples": 40,
                           "precondition.steps": 7, "precondition.log_every": 3},
    "small_batches": {"train.batch_size": 12, "evaluation.points_per_epoch": 3,
                      "evaluation.fractional_epochs": [0.02, 0.2], "train.epochs": 3},
    "every_other_epoch": {"train.epochs": 5, "evaluation.every_epochs": 2,
                          "precondition.enabled": False, "train.batch_size": 10},
    "no_noise_steps": {"precondition.steps": 0, "data.train_size": 50,
                       "train.batch_size": 16},
}


def test_population_of_other_schedules_gives_the_separate_runs(tmp_path):
    """Conditions with other training sets, batch sizes (short last batches, of the data
    and of the noise set), noise lengths and evaluation points (fractional, several per
    epoch, every other epoch) in one population: each chip trains on the batches of its
    separate run and is evaluated at its points."""
    specs = specs_of([2, 5], conditions=SCHEDULES)
    dirs = [tmp_path / "together" / s.condition / f"seed{s.seed}" for s in specs]
    summaries = run_population(specs, dirs)
    separate_dirs = [tmp_path / "separate" / s.condition / f"seed{s.seed}" for s in specs]
    assert_same_runs(dirs, summaries, separate_dirs,
                     [run_spec(s, d) for s, d in zip(specs, separate_dirs)])
    records = {s.condition: map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
               for s, d in zip(specs, dirs)}
    steps = {condition: [r["step"] for r in rows if r["phase"] == "train"]
             for condition, rows in records.items()}
    assert steps == {"short_last_batches": [0, 2, 3, 6],  # 3 steps an epoch: 32, 32, 6
                     "small_batches": [0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 18],  # 0.02: step 0
                     "every_other_epoch": [0, 4, 7, 14, 28, 35],
                     "no_noise_steps": [0, 2, 4, 8]}


def test_a_population_step_refuses_chips_with_different_optimizers():
    specs = specs_of([0, 1], conditions={"adam": {}, "sgd": {"optimizer.name": "sgd"}})
    trainers = [Trainer(spec, f"/nonexistent/{k}") for k, spec in enumerate(specs)]
    population = Population([trainer.chip for trainer in trainers])
    x = np.zeros((4, 2, 784), dtype=np.float32)
    with pytest.raises(ValueError, match="share their optimizer configuration"):
        NumbaBackend().population_step(population, [t.optimizer for t in trainers],
                                       [0, 1, 2, 3], x, np.zeros((4, 2), dtype=np.int64))


def test_populations_group_the_conditions_that_share_the_hardware():
    """Conditions with another rule or network run apart; with across_conditions false,
    every condition alone; a population's runs must share the hardware."""
    conditions = {"fa": {}, "fa_noise": {"precondition.steps": 8}, "bp": {"rule": "bp"},
                  "wide": {"network.dims": [784, 32, 10]}, "fa_sgd": {"optimizer.name": "sgd"}}
    specs = specs_of([0, 1], conditions=conditions)
    named = [[f"{specs[i].condition}{specs[i].seed}" for i in members]
             for members in population_members(specs, across_conditions=True)]
    assert named == [["fa0", "fa1", "fa_noise0", "fa_noise1", "fa_sgd0", "fa_sgd1"],
                     ["bp0", "bp1"], ["wide0", "wide1"]]
    assert population_members(specs, across_conditions=False) == [[0, 1], [2, 3], [4, 5],
                                                                  [6, 7], [8, 9]]
    assert population_members(specs, True, max_chips=4) == [[0, 1, 2, 3], [8, 9], [4, 5],
                                                            [6, 7]]
    with pytest.raises(ValueError, match="must share their chip, network, rule"):
        run_population([specs[0], specs[4]], ["/nonexistent/0", "/nonexistent/1"])


def test_regenerated_feedback_of_a_population_is_drawn_once_per_backend(monkeypatch):
    """Regenerated feedback gives the same values from the same keys at every step: a
    population draws it once (per backend), not on every step."""
    from neurosim.backends.numpy_ref import NumpyBackend

    chip = load_chip(REPO / "hw_configs" / "ideal.yaml")
    chip = dataclasses.replace(chip, feedback=dataclasses.replace(chip.feedback,
                                                                 kind="regenerated"))
    trainers = [Trainer(spec, f"/nonexistent/{k}")
                for k, spec in enumerate(specs_of([0, 1, 2], chip))]
    population = Population([trainer.chip for trainer in trainers])
    draws = []
    for cls in (NumbaBackend, NumpyBackend):
        original = cls.regenerate_feedback
        monkeypatch.setattr(cls, "regenerate_feedback",
                            lambda self, c, out, original=original: draws.append(c)
                            or original(self, c, out))
    numba_backend, numpy_backend = NumbaBackend(), NumpyBackend()
    expected = np.stack([numba_backend.feedback_buffer(t.chip) for t in trainers])
    draws.clear()
    for _ in range(3):
        np.testing.assert_array_equal(population.feedback(numba_backend), expected)
    assert len(draws) == 3  # once per chip
    np.testing.assert_array_equal(population.feedback(numpy_backend), expected)
    assert len(draws) == 6


def test_interrupted_population_across_conditions_resumes_to_the_separate_runs(tmp_path,
                                                                               monkeypatch):
    """Chips of different conditions, in different phases when interrupted (one in its
    noise phase, the other training on data), each resume from their own checkpoints."""
    conditions = {"none": CONDITIONS["none"], "fresh_sgd": CONDITIONS["fresh_sgd"]}
    specs = specs_of([4, 6], conditions=conditions)
    dirs = [tmp_path / "together" / s.condition / f"seed{s.seed}" for s in specs]
    with monkeypatch.context() as patch:
        interrupt(patch, NumbaBackend, "launch_population_step", 5)  # 2 calls a step: in step 2
        with pytest.raises(Interrupted):
            run_population(specs, dirs)
    summaries = run_population(specs, dirs, resume=True)
    separate_dirs = [tmp_path / "separate" / s.condition / f"seed{s.seed}" for s in specs]
    assert_same_runs(dirs, summaries, separate_dirs,
                     [run_spec(s, d) for s, d in zip(specs, separate_dirs)])


def device_variants():
    """Chips of one device model that differ only in what each chip draws for itself:
    device-to-device spreads, asymmetry, stuck cells, initial fill, feedback programming
    and drift, energy costs, names."""
    base = pulsed_chip(dw_min=0.002, dw_min_ctoc=0.2)
    varied = [
        {"forward.device": {"dw_min_dtod": 0.3, "up_down": 0.1},
         "feedback": {"programming_error": 0.1, "levels": 9}},
        {"forward.device": {"w_min_dtod": 0.2, "w_max_dtod": 0.1, "stuck_at_initial": 0.2},
         "forward": {"init_fill": 0.5}, "feedback": {"stuck_at_max": 0.05, "drift_nu": 0.05}},
        {"forward.device": {"up_down_dtod": 0.2, "stuck_at_min": 0.1},
         "chip": {"name": "another", "step_time_s": 1.0}},
    ]
    chips = []
    for changes in varied:
        device = dataclasses.replace(base.forward.device, **changes.get("forward.device", {}))
        forward = dataclasses.replace(base.forward, device=device,
                                      **changes.get("forward", {}))
        feedback = dataclasses.replace(base.feedback, **changes.get("feedback", {}))
        energy = dataclasses.replace(base.energy, read_voltage_v=0.2 * len(chips) + 0.3)
        chips.append(dataclasses.replace(base, forward=forward, feedback=feedback,
                                         energy=energy, **changes.get("chip", {})))
    return chips


def variants_are_one_population_of_separate_runs(chips, backend: str, root) -> list[dict]:
    """Runs of ``chips`` (seeds 1, 2, ..., SGD) form one population whose chips give their
    separate runs; returns the separate runs' summaries."""
    if backend == "torch":
        backend_under_test("torch")
    specs = [dataclasses.replace(spec, chip=chip) for spec, chip in
             zip(specs_of(range(1, len(chips) + 1), backend=backend,
                          optimizer={"name": "sgd", "lr": 0.05}), chips)]
    assert population_members(specs, across_conditions=True) == [list(range(len(chips)))]
    separate = separately(specs, root / "separate")
    assert_same_runs(*together(specs, root / "together"), *separate)
    return separate[1]


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_population_of_device_variants_gives_the_separate_runs(tmp_path, backend):
    """Chips that differ in device-to-device variation, stuck cells and feedback
    programming form one population (one chip configuration for its steps, each chip's
    own draws), and each gets its separate run."""
    variants_are_one_population_of_separate_runs(device_variants(), backend, tmp_path)


def test_chips_that_step_differently_are_not_one_population():
    base = pulsed_chip(dw_min=0.002)
    others = [dataclasses.replace(base, forward=dataclasses.replace(
                  base.forward, device=dataclasses.replace(base.forward.device, **change)))
              for change in ({"levels": 64}, {"dw_min_ctoc": 0.1}, {"model": "linear_step"})]
    specs = [dataclasses.replace(spec, chip=chip) for spec, chip in
             zip(specs_of([0, 1, 2, 3]), [base, *others])]
    assert population_members(specs, across_conditions=True) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="must share their chip, network, rule"):
        run_population(specs[:2], ["/nonexistent/0", "/nonexistent/1"])


def test_a_population_waits_for_its_losses_once_per_segment(tmp_path, monkeypatch):
    """Runs of one schedule: one backend call per step, and the launched steps' losses
    waited for once per segment (the steps up to each evaluation point), not per step;
    the batches' row indices stacked a step at a time give the separate runs too."""
    monkeypatch.setattr(cohorts, "BLOCK", 1)
    launches, waits = [], []
    launch, values = NumbaBackend.launch_population_step, NumbaBackend.step_values

    def counted_launch(self, population, states, active, x, y):
        launches.append(len(active))
        return launch(self, population, states, active, x, y)

    def counted_values(self, launched):
        waits.append(len(launched))
        return values(self, launched)

    monkeypatch.setattr(NumbaBackend, "launch_population_step", counted_launch)
    monkeypatch.setattr(NumbaBackend, "step_values", counted_values)
    specs = specs_of(range(3))
    population = together(specs, tmp_path / "together")
    # SMALL: 4 noise steps logged every 2; 2 epochs of 2 data steps evaluated at steps
    # 1 (epoch 0.5), 2 and 4
    assert launches == [3] * 8
    assert waits == [2, 2, 1, 1, 2]
    assert_same_runs(*population, *separately(specs, tmp_path / "separate"))


def test_cohorts_of_one_call_in_any_order_give_the_separate_runs(tmp_path):
    """Two conditions with the same optimizer but other evaluation points (cohorts that
    end their segments at different steps and join one call in changing order): on
    torch, whose resident step takes all chips in the population's order as a fast path,
    each chip still trains on its own batches."""
    backend_under_test("torch")
    conditions = {"none": CONDITIONS["none"],
                  "noise": {"precondition.batch_size": 32, "precondition.log_every": 3}}
    specs = specs_of([1, 2], backend="torch", conditions=conditions)
    dirs = [tmp_path / "together" / s.condition / f"seed{s.seed}" for s in specs]
    summaries = run_population(specs, dirs)
    separate_dirs = [tmp_path / "separate" / s.condition / f"seed{s.seed}" for s in specs]
    assert_same_runs(dirs, summaries, separate_dirs,
                     [run_spec(s, d) for s, d in zip(specs, separate_dirs)])


def measured_chips(reads: str, n: int = 4) -> list[Chip]:
    experiment = build(ExperimentConfig, experiment_data(range(n)), "test")
    config = (read_hardware_chip("regenerated") if reads == "noisy"
              else load_chip(REPO / "hw_configs" / "ideal.yaml"))
    return [Chip(config, experiment.network, get_rule(experiment.rule), seed, "float32")
            for seed in range(n)]


@pytest.mark.parametrize("reads", ["ideal", "noisy"])
def test_chips_measured_together_are_measured_as_alone(any_backend, reads):
    """Backend.population_logits: each chip's logits on its inputs (one array shared by
    the chips, arrays of their own, rows of one dataset) are its logits measured alone,
    pass after pass (each pass a fresh read, with the chip's next read-noise keys); so are
    its gradients of FA and BP (Backend.population_gradients), with the feedback it
    applies; a subset of the chips, in another order. Exact on the CPU; on CUDA to the
    rounding of the batched products (which may move a noisy read across an ADC level)."""
    backend = any_backend.backend("float32")
    alone, chips = measured_chips(reads), measured_chips(reads)
    population = Population(chips)
    generator = np.random.default_rng(3)
    source = generator.random((50, 784)).astype(np.float32)
    members = [2, 0, 3]
    cases = {"shared": [source[:20]] * len(members),
             "own": [generator.random((20, 784)).astype(np.float32) for _ in members],
             "rows": [Rows(source, generator.permutation(50)[:20]) for _ in members]}
    labels = generator.integers(0, 10, 50)
    probes = {"own": ([source[5 * k:5 * k + 16] for k in range(len(members))],
                      [labels[5 * k:5 * k + 16] for k in range(len(members))]),
              "rows": ([Rows(source, index.index[:16]) for index in cases["rows"]],
                       [Rows(labels, index.index[:16]) for index in cases["rows"]])}

    def assert_measured_as_alone(out, expected, name):
        if any_backend.device == "cpu":
            np.testing.assert_array_equal(out, expected, err_msg=name)
        elif reads == "ideal":
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
        else:
            assert np.mean(np.abs(out - expected) <= 1e-4 * np.abs(expected).max()) > 0.99

    for name, inputs in [*cases.items(), ("shared again", cases["shared"])]:
        together = backend.population_logits(population, members, inputs)
        for c, x, out in zip(members, inputs, together):
            assert_measured_as_alone(out, backend.logits(alone[c], gathered(x)),
                                     f"{name}: chip {c}")
    for name, (x, y) in probes.items():
        for rule in (RuleCode.FA, RuleCode.BP):
            together = backend.population_gradients(population, members, x, y, rule)
            for k, c in enumerate(members):
                expected = evaluation.gradients(alone[c], backend, gathered(x[k]),
                                                gathered(y[k]), rule)
                assert_measured_as_alone(together[k], expected, f"{name} {rule}: chip {c}")
    assert ([chip.measurement_reads for chip in chips]
            == [chip.measurement_reads for chip in alone] == [8, 0, 8, 8])


def test_chips_at_an_evaluation_point_are_measured_in_one_call(tmp_path, monkeypatch):
    """In a population run the chips at an evaluation point measure their probes and
    test sets in one backend call for all of them (a pass per input and chunk), their
    gradient probes in one per rule, and each run's evaluation time is booked."""
    calls = {"logits": [], "gradients": []}
    logits, gradients = Backend.population_logits, Backend.population_gradients

    def counted_logits(self, population, members, inputs):
        calls["logits"].append(list(members))
        return logits(self, population, members, inputs)

    def counted_gradients(self, population, members, x, y, rule):
        calls["gradients"].append((list(members), rule))
        return gradients(self, population, members, x, y, rule)

    monkeypatch.setattr(Backend, "population_logits", counted_logits)
    monkeypatch.setattr(Backend, "population_gradients", counted_gradients)
    monkeypatch.setattr(evaluation, "EVAL_CHUNK", 20)
    specs = specs_of(range(3))
    population = together(specs, tmp_path / "together")
    # SMALL: noise probe (32: 2 chunks) before the noise phase, at its 3 records (steps
    # 0, 2, 4) and after it; test set (32) and training probe (32) at data steps 0, 1, 2, 4;
    # the gradient probe (16) at the 3 + 4 records, FA's gradient and BP's
    assert calls["logits"] == [[0, 1, 2]] * (2 * (1 + 3 + 1) + 2 * 2 * 4)
    assert calls["gradients"] == [([0, 1, 2], RuleCode.FA), ([0, 1, 2], RuleCode.BP)] * (3 + 4)
    assert_same_runs(*population, *separately(specs, tmp_path / "separate"))
    for summary in population[1]:
        assert summary["seconds"]["evaluation"] > 0


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_population_with_ood_records_and_noisy_reads_gives_the_separate_runs(tmp_path,
                                                                            backend):
    """OOD accuracies at every record (measurement passes of each chip's own, between its
    batched passes and its gradient probe) with noisy reads, where each pass takes the
    chip's next read-noise keys: the passes keep their order, so the runs are the
    separate runs."""
    if backend == "torch":
        backend_under_test("torch")
    evaluation_section = {**SMALL["evaluation"], "ood": ["translate"],
                          "ood_during_training": True, "ood_shifts_px": [2.0]}
    specs = specs_of(range(3), read_hardware_chip("regenerated"), backend=backend,
                     evaluation=evaluation_section)
    population = together(specs, tmp_path / "together")
    assert_same_runs(*population, *separately(specs, tmp_path / "separate"))
    records = [json.loads(line) for line in
               (population[0][0] / "metrics.jsonl").read_text().splitlines()]
    assert all("ood_accuracy" in r for r in records if r["phase"] == "train")
