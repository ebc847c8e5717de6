"""A population's state held on the torch backend's device between steps
(:mod:`neurosim.backends.torch_population`): the host buffers are brought back only when
read, writes release the device copy, subsets and new optimizers are handled, and every
chip's numbers are those of its own single-chip steps (bit for bit on the CPU, where the
tests run torch on one thread: a single chip's products on more threads can differ in the
last bit, see the torch backend's docstring; on CUDA to the rounding of the batched
products)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import backend_under_test
from test_pulsed_training import pulsed_chip, stochastic_chip

from neurosim.backends.torch_population import ResidentPopulation
from neurosim.bench import Workload, constant_step_chip
from neurosim.config import HW_CONFIG_DIR, TileConfig, load_chip, load_experiment
from neurosim.optimizers import OptimizerState
from neurosim.periphery import PeripheryConfig

QUICKSTART = HW_CONFIG_DIR.parent / "experiments" / "quickstart.yaml"
DEVICE = dict(dw_min=0.002, dw_min_ctoc=0.2, dw_min_dtod=0.3, stuck_at_initial=0.1)
CHIPS = {"ideal": lambda: load_chip(HW_CONFIG_DIR / "ideal.yaml"),
         "pulsed": lambda: pulsed_chip(**DEVICE),
         "stochastic": lambda: stochastic_chip(**DEVICE)}


def workloads(chip: str, device: str = "cpu", n_chips: int = 3, optimizer: str = "adam"):
    """The same chips twice: a population on the torch backend, and the chips stepped one
    at a time (the reference); each chip with its own fixed batches."""
    backend = backend_under_test("torch-cuda" if device == "cuda" else "torch").backend(
        "float32")
    experiment = load_experiment(QUICKSTART)
    experiment = dataclasses.replace(experiment, optimizer=dataclasses.replace(
        experiment.optimizer, name=optimizer, lr=3e-3 if optimizer == "adam" else 0.05))
    config = CHIPS[chip]()
    return (Workload(experiment, config, backend, n_chips, 16, together=True),
            Workload(experiment, config, backend, n_chips, 16, together=False))


def assert_same_chips(a: Workload, b: Workload, chips=None):
    for c in chips if chips is not None else range(len(a.chips)):
        np.testing.assert_array_equal(a.chips[c].params, b.chips[c].params, err_msg=str(c))
        np.testing.assert_array_equal(a.chips[c].pulses, b.chips[c].pulses)
        assert a.chips[c].update_count == b.chips[c].update_count
        for key, value in a.states[c].state().items():
            np.testing.assert_array_equal(value, b.states[c].state()[key], err_msg=key)


@pytest.fixture
def downloads(monkeypatch):
    """Counts the copies of a resident population back into the host buffers."""
    calls = {"n": 0}
    original = ResidentPopulation.download

    def counted(self):
        calls["n"] += 1
        original(self)

    monkeypatch.setattr(ResidentPopulation, "download", counted)
    return calls


@pytest.mark.parametrize("chip", ["ideal", "pulsed", "stochastic"])
def test_state_stays_on_the_device_until_read(chip, downloads):
    population, alone = workloads(chip, optimizer="adam" if chip == "ideal" else "sgd")
    for _ in range(3):
        population.train()
        alone.train()
    assert downloads["n"] == 0  # no copy back per step
    resident = population.population.resident
    assert resident is not None and resident.host_stale
    assert_same_chips(population, alone)  # reading pulls, once
    assert downloads["n"] == 1 and not resident.host_stale
    population.train()
    alone.train()
    population.states[1].state()  # an optimizer's state pulls too
    assert downloads["n"] == 2
    assert_same_chips(population, alone)
    if chip != "ideal":
        assert all(chip.pulses.sum() > 0 for chip in population.chips)


def test_a_written_state_is_uploaded_again():
    population, alone = workloads("pulsed", optimizer="sgd")
    population.train()
    alone.train()
    saved = [(chip.state(), state.state()) for chip, state in zip(alone.chips, alone.states)]
    for _ in range(2):
        population.train()
        alone.train()
    for workload in (population, alone):  # both go back to the saved step
        for (chip_state, optimizer_state), chip, state in zip(saved, workload.chips,
                                                              workload.states):
            chip.load_state(chip_state)
            state.load_state(optimizer_state)
    assert population.population.resident is None  # released before the write
    population.count = alone.count = 1
    for _ in range(2):
        population.train()
        alone.train()
    assert_same_chips(population, alone)


@pytest.mark.parametrize("chip", ["pulsed", "stochastic"])
def test_a_subset_of_the_chips_steps_alone(chip):
    """Chips behind the others (a resumed run) step alone; the others keep their state."""
    population, alone = workloads(chip, optimizer="sgd", n_chips=4)
    population.train()
    alone.train()
    active = [0, 2]
    x, y = population.x[1][active], population.y[1][active]
    population.backend.population_step(population.population, population.states, active, x, y)
    for k, c in enumerate(active):
        alone.backend.train_step(alone.chips[c], alone.states[c], x[k], y[k], alone.grads[c],
                                 alone.deltas[c])
    assert_same_chips(population, alone)
    assert population.chips[1].update_count == 1


@pytest.mark.parametrize("chip", ["ideal", "pulsed"])
def test_the_chips_of_a_step_may_come_in_any_order(chip):
    """Every chip of the population in another order than the population's (the cohorts of
    a step joined in one call): each chip still gets its own batch and optimizer."""
    population, alone = workloads(chip, n_chips=3)
    active = [2, 0, 1]
    for step in range(2):
        x, y = population.x[step][active], population.y[step][active]
        population.backend.population_step(population.population, population.states, active,
                                           x, y)
        for k, c in enumerate(active):
            alone.backend.train_step(alone.chips[c], alone.states[c], x[k], y[k],
                                     alone.grads[c], alone.deltas[c])
    assert_same_chips(population, alone)


@pytest.mark.parametrize("rule", ["bp", "dfa"])
def test_each_chip_counts_its_own_re_reads(rule):
    """Iterative bound management over a population: every chip's saturated tiles are read
    again on their own (the chips' ranges differ), and the re-reads of each pass (training
    steps of all chips or of a subset, batched measurements) land in that chip's
    Chip.rereads, as its single-chip passes count them."""
    reads = PeripheryConfig(dac_bits=7, dac_bound="managed", adc_bits=8, adc_range=0.05,
                            adc_bound="iterative", out_noise=0.01)
    ideal = CHIPS["ideal"]()
    config = dataclasses.replace(
        ideal, tiles=TileConfig(100, 8),
        forward=dataclasses.replace(ideal.forward, periphery=reads),
        feedback=dataclasses.replace(ideal.feedback, periphery=reads))
    backend = backend_under_test("torch").backend("float32")
    experiment = dataclasses.replace(load_experiment(QUICKSTART), rule=rule)
    population, alone = (Workload(experiment, config, backend, 4, 16, together=together)
                         for together in (True, False))
    for _ in range(2):
        population.train()
        alone.train()
    active = [2, 0]
    x, y = population.x[1][active], population.y[1][active]
    backend.population_step(population.population, population.states, active, x, y)
    for k, c in enumerate(active):
        backend.train_step(alone.chips[c], alone.states[c], x[k], y[k], alone.grads[c],
                           alone.deltas[c])
    members = [3, 1, 0, 2]
    inputs, labels = population.x[2][members], population.y[2][members]
    logits = backend.population_logits(population.population, members, list(inputs))
    grads = backend.population_gradients(population.population, members, list(inputs),
                                         list(labels), int(alone.chips[0].rule.code))
    for k, c in enumerate(members):
        chip = alone.chips[c]
        np.testing.assert_array_equal(logits[k], backend.logits(chip, inputs[k]))
        out = np.zeros(chip.n_params, dtype=chip.dtype)
        backend.gradients(chip, backend.feedback_buffer(chip), inputs[k], labels[k],
                          chip.rule.code, out)
        np.testing.assert_array_equal(grads[k], out)
    assert_same_chips(population, alone)
    counted = [chip.rereads for chip in population.chips]
    for c, expected in enumerate(chip.rereads for chip in alone.chips):
        np.testing.assert_array_equal(counted[c], expected, err_msg=str(c))
    assert all(rereads[:, 0].all() and rereads[:, 1].any() for rereads in counted)
    assert len({rereads.tobytes() for rereads in counted}) == len(counted)


@pytest.mark.parametrize("rule", ["bp", "dfa", "drtp"])
def test_small_products_are_the_chips_own(rule):
    """Products of fewer than 400 multiply-adds (two samples through layers of 24 and 12
    units): torch's CPU bmm computes them in a plain loop, where mm calls MKL's fused
    multiply-adds; a chip's products are batched alone too (torch_math.product), so a
    population's chips still get their single-chip numbers bit for bit."""
    experiment = load_experiment(QUICKSTART)
    experiment = dataclasses.replace(experiment, rule=rule, network=dataclasses.replace(
        experiment.network, dims=(784, 24, 12, 10)))
    backend = backend_under_test("torch").backend("float32")
    population, alone = (Workload(experiment, CHIPS["ideal"](), backend, 3, 2,
                                  together=together) for together in (True, False))
    for _ in range(2):
        population.train()
        alone.train()
    assert_same_chips(population, alone)


def test_new_optimizers_of_a_new_phase_are_uploaded():
    population, alone = workloads("ideal")
    population.train()
    alone.train()
    for workload in (population, alone):  # the data phase's fresh optimizers
        workload.states = [OptimizerState.create(state.config, chip.n_params, chip.dtype)
                           for state, chip in zip(workload.states, workload.chips)]
    for _ in range(2):
        population.train()
        alone.train()
    assert_same_chips(population, alone)


@pytest.mark.cuda
@pytest.mark.parametrize("chip", ["ideal", "constant_step", "stochastic"])
def test_cuda_population_is_the_cpu_population(chip):
    """On a GPU, the batched products round differently from the CPU's: the chips agree to
    float32 rounding (the pulse counts too, but for weights at a rounding boundary, or
    lines whose firing probability lies within that rounding of a draw), and the state
    stays on the device between steps on both."""
    backends = {device: backend_under_test("torch-cuda" if device == "cuda" else "torch")
                for device in ("cpu", "cuda")}
    experiment = load_experiment(QUICKSTART)
    if chip == "stochastic":  # in-array updates: plain SGD
        experiment = dataclasses.replace(experiment, optimizer=dataclasses.replace(
            experiment.optimizer, name="sgd", lr=0.05))
    config = (CHIPS["ideal"]() if chip == "ideal" else
              constant_step_chip(mode="pulsed" if chip == "constant_step" else chip))
    runs = {device: Workload(experiment, config, backends[device].backend("float32"), 8, 16,
                             data_on_device=True) for device in backends}
    for _ in range(5):
        losses = {device: run.backend.population_step(
            run.population, run.states, run.active, run.x[run.count % 4],
            run.y[run.count % 4]) for device, run in runs.items()}
        for run in runs.values():
            run.count += 1
        np.testing.assert_allclose(np.array(losses["cuda"])[:, 0],
                                   np.array(losses["cpu"])[:, 0], rtol=1e-4)
    for a, b in zip(runs["cuda"].chips, runs["cpu"].chips):
        # Adam divides by sqrt(v): a weight whose gradient is near zero may move by
        # lr-sized steps apart, so the parameters are compared as a whole
        assert np.linalg.norm(a.params - b.params) <= 1e-5 * np.linalg.norm(b.params)
        pulses_a, pulses_b = a.pulses.sum(), b.pulses.sum()
        assert abs(int(pulses_a) - int(pulses_b)) <= 1e-3 * max(int(pulses_b), 1)


@pytest.mark.cuda
def test_cuda_population_run_is_the_cpu_population_run(tmp_path):
    """``neurosim run`` with a population on a GPU: every chip's run folder, its metrics to
    float32 rounding of the CPU population's (the state held on the GPU between steps,
    pulled back at every evaluation and checkpoint)."""
    from test_population import specs_of, together

    backend_under_test("torch-cuda")
    summaries = {}
    for device in ("cpu", "cuda"):
        specs = [dataclasses.replace(spec, experiment=dataclasses.replace(
            spec.experiment, simulation=dataclasses.replace(spec.experiment.simulation,
                                                            device=device)))
                 for spec in specs_of(range(4), backend="torch")]
        dirs, summaries[device] = together(specs, tmp_path / device)
        assert all((d / "metrics.jsonl").exists() for d in dirs)
    for a, b in zip(summaries["cuda"], summaries["cpu"]):
        assert a["train"]["test_accuracy"] == pytest.approx(b["train"]["test_accuracy"],
                                                            abs=0.05)
        assert a["train"]["test_loss"] == pytest.approx(b["train"]["test_loss"], rel=1e-3)


def test_batches_are_gathered_from_sources_kept_on_the_device():
    """A population's batches as rows of their sources: gathered by the torch backend from
    copies it keeps (views of one dataset share one), the same numbers as stacked on the
    host."""
    from neurosim.backends.numpy_ref import NumpyBackend
    from neurosim.rows import Rows

    backend = backend_under_test("torch").backend("float32")
    draw = np.random.default_rng(0)
    dataset = draw.random((50, 6))  # float64, handed over as float32
    dataset.flags.writeable = False
    noise_sets = [draw.random((10, 6)) for _ in range(3)]
    for sources in ([dataset[:40] for _ in range(4)], noise_sets):
        for _ in range(2):  # the second step reuses the copies
            batches = [Rows(source, draw.integers(0, len(source), 5)) for source in sources]
            expected = NumpyBackend("float32").stack_batches(batches, np.float32)
            got = backend.stack_batches(batches, np.float32)
            assert got.dtype == torch_dtype("float32") and got.shape == expected.shape
            np.testing.assert_array_equal(got.cpu().numpy(), expected)
    assert len(backend._tables) == 2  # the dataset once, the three noise sets once
    arrays = [draw.random((5, 6)) for _ in range(3)]  # batches drawn afresh: stacked
    np.testing.assert_array_equal(backend.stack_batches(arrays, np.float64).numpy(),
                                  np.stack(arrays))


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)
